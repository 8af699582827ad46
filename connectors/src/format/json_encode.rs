//! Rows to JSON documents, one per row, for sinks (`ENCODE JSON`).
//!
//! Types are rendered so a reader loses nothing: timestamps as RFC 3339 text with their offset,
//! decimals as strings (a JSON number would be read back as a binary float), structs as nested
//! objects, lists as arrays, NULL as `null`. Encoding is column-wise through arrow-json's encoders;
//! only the final split into one buffer per row is per row.

use std::sync::Arc;

use arrow_json::writer::{EncoderOptions, make_encoder};
use datafusion::arrow::array::{Array, ArrayRef, StructArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use weir_engine::error::{EngineError, Result};

/// Each row of `batch` as a JSON object.
pub fn json_rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let batch = decimals_as_text(batch)?;
    let array = StructArray::from(batch.clone());
    let field: FieldRef = Arc::new(Field::new_struct(
        "",
        batch.schema().fields().clone(),
        false,
    ));
    let options = EncoderOptions::default().with_explicit_nulls(true);
    let mut encoder = make_encoder(&field, &array, &options)?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut buffer = Vec::with_capacity(128);
        encoder.encode(row, &mut buffer);
        out.push(buffer);
    }
    Ok(out)
}

/// Each value of `column` as a JSON document (NULL stays None), for nested values sent as text.
pub fn json_values(column: &ArrayRef) -> Result<Vec<Option<String>>> {
    let field: FieldRef = Arc::new(Field::new("v", column.data_type().clone(), true));
    let options = EncoderOptions::default().with_explicit_nulls(true);
    let mut encoder = make_encoder(&field, column.as_ref(), &options)?;
    Ok((0..column.len())
        .map(|row| {
            if column.is_null(row) {
                return None;
            }
            let mut buffer = Vec::with_capacity(64);
            encoder.encode(row, &mut buffer);
            Some(String::from_utf8_lossy(&buffer).into_owned())
        })
        .collect())
}

/// `batch` with its decimal columns as text (exact digits, no float rounding by readers).
fn decimals_as_text(batch: &RecordBatch) -> Result<RecordBatch> {
    let is_decimal = |t: &DataType| {
        matches!(
            t,
            DataType::Decimal32(..)
                | DataType::Decimal64(..)
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
        )
    };
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| is_decimal(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if is_decimal(field.data_type()) {
            fields.push(Field::new(
                field.name(),
                DataType::Utf8,
                field.is_nullable(),
            ));
            columns.push(cast(column, &DataType::Utf8)?);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(EngineError::from)
}

/// The columns `names` of `batch`, in that order.
pub fn project(batch: &RecordBatch, names: &[String]) -> Result<RecordBatch> {
    let indices = names
        .iter()
        .map(|n| {
            batch
                .schema()
                .index_of(n)
                .map_err(|_| EngineError::User(format!("no column \"{n}\" to use as the key")))
        })
        .collect::<Result<Vec<_>>>()?;
    batch.project(&indices).map_err(EngineError::from)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{
        Decimal128Array, Float64Array, Int64Array, StringArray, TimestampNanosecondArray,
    };

    use super::*;

    #[test]
    fn types_rendered_faithfully() -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("price", DataType::Decimal128(10, 2), true),
            Field::new(
                "ts",
                DataType::Timestamp(
                    datafusion::arrow::datatypes::TimeUnit::Nanosecond,
                    Some("+00:00".into()),
                ),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a\"b", "c"])),
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(Float64Array::from(vec![1.5, 2.0])),
                Arc::new(
                    Decimal128Array::from(vec![Some(1234), None])
                        .with_precision_and_scale(10, 2)?,
                ),
                Arc::new(
                    TimestampNanosecondArray::from(vec![Some(1_704_164_645_500_000_000), None])
                        .with_timezone("+00:00"),
                ),
            ],
        )?;
        let rows: Vec<String> = json_rows(&batch)?
            .into_iter()
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .collect();
        assert_eq!(
            rows[0],
            r#"{"id":"a\"b","n":1,"x":1.5,"price":"12.34","ts":"2024-01-02T03:04:05.500Z"}"#
        );
        assert_eq!(
            rows[1],
            r#"{"id":"c","n":null,"x":2.0,"price":null,"ts":null}"#
        );
        Ok(())
    }
}
