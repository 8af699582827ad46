//! Tumbling and hopping windows: assigning rows to windows, vectorised, and the `TUMBLE(…)` /
//! `HOP(…)` relation that the SQL layer plans against.
//!
//! Windows of `size` start every `slide` (`slide = size` for tumbling windows), aligned to
//! `offset`: window `[start, start + size)` with `start ≡ offset (mod slide)`. A row at `ts` is in
//! the `size / slide` windows whose starts are `s, s − slide, …` with
//! `s = ts − (ts − offset) mod slide` (Euclidean modulo, so times before the epoch work).
//!
//! A hopping window copies each batch once per window a row is in, copy by copy, so that each
//! copy has a single window start for rows that share a slide and the aggregate folds it as one
//! contiguous run. (Sharing partial aggregates between overlapping windows, as Flink's window
//! slicing does, would fold each row once; that is the next step for `HOP`.)

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
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

/// A tumbling or hopping window definition in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TumbleSpec {
    /// Window length in nanoseconds (> 0).
    pub size_nanos: i64,
    /// Alignment offset in nanoseconds.
    pub offset_nanos: i64,
    /// Time between window starts; equal to `size_nanos` for tumbling windows.
    pub slide_nanos: i64,
}

impl TumbleSpec {
    /// A tumbling window.
    pub fn tumbling(size_nanos: i64, offset_nanos: i64) -> Self {
        Self {
            size_nanos,
            offset_nanos,
            slide_nanos: size_nanos,
        }
    }

    /// The relation's name in messages.
    fn function(&self) -> &'static str {
        if self.slide_nanos == self.size_nanos {
            "TUMBLE"
        } else {
            "HOP"
        }
    }
}

/// Adds `window_start` / `window_end` to batches, computed from the time column.
#[derive(Debug, Clone)]
pub struct TumbleAssigner {
    time_column: String,
    time_index: usize,
    time_type: DataType,
    /// Size, slide and offset converted to the time column's unit (the unit must divide them).
    size: i64,
    slide: i64,
    offset: i64,
    spec: TumbleSpec,
    output_schema: SchemaRef,
}

impl TumbleAssigner {
    /// An assigner for `input` windowed on `time_column`.
    pub fn try_new(input: &SchemaRef, time_column: &str, spec: TumbleSpec) -> Result<Self> {
        let function = spec.function();
        let (time_index, field) = input.column_with_name(time_column).ok_or_else(|| {
            EngineError::User(format!("{function}: no column named \"{time_column}\""))
        })?;
        let unit = timestamp_unit(field.data_type(), time_column)?;
        let per = nanos_per_unit(unit);
        if spec.size_nanos <= 0 || spec.slide_nanos <= 0 {
            return Err(EngineError::User(format!(
                "{function}: the window size and slide must be positive"
            )));
        }
        if spec.size_nanos % spec.slide_nanos != 0 {
            return Err(EngineError::User(format!(
                "{function}: the window size ({}) must be a whole multiple of the slide ({})",
                humanize_nanos(spec.size_nanos),
                humanize_nanos(spec.slide_nanos)
            )));
        }
        if spec.size_nanos % per != 0 || spec.offset_nanos % per != 0 || spec.slide_nanos % per != 0
        {
            return Err(EngineError::User(format!(
                "{function}: size, slide and offset must be whole multiples of the column's unit ({unit:?})"
            )));
        }
        let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
        for name in [WINDOW_START, WINDOW_END] {
            if input.column_with_name(name).is_some() {
                return Err(EngineError::User(format!(
                    "{function}: the input already has a column named \"{name}\""
                )));
            }
            fields.push(Arc::new(Field::new(
                name,
                field.data_type().clone(),
                field.is_nullable(),
            )));
        }
        Ok(Self {
            time_column: time_column.to_string(),
            time_index,
            time_type: field.data_type().clone(),
            size: spec.size_nanos / per,
            slide: spec.slide_nanos / per,
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

    /// Appends the window columns to `batch`: one copy of the rows per window they are in.
    pub fn assign(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let ts = timestamp_values(batch.column(self.time_index))?;
        let (size, slide, offset) = (self.size, self.slide, self.offset);
        let latest =
            ts.unary::<_, Int64Type>(|t| t.wrapping_sub(t.wrapping_sub(offset).rem_euclid(slide)));
        let copies = size / slide;
        let mut parts = Vec::with_capacity(copies as usize);
        for copy in 0..copies {
            let back = copy * slide;
            let starts = if copy == 0 {
                latest.clone()
            } else {
                latest.unary::<_, Int64Type>(|s| s - back)
            };
            let ends = starts.unary::<_, Int64Type>(|s| s.saturating_add(size));
            let mut columns = batch.columns().to_vec();
            columns.push(values_to_timestamp(&starts, &self.time_type)?);
            columns.push(values_to_timestamp(&ends, &self.time_type)?);
            parts.push(RecordBatch::try_new(self.output_schema(), columns)?);
        }
        match parts.len() {
            1 => parts
                .pop()
                .ok_or_else(|| EngineError::Internal("no window copy".into())),
            _ => Ok(concat_batches(&self.output_schema(), &parts)?),
        }
    }

    /// One line for EXPLAIN.
    pub fn describe(&self) -> String {
        let slide = if self.spec.slide_nanos == self.spec.size_nanos {
            String::new()
        } else {
            format!(" slide={}", humanize_nanos(self.spec.slide_nanos))
        };
        format!(
            "{}: time={} size={}{slide} offset={}",
            if slide.is_empty() { "Tumble" } else { "Hop" },
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

/// What a `TUMBLE(input, ts, size [, offset])` or `HOP(input, ts, slide, size [, offset])`
/// relation reads.
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
            "{}({}, …) can only be used in CREATE MATERIALIZED VIEW; in an ad-hoc query \
             use date_bin(INTERVAL …, {}) to bucket rows",
            self.windowed.assigner.spec.function(),
            self.windowed.input,
            self.windowed.assigner.time_column
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
        RecordBatch::try_new(schema, vec![a])
            .unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(Schema::empty())))
    }

    #[test]
    fn assigns_windows_including_negative_times() -> Result<()> {
        let b = batch(vec![Some(0), Some(9_999), Some(10_000), Some(-1), None]);
        let spec = TumbleSpec::tumbling(10_000_000_000, 0);
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
        let spec = TumbleSpec::tumbling(10_000_000_000, 1_500_000_000);
        let out = TumbleAssigner::try_new(&b.schema(), "ts", spec)?.assign(&b)?;
        let starts = out.column(1).as_primitive::<TimestampMillisecondType>();
        assert_eq!(starts.value(0), 1_500);
        assert_eq!(starts.value(1), -8_500);
        Ok(())
    }

    #[test]
    fn hopping_windows_copy_each_row_into_every_window_it_is_in() -> Result<()> {
        let b = batch(vec![Some(0), Some(4_999), Some(-1)]);
        let spec = TumbleSpec {
            size_nanos: 10_000_000_000,
            offset_nanos: 0,
            slide_nanos: 2_000_000_000,
        };
        let out = TumbleAssigner::try_new(&b.schema(), "ts", spec)?.assign(&b)?;
        assert_eq!(out.num_rows(), 15);
        let starts = out.column(1).as_primitive::<TimestampMillisecondType>();
        let of_row =
            |row: usize| -> Vec<i64> { (0..5).map(|copy| starts.value(copy * 3 + row)).collect() };
        assert_eq!(of_row(0), vec![0, -2_000, -4_000, -6_000, -8_000]);
        assert_eq!(of_row(1), vec![4_000, 2_000, 0, -2_000, -4_000]);
        assert_eq!(of_row(2), vec![-2_000, -4_000, -6_000, -8_000, -10_000]);
        let uneven = TumbleSpec {
            size_nanos: 10_000_000_000,
            offset_nanos: 0,
            slide_nanos: 3_000_000_000,
        };
        assert!(TumbleAssigner::try_new(&b.schema(), "ts", uneven).is_err());
        Ok(())
    }

    #[test]
    fn humanizes() {
        assert_eq!(humanize_nanos(300_000_000_000), "5m");
        assert_eq!(humanize_nanos(5_400_000_000_000), "1h30m");
    }
}
