//! [`WindowAssigner`]: adds `window_start` / `window_end` to rows, vectorised.
//!
//! A row at `ts` is in the hopping windows whose starts are `s, s − slide, …` down to the first
//! that ends at or before `ts`, with `s = ts − (ts − offset) mod slide` (Euclidean modulo, so
//! times before the epoch work); a tumbling window is a hop whose slide is its size. In a
//! cumulating cycle `c` a row is in every window ending after it: `c + size, c + size − step, …`.
//! Each batch is copied once per window a row can be in, copy by copy, and a copy keeps only the
//! rows it applies to, so each copy has one window for rows that share a slide and the
//! aggregate folds it as one contiguous run. (Sharing partial aggregates between overlapping
//! windows, as Flink's window slicing does, would fold each row once.)
//!
//! Sessions cannot be assigned row by row: the rows get `window_start = ts` and
//! `window_end = ts + gap`, the window of the row alone, and the session aggregate merges them.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};

use super::spec::WindowSpec;
use super::{WINDOW_END, WINDOW_START};
use crate::error::{EngineError, Result};
use crate::time::{nanos_per_unit, timestamp_unit, timestamp_values, values_to_timestamp};

/// Adds `window_start` / `window_end` to batches, computed from the time column.
#[derive(Debug, Clone)]
pub struct WindowAssigner {
    time_column: String,
    time_index: usize,
    time_type: DataType,
    /// Nanoseconds per unit of the time column.
    per: i64,
    spec: WindowSpec,
    /// Set when this assigner hands out the slide-long panes of these hopping windows (the
    /// aggregate merges them) rather than the windows.
    panes_of: Option<WindowSpec>,
    output_schema: SchemaRef,
}

impl WindowAssigner {
    /// An assigner for `input` windowed on `time_column`.
    pub fn try_new(input: &SchemaRef, time_column: &str, spec: WindowSpec) -> Result<Self> {
        let function = spec.function();
        spec.validate()?;
        let (time_index, field) = input.column_with_name(time_column).ok_or_else(|| {
            EngineError::User(format!("{function}: no column named \"{time_column}\""))
        })?;
        let unit = timestamp_unit(field.data_type(), time_column)?;
        let per = nanos_per_unit(unit);
        if spec.lengths().iter().any(|l| l % per != 0) || spec.offset() % per != 0 {
            return Err(EngineError::User(format!(
                "{function}: window lengths and offset must be whole multiples of the column's unit ({unit:?})"
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
            per,
            spec,
            panes_of: None,
            output_schema: Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())),
        })
    }

    /// For overlapping hopping windows: the assigner of their panes, each row once in the pane
    /// it falls in. Panes are `gcd(size, slide)` long (the slide when it divides the size), so
    /// every window is a whole number of panes. None when windows do not overlap, or when a
    /// window would need many more panes merged than a row has copies (a tiny common divisor,
    /// as for 1001 ms every 1000 ms), where copying rows is cheaper.
    pub fn panes(&self) -> Option<WindowAssigner> {
        let WindowSpec::Hop {
            size,
            slide,
            offset,
        } = self.spec
        else {
            return None;
        };
        if slide >= size {
            return None;
        }
        let pane = gcd(size, slide);
        let copies = (size + slide - 1) / slide;
        if size / pane > MAX_PANES_PER_COPY * copies {
            return None;
        }
        Some(WindowAssigner {
            spec: WindowSpec::Tumble { size: pane, offset },
            panes_of: Some(self.spec),
            ..self.clone()
        })
    }

    /// The input schema plus the two window columns.
    pub fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.output_schema)
    }

    /// The window definition.
    pub fn spec(&self) -> WindowSpec {
        self.spec
    }

    /// The windowed time column.
    pub fn time_column(&self) -> &str {
        &self.time_column
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
        let per = self.per;
        let mut parts = Vec::new();
        match self.spec {
            WindowSpec::Tumble { size, offset } => {
                let (size, offset) = (size / per, offset / per);
                let starts = ts.unary::<_, Int64Type>(|t| {
                    t.wrapping_sub(t.wrapping_sub(offset).rem_euclid(size))
                });
                parts.push(self.copy(batch, &starts, size, None)?);
            }
            WindowSpec::Hop {
                size,
                slide,
                offset,
            } => {
                let (size, slide, offset) = (size / per, slide / per, offset / per);
                let latest = ts.unary::<_, Int64Type>(|t| {
                    t.wrapping_sub(t.wrapping_sub(offset).rem_euclid(slide))
                });
                // ceil(size / slide) copies; a row is in the last one only when its window
                // there still reaches past it.
                let copies = (size + slide - 1) / slide;
                for copy in 0..copies {
                    let starts = latest.unary::<_, Int64Type>(|s| s - copy * slide);
                    let partial = (copy + 1) * slide > size;
                    let keep = partial.then(|| reaches_past(&starts, &ts, size));
                    parts.push(self.copy(batch, &starts, size, keep)?);
                }
            }
            WindowSpec::Cumulate { step, size, offset } => {
                let (step, size, offset) = (step / per, size / per, offset / per);
                let cycles = ts.unary::<_, Int64Type>(|t| {
                    t.wrapping_sub(t.wrapping_sub(offset).rem_euclid(size))
                });
                for copy in 0..size / step {
                    // Copy `copy` is the window ending `copy` steps before the cycle's end.
                    let length = size - copy * step;
                    let keep = (copy > 0).then(|| reaches_past(&cycles, &ts, length));
                    parts.push(self.copy(batch, &cycles, length, keep)?);
                }
            }
            WindowSpec::Session { gap } => {
                parts.push(self.copy(batch, &ts, gap / per, None)?);
            }
        }
        match parts.len() {
            1 => parts
                .pop()
                .ok_or_else(|| EngineError::Internal("no window copy".into())),
            _ => Ok(concat_batches(&self.output_schema(), &parts)?),
        }
    }

    /// `batch` with windows `[starts, starts + length)`, only the rows `keep` selects.
    fn copy(
        &self,
        batch: &RecordBatch,
        starts: &Int64Array,
        length: i64,
        keep: Option<BooleanArray>,
    ) -> Result<RecordBatch> {
        let ends = starts.unary::<_, Int64Type>(|s| s.saturating_add(length));
        let mut columns = batch.columns().to_vec();
        columns.push(values_to_timestamp(starts, &self.time_type)?);
        columns.push(values_to_timestamp(&ends, &self.time_type)?);
        let copy = RecordBatch::try_new(self.output_schema(), columns)?;
        match keep {
            Some(keep) => Ok(filter_record_batch(&copy, &keep)?),
            None => Ok(copy),
        }
    }

    /// One line for EXPLAIN.
    pub fn describe(&self) -> String {
        if let Some(hop) = self.panes_of {
            return format!(
                "Hop panes: time={} {} (each row once, in its {} pane)",
                self.time_column,
                hop.describe(),
                super::humanize_nanos(self.spec.max_size())
            );
        }
        let function = self.spec.function();
        let name = format!("{}{}", &function[..1], function[1..].to_lowercase());
        format!("{name}: time={} {}", self.time_column, self.spec.describe())
    }
}

/// Rows whose window `[start, start + length)` contains their time.
/// Null times select nothing.
fn reaches_past(starts: &Int64Array, ts: &Int64Array, length: i64) -> BooleanArray {
    let (s, t) = (starts.values(), ts.values());
    let values = BooleanBuffer::collect_bool(s.len(), |i| s[i].saturating_add(length) > t[i]);
    BooleanArray::new(values, ts.nulls().cloned())
}

/// Panes merged per window, at most, for each copy of a row panes save.
const MAX_PANES_PER_COPY: i64 = 4;

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, AsArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::TimestampMillisecondType;

    const S: i64 = 1_000_000_000;

    fn batch(values: Vec<Option<i64>>) -> Result<RecordBatch> {
        let a: ArrayRef = Arc::new(TimestampMillisecondArray::from(values));
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        )]));
        Ok(RecordBatch::try_new(schema, vec![a])?)
    }

    /// (start, end) per output row with a time, in ms.
    fn windows(out: &RecordBatch) -> Vec<(i64, i64)> {
        let starts = out.column(1).as_primitive::<TimestampMillisecondType>();
        let ends = out.column(2).as_primitive::<TimestampMillisecondType>();
        (0..out.num_rows())
            .filter(|&i| starts.is_valid(i))
            .map(|i| (starts.value(i), ends.value(i)))
            .collect()
    }

    #[test]
    fn assigns_windows_including_negative_times() -> Result<()> {
        let b = batch(vec![Some(0), Some(9_999), Some(10_000), Some(-1), None])?;
        let spec = WindowSpec::Tumble {
            size: 10 * S,
            offset: 0,
        };
        let out = WindowAssigner::try_new(&b.schema(), "ts", spec)?.assign(&b)?;
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
        let b = batch(vec![Some(2_000), Some(1_000)])?;
        let spec = WindowSpec::Tumble {
            size: 10 * S,
            offset: 1_500_000_000,
        };
        let out = WindowAssigner::try_new(&b.schema(), "ts", spec)?.assign(&b)?;
        assert_eq!(windows(&out), vec![(1_500, 11_500), (-8_500, 1_500)]);
        Ok(())
    }

    #[test]
    fn hopping_windows_copy_each_row_into_every_window_it_is_in() -> Result<()> {
        let b = batch(vec![Some(0), Some(4_999), Some(-1)])?;
        let spec = WindowSpec::Hop {
            size: 10 * S,
            slide: 2 * S,
            offset: 0,
        };
        let out = WindowAssigner::try_new(&b.schema(), "ts", spec)?.assign(&b)?;
        assert_eq!(out.num_rows(), 15);
        let starts = out.column(1).as_primitive::<TimestampMillisecondType>();
        let of_row =
            |row: usize| -> Vec<i64> { (0..5).map(|copy| starts.value(copy * 3 + row)).collect() };
        assert_eq!(of_row(0), vec![0, -2_000, -4_000, -6_000, -8_000]);
        assert_eq!(of_row(1), vec![4_000, 2_000, 0, -2_000, -4_000]);
        assert_eq!(of_row(2), vec![-2_000, -4_000, -6_000, -8_000, -10_000]);
        Ok(())
    }

    #[test]
    fn a_slide_that_does_not_divide_the_size_gives_each_row_the_windows_containing_it() -> Result<()>
    {
        let b = batch(vec![Some(0), Some(2_500), None])?;
        let spec = WindowSpec::Hop {
            size: 5 * S,
            slide: 3 * S,
            offset: 0,
        };
        let out = WindowAssigner::try_new(&b.schema(), "ts", spec)?.assign(&b)?;
        // NULL once (it becomes a late row), in the first copy only.
        assert_eq!(out.column(1).null_count(), 1);
        let mut got = windows(&out);
        got.sort_unstable();
        // 0 is in [0,5) and [-3,2); 2500 in [0,5) only ([-3,2) ends before it).
        assert_eq!(got, vec![(-3_000, 2_000), (0, 5_000), (0, 5_000)]);
        Ok(())
    }

    #[test]
    fn cumulating_windows_hold_every_row_from_the_cycle_start() -> Result<()> {
        let b = batch(vec![Some(0), Some(3_500), Some(5_999), Some(6_000)])?;
        let spec = WindowSpec::Cumulate {
            step: 2 * S,
            size: 6 * S,
            offset: 0,
        };
        let mut got = windows(&WindowAssigner::try_new(&b.schema(), "ts", spec)?.assign(&b)?);
        got.sort_unstable();
        assert_eq!(
            got,
            vec![
                (0, 2_000),
                (0, 4_000),
                (0, 4_000),
                (0, 6_000),
                (0, 6_000),
                (0, 6_000),
                (6_000, 8_000),
                (6_000, 10_000),
                (6_000, 12_000),
            ]
        );
        Ok(())
    }

    #[test]
    fn a_session_row_gets_its_own_window_for_the_aggregate_to_merge() -> Result<()> {
        let b = batch(vec![Some(1_000)])?;
        let spec = WindowSpec::Session { gap: 30 * S };
        let out = WindowAssigner::try_new(&b.schema(), "ts", spec)?.assign(&b)?;
        assert_eq!(windows(&out), vec![(1_000, 31_000)]);
        Ok(())
    }
}
