//! `BEGIN`, `COMMIT`, `ROLLBACK` on a session (the state is [`crate::transaction`]).

use crate::database::Session;
use crate::error::Result;

impl Session {
    /// `BEGIN`.
    pub async fn begin_transaction(&self) {
        self.txn.lock().await.open = true;
    }

    /// `COMMIT`: the command tag to answer (`ROLLBACK` for a failed transaction).
    pub async fn commit_transaction(&self) -> Result<&'static str> {
        self.cursors.lock().await.end_transaction();
        let mut txn = self.txn.lock().await;
        let failed = txn.failed;
        txn.open = false;
        txn.failed = false;
        if failed {
            txn.roll_back_writes().await;
            return Ok("ROLLBACK");
        }
        let mut writes = std::mem::take(&mut txn.writes).into_iter();
        while let Some(write) = writes.next() {
            if let Err(e) = write.commit().await {
                // Tables committed before this one stay committed: each table's log is its own.
                for rest in writes {
                    let _ = rest.rollback().await;
                }
                return Err(e.into());
            }
        }
        Ok("COMMIT")
    }

    /// `ROLLBACK`.
    pub async fn rollback_transaction(&self) {
        self.cursors.lock().await.end_transaction();
        let mut txn = self.txn.lock().await;
        txn.open = false;
        txn.failed = false;
        txn.roll_back_writes().await;
    }

    /// Any statement failed: an open transaction fails with it, as in PostgreSQL.
    pub async fn fail_transaction(&self) {
        self.txn.lock().await.fail().await;
    }

    /// Fails an open transaction from a context that cannot wait (rows failing while sent).
    pub fn fail_transaction_now(&self) {
        if let Ok(mut txn) = self.txn.try_lock() {
            txn.mark_failed();
        }
    }

    /// True when the open transaction has written to a table.
    pub async fn transaction_has_writes(&self) -> bool {
        !self.txn.lock().await.writes.is_empty()
    }

    /// True inside `BEGIN` … `COMMIT`/`ROLLBACK`; the second value says whether it failed.
    pub async fn transaction_status(&self) -> (bool, bool) {
        let txn = self.txn.lock().await;
        (txn.open, txn.failed)
    }
}
