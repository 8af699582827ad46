//! CSV decoding straight to Arrow with arrow-csv's decoder: one record per CSV line, columns by
//! position in declaration order, no header. Values are parsed into the declared types
//! (timestamps as RFC 3339 text or epoch numbers, see [`super::time`]); empty fields are NULL.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use weir_engine::Result;

use super::time::TimestampColumns;
use super::{RecordDecoder, is_blank, row_count_error};

/// Decodes CSV records into batches of one schema.
pub struct CsvDecoder {
    schema: SchemaRef,
    timestamps: TimestampColumns,
    max_records: usize,
    delimiter: u8,
    decoder: arrow_csv::reader::Decoder,
}

impl std::fmt::Debug for CsvDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvDecoder")
            .field("delimiter", &(self.delimiter as char))
            .finish()
    }
}

fn build(schema: &SchemaRef, batch_size: usize, delimiter: u8) -> arrow_csv::reader::Decoder {
    arrow_csv::ReaderBuilder::new(SchemaRef::clone(schema))
        .with_header(false)
        .with_delimiter(delimiter)
        .with_batch_size(batch_size)
        .build_decoder()
}

impl CsvDecoder {
    /// A decoder for runs of at most `max_records` records of `schema`.
    pub fn try_new(schema: SchemaRef, max_records: usize, delimiter: u8) -> Result<Self> {
        let timestamps = TimestampColumns::new(&schema);
        let decoder = build(&timestamps.text_schema(), max_records + 1, delimiter);
        Ok(Self {
            schema,
            timestamps,
            max_records,
            delimiter,
            decoder,
        })
    }
}

impl CsvDecoder {
    /// Rows complete and buffered: arrow-csv reports the room left in its batch, which holds
    /// `max_records + 1` rows.
    fn complete_rows(&self) -> usize {
        (self.max_records + 1).saturating_sub(self.decoder.capacity())
    }
}

impl RecordDecoder for CsvDecoder {
    fn feed(&mut self, record: &[u8]) -> std::result::Result<(), String> {
        // arrow-csv counts a row once its line ends, so a record that completes no row is blank
        // or stops inside a quoted field (which would run on into the next record).
        let before = self.complete_rows();
        let consumed = self.decoder.decode(record).map_err(|e| e.to_string())?;
        let rows = self.complete_rows() - before;
        if consumed < record.len() {
            return Err(row_count_error(rows + 1));
        }
        match rows {
            1 => Ok(()),
            0 if is_blank(record) => Err(row_count_error(0)),
            0 => Err("incomplete record: a quoted field is not closed".to_string()),
            n => Err(row_count_error(n)),
        }
    }

    fn flush(&mut self) -> std::result::Result<RecordBatch, String> {
        match self.decoder.flush().map_err(|e| e.to_string())? {
            Some(batch) => self.timestamps.convert(batch),
            None => Ok(RecordBatch::new_empty(SchemaRef::clone(&self.schema))),
        }
    }

    fn reset(&mut self) -> Result<()> {
        self.decoder = build(
            &self.timestamps.text_schema(),
            self.max_records + 1,
            self.delimiter,
        );
        Ok(())
    }

    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }
}
