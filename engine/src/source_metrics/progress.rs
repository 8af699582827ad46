//! How far each view's readers have come through the history their source held when they
//! started (`weir_progress`, and the NOTICEs of a `CREATE MATERIALIZED VIEW` that waits for its
//! backfill): per (source, view), rows read so far, rows still to read up to each partition's
//! first-seen high watermark, and whether every partition has reached it.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::{PartitionMetrics, SourceMetricsRegistry};
use crate::error::Result;

/// One view's progress through one source's history.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewProgress {
    /// The source read.
    pub source: String,
    /// The view reading it.
    pub view: String,
    /// Partitions the reader has figures for.
    pub partitions: usize,
    /// Partitions whose history end (first high watermark) is known.
    pub partitions_known: usize,
    /// Records read (delivered or rejected as bad).
    pub rows_done: u64,
    /// Records between the reader's position and the history's end, over the partitions whose
    /// end is known.
    pub rows_to_go: u64,
    /// Every partition has a known end and the reader has reached it.
    pub caught_up: bool,
    /// When the last record arrived (milliseconds since the epoch).
    pub last_record_millis: Option<i64>,
}

impl ViewProgress {
    /// Share of the history read, 0 to 1 (None while no partition's end is known).
    pub fn share_done(&self) -> Option<f64> {
        if self.partitions_known == 0 {
            return None;
        }
        let total = self.rows_done + self.rows_to_go;
        Some(if total == 0 {
            1.0
        } else {
            self.rows_done as f64 / total as f64
        })
    }
}

/// A partition is through its history: its end is known, and it was empty or the reader's
/// next offset has reached it.
fn partition_caught_up(m: &PartitionMetrics) -> bool {
    match m.target_offset {
        Some(0) => true,
        Some(target) => m.offset.is_some_and(|o| o >= target),
        None => false,
    }
}

impl SourceMetricsRegistry {
    /// The progress of every (source, view) with a live reader.
    pub fn progress(&self) -> Vec<ViewProgress> {
        let readers = self.live_readers();
        let mut out: Vec<ViewProgress> = Vec::new();
        for reader in &readers {
            let state = reader.state.lock();
            let parts = &state.partitions;
            let rows_done = parts.values().map(|m| m.records + m.errors).sum();
            let rows_to_go = parts
                .values()
                .filter_map(|m| {
                    let target = m.target_offset?;
                    Some(u64::try_from(target - m.offset.unwrap_or(0)).unwrap_or(0))
                })
                .sum();
            let progress = |view: &String| ViewProgress {
                source: reader.source.clone(),
                view: view.clone(),
                partitions: parts.len(),
                partitions_known: parts.values().filter(|m| m.target_offset.is_some()).count(),
                rows_done,
                rows_to_go,
                caught_up: !parts.is_empty() && parts.values().all(partition_caught_up),
                last_record_millis: parts.values().filter_map(|m| m.last_record_millis).max(),
            };
            out.extend(state.views.iter().map(progress));
        }
        out.sort_by(|a, b| (&a.source, &a.view).cmp(&(&b.source, &b.view)));
        out
    }

    /// Schema of `weir_progress`.
    pub fn progress_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("source_name", DataType::Utf8, false),
            Field::new("view_name", DataType::Utf8, false),
            Field::new("partitions", DataType::Int64, false),
            Field::new("rows_done", DataType::Int64, false),
            Field::new("rows_to_go", DataType::Int64, false),
            Field::new("share_done", DataType::Float64, true),
            Field::new("caught_up", DataType::Boolean, false),
            Field::new(
                "last_record_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
                true,
            ),
        ]))
    }

    /// One row per (source, view) being read.
    pub fn progress_batch(&self) -> Result<RecordBatch> {
        let rows = self.progress();
        let int = |f: &dyn Fn(&ViewProgress) -> u64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|p| i64::try_from(f(p)).unwrap_or(i64::MAX)),
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|p| p.source.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|p| p.view.as_str()),
            )),
            int(&|p| p.partitions as u64),
            int(&|p| p.rows_done),
            int(&|p| p.rows_to_go),
            Arc::new(Float64Array::from_iter(
                rows.iter().map(ViewProgress::share_done),
            )),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|p| Some(p.caught_up)),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter(rows.iter().map(|p| p.last_record_millis))
                    .with_timezone("+00:00"),
            ),
        ];
        Ok(RecordBatch::try_new(Self::progress_schema(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_runs_to_the_first_high_watermark_seen() {
        let registry = SourceMetricsRegistry::default();
        let reader = registry.register("orders", "v");
        reader.update(0, |m| m.high_watermark = Some(100));
        reader.update(1, |m| m.high_watermark = Some(0));
        reader.update(0, |m| {
            m.offset = Some(40);
            m.records = 40;
        });
        // The broker's end moves on; the history the view started with does not.
        reader.update(0, |m| m.high_watermark = Some(500));
        let p = &registry.progress()[0];
        assert_eq!((p.rows_done, p.rows_to_go, p.partitions_known), (40, 60, 2));
        assert_eq!(p.share_done(), Some(0.4));
        assert!(!p.caught_up);
        reader.update(0, |m| m.offset = Some(100));
        assert!(
            registry.progress()[0].caught_up,
            "the empty partition counts as read"
        );
        let batch = registry.progress_batch().unwrap();
        assert_eq!(batch.num_rows(), 1);
    }

    #[test]
    fn without_a_known_end_there_is_no_share() {
        let registry = SourceMetricsRegistry::default();
        let reader = registry.register("gen", "v");
        reader.update(0, |m| m.records = 10);
        let p = &registry.progress()[0];
        assert_eq!(p.share_done(), None);
        assert!(!p.caught_up);
    }
}
