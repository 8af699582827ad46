//! Transactions over tables, as PostgreSQL clients use them: `BEGIN`, writes, `COMMIT` or
//! `ROLLBACK` (drivers with autocommit off send `BEGIN` before the first statement).
//!
//! - Outside a transaction each statement commits by itself.
//! - Inside one, a table's write lock is taken by the first write to it and held until the end,
//!   so the transaction's statements see their own changes and nobody else's appear between
//!   them; `COMMIT` writes one log entry per table, `ROLLBACK` takes the changes back.
//! - A failed statement fails the transaction, as in PostgreSQL: its writes are rolled back at
//!   once, later writes are refused (25P02), and `COMMIT` answers `ROLLBACK`.
//! - A lock another transaction holds is waited for at most [`LOCK_TIMEOUT`] (two transactions
//!   writing two tables in opposite orders would otherwise wait for each other forever).

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;
use weir_engine::table::{TableWrite, TableWriter};

use crate::error::{Result, SqlError, SqlErrorKind};

/// Longest wait for another transaction's write lock on a table.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// A session's transaction state.
#[derive(Debug, Default)]
pub struct Transaction {
    /// `BEGIN` seen, no `COMMIT`/`ROLLBACK` yet.
    pub(crate) open: bool,
    /// A statement failed inside the open transaction.
    pub(crate) failed: bool,
    /// Writes held, one per table, in first-write order.
    pub(crate) writes: Vec<TableWrite>,
}

impl Transaction {
    /// Refuses writes in a failed transaction.
    pub(crate) fn check_not_failed(&self) -> Result<()> {
        if self.failed {
            return Err(SqlError::new(
                SqlErrorKind::InFailedTransaction,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        Ok(())
    }

    /// The write on `table`: the transaction's, or a new one (waiting for the lock).
    pub(crate) async fn write_on(&mut self, table: &Arc<TableWriter>) -> Result<TableWrite> {
        if let Some(i) = self
            .writes
            .iter()
            .position(|w| Arc::ptr_eq(w.writer(), table))
        {
            return Ok(self.writes.swap_remove(i));
        }
        match tokio::time::timeout(LOCK_TIMEOUT, table.begin()).await {
            Ok(write) => Ok(write?),
            Err(_) => Err(SqlError::new(
                SqlErrorKind::External,
                format!(
                    "could not obtain the write lock on table \"{}\" within {} s: another \
                     transaction holds it",
                    table.name(),
                    LOCK_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    /// After a statement: commits (or rolls back) its write outside a transaction, keeps it
    /// inside one.
    pub(crate) async fn finish_statement(
        &mut self,
        write: TableWrite,
        applied: Result<usize>,
    ) -> Result<usize> {
        if self.open {
            self.writes.push(write);
            return applied;
        }
        match applied {
            Ok(count) => {
                write.commit().await?;
                Ok(count)
            }
            Err(e) => {
                write.rollback().await?;
                Err(e)
            }
        }
    }

    /// A statement failed where no await is possible (a query's rows failing while they are
    /// sent): inside a transaction it is failed, and its writes are rolled back at its end.
    pub fn mark_failed(&mut self) {
        if self.open {
            self.failed = true;
        }
    }

    /// A statement failed: inside a transaction, its writes are rolled back and it is failed.
    pub(crate) async fn fail(&mut self) {
        if !self.open {
            return;
        }
        self.failed = true;
        self.roll_back_writes().await;
    }

    pub(crate) async fn roll_back_writes(&mut self) {
        for write in std::mem::take(&mut self.writes).into_iter().rev() {
            let table = write.writer().name().to_string();
            if let Err(e) = write.rollback().await {
                warn!(table = %table, error = %e, "rolling back a transaction's write failed");
            }
        }
    }
}
