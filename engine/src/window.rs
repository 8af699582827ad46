//! Tumbling windows: assigning rows to windows, vectorised, and the `TUMBLE(...)` relation that
//! the SQL layer plans against.
//!
//! A tumbling window of `size` with `offset` covers `[start, start + size)` where
//! `start = ts - (ts - offset) mod size` (Euclidean modulo, so times before the epoch work).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::error::{EngineError, Result};
use crate::time::{nanos_per_unit, timestamp_unit, timestamp_values, values_to_timestamp};

/// Name of the column holding a window's start.
pub const WINDOW_START: &str = "window_start";
/// Name of the column holding a window's end (exclusive).
pub const WINDOW_END: &str = "window_end";

/// A tumbling window definition in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TumbleSpec {
    /// Window length in nanoseconds (> 0).
    pub size_nanos: i64,
    /// Alignment offset in nanoseconds.
    pub offset_nanos: i64,
}

/// Adds `window_start` / `window_end` to batches, computed from the time column.
#[derive(Debug, Clone)]
pub struct TumbleAssigner {
    time_column: String,
    time_index: usize,
    time_type: DataType,
    /// Size and offset converted to the time column's unit (the unit must divide them).
    size: i64,
    offset: i64,
    spec: TumbleSpec,
    output_schema: SchemaRef,
}

impl TumbleAssigner {
    /// An assigner for `input` windowed on `time_column`.
    pub fn try_new(input: &SchemaRef, time_column: &str, spec: TumbleSpec) -> Result<Self> {
        let (time_index, field) = input.column_with_name(time_column).ok_or_else(|| {
            EngineError::User(format!("TUMBLE: no column named \"{time_column}\""))
        })?;
        let unit = timestamp_unit(field.data_type(), time_column)?;
        let per = nanos_per_unit(unit);
        if spec.size_nanos <= 0 {
            return Err(EngineError::User("TUMBLE: the window size must be positive".into()));
        }
        if spec.size_nanos % per != 0 || spec.offset_nanos % per != 0 {
            return Err(EngineError::User(format!(
                "TUMBLE: size and offset must be whole multiples of the column's unit ({unit:?})"
            )));
        }
        let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
        for name in [WINDOW_START, WINDOW_END] {
            if input.column_with_name(name).is_some() {
                return Err(EngineError::User(format!(
                    "TUMBLE: the input already has a column named \"{name}\""
                )));
            }
            fields.push(Arc::new(Field::new(name, field.data_type().clone(), field.is_nullable())));
        }
        Ok(Self {
            time_column: time_column.to_string(),
            time_index,
            time_type: field.data_type().clone(),
            size: spec.size_nanos / per,
            offset: spec.offset_nanos / per,
            spec,
            output_schema: Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())),
        })
    }

    /// The input schema plus the two window columns.
    pub fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.output_schema)
    }

    /// The window definition.
    pub fn spec(&self) -> TumbleSpec {
        self.spec
    }

    /// The time column's unit.
    pub fn unit(&self) -> TimeUnit {
        match self.time_type {
            DataType::Timestamp(unit, _) => unit,
            _ => TimeUnit::Nanosecond,
        }
    }

    /// Appends the window columns to `batch`.
    pub fn assign(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let ts = timestamp_values(batch.column(self.time_index))?;
        let (size, offset) = (self.size, self.offset);
        let starts = ts.unary::<_, datafusion::arrow::datatypes::Int64Type>(|t| {
            t.wrapping_sub(t.wrapping_sub(offset).rem_euclid(size))
        });
        let ends = starts
            .unary::<_, datafusion::arrow::datatypes::Int64Type>(|s| s.saturating_add(size));
        let mut columns = batch.columns().to_vec();
        columns.push(values_to_timestamp(&starts, &self.time_type)?);
        columns.push(values_to_timestamp(&ends, &self.time_type)?);
        Ok(RecordBatch::try_new(self.output_schema(), columns)?)
    }

    /// One line for EXPLAIN.
    pub fn describe(&self) -> String {
        format!(
            "Tumble: time={} size={} offset={}",
            self.time_column,
            humanize_nanos(self.spec.size_nanos),
            humanize_nanos(self.spec.offset_nanos)
        )
    }
}

/// Formats a nanosecond duration compactly (`5m`, `1h30m`, `250ms`).
pub fn humanize_nanos(nanos: i64) -> String {
    let units = [
        (86_400_000_000_000i64, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    if nanos == 0 {
        return "0s".into();
    }
    let mut rest = nanos.unsigned_abs();
    let mut out = String::new();
    if nanos < 0 {
        out.push('-');
    }
    for (per, name) in units {
        let per = per.unsigned_abs();
        if rest >= per {
            out.push_str(&format!("{}{name}", rest / per));
            rest %= per;
        }
    }
    out
}

/// What a `TUMBLE(input, ts, size [, offset])` relation reads.
#[derive(Debug, Clone)]
pub struct WindowedInput {
    /// Name of the source or view windowed.
    pub input: String,
    /// Schema of that input.
    pub input_schema: SchemaRef,
    /// The assigner that adds the window columns.
    pub assigner: TumbleAssigner,
}

/// The `TUMBLE(...)` relation as DataFusion sees it while planning a view. The stream planner
/// recognises it and turns it into a [`TumbleAssigner`] step; it has no batch scan.
#[derive(Debug)]
pub struct WindowedTable {
    windowed: WindowedInput,
}

impl WindowedTable {
    /// A relation for `windowed`.
    pub fn new(windowed: WindowedInput) -> Self {
        Self { windowed }
    }

    /// What is windowed, and how.
    pub fn windowed(&self) -> &WindowedInput {
        &self.windowed
    }
}

#[async_trait]
impl TableProvider for WindowedTable {
    fn schema(&self) -> SchemaRef {
        self.windowed.assigner.output_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Plan(format!(
            "TUMBLE({}, …) can only be used in CREATE MATERIALIZED VIEW; in an ad-hoc query \
             use date_bin(INTERVAL …, {}) to bucket rows",
            self.windowed.input, self.windowed.assigner.time_column
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, ArrayRef, AsArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::TimestampMillisecondType;

    fn batch(values: Vec<Option<i64>>) -> RecordBatch {
        let a: ArrayRef = Arc::new(TimestampMillisecondArray::from(values));
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        )]));
        RecordBatch::try_new(schema, vec![a]).unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(Schema::empty())))
    }

    #[test]
    fn assigns_windows_including_negative_times() -> Result<()> {
        let b = batch(vec![Some(0), Some(9_999), Some(10_000), Some(-1), None]);
        let spec = TumbleSpec { size_nanos: 10_000_000_000, offset_nanos: 0 };
        let t = TumbleAssigner::try_new(&b.schema(), "ts", spec)?;
        let out = t.assign(&b)?;
        let starts = out.column(1).as_primitive::<TimestampMillisecondType>();
        let ends = out.column(2).as_primitive::<TimestampMillisecondType>();
        assert_eq!(starts.value(0), 0);
        assert_eq!(starts.value(1), 0);
        assert_eq!(starts.value(2), 10_000);
        assert_eq!(starts.value(3), -10_000);
        assert!(starts.is_null(4));
        assert_eq!(ends.value(2), 20_000);
        Ok(())
    }

    #[test]
    fn offset_shifts_windows() -> Result<()> {
        let b = batch(vec![Some(2_000), Some(1_000)]);
        let spec = TumbleSpec { size_nanos: 10_000_000_000, offset_nanos: 1_500_000_000 };
        let out = TumbleAssigner::try_new(&b.schema(), "ts", spec)?.assign(&b)?;
        let starts = out.column(1).as_primitive::<TimestampMillisecondType>();
        assert_eq!(starts.value(0), 1_500);
        assert_eq!(starts.value(1), -8_500);
        Ok(())
    }

    #[test]
    fn humanizes() {
        assert_eq!(humanize_nanos(300_000_000_000), "5m");
        assert_eq!(humanize_nanos(5_400_000_000_000), "1h30m");
    }
}
