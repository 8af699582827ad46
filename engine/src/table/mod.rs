//! Tables: rows written by SQL (`INSERT`, `UPDATE`, `DELETE`, `COPY`) rather than read from a
//! source. A table is a view without a query: a [`ViewTable`] (keyed by the primary key; a table
//! without one is append-only) behind a [`Fanout`], so views read it, queries scan it and
//! checkpoints save it exactly as they do a view's rows. What a view's pipeline does for its
//! input, the table's [`TableWriter`] does for statements:
//!
//! ```text
//!  session ─ TableWrite ─▶ (changes, published in order) ─▶ Fanout ─▶ ViewTable, reading views
//!              │ commit: one log entry, before the command completes   ▲
//!  coordinator ─ barrier ─▶ table task (takes the write lock) ─────────┘ position = log sequence
//! ```
//!
//! - One writer at a time: [`TableWriter::begin`] takes the table's write lock and the
//!   [`TableWrite`] holds it until commit or rollback, so a statement (or a transaction) computes
//!   its changes against rows nobody else changes meanwhile.
//! - A keyed table publishes each statement's changes at once (later statements of the same
//!   transaction, and the session's queries, see them) and undoes them on rollback; barriers wait
//!   for the lock, so a checkpoint never holds a transaction's rows without its log entry. An
//!   append-only table cannot take rows back, so its rows are published at commit.
//! - Durability: [`log::TableLog`] writes one entry per commit before the command completes; a
//!   checkpoint records the sequence its rows include, and recovery replays the entries after it
//!   ([`runtime`]).

pub mod debezium;
pub mod log;
pub mod runtime;
pub mod upsert;
#[cfg(test)]
mod upsert_tests;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::arrow::array::{RecordBatch, UInt8Array, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tracing::warn;

use crate::changes::{Changes, MAX_CHANGES_ROWS, Op};
use crate::error::{EngineError, Result};
use crate::fanout::Fanout;
use crate::message::Message;
use crate::pipeline::PipelineStatus;
use crate::view_table::ViewTable;

use self::log::TableLog;

/// The write side of one table.
#[derive(Debug)]
pub struct TableWriter {
    name: String,
    fanout: Arc<Fanout>,
    status: Arc<PipelineStatus>,
    /// The primary key's columns (None: the table is append-only).
    key: Option<Vec<usize>>,
    /// Set in a durable database.
    log: Option<TableLog>,
    state: Arc<Mutex<WriterState>>,
    /// False until the log after the restored checkpoint is replayed: a query before that would
    /// miss acknowledged writes.
    replayed: tokio::sync::watch::Sender<bool>,
}

/// What the write lock protects.
#[derive(Debug, Default)]
pub(crate) struct WriterState {
    /// Sequence number of the last log entry (committed statement) in the table.
    pub(crate) seq: u64,
}

impl TableWriter {
    pub(crate) fn new(
        name: &str,
        fanout: Arc<Fanout>,
        status: Arc<PipelineStatus>,
        key: Option<Vec<usize>>,
        log: Option<TableLog>,
    ) -> Self {
        Self {
            name: name.to_string(),
            fanout,
            status,
            key,
            log,
            state: Arc::new(Mutex::new(WriterState::default())),
            replayed: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Waits until the table holds every acknowledged write (its log is replayed after a
    /// restart; at once otherwise).
    pub async fn wait_replayed(&self) {
        let mut ready = self.replayed.subscribe();
        // An error means the writer is gone (the table was dropped): nothing to wait for.
        let _ = ready.wait_for(|done| *done).await;
    }

    pub(crate) fn mark_replayed(&self) {
        self.replayed.send_replace(true);
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The primary key's columns; None for a table without one (append-only).
    pub fn key(&self) -> Option<&[usize]> {
        self.key.as_deref()
    }

    /// The table's rows.
    pub fn table(&self) -> &Arc<ViewTable> {
        self.fanout.table()
    }

    /// Takes the write lock (waiting for another writer's statement or transaction to end).
    pub async fn begin(self: &Arc<Self>) -> Result<TableWrite> {
        let guard = Arc::clone(&self.state).lock_owned().await;
        if let Some(why) = self.table().failure() {
            return Err(EngineError::ViewFailed(why));
        }
        Ok(TableWrite {
            writer: Arc::clone(self),
            guard: Some(guard),
            pending: Vec::new(),
        })
    }

    /// The log, in a durable database.
    pub fn log(&self) -> Option<&TableLog> {
        self.log.as_ref()
    }

    pub(crate) fn state(&self) -> &Arc<Mutex<WriterState>> {
        &self.state
    }

    pub(crate) fn fanout(&self) -> &Arc<Fanout> {
        &self.fanout
    }

    /// Publishes `changes` in chunks a reader can take.
    async fn publish(&self, changes: &Changes) -> Result<()> {
        for chunk in changes.chunks(MAX_CHANGES_ROWS) {
            if let Err(e) = self.fanout.publish(Message::Changes(chunk)).await {
                // The table and its readers no longer agree on its rows: stop rather than go on.
                self.table()
                    .mark_failed(format!("table \"{}\" failed: {e}", self.name));
                return Err(e);
            }
        }
        Ok(())
    }
}

/// One writer's hold on a table: a statement, or the statements of a transaction.
#[derive(Debug)]
pub struct TableWrite {
    writer: Arc<TableWriter>,
    guard: Option<OwnedMutexGuard<WriterState>>,
    /// Changes of this write not yet in the log, in order.
    pending: Vec<Changes>,
}

impl TableWrite {
    /// The table written.
    pub fn writer(&self) -> &Arc<TableWriter> {
        &self.writer
    }

    /// The table's rows, as this write sees them (its own changes included, for a keyed table).
    pub fn table(&self) -> &Arc<ViewTable> {
        self.writer.table()
    }

    /// Adds a statement's changes. A keyed table shows them at once; an append-only table at
    /// commit.
    pub async fn apply(&mut self, changes: Changes) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        if self.writer.key.is_some() {
            self.writer.publish(&changes).await?;
        }
        self.pending.push(changes);
        Ok(())
    }

    /// Rows this write has added so far.
    pub fn pending_rows(&self) -> usize {
        self.pending.iter().map(Changes::num_rows).sum()
    }

    /// Makes the write durable (one log entry) and lets other writers and checkpoints in.
    pub async fn commit(mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(());
        }
        let Some(guard) = self.guard.as_mut() else {
            return Err(EngineError::Internal("a table write lost its lock".into()));
        };
        let seq = guard.seq + 1;
        if let Some(log) = &self.writer.log
            && let Err(e) = log.append(seq, &pending).await
        {
            self.pending = pending;
            self.undo().await?;
            return Err(e);
        }
        guard.seq = seq;
        if self.writer.key.is_none() {
            for c in &pending {
                self.writer.publish(c).await?;
            }
        }
        let rows: usize = pending.iter().map(Changes::num_rows).sum();
        self.writer
            .status
            .rows_in
            .fetch_add(rows as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Takes this write's changes back.
    pub async fn rollback(mut self) -> Result<()> {
        self.undo().await
    }

    async fn undo(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        if self.writer.key.is_none() {
            // Never published.
            return Ok(());
        }
        for c in pending.iter().rev() {
            self.writer.publish(&inverse(c)?).await?;
        }
        Ok(())
    }
}

impl Drop for TableWrite {
    /// A write dropped without commit or rollback (its session went away mid-transaction) is
    /// rolled back, still holding the lock, so nobody sees the table half-written.
    fn drop(&mut self) {
        if self.pending.is_empty() || self.writer.key.is_none() {
            return;
        }
        let rest = TableWrite {
            writer: Arc::clone(&self.writer),
            guard: self.guard.take(),
            pending: std::mem::take(&mut self.pending),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let name = rest.writer.name.clone();
                if let Err(e) = rest.rollback().await {
                    warn!(table = %name, error = %e, "rolling back an abandoned write failed");
                }
            });
        }
    }
}

/// The changes that take `changes` back: rows in reverse order, inserts and deletes swapped,
/// and each update pair's rows swapped (reversing the order turns `-U old, +U new` into
/// `+U new, -U old`; swapping the ops makes it `-U new, +U old`).
pub fn inverse(changes: &Changes) -> Result<Changes> {
    let n = changes.num_rows();
    let reversed: UInt32Array = (0..n as u32).rev().collect();
    let rows: RecordBatch = take_record_batch(changes.rows(), &reversed)?;
    let ops: UInt8Array = (0..n)
        .rev()
        .map(|i| {
            (match changes.op(i) {
                Op::Insert => Op::Delete,
                Op::Delete => Op::Insert,
                Op::UpdateBefore => Op::UpdateAfter,
                Op::UpdateAfter => Op::UpdateBefore,
            }) as u8
        })
        .collect();
    Changes::try_new(rows, ops)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::changes::ChangelogChecker;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn rows(k: &[i64], v: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(k.to_vec())),
                Arc::new(Int64Array::from(v.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_inverse_of_changes_restores_the_rows_before_them() {
        let schema = rows(&[], &[]).schema();
        let mut checker = ChangelogChecker::new(schema, Some(vec![0])).unwrap();
        checker
            .apply(&Changes::inserts(rows(&[1, 2], &[10, 20])))
            .unwrap();
        let before = checker.live_rows().unwrap();
        let change = Changes::from_ops(
            rows(&[1, 1, 2, 3], &[10, 11, 20, 30]),
            &[Op::UpdateBefore, Op::UpdateAfter, Op::Delete, Op::Insert],
        )
        .unwrap();
        checker.apply(&change).unwrap();
        checker.apply(&inverse(&change).unwrap()).unwrap();
        let after = checker.live_rows().unwrap();
        let sorted = |b: &RecordBatch| {
            let mut pairs: Vec<(i64, i64)> = (0..b.num_rows())
                .map(|i| {
                    (
                        b.column(0)
                            .as_any()
                            .downcast_ref::<Int64Array>()
                            .unwrap()
                            .value(i),
                        b.column(1)
                            .as_any()
                            .downcast_ref::<Int64Array>()
                            .unwrap()
                            .value(i),
                    )
                })
                .collect();
            pairs.sort();
            pairs
        };
        assert_eq!(sorted(&before), sorted(&after));
    }
}
