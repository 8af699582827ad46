//! What flows between the stages of a pipeline: data and control, in one ordered stream.
//!
//! Control travels in-band with the data, so an operator always sees a watermark after every row
//! that preceded it at the source, and a barrier after every row of its epoch.

use crate::changes::Changes;

/// Event time in nanoseconds since the Unix epoch (UTC).
pub type EventTime = i64;

/// A watermark: "no more rows with event time at or below this will be accepted as on time".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watermark {
    /// Event time (nanoseconds since the epoch) below which the input is complete.
    EventTime(EventTime),
    /// The input is idle: it has no data and must not hold back downstream time.
    Idle,
}

impl Watermark {
    /// The watermark that closes everything: sent when an input ends.
    pub const MAX: Watermark = Watermark::EventTime(i64::MAX);

    /// True for [`Watermark::MAX`] as it reaches a stage: `MAX`, or `MAX` shifted back by the
    /// windows in between (at most a century); never a real event time, which `i64`
    /// nanoseconds end long before (year 2262).
    pub fn is_end_of_input(t: EventTime) -> bool {
        const CENTURY_NANOS: i64 = 100 * 366 * 24 * 3600 * 1_000_000_000;
        t > i64::MAX - CENTURY_NANOS
    }
}

/// A checkpoint barrier (aligned across inputs before an operator snapshots its state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointBarrier {
    /// Checkpoint epoch, increasing.
    pub epoch: u64,
}

/// One item of a pipeline's stream.
#[derive(Debug, Clone)]
pub enum Message {
    /// Row-level changes: inserts, updates (as adjacent before/after pairs) and deletes. The one
    /// data message: an append-only stream's are inserts without an op array
    /// ([`Changes::inserts`]).
    Changes(Changes),
    /// Changes from one input of a multi-input operator (a join): the merge of a join's inputs
    /// sends these instead of [`Message::Changes`]; the operator consumes them.
    FromInput(usize, Changes),
    /// Event-time progress.
    Watermark(Watermark),
    /// Checkpoint barrier.
    Barrier(CheckpointBarrier),
    /// The input ended; no message follows.
    End,
}

impl Message {
    /// A short name for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Changes(_) => "changes",
            Message::FromInput(..) => "changes of one input",
            Message::Watermark(_) => "watermark",
            Message::Barrier(_) => "barrier",
            Message::End => "end",
        }
    }
}
