//! The late-row log behind `weir_late_rows`: rows that arrived after their window closed (or with
//! no event time) are never silently dropped. Each is counted per view and the most recent ones
//! are kept as JSON text, bounded so a flood of late data cannot exhaust memory.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parking_lot::Mutex;

use crate::error::{EngineError, Result};

/// Rows kept by default; older ones are dropped (their count stays).
pub const DEFAULT_LATE_ROWS_KEPT: usize = 10_000;

#[derive(Debug, Clone)]
struct LateRow {
    view: String,
    reason: &'static str,
    recorded_micros: i64,
    row_json: String,
}

#[derive(Debug, Default)]
struct Inner {
    rows: VecDeque<LateRow>,
    /// Late rows ever seen, per view (kept when rows are evicted).
    counts: BTreeMap<String, u64>,
}

/// Late rows of every view.
#[derive(Debug)]
pub struct LateRowLog {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl Default for LateRowLog {
    fn default() -> Self {
        Self::new(DEFAULT_LATE_ROWS_KEPT)
    }
}

impl LateRowLog {
    /// A log keeping at most `capacity` rows.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, inner: Mutex::new(Inner::default()) }
    }

    /// Records every row of `batch` as late for `view`.
    pub fn record(&self, view: &str, batch: &RecordBatch, reason: &'static str) -> Result<()> {
        let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
        writer.write(batch).map_err(EngineError::Arrow)?;
        writer.finish().map_err(EngineError::Arrow)?;
        let text = String::from_utf8_lossy(&writer.into_inner()).into_owned();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
        let mut inner = self.inner.lock();
        *inner.counts.entry(view.to_string()).or_default() += batch.num_rows() as u64;
        for line in text.lines() {
            if inner.rows.len() >= self.capacity {
                inner.rows.pop_front();
            }
            inner.rows.push_back(LateRow {
                view: view.to_string(),
                reason,
                recorded_micros: now,
                row_json: line.to_string(),
            });
        }
        Ok(())
    }

    /// Late rows ever seen for `view`.
    pub fn count(&self, view: &str) -> u64 {
        self.inner.lock().counts.get(view).copied().unwrap_or(0)
    }

    /// Forget a dropped view's rows and count.
    pub fn forget(&self, view: &str) {
        let mut inner = self.inner.lock();
        inner.counts.remove(view);
        inner.rows.retain(|r| r.view != view);
    }

    /// Schema of `weir_late_rows`.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("view_name", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, false),
            Field::new(
                "recorded_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                false,
            ),
            Field::new("row_json", DataType::Utf8, false),
        ]))
    }

    /// The kept rows as a batch of [`LateRowLog::schema`].
    pub fn to_batch(&self) -> Result<RecordBatch> {
        let inner = self.inner.lock();
        let views = StringArray::from_iter_values(inner.rows.iter().map(|r| r.view.as_str()));
        let reasons = StringArray::from_iter_values(inner.rows.iter().map(|r| r.reason));
        let at = TimestampMicrosecondArray::from_iter_values(inner.rows.iter().map(|r| r.recorded_micros))
            .with_timezone("+00:00");
        let rows = StringArray::from_iter_values(inner.rows.iter().map(|r| r.row_json.as_str()));
        let columns: Vec<ArrayRef> = vec![Arc::new(views), Arc::new(reasons), Arc::new(at), Arc::new(rows)];
        Ok(RecordBatch::try_new(Self::schema(), columns)?)
    }

    /// Totals as an Arrow array aligned with `views`.
    pub fn counts_for(&self, views: &[String]) -> UInt64Array {
        let inner = self.inner.lock();
        UInt64Array::from_iter_values(views.iter().map(|v| inner.counts.get(v).copied().unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    #[test]
    fn bounded_but_counted() -> Result<()> {
        let log = LateRowLog::new(2);
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])?;
        log.record("v", &batch, "window already closed")?;
        assert_eq!(log.count("v"), 3);
        let kept = log.to_batch()?;
        assert_eq!(kept.num_rows(), 2);
        Ok(())
    }
}
