//! Formats, separate from transports: a [`RecordDecoder`] turns many records (Kafka messages,
//! lines of a file) into one Arrow batch of the declared columns in one vectorised call, and
//! [`decode_records`] isolates the records that do not decode, so one bad record costs a few
//! extra decoder calls instead of a batch.
//!
//! | `FORMAT … ENCODE …` | decoder |
//! |---|---|
//! | `PLAIN JSON` (the default) | [`json::JsonDecoder`], arrow-json's tape decoder |
//! | `PLAIN CSV` | [`csv::CsvDecoder`], arrow-csv's decoder (no header, `csv.delimiter`) |
//!
//! Sinks encode the other way: [`json_encode::json_rows`] turns a batch into one JSON document
//! per row.

pub mod csv;
pub mod json;
pub mod json_encode;
pub mod time;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::compute::{concat_batches, filter};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use weir_engine::options::Options;
use weir_engine::source::FormatSpec;
use weir_engine::source_errors::BadRecord;
use weir_engine::{EngineError, Result};

/// Decodes records into batches of a fixed schema. Records are fed one at a time (each is a
/// cheap call into the underlying streaming decoder) so that a record that is not exactly one
/// value is caught at its own boundary; conversion to Arrow happens once per batch at
/// [`RecordDecoder::flush`].
pub trait RecordDecoder: Send {
    /// Feeds one record followed by a newline. After an error the decoder must be
    /// [`RecordDecoder::reset`].
    fn feed(&mut self, record: &[u8]) -> std::result::Result<(), String>;

    /// Rows complete and buffered.
    fn buffered_rows(&self) -> usize;

    /// Converts the buffered rows to a batch (a value that does not fit its column fails here).
    /// After an error the decoder must be [`RecordDecoder::reset`].
    fn flush(&mut self) -> std::result::Result<RecordBatch, String>;

    /// Puts the decoder back in a clean, empty state.
    fn reset(&mut self) -> Result<()>;

    /// The schema of the batches.
    fn schema(&self) -> SchemaRef;
}

/// A source's `FORMAT … ENCODE …` with its options, validated once; every reader makes its own
/// decoder from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatConfig {
    /// `FORMAT PLAIN ENCODE JSON` (the default).
    Json,
    /// `FORMAT PLAIN ENCODE CSV` with its delimiter (`csv.delimiter`, default `,`).
    Csv {
        /// Field delimiter.
        delimiter: u8,
    },
}

impl FormatConfig {
    /// Validates `format` (JSON when none is given), taking its options.
    pub fn from_spec(format: Option<&FormatSpec>, options: &mut Options) -> Result<Self> {
        let (format, encode) = match format {
            Some(f) => (f.format.to_ascii_uppercase(), f.encode.to_ascii_uppercase()),
            None => ("PLAIN".to_string(), "JSON".to_string()),
        };
        if format != "PLAIN" {
            return Err(EngineError::User(format!(
                "FORMAT {format} is not supported for sources; use FORMAT PLAIN (ENCODE JSON or CSV)"
            )));
        }
        match encode.as_str() {
            "JSON" => Ok(Self::Json),
            "CSV" => {
                let delimiter = match options.take("csv.delimiter") {
                    None => b',',
                    Some(d) if d == "\\t" => b'\t',
                    Some(d) if d.len() == 1 => d.as_bytes()[0],
                    Some(d) => {
                        return Err(EngineError::User(format!(
                            "csv.delimiter must be one character, not '{d}'"
                        )));
                    }
                };
                Ok(Self::Csv { delimiter })
            }
            other => Err(EngineError::User(format!(
                "ENCODE {other} is not supported; sources read ENCODE JSON or ENCODE CSV"
            ))),
        }
    }

    /// A decoder for runs of at most `max_records` records of `schema`.
    pub fn decoder(&self, schema: SchemaRef, max_records: usize) -> Result<Box<dyn RecordDecoder>> {
        Ok(match self {
            Self::Json => Box::new(json::JsonDecoder::try_new(schema, max_records)?),
            Self::Csv { delimiter } => {
                Box::new(csv::CsvDecoder::try_new(schema, max_records, *delimiter)?)
            }
        })
    }
}

/// Records laid out back to back, each followed by a newline, so a run of them is one slice.
#[derive(Debug, Default, Clone)]
pub struct RecordBuffer {
    bytes: Vec<u8>,
    /// End (exclusive, after the newline) of each record.
    ends: Vec<usize>,
}

impl RecordBuffer {
    /// Appends one record.
    pub fn push(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        self.bytes.push(b'\n');
        self.ends.push(self.bytes.len());
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes held.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Removes every record, keeping the allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] }
    }

    /// Record `i` with its newline.
    fn record_with_newline(&self, i: usize) -> &[u8] {
        &self.bytes[self.start(i)..self.ends[i]]
    }

    /// Record `i` without its newline.
    pub fn record(&self, i: usize) -> &[u8] {
        &self.bytes[self.start(i)..self.ends[i] - 1]
    }
}

/// What [`decode_records`] made of a buffer.
#[derive(Debug)]
pub struct Decoded {
    /// One row per good record, in order.
    pub batch: RecordBatch,
    /// Which records are good; None when all are.
    pub good: Option<BooleanArray>,
    /// Index and error of each bad record.
    pub bad: Vec<(usize, String)>,
}

impl Decoded {
    /// Keeps the entries of a per-record array (offsets, metadata) that belong to good records.
    pub fn keep_good(&self, array: ArrayRef) -> Result<ArrayRef> {
        Ok(match &self.good {
            Some(good) => filter(&array, good)?,
            None => array,
        })
    }

    /// The bad records as log entries; `place` gives a record's partition, offset and
    /// timestamp by its index in `buffer`.
    pub fn bad_records(
        &self,
        buffer: &RecordBuffer,
        place: impl Fn(usize) -> (Option<i32>, Option<i64>, Option<i64>),
    ) -> Vec<BadRecord> {
        self.bad
            .iter()
            .map(|(i, error)| {
                let (partition, offset, timestamp) = place(*i);
                BadRecord::new(buffer.record(*i), error.clone()).at(partition, offset, timestamp)
            })
            .collect()
    }
}

/// Decodes every record of `buffer` into one batch, setting bad records aside.
///
/// Records are fed one by one; one that fails to parse or is not exactly one value is bad, and
/// the good records before it are decoded as their own segment (each good record is fed at most
/// twice). A segment whose conversion fails (a value that does not fit its column) is split in
/// halves, recursively, so k such records among n cost O(k log n) extra conversions.
pub fn decode_records(decoder: &mut dyn RecordDecoder, buffer: &RecordBuffer) -> Result<Decoded> {
    let mut batches = Vec::new();
    let mut bad: Vec<(usize, String)> = Vec::new();
    let mut segment: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < buffer.len() {
        let record = buffer.record_with_newline(i);
        let before = decoder.buffered_rows();
        let fed = decoder.feed(record);
        // Decoders count a row when it starts, so a record that starts no row is either blank or
        // the continuation of an incomplete record before it.
        let started = decoder.buffered_rows().saturating_sub(before);
        let problem = match fed {
            Ok(()) if started == 1 => {
                segment.push(i);
                i += 1;
                continue;
            }
            Ok(())
                if started == 0
                    && i > 0
                    && segment.last() == Some(&(i - 1))
                    && !is_blank(record) =>
            {
                // Record i-1 was incomplete and swallowed this one: reject it, decode the good
                // records before it, and read this record again on a clean decoder.
                segment.pop();
                bad.push((i - 1, "incomplete record".to_string()));
                decoder.reset()?;
                let good = std::mem::take(&mut segment);
                convert(decoder, buffer, &good, false, &mut batches, &mut bad)?;
                continue;
            }
            Ok(()) => row_count_error(started),
            Err(e) => e,
        };
        bad.push((i, problem));
        i += 1;
        decoder.reset()?;
        let good = std::mem::take(&mut segment);
        convert(decoder, buffer, &good, false, &mut batches, &mut bad)?;
    }
    convert(decoder, buffer, &segment, true, &mut batches, &mut bad)?;
    bad.sort_by_key(|(i, _)| *i);
    let schema = decoder.schema();
    let batch = match batches.len() {
        0 => RecordBatch::new_empty(schema),
        1 => batches.swap_remove(0),
        _ => concat_batches(&schema, &batches)?,
    };
    let good = if bad.is_empty() {
        None
    } else {
        let mut mask = vec![true; buffer.len()];
        for (i, _) in &bad {
            mask[*i] = false;
        }
        Some(BooleanArray::from(mask))
    };
    Ok(Decoded { batch, good, bad })
}

/// Converts the records `indices` (each known to be exactly one value) to a batch; `fed` says
/// whether they are already in the decoder.
fn convert(
    decoder: &mut dyn RecordDecoder,
    buffer: &RecordBuffer,
    indices: &[usize],
    fed: bool,
    batches: &mut Vec<RecordBatch>,
    bad: &mut Vec<(usize, String)>,
) -> Result<()> {
    if indices.is_empty() {
        return Ok(());
    }
    if !fed {
        for (n, &i) in indices.iter().enumerate() {
            if let Err(e) = decoder.feed(buffer.record_with_newline(i)) {
                // Only reachable when an incomplete record went unnoticed before this one.
                bad.push((i, e));
                decoder.reset()?;
                convert(decoder, buffer, &indices[..n], false, batches, bad)?;
                return convert(decoder, buffer, &indices[n + 1..], false, batches, bad);
            }
        }
    }
    match decoder.flush() {
        Ok(batch) => {
            batches.push(batch);
            Ok(())
        }
        Err(message) => {
            decoder.reset()?;
            if let [only] = indices {
                bad.push((*only, message));
                return Ok(());
            }
            let (left, right) = indices.split_at(indices.len() / 2);
            convert(decoder, buffer, left, false, batches, bad)?;
            convert(decoder, buffer, right, false, batches, bad)
        }
    }
}

fn is_blank(record: &[u8]) -> bool {
    record.iter().all(u8::is_ascii_whitespace)
}

/// The error for a record that did not decode to exactly one row.
pub(crate) fn row_count_error(rows: usize) -> String {
    match rows {
        0 => "empty or incomplete record".to_string(),
        n => format!("the record holds {n} values, expected one"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn isolates_bad_json_records() -> Result<()> {
        let mut d = json::JsonDecoder::try_new(schema(), 64)?;
        let mut buf = RecordBuffer::default();
        let records: [&[u8]; 8] = [
            b"{\"id\": 1}",
            b"{\"id\": \"x\"}", // does not fit BIGINT
            b"{\"id\": 3, \"name\": \"c\"}",
            b"{\"id\": 4",             // truncated
            b"",                       // empty
            b"{\"id\": 6}{\"id\": 7}", // two values in one record
            b"{\"name\": \"no id\"}",  // NULL in a NOT NULL column
            b"{\"id\": \"8\"}",        // number as a string: coerced
        ];
        for r in records {
            buf.push(r);
        }
        let out = decode_records(&mut d, &buf)?;
        let ids: Vec<i64> = out
            .batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(ids, vec![1, 3, 8]);
        let bad: Vec<usize> = out.bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, vec![1, 3, 4, 5, 6]);
        assert_eq!(out.good.map(|g| g.true_count()), Some(3));
        Ok(())
    }

    #[test]
    fn all_good_is_one_call() -> Result<()> {
        let mut d = json::JsonDecoder::try_new(schema(), 4)?;
        let mut buf = RecordBuffer::default();
        for i in 0..4 {
            buf.push(format!("{{\"id\": {i}}}").as_bytes());
        }
        let out = decode_records(&mut d, &buf)?;
        assert!(out.bad.is_empty() && out.good.is_none());
        assert_eq!(
            out.batch.column(0).as_ref(),
            &Int64Array::from(vec![0, 1, 2, 3]) as &dyn datafusion::arrow::array::Array
        );
        Ok(())
    }

    #[test]
    fn csv_records() -> Result<()> {
        let mut d = csv::CsvDecoder::try_new(schema(), 16, b',')?;
        let mut buf = RecordBuffer::default();
        for r in [&b"1,a"[..], b"oops,b", b"3,\"c, quoted\"", b"4,d,extra"] {
            buf.push(r);
        }
        let out = decode_records(&mut d, &buf)?;
        let ids: Vec<i64> = out
            .batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(out.batch.column(1).as_string::<i32>().value(1), "c, quoted");
        assert_eq!(out.bad.len(), 2);
        Ok(())
    }
}
#[cfg(test)]
mod incomplete_records {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    #[test]
    fn an_incomplete_record_is_blamed_not_its_successor() -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("v", DataType::Float64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
                true,
            ),
        ]));
        let mut d = json::JsonDecoder::try_new(schema, 64)?;
        let mut buf = RecordBuffer::default();
        for r in [
            &b"{\"id\": 1, \"v\": 1.0, \"ts\": 1704067200000}"[..],
            b"{\"id\": 2, \"v\": 2.0, \"ts\": ",
            b"{\"id\": 3, \"v\": 3.0, \"ts\": 1704067200000}",
            b"{\"id\": \"three\", \"v\": 1, \"ts\": 0}",
            b"not json at all",
        ] {
            buf.push(r);
        }
        let out = decode_records(&mut d, &buf)?;
        let ids = out
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .map(|a| a.values().to_vec());
        assert_eq!(ids, Some(vec![1, 3]));
        let bad: Vec<usize> = out.bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, vec![1, 3, 4], "{:?}", out.bad);
        Ok(())
    }
}
