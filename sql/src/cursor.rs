//! A session's cursors (`DECLARE`, `FETCH`, `CLOSE`) and subscriptions.
//!
//! A cursor reads a query's rows or a view's changes ([`CursorRows`]) forward, a `FETCH` at a
//! time. As in PostgreSQL, a cursor without `WITH HOLD` lives in its transaction: `DECLARE`
//! needs one, and `COMMIT`/`ROLLBACK` close it. A `FETCH` from a subscription waits for its first
//! row (at most `WITH (timeout = …)`, as in Materialize), then takes only what is already there,
//! so a client polls changes without ever being handed an unbounded result.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use weir_engine::catalog::Relation;
use weir_engine::subscription::{Subscription, output_schema};

use crate::QueryResult;
use crate::database::{Session, command};
use crate::error::{Result, SqlError, SqlErrorKind};
use crate::parser::{CursorQuery, DeclareCursor, Fetch, FetchCount, Subscribe};

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

/// What a cursor reads.
pub enum CursorRows {
    /// A query's rows, computed as they are fetched.
    Query(SendableRecordBatchStream),
    /// A view's changes.
    Changes(Subscription),
}

impl std::fmt::Debug for CursorRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CursorRows::Query(_) => f.write_str("Query"),
            CursorRows::Changes(_) => f.write_str("Changes"),
        }
    }
}

/// One open cursor.
#[derive(Debug)]
struct Cursor {
    /// Outlives its transaction.
    hold: bool,
    schema: SchemaRef,
    rows: CursorRows,
    /// Rows read but not yet fetched (the rest of a batch a `FETCH n` cut).
    pending: Option<RecordBatch>,
    /// An error met after rows a `FETCH` already returned: the next `FETCH` reports it.
    failed: Option<SqlError>,
}

/// The open cursors of a session, by name.
#[derive(Debug, Default)]
pub struct Cursors {
    open: BTreeMap<String, Cursor>,
}

impl Cursors {
    /// Opens cursor `name`. `in_transaction`: a transaction block is open.
    pub fn declare(
        &mut self,
        name: &str,
        hold: bool,
        in_transaction: bool,
        schema: SchemaRef,
        rows: CursorRows,
    ) -> Result<()> {
        if !hold && !in_transaction {
            return Err(SqlError::new(
                SqlErrorKind::NoActiveTransaction,
                "DECLARE CURSOR can only be used in transaction blocks (BEGIN first, or DECLARE \
                 … CURSOR WITH HOLD)",
            ));
        }
        if self.open.contains_key(name) {
            return Err(SqlError::new(
                SqlErrorKind::DuplicateCursor,
                format!("cursor \"{name}\" already exists"),
            ));
        }
        self.open.insert(
            name.to_string(),
            Cursor {
                hold,
                schema,
                rows,
                pending: None,
                failed: None,
            },
        );
        Ok(())
    }

    /// The schema of cursor `name`'s rows.
    pub fn schema(&self, name: &str) -> Result<SchemaRef> {
        self.open
            .get(name)
            .map(|c| c.schema.clone())
            .ok_or_else(|| undefined(name))
    }

    /// `FETCH`: the next rows of cursor `name`.
    pub async fn fetch(
        &mut self,
        name: &str,
        count: FetchCount,
        timeout: Option<Duration>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let cursor = self.open.get_mut(name).ok_or_else(|| undefined(name))?;
        if let Some(e) = cursor.failed.take() {
            return Err(e);
        }
        let want = match count {
            FetchCount::Rows(n) => n,
            FetchCount::All => usize::MAX,
        };
        let batches = cursor.fetch(want, timeout).await?;
        Ok((cursor.schema.clone(), batches))
    }

    /// `CLOSE name`.
    pub fn close(&mut self, name: &str) -> Result<()> {
        self.open
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| undefined(name))
    }

    /// `CLOSE ALL`, `DISCARD ALL`.
    pub fn close_all(&mut self) {
        self.open.clear();
    }

    /// The transaction ended: cursors without `WITH HOLD` close.
    pub fn end_transaction(&mut self) {
        self.open.retain(|_, c| c.hold);
    }
}

fn undefined(name: &str) -> SqlError {
    SqlError::new(
        SqlErrorKind::UndefinedCursor,
        format!("cursor \"{name}\" does not exist"),
    )
}

impl Cursor {
    /// Up to `want` rows.
    async fn fetch(&mut self, want: usize, timeout: Option<Duration>) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let mut taken = 0;
        if want == 0 {
            return Ok(out);
        }
        // The first rows: waited for (a subscription's at most `timeout`).
        let first = match self.pending.take() {
            Some(batch) => Some(batch),
            None => match self.wait_next(timeout).await {
                Ok(batch) => batch,
                Err(e) => return Err(e),
            },
        };
        let Some(first) = first else {
            return Ok(out);
        };
        self.take_into(first, want, &mut taken, &mut out);
        while taken < want && self.pending.is_none() {
            let next: Result<Option<RecordBatch>> = match &mut self.rows {
                // A query's rows are computed on: FETCH n returns n rows unless the query ends.
                CursorRows::Query(stream) => stream.next().await.transpose().map_err(Into::into),
                // A subscription's: only those already there.
                CursorRows::Changes(subscription) => match subscription.try_next() {
                    None | Some(None) => break,
                    Some(Some(item)) => item.map(Some).map_err(Into::into),
                },
            };
            match next {
                Ok(Some(batch)) => self.take_into(batch, want, &mut taken, &mut out),
                Ok(None) => break,
                Err(e) => {
                    // The rows taken are returned; the error comes with the next FETCH.
                    self.failed = Some(e);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The next batch of rows; None when the rows ended (or a subscription's wait timed out).
    async fn wait_next(&mut self, timeout: Option<Duration>) -> Result<Option<RecordBatch>> {
        match &mut self.rows {
            CursorRows::Query(stream) => Ok(stream.next().await.transpose()?),
            CursorRows::Changes(subscription) => {
                let next = match timeout {
                    Some(t) => match tokio::time::timeout(t, subscription.next()).await {
                        Ok(next) => next,
                        Err(_) => return Ok(None),
                    },
                    None => subscription.next().await,
                };
                Ok(next.transpose()?)
            }
        }
    }

    /// Adds `batch`'s rows to `out` up to `want` in all, keeping the rest for the next FETCH.
    fn take_into(
        &mut self,
        batch: RecordBatch,
        want: usize,
        taken: &mut usize,
        out: &mut Vec<RecordBatch>,
    ) {
        let room = want - *taken;
        if batch.num_rows() > room {
            self.pending = Some(batch.slice(room, batch.num_rows() - room));
            out.push(batch.slice(0, room));
            *taken = want;
        } else {
            *taken += batch.num_rows();
            if batch.num_rows() > 0 {
                out.push(batch);
            }
        }
    }
}
