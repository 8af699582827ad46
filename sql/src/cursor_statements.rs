//! `SUBSCRIBE`, `DECLARE … CURSOR`, `FETCH` and `CLOSE` on a session (the cursors' state is
//! [`crate::cursor`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use weir_engine::catalog::Relation;
use weir_engine::subscription::{Subscription, output_schema};

use crate::QueryResult;
use crate::cursor::CursorRows;
use crate::database::{Session, command};
use crate::error::{Result, SqlError, SqlErrorKind};
use crate::parser::{CursorQuery, DeclareCursor, Fetch, Subscribe};

impl Session {
    /// `SUBSCRIBE`: starts following the view.
    pub async fn subscribe(&self, subscribe: &Subscribe) -> Result<Subscription> {
        let entry = self.subscribed_view(&subscribe.view)?;
        Ok(Subscription::start(&entry.name, &entry.fanout, subscribe.options).await?)
    }

    /// The columns `SUBSCRIBE` to `view` sends.
    pub fn subscription_schema(&self, view: &str) -> Result<SchemaRef> {
        Ok(output_schema(
            &self.subscribed_view(view)?.table.schema_ref(),
        ))
    }

    fn subscribed_view(&self, name: &str) -> Result<Arc<weir_engine::catalog::ViewEntry>> {
        match self.db.catalog().relation(name) {
            Some(Relation::View(entry)) => Ok(entry),
            Some(Relation::Source(_)) => Err(SqlError::new(
                SqlErrorKind::WrongObjectType,
                format!(
                    "\"{name}\" is a source; SUBSCRIBE follows a materialized view or table (CREATE \
                     MATERIALIZED VIEW v AS SELECT * FROM {name}, then SUBSCRIBE TO v)"
                ),
            )),
            None => Err(SqlError::new(
                SqlErrorKind::UndefinedTable,
                format!("materialized view \"{name}\" does not exist"),
            )),
        }
    }

    /// `SUBSCRIBE` as rows: the stream ends only when the view's input does (or fails when the
    /// view stops).
    pub(crate) async fn subscribe_rows(&self, subscribe: &Subscribe) -> Result<QueryResult> {
        let subscription = self.subscribe(subscribe).await?;
        let schema = Arc::clone(subscription.schema());
        let rows = futures::stream::unfold(subscription, |mut s| async move {
            let item = s.next().await?;
            Some((item.map_err(|e| DataFusionError::External(Box::new(e))), s))
        });
        Ok(QueryResult::Rows {
            schema: Arc::clone(&schema),
            stream: Box::pin(RecordBatchStreamAdapter::new(schema, rows)),
        })
    }

    /// `DECLARE … CURSOR FOR SUBSCRIBE …` (a query's cursor: [`Session::declare_query_cursor`]).
    pub(crate) async fn declare_cursor(&self, declare: &DeclareCursor) -> Result<QueryResult> {
        match &declare.query {
            CursorQuery::Subscribe(subscribe) => {
                let subscription = self.subscribe(subscribe).await?;
                let schema = Arc::clone(subscription.schema());
                self.open_cursor(declare, schema, CursorRows::Changes(subscription))
                    .await
            }
            CursorQuery::Query(query) => {
                let result = self.execute_sql(query).await?;
                self.declare_query_cursor(declare, result).await
            }
        }
    }

    /// `DECLARE … CURSOR FOR query` whose query a front end ran (`result`).
    pub async fn declare_query_cursor(
        &self,
        declare: &DeclareCursor,
        result: QueryResult,
    ) -> Result<QueryResult> {
        match result {
            QueryResult::Rows { schema, stream } => {
                self.open_cursor(declare, schema, CursorRows::Query(stream))
                    .await
            }
            _ => Err(SqlError::syntax("DECLARE … CURSOR FOR needs a query")),
        }
    }

    async fn open_cursor(
        &self,
        declare: &DeclareCursor,
        schema: SchemaRef,
        rows: CursorRows,
    ) -> Result<QueryResult> {
        let in_transaction = self.txn.lock().await.open;
        self.cursors.lock().await.declare(
            &declare.name,
            declare.hold,
            in_transaction,
            schema,
            rows,
        )?;
        Ok(command("DECLARE CURSOR"))
    }

    /// `FETCH`.
    pub(crate) async fn fetch(&self, fetch: &Fetch) -> Result<QueryResult> {
        let (schema, batches) = self
            .cursors
            .lock()
            .await
            .fetch(&fetch.cursor, fetch.count, fetch.timeout)
            .await?;
        let stream = MemoryStream::try_new(batches, Arc::clone(&schema), None)?;
        Ok(QueryResult::Rows {
            schema,
            stream: Box::pin(stream),
        })
    }

    /// The columns a `FETCH` from `cursor` returns.
    pub async fn cursor_schema(&self, cursor: &str) -> Result<SchemaRef> {
        self.cursors.lock().await.schema(cursor)
    }

    /// `CLOSE name`, `CLOSE ALL` (None).
    pub(crate) async fn close_cursor(&self, name: Option<&str>) -> Result<QueryResult> {
        let mut cursors = self.cursors.lock().await;
        match name {
            Some(name) => cursors.close(name)?,
            None => cursors.close_all(),
        }
        Ok(command(if name.is_some() {
            "CLOSE CURSOR"
        } else {
            "CLOSE CURSOR ALL"
        }))
    }

    /// `DISCARD ALL`: every cursor closes.
    pub async fn close_all_cursors(&self) {
        self.cursors.lock().await.close_all();
    }
}
