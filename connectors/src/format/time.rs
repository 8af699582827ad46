//! Event times as producers write them. Decoders read timestamp columns as text (JSON numbers
//! become their digits) and this module converts them: RFC 3339 / ISO 8601 strings (a missing
//! offset means UTC), or epoch numbers whose unit is inferred from their size, as RisingWave and
//! Materialize do, because producers send seconds, milliseconds, microseconds or nanoseconds and
//! rarely say which: |n| < 10¹¹ is seconds (up to year 5138), < 10¹⁴ milliseconds, < 10¹⁷
//! microseconds, otherwise nanoseconds. A fraction (`1704067200.5`) is seconds.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use datafusion::arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::arrow::record_batch::RecordBatch;

/// The schema a decoder reads with (timestamp columns as text) and the columns to convert.
#[derive(Debug, Clone)]
pub struct TimestampColumns {
    target: SchemaRef,
    text: SchemaRef,
    columns: Vec<usize>,
}

impl TimestampColumns {
    /// Plans the conversion for `target`.
    pub fn new(target: &SchemaRef) -> Self {
        let mut columns = Vec::new();
        let fields: Vec<Field> = target
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if matches!(f.data_type(), DataType::Timestamp(..)) {
                    columns.push(i);
                    f.as_ref().clone().with_data_type(DataType::Utf8)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect();
        Self {
            target: Arc::clone(target),
            text: Arc::new(Schema::new(fields)),
            columns,
        }
    }

    /// The schema to decode with.
    pub fn text_schema(&self) -> SchemaRef {
        Arc::clone(&self.text)
    }

    /// Converts a decoded batch to the target schema.
    pub fn convert(&self, batch: RecordBatch) -> Result<RecordBatch, String> {
        if self.columns.is_empty() {
            return Ok(batch);
        }
        let mut columns = batch.columns().to_vec();
        for &i in &self.columns {
            let field = self.target.field(i);
            let DataType::Timestamp(unit, tz) = field.data_type() else {
                continue;
            };
            columns[i] = parse_timestamps(&columns[i], *unit, tz.clone())
                .map_err(|e| format!("column \"{}\": {e}", field.name()))?;
        }
        RecordBatch::try_new(Arc::clone(&self.target), columns).map_err(|e| e.to_string())
    }
}

/// Nanoseconds since the epoch of one text value.
fn parse_nanos(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let numeric = t
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'-')
        && t.bytes().skip(1).all(|b| b.is_ascii_digit() || b == b'.');
    if numeric {
        if let Ok(n) = t.parse::<i64>() {
            let scale: i64 = match n.unsigned_abs() {
                0..100_000_000_000 => 1_000_000_000,
                100_000_000_000..100_000_000_000_000 => 1_000_000,
                100_000_000_000_000..100_000_000_000_000_000 => 1_000,
                _ => 1,
            };
            return n
                .checked_mul(scale)
                .ok_or_else(|| format!("epoch value {t} is out of range"));
        }
        // Fractional seconds, kept exact: whole seconds and up to nine digits of fraction.
        let not_epoch = || format!("'{t}' is not an epoch time");
        let (whole, fraction) = t.split_once('.').ok_or_else(not_epoch)?;
        let negative = whole.starts_with('-');
        let seconds: i64 = whole.parse().map_err(|_| not_epoch())?;
        if fraction.is_empty()
            || fraction.len() > 9
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(not_epoch());
        }
        let nanos: i64 = format!("{fraction:0<9}").parse().map_err(|_| not_epoch())?;
        let nanos = if negative { -nanos } else { nanos };
        return seconds
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(nanos))
            .ok_or_else(not_epoch);
    }
    string_to_timestamp_nanos(t)
        .map_err(|_| format!("'{t}' is not a timestamp (RFC 3339 or epoch number)"))
}

fn parse_timestamps(
    array: &ArrayRef,
    unit: TimeUnit,
    tz: Option<Arc<str>>,
) -> Result<ArrayRef, String> {
    let text = array.as_string_opt::<i32>().ok_or("expected text")?;
    let per_unit: i64 = match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    let mut values = Vec::with_capacity(text.len());
    for i in 0..text.len() {
        values.push(if text.is_null(i) {
            0
        } else {
            parse_nanos(text.value(i))?.div_euclid(per_unit)
        });
    }
    let nulls = text.nulls().cloned();
    Ok(match unit {
        TimeUnit::Second => Arc::new(
            PrimitiveArray::<TimestampSecondType>::new(values.into(), nulls).with_timezone_opt(tz),
        ),
        TimeUnit::Millisecond => Arc::new(
            PrimitiveArray::<TimestampMillisecondType>::new(values.into(), nulls)
                .with_timezone_opt(tz),
        ),
        TimeUnit::Microsecond => Arc::new(
            PrimitiveArray::<TimestampMicrosecondType>::new(values.into(), nulls)
                .with_timezone_opt(tz),
        ),
        TimeUnit::Nanosecond => Arc::new(
            PrimitiveArray::<TimestampNanosecondType>::new(values.into(), nulls)
                .with_timezone_opt(tz),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_units_by_magnitude_and_text() {
        let second = 1_704_067_200_i64;
        for text in [
            "1704067200",
            "1704067200000",
            "1704067200000000",
            "1704067200000000000",
            "2024-01-01T00:00:00Z",
            "2024-01-01 00:00:00",
            "2024-01-01T01:00:00+01:00",
        ] {
            assert_eq!(parse_nanos(text), Ok(second * 1_000_000_000), "{text}");
        }
        assert_eq!(
            parse_nanos("1704067200.25"),
            Ok(second * 1_000_000_000 + 250_000_000)
        );
        assert!(parse_nanos("yesterday").is_err());
        assert!(parse_nanos("12-34").is_err());
    }
}
