//! JSON decoding straight to Arrow with arrow-json's tape decoder: whole runs of records become
//! record batches in the declared schema, with no per-row `serde_json::Value` trees. Numbers given
//! as strings are coerced by the decoder, timestamps (RFC 3339 strings or epoch numbers) by
//! [`super::time`]; missing fields become NULL; fields not declared are ignored. Columns declared
//! `JSON`/`JSONB` (marked with [`JSON_TYPE_KEY`]) keep each value's JSON text as written: those
//! records are also read as a map of raw values (no tree), which only such sources pay for.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::value::RawValue;
use weir_engine::source::JSON_TYPE_KEY;
use weir_engine::{EngineError, Result};

use super::time::TimestampColumns;
use super::{RecordDecoder, row_count_error};

/// Decodes JSON records (one value per record) into batches of one schema.
pub struct JsonDecoder {
    schema: SchemaRef,
    timestamps: TimestampColumns,
    max_records: usize,
    decoder: arrow_json::reader::Decoder,
    /// JSON-text columns: (position in `schema`, name, the values of the buffered records).
    raw: Vec<(usize, String, Vec<Option<String>>)>,
}

impl std::fmt::Debug for JsonDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonDecoder")
            .field("max_records", &self.max_records)
            .finish()
    }
}

fn build(schema: &SchemaRef, batch_size: usize) -> Result<arrow_json::reader::Decoder> {
    arrow_json::ReaderBuilder::new(SchemaRef::clone(schema))
        .with_batch_size(batch_size)
        .with_coerce_primitive(true)
        .build_decoder()
        .map_err(EngineError::Arrow)
}

impl JsonDecoder {
    /// A decoder for runs of at most `max_records` records of `schema`.
    pub fn try_new(schema: SchemaRef, max_records: usize) -> Result<Self> {
        let raw: Vec<(usize, String, Vec<Option<String>>)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.metadata().contains_key(JSON_TYPE_KEY))
            .map(|(i, f)| (i, f.name().clone(), Vec::new()))
            .collect();
        // arrow-json reads the other columns (and ignores the JSON-text ones).
        let typed = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(i, _)| !raw.iter().any(|r| r.0 == *i))
                .map(|(_, f)| Arc::clone(f))
                .collect::<Vec<_>>(),
        ));
        // One row of headroom so a record holding two values is seen as such, not cut off.
        let timestamps = TimestampColumns::new(&typed);
        let decoder = build(&timestamps.text_schema(), max_records + 1)?;
        Ok(Self {
            schema,
            timestamps,
            max_records,
            decoder,
            raw,
        })
    }

    /// Keeps the JSON text of the JSON-text columns of `record` (already decoded as one value).
    fn keep_raw(&mut self, record: &[u8]) -> std::result::Result<(), String> {
        let values: std::collections::HashMap<String, &RawValue> =
            serde_json::from_slice(record).map_err(|e| e.to_string())?;
        for (_, name, column) in &mut self.raw {
            column.push(values.get(name.as_str()).map(|v| v.get().to_string()));
        }
        Ok(())
    }

    /// `typed` (the columns arrow-json read) with the JSON-text columns put back in place.
    fn with_raw(&mut self, typed: RecordBatch) -> std::result::Result<RecordBatch, String> {
        if self.raw.is_empty() {
            return Ok(typed);
        }
        let mut typed_columns = typed.columns().iter();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for i in 0..self.schema.fields().len() {
            match self.raw.iter_mut().find(|r| r.0 == i) {
                Some((_, _, values)) => {
                    let text = StringArray::from(std::mem::take(values));
                    let target = self.schema.field(i).data_type();
                    columns.push(cast(&text, target).map_err(|e| e.to_string())?);
                }
                None => columns.push(Arc::clone(
                    typed_columns
                        .next()
                        .ok_or("a decoded batch lost a column")?,
                )),
            }
        }
        RecordBatch::try_new(SchemaRef::clone(&self.schema), columns).map_err(|e| e.to_string())
    }
}

impl RecordDecoder for JsonDecoder {
    fn feed(&mut self, record: &[u8]) -> std::result::Result<(), String> {
        // arrow-json counts a row from its first byte, so `len` includes a value left open.
        let before = self.decoder.len();
        let consumed = self.decoder.decode(record).map_err(|e| e.to_string())?;
        if consumed < record.len() {
            // The decoder filled up mid-record: the record holds more values than fit.
            return Err(row_count_error(self.decoder.len() - before + 1));
        }
        if self.decoder.has_partial_record() {
            // Left open, the value would swallow the next record: this record is the bad one.
            return Err("incomplete record: the JSON value is cut off".to_string());
        }
        match self.decoder.len() - before {
            1 if self.raw.is_empty() => Ok(()),
            1 => self.keep_raw(record),
            n => Err(row_count_error(n)),
        }
    }

    fn flush(&mut self) -> std::result::Result<RecordBatch, String> {
        match self.decoder.flush().map_err(|e| e.to_string())? {
            Some(batch) => {
                let typed = self.timestamps.convert(batch)?;
                self.with_raw(typed)
            }
            None => Ok(RecordBatch::new_empty(SchemaRef::clone(&self.schema))),
        }
    }

    fn reset(&mut self) -> Result<()> {
        self.decoder = build(&self.timestamps.text_schema(), self.max_records + 1)?;
        for (_, _, values) in &mut self.raw {
            values.clear();
        }
        Ok(())
    }

    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{
        DataType, Field, Float64Type, Schema, TimeUnit, TimestampNanosecondType,
    };
    use std::sync::Arc;

    #[test]
    fn coerces_strings_numbers_and_missing_fields() -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
                true,
            ),
        ]));
        let mut d = JsonDecoder::try_new(schema, 1024)?;
        let input = b"{\"id\":\"a\",\"v\":\"1.5\",\"ts\":\"2024-01-01T00:00:01Z\"}\n{\"id\":\"b\",\"ts\":1704067202000000000}\n";
        let mut buffer = super::super::RecordBuffer::default();
        for line in input.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            buffer.push(line);
        }
        let decoded = super::super::decode_records(&mut d, &buffer)?;
        assert!(decoded.bad.is_empty());
        let batch = decoded.batch;
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(1).as_primitive::<Float64Type>().value(0), 1.5);
        assert!(batch.column(1).is_null(1));
        let ts = batch.column(2).as_primitive::<TimestampNanosecondType>();
        assert_eq!(ts.value(0), 1_704_067_201_000_000_000);
        assert_eq!(ts.value(1), 1_704_067_202_000_000_000);
        Ok(())
    }

    #[test]
    fn json_text_columns_stay_with_their_rows_past_bad_records() -> Result<()> {
        use datafusion::arrow::array::Array;
        use std::collections::HashMap;
        let json_field = Field::new("meta", DataType::Utf8, true).with_metadata(HashMap::from([(
            JSON_TYPE_KEY.to_string(),
            "jsonb".to_string(),
        )]));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            json_field,
            Field::new("n", DataType::Int64, true),
        ]));
        let mut d = JsonDecoder::try_new(schema, 1024)?;
        let lines: [&[u8]; 5] = [
            br#"{"id": 1, "meta": {"a": [1, 2]}, "n": 1}"#,
            br#"{"id": 2, "meta": "text", "n": "not a number"}"#,
            br#"{"id": 3, "n": 3}"#,
            br#"{"id": 4, "meta": [true, null], "n": 4"#,
            br#"{"id": 5, "meta": null, "n": 5}"#,
        ];
        let mut buffer = super::super::RecordBuffer::default();
        for line in lines {
            buffer.push(line);
        }
        let decoded = super::super::decode_records(&mut d, &buffer)?;
        let bad: Vec<usize> = decoded.bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, vec![1, 3]);
        let batch = decoded.batch;
        let ids = batch
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let meta = batch.column(1).as_string::<i32>();
        let rows: Vec<(i64, Option<&str>)> = (0..batch.num_rows())
            .map(|i| (ids.value(i), meta.is_valid(i).then(|| meta.value(i))))
            .collect();
        assert_eq!(
            rows,
            vec![(1, Some(r#"{"a": [1, 2]}"#)), (3, None), (5, Some("null"))]
        );
        Ok(())
    }
}
