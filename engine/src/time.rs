//! Event-time helpers: timestamp columns as i64 values, unit conversion to nanoseconds.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};

use crate::error::{EngineError, Result};

/// How many nanoseconds one tick of `unit` is.
pub fn nanos_per_unit(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// The time unit of a timestamp type, or an error naming the column.
pub fn timestamp_unit(data_type: &DataType, column: &str) -> Result<TimeUnit> {
    match data_type {
        DataType::Timestamp(unit, _) => Ok(*unit),
        other => Err(EngineError::User(format!(
            "event-time column \"{column}\" must be a TIMESTAMP or TIMESTAMPTZ, not {other}"
        ))),
    }
}

/// The raw i64 values of a timestamp array (in its own unit), nulls preserved.
pub fn timestamp_values(array: &ArrayRef) -> Result<Int64Array> {
    let as_int = cast(array, &DataType::Int64)?;
    Ok(as_int.as_primitive::<Int64Type>().clone())
}

/// i64 values (in the unit of `data_type`) back to a timestamp array of `data_type`.
pub fn values_to_timestamp(values: &Int64Array, data_type: &DataType) -> Result<ArrayRef> {
    Ok(cast(values, data_type)?)
}

/// The largest non-null value of a timestamp array, in nanoseconds (saturating).
pub fn max_nanos(array: &ArrayRef) -> Result<Option<i64>> {
    let unit = match array.data_type() {
        DataType::Timestamp(unit, _) => *unit,
        other => {
            return Err(EngineError::User(format!(
                "a WATERMARK expression must produce a timestamp, not {other}"
            )));
        }
    };
    let values = timestamp_values(array)?;
    Ok(datafusion::arrow::compute::max(&values).map(|v| v.saturating_mul(nanos_per_unit(unit))))
}

/// Converts nanoseconds to `unit`, rounding toward negative infinity.
pub fn nanos_to_unit(nanos: i64, unit: TimeUnit) -> i64 {
    nanos.div_euclid(nanos_per_unit(unit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::TimestampMillisecondArray;
    use std::sync::Arc;

    #[test]
    fn max_in_nanos() {
        let a: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![
            Some(5),
            None,
            Some(9),
        ]));
        assert_eq!(max_nanos(&a).ok().flatten(), Some(9_000_000));
    }

    #[test]
    fn floor_conversion() {
        assert_eq!(nanos_to_unit(-1, TimeUnit::Millisecond), -1);
        assert_eq!(nanos_to_unit(1_999_999, TimeUnit::Millisecond), 1);
    }
}
