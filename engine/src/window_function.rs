//! The keyed window-function contract between the streaming OVER operator and the functions it
//! runs: a call's per-key state machine. The engine defines it and runs it
//! ([`crate::over_window`]); function crates (`weir-udf`) implement it, so the engine depends
//! on no function library.
//!
//! A [`KeyedWindowFunction`] is one call (`anomaly_mad(temp, window => 600)`) with its constant
//! arguments bound. It makes a [`WindowState`] per `PARTITION BY` key; the state consumes that
//! key's rows in `ORDER BY` order, one batch at a time, and returns one output per row. The
//! batch form of the same function feeds one state a whole partition at once, so a streaming
//! view's output equals the same query run in batch.

use std::fmt::Debug;

use datafusion::arrow::array::ArrayRef;
use datafusion::common::Result;

/// One call of a window function with its constant arguments bound.
pub trait KeyedWindowFunction: Send + Sync + Debug {
    /// The function's name.
    fn name(&self) -> &str;
    /// Fresh state for a key never seen.
    fn new_state(&self) -> Box<dyn WindowState>;
    /// State saved by [`WindowState::save`].
    fn load_state(&self, bytes: &[u8]) -> Result<Box<dyn WindowState>>;
    /// Rows after the current one the call reads (`lead`). The streaming operator then holds
    /// each key's last rows back until their followers arrive, and evaluates such a call over
    /// the held rows again each time (so its state must not depend on how often it saw them).
    fn lookahead(&self) -> usize {
        0
    }
}

/// The state of one key.
pub trait WindowState: Send + Debug {
    /// Consumes the key's next rows (argument columns, in event-time order) and returns one
    /// output per row.
    fn evaluate(&mut self, args: &[ArrayRef]) -> Result<ArrayRef>;
    /// The state as bytes, for checkpoints.
    fn save(&self) -> Result<Vec<u8>>;
    /// Approximate bytes held.
    fn size(&self) -> usize;
}
