//! Formats, separate from transports: a [`RecordDecoder`] turns many records (Kafka messages,
//! lines of a file) into one Arrow batch of the declared columns in one vectorised call, and
//! [`decode_records`] isolates the records that do not decode, so one bad record costs a few
//! extra decoder calls instead of a batch.
//!
//! | `FORMAT … ENCODE …` | decoder |
//! |---|---|
//! | `PLAIN JSON` (the default) | [`json::JsonDecoder`], arrow-json's tape decoder |
//! | `PLAIN CSV` | [`csv::CsvDecoder`], arrow-csv's decoder (no header, `csv.delimiter`) |
//! | `PLAIN AVRO (schema = … \| schema.registry = …)` | [`avro::AvroDecoder`], arrow-avro's decoder; Confluent framing with a [`registry`] |
//! | `PLAIN PROTOBUF (message = …, schema = … \| schema.registry = …)` | [`protobuf::ProtobufDecoder`], the wire format read into Arrow buffers ([`protobuf_wire`]) |
//!
//! Sinks encode the other way: [`json_encode::json_rows`] turns a batch into one JSON document
//! per row.

pub mod avro;
pub mod csv;
pub mod json;
pub mod json_encode;
pub mod protobuf;
pub mod protobuf_wire;
pub mod registry;
pub mod time;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::compute::{concat_batches, filter};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use weir_engine::options::Options;
use weir_engine::source::FormatSpec;
use weir_engine::source_errors::{BadRecord, Check, CheckedSpan};
use weir_engine::{EngineError, Result};

/// Decodes records into batches of a fixed schema. Records are fed one at a time (each is a
/// cheap call into the underlying streaming decoder) so that a record that is not exactly one
/// value is caught at its own boundary; conversion to Arrow happens once per batch at
/// [`RecordDecoder::flush`].
pub trait RecordDecoder: Send {
    /// Called with each run of records before they are fed: a decoder that learns schemas as
    /// it goes (a schema registry) fetches the ones the run needs. An error stops the reader.
    fn prepare(&mut self, _records: &RecordBuffer) -> Result<()> {
        Ok(())
    }

    /// Feeds one record followed by a newline. Succeeds only when the record was exactly one
    /// complete value and the decoder is back at a record boundary; anything else (a parse
    /// error, no value, several values, a value cut off) is an error naming the problem. After
    /// an error the decoder must be [`RecordDecoder::reset`].
    fn feed(&mut self, record: &[u8]) -> std::result::Result<(), String>;

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
#[derive(Debug, Clone)]
pub enum FormatConfig {
    /// `FORMAT PLAIN ENCODE JSON` (the default).
    Json,
    /// `FORMAT PLAIN ENCODE CSV` with its delimiter (`csv.delimiter`, default `,`).
    Csv {
        /// Field delimiter.
        delimiter: u8,
    },
    /// `FORMAT PLAIN ENCODE AVRO (schema = '…' | schema.registry = '…')`; its schema is settled
    /// by [`FormatConfig::resolve`].
    Avro(std::sync::Arc<avro::AvroFormat>),
    /// `FORMAT PLAIN ENCODE PROTOBUF (message = '…', schema = '…' | schema.registry = '…')`;
    /// settled by [`FormatConfig::resolve`].
    Protobuf(std::sync::Arc<protobuf::ProtobufFormat>),
}

impl FormatConfig {
    /// Validates `format` (JSON when none is given), taking its options.
    pub fn from_spec(format: Option<&FormatSpec>, options: &mut Options) -> Result<Self> {
        let (format, encode) = match format {
            Some(f) => (f.format.to_ascii_uppercase(), f.encode.to_ascii_uppercase()),
            None => ("PLAIN".to_string(), "JSON".to_string()),
        };
        if format == "UPSERT" || format == "DEBEZIUM" {
            // One reader per view would copy the key → row state: a changelog is a table.
            return Err(EngineError::User(format!(
                "FORMAT {format} describes a changelog, which is a table: CREATE TABLE name (…, \
                 PRIMARY KEY (…)) WITH (connector = …) FORMAT {format} ENCODE JSON"
            )));
        }
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
            "AVRO" => Ok(Self::Avro(std::sync::Arc::new(
                avro::AvroFormat::from_options(options)?,
            ))),
            "PROTOBUF" => Ok(Self::Protobuf(std::sync::Arc::new(
                protobuf::ProtobufFormat::from_options(options)?,
            ))),
            other => Err(EngineError::User(format!(
                "ENCODE {other} is not supported; sources read ENCODE JSON, CSV, AVRO or PROTOBUF"
            ))),
        }
    }

    /// Options the catalog keeps so the source comes back the same (the registry schema id).
    pub fn pinned_options(&self) -> Vec<(String, String)> {
        match self {
            Self::Avro(avro) => avro.pinned_options(),
            Self::Protobuf(protobuf) => protobuf.pinned_options(),
            Self::Json | Self::Csv { .. } => Vec::new(),
        }
    }

    /// True for binary formats, whose records need a transport that frames them (Kafka), not
    /// lines of a file.
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Avro(_) | Self::Protobuf(_))
    }

    /// Settles what the format learns at creation (a registry's schema) and returns the
    /// payload's columns: `declared`, or those the format's schema gives when none were
    /// declared. `topic` names the registry subject by default.
    pub async fn resolve(
        &self,
        declared: Option<SchemaRef>,
        topic: &str,
    ) -> Result<Option<SchemaRef>> {
        match self {
            Self::Avro(avro) => Ok(Some(avro.resolve(declared, topic).await?)),
            Self::Protobuf(protobuf) => Ok(Some(protobuf.resolve(declared, topic).await?)),
            Self::Json | Self::Csv { .. } => Ok(declared),
        }
    }

    /// A decoder for runs of at most `max_records` records of `schema`.
    pub fn decoder(&self, schema: SchemaRef, max_records: usize) -> Result<Box<dyn RecordDecoder>> {
        Ok(match self {
            Self::Json => Box::new(json::JsonDecoder::try_new(schema, max_records)?),
            Self::Csv { delimiter } => {
                Box::new(csv::CsvDecoder::try_new(schema, max_records, *delimiter)?)
            }
            Self::Avro(format) => Box::new(avro::AvroDecoder::try_new(
                std::sync::Arc::clone(format),
                schema,
                max_records,
            )?),
            Self::Protobuf(format) => Box::new(protobuf::ProtobufDecoder::try_new(format, schema)?),
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

/// The span a reader decoded: the first and last offset of the records of one partition it fed
/// to [`decode_records`] (offsets in reading order), so the bad records found there are logged
/// once per source however many views read them.
pub fn decoded_span(partition: i32, offsets: &[i64]) -> Option<CheckedSpan> {
    Some(CheckedSpan {
        check: Check::Decode,
        partition,
        first: *offsets.first()?,
        last: *offsets.last()?,
    })
}

/// Decodes every record of `buffer` into one batch, setting bad records aside.
///
/// Records are fed one by one and each must be exactly one complete value on its own: a record
/// that fails to parse, holds no value, more than one, or stops mid-value (truncated JSON, an
/// unterminated CSV quote) is bad by itself, and the decoder is reset before the next record, so
/// no record's leftovers reach its successor. The good records before a bad one are decoded as
/// their own segment (each good record is fed at most twice). A segment whose conversion fails
/// (a value that does not fit its column) is split in halves, recursively, so k such records
/// among n cost O(k log n) extra conversions.
pub fn decode_records(decoder: &mut dyn RecordDecoder, buffer: &RecordBuffer) -> Result<Decoded> {
    decoder.prepare(buffer)?;
    let mut batches = Vec::new();
    let mut bad: Vec<(usize, String)> = Vec::new();
    let mut segment: Vec<usize> = Vec::new();
    for i in 0..buffer.len() {
        match decoder.feed(buffer.record_with_newline(i)) {
            Ok(()) => segment.push(i),
            Err(problem) => {
                bad.push((i, problem));
                decoder.reset()?;
                let good = std::mem::take(&mut segment);
                convert(decoder, buffer, &good, false, &mut batches, &mut bad)?;
            }
        }
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
                // Each of these was fed alone before and succeeded; a decoder that now refuses
                // one still gets it judged on its own.
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

/// True for a record of nothing but whitespace.
pub(crate) fn is_blank(record: &[u8]) -> bool {
    record.iter().all(u8::is_ascii_whitespace)
}

/// The error for a complete record that did not decode to exactly one row.
pub(crate) fn row_count_error(rows: usize) -> String {
    match rows {
        0 => "empty record".to_string(),
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
mod isolation_tests {
    //! A bad record costs itself and nothing else, wherever batch boundaries fall.
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("v", DataType::Float64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
                true,
            ),
        ]))
    }

    fn ids(out: &Decoded) -> Vec<i64> {
        out.batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    fn bad(out: &Decoded) -> Vec<usize> {
        out.bad.iter().map(|(i, _)| *i).collect()
    }

    fn decode(d: &mut dyn RecordDecoder, records: &[Vec<u8>]) -> Result<Decoded> {
        let mut buf = RecordBuffer::default();
        for r in records {
            buf.push(r);
        }
        decode_records(d, &buf)
    }

    fn valid(id: i64) -> Vec<u8> {
        format!("{{\"id\": {id}, \"v\": 1.5, \"ts\": 1704067200000}}").into_bytes()
    }

    #[test]
    fn a_truncated_record_does_not_take_its_successor() -> Result<()> {
        let mut d = json::JsonDecoder::try_new(schema(), 64)?;
        // Every way of cutting a record short, each followed by a valid record.
        let truncated: [&[u8]; 8] = [
            b"{\"id\": 2",
            b"{\"id\": 2,",
            b"{\"id\": 2, \"v\":",
            b"{\"id\": 2, \"ts\": \"2024-01",
            b"{",
            b"[1, 2",
            b"{\"id\": 2, \"v\": {\"nested\": ",
            b"\"an open string",
        ];
        for cut in truncated {
            let records = vec![valid(1), cut.to_vec(), valid(3), valid(4)];
            let out = decode(&mut d, &records)?;
            assert_eq!(
                ids(&out),
                vec![1, 3, 4],
                "after {:?}",
                String::from_utf8_lossy(cut)
            );
            assert_eq!(bad(&out), vec![1], "{:?}", out.bad);
            assert!(
                out.bad[0].1.contains("incomplete") || out.bad[0].1.contains("rror"),
                "{:?}",
                out.bad
            );
        }
        Ok(())
    }

    #[test]
    fn mixed_garbage_gives_the_same_rows_whatever_the_batch_boundaries() -> Result<()> {
        let garbage: [&[u8]; 11] = [
            b"{\"id\": 9",
            b"{\"id\": 9, \"v\": 2.5",
            b"{\"id\": 9, \"v\": ",
            b"{\"id\": \"not a number\", \"v\": 1, \"ts\": 0}",
            b"\xff\xfe{\"id\": 1}",
            b"{\"id\": 99999999999999999999999999, \"ts\": 0}",
            b"not json",
            b"}",
            b"",
            b"{\"id\": 1}{\"id\": 2}",
            b"{\"id\": \"\xc3\x28\", \"ts\": 0}",
        ];
        let mut records = Vec::new();
        let mut expected = Vec::new();
        for i in 0..200i64 {
            if i % 3 == 0 {
                records.push(garbage[(i as usize / 3) % garbage.len()].to_vec());
            } else {
                records.push(valid(i));
                expected.push(i);
            }
        }
        for chunk in [1, 2, 7, 64, 200] {
            let mut d = json::JsonDecoder::try_new(schema(), chunk)?;
            let mut got = Vec::new();
            let mut bad_count = 0;
            for part in records.chunks(chunk) {
                let out = decode(&mut d, part)?;
                got.extend(ids(&out));
                bad_count += out.bad.len();
            }
            assert_eq!(got, expected, "chunks of {chunk}");
            assert_eq!(
                bad_count,
                records.len() - expected.len(),
                "chunks of {chunk}"
            );
        }
        Ok(())
    }

    #[test]
    fn an_unterminated_csv_quote_does_not_take_its_neighbours() -> Result<()> {
        let mut d = csv::CsvDecoder::try_new(schema(), 64, b',')?;
        let records: Vec<Vec<u8>> = [
            &b"1,1.5,2024-01-01T00:00:00Z"[..],
            b"2,\"2.5,2024-01-01T00:00:01Z",
            b"3,3.5,2024-01-01T00:00:02Z",
            b"",
            b"4,4.5,2024-01-01T00:00:03Z",
        ]
        .iter()
        .map(|r| r.to_vec())
        .collect();
        let out = decode(&mut d, &records)?;
        assert_eq!(ids(&out), vec![1, 3, 4]);
        assert_eq!(bad(&out), vec![1, 3], "{:?}", out.bad);
        assert!(out.bad[0].1.contains("quoted field"), "{:?}", out.bad);
        Ok(())
    }
}
