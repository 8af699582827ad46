//! `timestamptz` values as text in the session's `TimeZone` (`SET TIME ZONE 'Asia/Kolkata'`).
//!
//! Weir's timestamps are instants labelled UTC. In a session whose zone is something else, text
//! results show each instant in that zone with its offset, as PostgreSQL does. Weir renders that
//! text itself rather than re-labelling the column for pgwire: pgwire writes offsets with hours
//! only (`+05` for `+05:30`), which clients read as a different instant. Binary results carry
//! the instant and need nothing.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Offset, Utc};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMicrosecondType};
use datafusion::arrow::error::ArrowError;
use pgwire::api::results::{FieldFormat, FieldInfo};

/// The text-format `timestamptz` columns of a result, and the zone to show them in.
pub struct DisplayZone {
    tz: Tz,
    columns: Vec<usize>,
}

impl DisplayZone {
    /// None when nothing needs rendering: the session is in UTC, or no text-format column is a
    /// `timestamptz`.
    pub fn new(time_zone: Option<&str>, schema: &Schema, fields: &[FieldInfo]) -> Option<Self> {
        let tz = Tz::from_str(time_zone?).ok()?;
        let columns: Vec<usize> = schema
            .fields()
            .iter()
            .zip(fields)
            .enumerate()
            .filter(|(_, (column, field))| {
                matches!(column.data_type(), DataType::Timestamp(_, Some(_)))
                    && field.format() == FieldFormat::Text
            })
            .map(|(i, _)| i)
            .collect();
        (!columns.is_empty()).then_some(Self { tz, columns })
    }

    /// `batch` with the zone's columns as PostgreSQL's text (the row encoder takes the type OID
    /// from the field descriptions, which still say `timestamptz`).
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        let mut columns = batch.columns().to_vec();
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for &i in &self.columns {
            if let (Some(column), Some(field)) = (columns.get_mut(i), fields.get_mut(i)) {
                *column = render(column, &self.tz)?;
                *field = Field::new(field.name(), DataType::Utf8, true);
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
    }
}

/// Each instant of `column` as `YYYY-MM-DD HH:MM:SS.ffffff+HH[:MM[:SS]]` in `tz`, the form
/// Weir's UTC results have (microseconds always shown).
fn render(column: &ArrayRef, tz: &Tz) -> Result<ArrayRef, ArrowError> {
    let micros = cast(
        column,
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    )?;
    let micros = micros.as_primitive::<TimestampMicrosecondType>();
    let mut out = StringBuilder::with_capacity(micros.len(), micros.len() * 32);
    for value in micros.iter() {
        match value.and_then(DateTime::<Utc>::from_timestamp_micros) {
            Some(instant) => {
                let local = instant.with_timezone(tz);
                let offset = local.offset().fix().local_minus_utc();
                out.append_value(format!(
                    "{}{}",
                    local.format("%Y-%m-%d %H:%M:%S%.6f"),
                    offset_text(offset)
                ));
            }
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// PostgreSQL's offset text: `+05:30`, `-08`, `+00:19:32` (minutes and seconds only when set).
fn offset_text(seconds_east: i32) -> String {
    let sign = if seconds_east < 0 { '-' } else { '+' };
    let s = seconds_east.unsigned_abs();
    let (hours, minutes, seconds) = (s / 3600, s / 60 % 60, s % 60);
    match (minutes, seconds) {
        (0, 0) => format!("{sign}{hours:02}"),
        (m, 0) => format!("{sign}{hours:02}:{m:02}"),
        (m, s) => format!("{sign}{hours:02}:{m:02}:{s:02}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, StringArray, TimestampNanosecondArray};

    #[test]
    fn offsets_as_postgresql_writes_them() {
        assert_eq!(offset_text(0), "+00");
        assert_eq!(offset_text(19_800), "+05:30");
        assert_eq!(offset_text(-8 * 3600), "-08");
        assert_eq!(offset_text(1172), "+00:19:32");
    }

    #[test]
    fn instants_shown_in_the_zone() -> Result<(), ArrowError> {
        // 2024-01-02T03:04:05.5Z and NULL.
        let column: ArrayRef = Arc::new(
            TimestampNanosecondArray::from(vec![Some(1_704_164_645_500_000_000), None])
                .with_timezone("+00:00"),
        );
        let tz = Tz::from_str("Asia/Kolkata")?;
        let text = render(&column, &tz)?;
        let text = text.as_any().downcast_ref::<StringArray>();
        assert_eq!(
            text.map(|t| (t.value(0).to_string(), t.is_null(1))),
            Some(("2024-01-02 08:34:05.500000+05:30".to_string(), true))
        );
        Ok(())
    }
}
