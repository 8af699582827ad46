//! What travels from a running pipeline to the checkpoint coordinator at a barrier, and back into
//! a pipeline on recovery.
//!
//! Everything here is cheap to build on the pipeline's own task: Arrow arrays are immutable and
//! shared, so an operator hands over its state without copying it, and the coordinator encodes
//! it to Parquet on a blocking thread while the pipeline carries on.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::message::Watermark;

/// An operator's state at a barrier: row state as Arrow batches of one schema (one Parquet file),
/// and small scalar state (its watermark, counters) kept in the manifest itself.
#[derive(Debug, Clone, Default)]
pub struct OperatorState {
    /// Schema of `batches` (None when there are no rows).
    pub schema: Option<SchemaRef>,
    /// Row state.
    pub batches: Vec<RecordBatch>,
    /// Scalar state by name.
    pub values: BTreeMap<String, i64>,
}

impl OperatorState {
    /// Rows of state.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// In-memory bytes of the row state.
    pub fn bytes(&self) -> usize {
        self.batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }

    /// True when the operator holds nothing.
    pub fn is_empty(&self) -> bool {
        self.rows() == 0 && self.values.is_empty()
    }
}

/// Where a source reader is: for each partition, the offset of the next record to read. A reader
/// opened at a position continues right after the rows delivered before the barrier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePosition {
    /// Next offset by partition (a Kafka offset, a generator's row index, a file's line number).
    pub offsets: BTreeMap<u32, i64>,
}

/// A source task's state at a barrier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// The reader's position, when its connector can resume (None: it starts over).
    pub position: Option<SourcePosition>,
    /// Highest watermark candidate per partition, so time does not step back after a restart.
    pub partition_watermarks: BTreeMap<u32, i64>,
    /// The last watermark the source forwarded.
    pub watermark: Option<i64>,
}

impl SourceState {
    /// Folds in the state of another reader of the same input (one reader per worker, each with
    /// its own partitions): positions and partition watermarks together (the later of two for
    /// one partition), and the least of the watermarks forwarded (none when a reader forwarded none).
    pub fn merge(&mut self, other: SourceState) {
        self.position = match (self.position.take(), other.position) {
            (Some(mut mine), Some(theirs)) => {
                for (p, offset) in theirs.offsets {
                    let entry = mine.offsets.entry(p).or_insert(offset);
                    *entry = (*entry).max(offset);
                }
                Some(mine)
            }
            // A reader that cannot resume makes the input start over.
            _ => None,
        };
        for (p, w) in other.partition_watermarks {
            let entry = self.partition_watermarks.entry(p).or_insert(w);
            *entry = (*entry).max(w);
        }
        // A reader that has forwarded no time yet stands before every time: at recovery each
        // reader starts from this watermark, and one whose partitions had no rows must not take
        // up the time another reader had reached (its own rows would all be late).
        self.watermark = match (self.watermark, other.watermark) {
            (Some(a), Some(b)) => Some(a.min(b)),
            _ => None,
        };
    }
}

/// The view's side of a barrier: how far its appended rows go, and its provisional rows.
#[derive(Debug, Clone, Default)]
pub struct ViewState {
    /// Total rows appended to the view so far (the coordinator persists the ones not yet in a
    /// segment; a failed checkpoint therefore loses nothing).
    pub appended_rows: u64,
    /// Current rows of open partitions, by partition key.
    pub provisional: BTreeMap<i64, RecordBatch>,
    /// The view's latest watermark.
    pub watermark: Option<Watermark>,
    /// Rows read by the pipeline so far.
    pub rows_in: u64,
}

/// One report from a pipeline stage to the coordinator.
#[derive(Debug)]
pub enum CheckpointReport {
    /// The source task of input `input` reached barrier `epoch`.
    Source {
        /// The barrier's epoch.
        epoch: u64,
        /// Which of the pipeline's inputs (0 unless it reads several, as a `UNION ALL` does).
        input: usize,
        /// Its state.
        state: SourceState,
    },
    /// The source task of input `input` reached the end of its rows: its final position stands
    /// in every later checkpoint (the other inputs of a union may go on).
    SourceEnded {
        /// Which of the pipeline's inputs.
        input: usize,
        /// Its final state.
        state: SourceState,
    },
    /// Operator `stage` reached barrier `epoch`.
    Operator {
        /// The barrier's epoch.
        epoch: u64,
        /// Position of the operator in the pipeline.
        stage: usize,
        /// Operator name, for `weir_checkpoint_state`.
        name: String,
        /// Its state.
        state: OperatorState,
    },
    /// The view writer reached barrier `epoch`: the pipeline's part of the checkpoint is complete.
    View {
        /// The barrier's epoch.
        epoch: u64,
        /// The view's state.
        state: ViewState,
    },
    /// The pipeline's input ended and every result is in the view: from now on its view is final.
    Ended {
        /// The view's final state.
        state: ViewState,
        /// State of stages that outlives the end, by stage (a sink's last pre-commit, which
        /// recovery must be able to finish): kept in every later checkpoint.
        operators: Vec<(usize, String, OperatorState)>,
    },
}

/// State handed back to a pipeline on recovery.
#[derive(Debug, Default)]
pub struct PipelineRestore {
    /// Source task state, by input.
    pub sources: BTreeMap<usize, SourceState>,
    /// Operator state by stage.
    pub operators: BTreeMap<usize, OperatorState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(
        offsets: &[(u32, i64)],
        watermarks: &[(u32, i64)],
        forwarded: Option<i64>,
    ) -> SourceState {
        SourceState {
            position: Some(SourcePosition {
                offsets: offsets.iter().copied().collect(),
            }),
            partition_watermarks: watermarks.iter().copied().collect(),
            watermark: forwarded,
        }
    }

    #[test]
    fn readers_fold_into_one_input_state() {
        let mut state = reader(&[(0, 10)], &[(0, 500)], Some(500));
        state.merge(reader(&[(1, 7)], &[(1, 300)], Some(300)));
        assert_eq!(
            state,
            reader(&[(0, 10), (1, 7)], &[(0, 500), (1, 300)], Some(300))
        );
    }

    #[test]
    fn a_reader_that_forwarded_no_time_leaves_the_input_without_one() {
        // Reader 1 has had no rows: the time reader 0 reached is not the input's.
        let mut state = reader(&[(0, 10)], &[(0, 500)], Some(500));
        state.merge(reader(&[(1, 0)], &[], None));
        assert_eq!(state.watermark, None);
        let mut state = reader(&[(1, 0)], &[], None);
        state.merge(reader(&[(0, 10)], &[(0, 500)], Some(500)));
        assert_eq!(state.watermark, None);
        assert_eq!(state.partition_watermarks, [(0, 500)].into());
    }
}
