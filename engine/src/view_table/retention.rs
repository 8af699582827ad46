//! Retention: `WITH (retention = '7 days')` keeps a view's final rows until its watermark is
//! that far past their event time, so a view over an endless stream holds bounded state.
//!
//! Rows leave in two steps. Logically at once: every scan filters out rows older than the
//! current cutoff, so what a query sees is exact. Physically in bulk: whole in-memory chunks and
//! whole checkpoint segments whose newest row is past the cutoff are dropped, and compactions
//! leave expired rows behind, so no watermark costs a pass over the view.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array};
use datafusion::arrow::compute::kernels::boolean::or_kleene;
use datafusion::arrow::compute::kernels::cmp::gt_eq;
use datafusion::arrow::compute::{filter_record_batch, is_null};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, IsNullExpr, Literal};

use crate::error::{EngineError, Result};
use crate::time::{max_nanos, nanos_per_unit, timestamp_values, values_to_timestamp};

/// How long a view keeps final rows, and by which column it ages them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The event-time column (a timestamp).
    pub column: usize,
    /// Rows whose time is further than this behind the watermark are dropped (nanoseconds).
    pub horizon_nanos: i64,
}

impl Retention {
    /// The oldest time kept at `watermark` (nanoseconds).
    pub fn cutoff(&self, watermark: i64) -> i64 {
        watermark.saturating_sub(self.horizon_nanos)
    }

    /// The newest event time among `batch`'s rows (nanoseconds), if any row has one.
    pub fn max_time(&self, batch: &RecordBatch) -> Result<Option<i64>> {
        max_nanos(self.time_column(batch)?)
    }

    /// `batch` without its rows older than `cutoff`, and how many those were. Rows without a
    /// time never expire.
    pub fn retained(&self, batch: &RecordBatch, cutoff: i64) -> Result<(RecordBatch, usize)> {
        let times = self.time_column(batch)?;
        let Some(threshold) = self.threshold(times.data_type(), cutoff)? else {
            return Ok((batch.clone(), 0));
        };
        let values = timestamp_values(times)?;
        let keep = or_kleene(
            &gt_eq(&values, &Int64Array::new_scalar(threshold))?,
            &is_null(&values)?,
        )?;
        if keep.true_count() == batch.num_rows() {
            return Ok((batch.clone(), 0));
        }
        let kept = filter_record_batch(batch, &keep)?;
        let dropped = batch.num_rows() - kept.num_rows();
        Ok((kept, dropped))
    }

    /// The same test as [`Retention::retained`] as a predicate over `schema`, for scans:
    /// `time >= cutoff OR time IS NULL`.
    pub fn predicate(&self, schema: &Schema, cutoff: i64) -> Result<Arc<dyn PhysicalExpr>> {
        let field = schema.fields().get(self.column).ok_or_else(|| {
            EngineError::Internal(format!("retention column #{} is missing", self.column))
        })?;
        let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(field.name(), self.column));
        let threshold = self
            .threshold(field.data_type(), cutoff)?
            .unwrap_or(i64::MIN);
        let literal: ArrayRef =
            values_to_timestamp(&Int64Array::from(vec![threshold]), field.data_type())?;
        let literal = Arc::new(Literal::new(ScalarValue::try_from_array(&literal, 0)?));
        let recent = Arc::new(BinaryExpr::new(
            Arc::clone(&column),
            Operator::GtEq,
            literal,
        ));
        let untimed = Arc::new(IsNullExpr::new(column));
        Ok(Arc::new(BinaryExpr::new(recent, Operator::Or, untimed)))
    }

    /// One line for EXPLAIN.
    pub fn describe(&self, schema: &Schema) -> String {
        let column = schema
            .fields()
            .get(self.column)
            .map_or_else(|| format!("#{}", self.column), |f| f.name().clone());
        format!(
            "Retention: final rows leave once {column} < watermark - {}",
            crate::window::humanize_nanos(self.horizon_nanos)
        )
    }

    fn time_column<'a>(&self, batch: &'a RecordBatch) -> Result<&'a ArrayRef> {
        batch.columns().get(self.column).ok_or_else(|| {
            EngineError::Internal(format!("retention column #{} is missing", self.column))
        })
    }

    /// The smallest value (in the column's own unit) that is kept: `cutoff` rounded up to the
    /// unit, so a row is dropped only when it is strictly older than the cutoff. None when
    /// nothing can be older (the cutoff is the earliest time there is).
    fn threshold(&self, data_type: &DataType, cutoff: i64) -> Result<Option<i64>> {
        let DataType::Timestamp(unit, _) = data_type else {
            return Err(EngineError::Internal(format!(
                "retention column #{} is {data_type}, not a timestamp",
                self.column
            )));
        };
        if cutoff == i64::MIN {
            return Ok(None);
        }
        let per = nanos_per_unit(*unit);
        Ok(Some(
            cutoff.div_euclid(per) + i64::from(cutoff.rem_euclid(per) != 0),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::TimestampMillisecondArray;
    use datafusion::arrow::datatypes::{Field, TimeUnit};

    fn batch(times: Vec<Option<i64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        )]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(TimestampMillisecondArray::from(times))],
        )
        .unwrap()
    }

    #[test]
    fn drops_rows_strictly_older_than_the_cutoff_and_keeps_untimed_ones() -> Result<()> {
        let r = Retention {
            column: 0,
            horizon_nanos: 1_000_000_000,
        };
        let rows = batch(vec![
            Some(1_000),
            Some(1_999),
            Some(2_000),
            None,
            Some(5_000),
        ]);
        // Watermark 3 s, cutoff 2 s: 1 000 and 1 999 ms go; 2 000 ms, the untimed row and 5 000 stay.
        let (kept, dropped) = r.retained(&rows, r.cutoff(3_000_000_000))?;
        assert_eq!(dropped, 2);
        assert_eq!(kept.num_rows(), 3);
        // A cutoff between two milliseconds: 1 999 ms is older than 1 999.5 ms, 2 000 is not.
        let (_, dropped) = r.retained(&rows, 1_999_500_000)?;
        assert_eq!(dropped, 2);
        let (_, dropped) = r.retained(&rows, 1_999_000_001)?;
        assert_eq!(dropped, 2);
        let (_, dropped) = r.retained(&rows, 1_999_000_000)?;
        assert_eq!(dropped, 1);
        assert_eq!(r.max_time(&rows)?, Some(5_000_000_000));
        // The scan predicate agrees with the batch filter.
        let predicate = r.predicate(&rows.schema(), r.cutoff(3_000_000_000))?;
        let mask = predicate.evaluate(&rows)?.into_array(rows.num_rows())?;
        let mask = mask
            .as_any()
            .downcast_ref::<datafusion::arrow::array::BooleanArray>()
            .unwrap();
        assert_eq!(mask.true_count(), 3);
        Ok(())
    }
}
