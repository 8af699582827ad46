//! A session's cursors: what `DECLARE` opens and `FETCH` reads (the statements themselves are
//! `cursor_statements.rs`).
//!
//! A cursor reads a query's rows or a view's changes ([`CursorRows`]) forward, a `FETCH` at a
//! time. As in PostgreSQL, a cursor without `WITH HOLD` lives in its transaction: `DECLARE`
//! needs one, and `COMMIT`/`ROLLBACK` close it. A `FETCH` from a subscription waits for its first
//! row (at most `WITH (timeout = …)`, as in Materialize), then takes only what is already there,
//! so a client polls changes without ever being handed an unbounded result.

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use weir_engine::subscription::Subscription;

use crate::error::{Result, SqlError, SqlErrorKind};
use crate::parser::FetchCount;

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
