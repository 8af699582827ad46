//! The late-row log behind `weir_late_rows`: rows that arrived after their window closed (or with
//! no event time) are never silently dropped. Each is counted per view and the most recent ones
//! are kept as JSON text, bounded so a flood of late data cannot exhaust memory.

use std::sync::Arc;

use crate::bounded_log::BoundedLog;
use crate::error::{EngineError, Result};
use datafusion::arrow::array::{
    ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Rows kept by default; older ones are dropped (their count stays).
pub const DEFAULT_LATE_ROWS_KEPT: usize = 10_000;

#[derive(Debug, Clone)]
struct LateRow {
    reason: &'static str,
    row_json: String,
}

/// Late rows of every view.
#[derive(Debug)]
pub struct LateRowLog {
    log: BoundedLog<LateRow>,
}

impl Default for LateRowLog {
    fn default() -> Self {
        Self::new(DEFAULT_LATE_ROWS_KEPT)
    }
}

impl LateRowLog {
    /// A log keeping at most `capacity` rows.
    pub fn new(capacity: usize) -> Self {
        Self {
            log: BoundedLog::new(capacity),
        }
    }

    /// Records every row of `batch` as late for `view`.
    pub fn record(&self, view: &str, batch: &RecordBatch, reason: &'static str) -> Result<()> {
        let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
        writer.write(batch).map_err(EngineError::Arrow)?;
        writer.finish().map_err(EngineError::Arrow)?;
        let text = String::from_utf8_lossy(&writer.into_inner()).into_owned();
        self.log.record(
            view,
            text.lines().map(|line| LateRow {
                reason,
                row_json: line.to_string(),
            }),
        );
        Ok(())
    }

    /// Late rows ever seen for `view`.
    pub fn count(&self, view: &str) -> u64 {
        self.log.count(view)
    }

    /// Forget a dropped view's rows and count.
    pub fn forget(&self, view: &str) {
        self.log.forget(view);
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
        let columns: Vec<ArrayRef> = self.log.with_kept(|rows| -> Vec<ArrayRef> {
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.owner.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.entry.reason),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        rows.iter().map(|r| r.recorded_micros),
                    )
                    .with_timezone("+00:00"),
                ),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.entry.row_json.as_str()),
                )),
            ]
        });
        Ok(RecordBatch::try_new(Self::schema(), columns)?)
    }

    /// Totals as an Arrow array aligned with `views`.
    pub fn counts_for(&self, views: &[String]) -> UInt64Array {
        UInt64Array::from(self.log.counts(views))
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
