//! JSON decoding straight to Arrow with arrow-json's streaming decoder: whole buffers of
//! newline-delimited records become record batches in the declared schema, with no per-row
//! `serde_json::Value` trees. Numbers given as strings and timestamps as RFC 3339 strings or
//! epoch numbers are coerced by the decoder; missing fields become NULL.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use weir_engine::{EngineError, Result};

/// Decodes newline-delimited JSON into batches of one schema.
pub struct JsonDecoder {
    decoder: arrow_json::reader::Decoder,
}

impl std::fmt::Debug for JsonDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonDecoder").finish()
    }
}

impl JsonDecoder {
    /// A decoder producing batches of at most `batch_size` rows of `schema`.
    pub fn try_new(schema: SchemaRef, batch_size: usize) -> Result<Self> {
        let decoder = arrow_json::ReaderBuilder::new(schema)
            .with_batch_size(batch_size)
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(EngineError::Arrow)?;
        Ok(Self { decoder })
    }

    /// Feeds bytes; returns how many were consumed (the decoder stops when a batch is full).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize> {
        self.decoder.decode(bytes).map_err(|e| EngineError::User(format!("invalid JSON: {e}")))
    }

    /// Rows buffered and not yet flushed.
    pub fn buffered(&self) -> usize {
        self.decoder.len()
    }

    /// Flushes buffered rows into a batch.
    pub fn flush(&mut self) -> Result<Option<RecordBatch>> {
        self.decoder.flush().map_err(|e| EngineError::User(format!("invalid JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, TimeUnit, TimestampNanosecondType};
    use std::sync::Arc;

    #[test]
    fn coerces_strings_numbers_and_missing_fields() -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())), true),
        ]));
        let mut d = JsonDecoder::try_new(schema, 1024)?;
        let input = b"{\"id\":\"a\",\"v\":\"1.5\",\"ts\":\"2024-01-01T00:00:01Z\"}\n{\"id\":\"b\"}\n";
        assert_eq!(d.feed(input)?, input.len());
        let batch = d.flush()?.expect("rows");
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(1).as_primitive::<Float64Type>().value(0), 1.5);
        assert!(batch.column(1).is_null(1));
        assert_eq!(
            batch.column(2).as_primitive::<TimestampNanosecondType>().value(0),
            1_704_067_201_000_000_000
        );
        Ok(())
    }
}
