//! A sink's observable figures, for the `weir_sinks` system table.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Where a sink is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkState {
    /// Delivering.
    Running,
    /// The target refused or is unreachable; the sink retries and holds its rows meanwhile.
    Retrying,
    /// Its view ended and everything is delivered.
    Finished,
    /// Stopped on an error it cannot retry.
    Failed,
}

impl SinkState {
    /// Lower-case name for system tables.
    pub fn as_str(&self) -> &'static str {
        match self {
            SinkState::Running => "running",
            SinkState::Retrying => "retrying",
            SinkState::Finished => "finished",
            SinkState::Failed => "failed",
        }
    }
}

/// Counters and the last error of one sink.
#[derive(Debug)]
pub struct SinkStatus {
    state: Mutex<SinkState>,
    last_error: Mutex<Option<String>>,
    /// Rows published (committed) to the target.
    pub rows_committed: AtomicU64,
    /// Rows written into the open transaction, or waiting for a checkpoint to commit.
    pub rows_pending: AtomicU64,
    /// Epoch of the last checkpoint whose rows are published.
    pub committed_epoch: AtomicU64,
    /// When the oldest row not yet published arrived (ms since the epoch; 0 when none).
    pub oldest_pending_ms: AtomicU64,
}

impl Default for SinkStatus {
    fn default() -> Self {
        Self {
            state: Mutex::new(SinkState::Running),
            last_error: Mutex::new(None),
            rows_committed: AtomicU64::new(0),
            rows_pending: AtomicU64::new(0),
            committed_epoch: AtomicU64::new(0),
            oldest_pending_ms: AtomicU64::new(0),
        }
    }
}

impl SinkStatus {
    /// Current state.
    pub fn state(&self) -> SinkState {
        self.state.lock().clone()
    }

    /// The last error the sink met (kept after it recovers, for the operator to read).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    pub(super) fn set_state(&self, state: SinkState) {
        let mut s = self.state.lock();
        if *s != SinkState::Failed {
            *s = state;
        }
    }

    pub(super) fn record_error(&self, error: &str, state: SinkState) {
        *self.last_error.lock() = Some(error.to_string());
        self.set_state(state);
    }

    /// How long the oldest unpublished row has waited, in ms (0 when nothing waits).
    pub fn lag_ms(&self, now_ms: u64) -> u64 {
        match self.oldest_pending_ms.load(Ordering::Relaxed) {
            0 => 0,
            t => now_ms.saturating_sub(t),
        }
    }
}
