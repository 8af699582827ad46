//! Live per-partition figures of every source reader, behind `weir_source_partitions`: where a
//! reader is (offset, lag behind the broker's high watermark), how far its event time has come,
//! what it has read and rejected, and whether it is connected.
//!
//! Rows are per (source, view, partition). Views that share a reader (see
//! [`crate::source_group`]) show its figures each; a reader and its pipelines share one
//! [`ReaderMetrics`], and the registry only holds weak references, so a dropped view's rows
//! disappear with it.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray, TimestampNanosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parking_lot::Mutex;

use crate::error::Result;

/// Figures of one partition as one reader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionMetrics {
    /// Next offset the reader will read (transports with offsets).
    pub offset: Option<i64>,
    /// The broker's high watermark (offset of the next record to be written).
    pub high_watermark: Option<i64>,
    /// Event-time watermark of this partition (nanoseconds since the epoch).
    pub watermark: Option<i64>,
    /// True while the partition is idle and does not hold back the source's watermark.
    pub idle: bool,
    /// Records delivered to the pipeline.
    pub records: u64,
    /// Records rejected to `weir_source_errors`.
    pub errors: u64,
    /// Wall-clock time the last record arrived (milliseconds since the epoch).
    pub last_record_millis: Option<i64>,
    /// The first high watermark this reader saw: the end of the history it started with
    /// (`weir_progress`). Set by [`ReaderMetrics::update`], not by readers.
    pub target_offset: Option<i64>,
}

mod progress;
pub use progress::ViewProgress;

#[derive(Debug, Default)]
struct ReaderState {
    /// The views the reader reads for (several when they share it; none once its views moved
    /// to another reader).
    views: Vec<String>,
    status: String,
    partitions: BTreeMap<u32, PartitionMetrics>,
}

/// Figures of one reader of one source.
#[derive(Debug)]
pub struct ReaderMetrics {
    source: String,
    state: Mutex<ReaderState>,
}

impl ReaderMetrics {
    /// Sets the reader's connection status (`running`, `connecting: …`, `failed: …`).
    pub fn set_status(&self, status: impl Into<String>) {
        self.state.lock().status = status.into();
    }

    /// The current status.
    pub fn status(&self) -> String {
        self.state.lock().status.clone()
    }

    /// Takes over the views of `other` (a reader whose views now read through this one); `other`
    /// shows no rows from then on.
    pub fn adopt_views(&self, other: &ReaderMetrics) {
        if std::ptr::eq(self, other) {
            return;
        }
        let moved = std::mem::take(&mut other.state.lock().views);
        self.state.lock().views.extend(moved);
    }

    /// Stops showing `view` (it reads through another reader now).
    pub fn remove_view(&self, view: &str) {
        let mut state = self.state.lock();
        if let Some(i) = state.views.iter().position(|v| v == view) {
            state.views.remove(i);
        }
    }

    /// The views the reader reads for.
    pub fn views(&self) -> Vec<String> {
        self.state.lock().views.clone()
    }

    /// Updates one partition's figures (creating its row).
    pub fn update<R>(&self, partition: u32, f: impl FnOnce(&mut PartitionMetrics) -> R) -> R {
        let mut state = self.state.lock();
        let metrics = state.partitions.entry(partition).or_default();
        let result = f(metrics);
        if metrics.target_offset.is_none() {
            metrics.target_offset = metrics.high_watermark;
        }
        result
    }
}

/// Every live reader's figures.
#[derive(Debug, Default)]
pub struct SourceMetricsRegistry {
    readers: Mutex<Vec<Weak<ReaderMetrics>>>,
}

impl SourceMetricsRegistry {
    /// Registers the reader of `source` for `view`.
    pub fn register(&self, source: &str, view: &str) -> Arc<ReaderMetrics> {
        let metrics = Arc::new(ReaderMetrics {
            source: source.to_string(),
            state: Mutex::new(ReaderState {
                views: vec![view.to_string()],
                status: "starting".into(),
                partitions: BTreeMap::new(),
            }),
        });
        let mut readers = self.readers.lock();
        readers.retain(|r| r.strong_count() > 0);
        readers.push(Arc::downgrade(&metrics));
        metrics
    }

    /// Schema of `weir_source_partitions`.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("source_name", DataType::Utf8, false),
            Field::new("view_name", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("offset", DataType::Int64, true),
            Field::new("high_watermark", DataType::Int64, true),
            Field::new("lag", DataType::Int64, true),
            Field::new(
                "watermark",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
                true,
            ),
            Field::new("idle", DataType::Boolean, false),
            Field::new("records", DataType::UInt64, false),
            Field::new("errors", DataType::UInt64, false),
            Field::new(
                "last_record_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
                true,
            ),
            Field::new("status", DataType::Utf8, false),
        ]))
    }

    /// The readers still running.
    fn live_readers(&self) -> Vec<Arc<ReaderMetrics>> {
        self.readers
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// One row per (reader, partition).
    pub fn to_batch(&self) -> Result<RecordBatch> {
        let readers = self.live_readers();
        let mut rows: Vec<(String, String, u32, PartitionMetrics, String)> = Vec::new();
        for r in &readers {
            let state = r.state.lock();
            for view in &state.views {
                for (p, m) in &state.partitions {
                    rows.push((
                        r.source.clone(),
                        view.clone(),
                        *p,
                        m.clone(),
                        state.status.clone(),
                    ));
                }
            }
        }
        rows.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
        let lag = |m: &PartitionMetrics| match (m.high_watermark, m.offset) {
            (Some(h), Some(o)) => Some((h - o).max(0)),
            _ => None,
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.1.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.2 as i32),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.3.offset))),
            Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| r.3.high_watermark),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| lag(&r.3)))),
            Arc::new(
                TimestampNanosecondArray::from_iter(rows.iter().map(|r| r.3.watermark))
                    .with_timezone("+00:00"),
            ),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.3.idle)))),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.3.records),
            )),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.3.errors),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter(rows.iter().map(|r| r.3.last_record_millis))
                    .with_timezone("+00:00"),
            ),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.4.as_str()),
            )),
        ];
        Ok(RecordBatch::try_new(Self::schema(), columns)?)
    }
}

/// Wall-clock milliseconds since the epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_live_as_long_as_their_reader() -> Result<()> {
        let registry = SourceMetricsRegistry::default();
        let reader = registry.register("s", "v");
        reader.update(1, |p| {
            p.records = 10;
            p.offset = Some(10);
            p.high_watermark = Some(15);
        });
        let batch = registry.to_batch()?;
        assert_eq!(batch.num_rows(), 1);
        let lag = batch
            .column(5)
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| a.value(0));
        assert_eq!(lag, Some(5));
        drop(reader);
        assert_eq!(registry.to_batch()?.num_rows(), 0);
        Ok(())
    }
}
