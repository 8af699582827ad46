//! Figures of each running operator, for `EXPLAIN ANALYZE MATERIALIZED VIEW`: rows and batches
//! in and out, time spent in the operator (not waiting for input or for a full output channel),
//! state size as last sampled, and the watermark it last forwarded.
//!
//! Counted once per message by the task that runs the operator ([`crate::pipeline`]), with
//! relaxed atomics: a reader sees each figure as of some recent message, never a torn value.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::message::{Message, Watermark};

/// No watermark forwarded yet.
const NO_WATERMARK: i64 = i64::MIN;

/// One operator (one shard of a sharded stage) of a pipeline.
#[derive(Debug)]
pub struct OperatorMetrics {
    /// Stage number in the pipeline (what checkpoints key state by).
    pub stage: usize,
    /// `(shard, of shards)` for one shard of a keyed stage.
    pub shard: Option<(usize, usize)>,
    /// The operator's name (as EXPLAIN prints it).
    pub name: String,
    rows_in: AtomicU64,
    batches_in: AtomicU64,
    rows_out: AtomicU64,
    batches_out: AtomicU64,
    busy_nanos: AtomicU64,
    state_bytes: AtomicU64,
    watermark: AtomicI64,
}

/// A copy of an operator's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorFigures {
    /// Stage number.
    pub stage: usize,
    /// `(shard, of shards)`.
    pub shard: Option<(usize, usize)>,
    /// Operator name.
    pub name: String,
    /// Rows received.
    pub rows_in: u64,
    /// Batches (changes messages) received.
    pub batches_in: u64,
    /// Rows sent on.
    pub rows_out: u64,
    /// Batches sent on.
    pub batches_out: u64,
    /// Time spent in the operator's code.
    pub busy: Duration,
    /// State bytes as last sampled.
    pub state_bytes: u64,
    /// Last event-time watermark forwarded (ns since the epoch), if any.
    pub watermark: Option<i64>,
}

impl OperatorFigures {
    /// The shard as shown to users (`2 of 4`), None for an unsharded stage.
    pub fn shard_label(&self) -> Option<String> {
        self.shard
            .map(|(shard, of)| format!("{} of {of}", shard + 1))
    }

    /// Busy time in milliseconds, to the microsecond.
    pub fn busy_ms(&self) -> f64 {
        self.busy.as_micros() as f64 / 1e3
    }
}

impl OperatorMetrics {
    /// Figures for `name` at `stage`, all zero.
    pub fn new(stage: usize, shard: Option<(usize, usize)>, name: String) -> Self {
        Self {
            stage,
            shard,
            name,
            rows_in: AtomicU64::new(0),
            batches_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            batches_out: AtomicU64::new(0),
            busy_nanos: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            watermark: AtomicI64::new(NO_WATERMARK),
        }
    }

    /// A message reached the operator.
    pub(crate) fn received(&self, message: &Message) {
        let rows = match message {
            Message::Changes(c) | Message::FromInput(_, c) => c.num_rows(),
            _ => return,
        };
        self.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
        self.batches_in.fetch_add(1, Ordering::Relaxed);
    }

    /// The operator produced `messages` (before they are sent on).
    pub(crate) fn produced(&self, messages: &[Message]) {
        for message in messages {
            match message {
                Message::Changes(c) => {
                    self.rows_out
                        .fetch_add(c.num_rows() as u64, Ordering::Relaxed);
                    self.batches_out.fetch_add(1, Ordering::Relaxed);
                }
                Message::Watermark(Watermark::EventTime(t)) if !Watermark::is_end_of_input(*t) => {
                    self.watermark.fetch_max(*t, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }

    /// The operator's code ran for `busy`.
    pub(crate) fn busy(&self, busy: Duration) {
        let nanos = u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX);
        self.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The operator's state was sampled at `bytes`.
    pub(crate) fn state(&self, bytes: usize) {
        self.state_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    /// The figures now.
    pub fn figures(&self) -> OperatorFigures {
        let watermark = self.watermark.load(Ordering::Relaxed);
        OperatorFigures {
            stage: self.stage,
            shard: self.shard,
            name: self.name.clone(),
            rows_in: self.rows_in.load(Ordering::Relaxed),
            batches_in: self.batches_in.load(Ordering::Relaxed),
            rows_out: self.rows_out.load(Ordering::Relaxed),
            batches_out: self.batches_out.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed)),
            state_bytes: self.state_bytes.load(Ordering::Relaxed),
            watermark: (watermark != NO_WATERMARK).then_some(watermark),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::changes::Changes;

    fn rows(n: i64) -> Message {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))])
                .unwrap_or_else(|e| panic!("{e}"));
        Message::Changes(Changes::inserts(batch))
    }

    #[test]
    fn counts_rows_batches_time_and_the_latest_watermark() {
        let m = OperatorMetrics::new(2, Some((1, 2)), "filter".into());
        assert_eq!(m.figures().watermark, None);
        m.received(&rows(5));
        m.received(&rows(3));
        m.received(&Message::Watermark(Watermark::EventTime(10)));
        m.produced(&[
            rows(4),
            Message::Watermark(Watermark::EventTime(7)),
            Message::Watermark(Watermark::MAX),
        ]);
        m.busy(Duration::from_millis(3));
        m.state(1024);
        let f = m.figures();
        assert_eq!(
            (f.rows_in, f.batches_in, f.rows_out, f.batches_out),
            (8, 2, 4, 1)
        );
        assert_eq!(f.busy, Duration::from_millis(3));
        assert_eq!(f.state_bytes, 1024);
        assert_eq!(f.watermark, Some(7), "the end of input is not a time");
        assert_eq!(
            (f.stage, f.shard, f.name.as_str()),
            (2, Some((1, 2)), "filter")
        );
    }
}
