//! `ENCODE AVRO`: Avro records decoded straight to Arrow with arrow-avro's streaming decoder
//! (rows go into Arrow builders; no per-row value tree).
//!
//! Two ways to know the schema:
//!
//! - `schema = '{"type": "record", …}'`: every record is one bare Avro datum of that schema;
//! - `schema.registry = 'http://…'` (with `schema.registry.subject`, default `<topic>-value`):
//!   records are in the Confluent wire format (magic byte, schema id, datum). The subject's
//!   newest schema at `CREATE SOURCE` is the *reader* schema: it gives the columns, and a record
//!   written with another version (an id not seen yet is fetched from the registry) is resolved
//!   against it by Avro's rules (fields matched by name, defaults for missing ones), so the
//!   batches keep one schema while producers evolve theirs.
//!
//! Without declared columns the source gets the reader schema's fields (timestamps as
//! nanoseconds, enums as text). Declared columns pick fields by name (the decoder skips the
//! others) and each is cast to its declared type.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::{can_cast_types, cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use weir_engine::options::Options;
use weir_engine::{EngineError, Result};

use super::RecordDecoder;
use super::registry::{LookupError, SchemaOrigin, confluent_frame};

/// The schema id bare datums are decoded under (an inline schema has no registry id).
const INLINE_ID: u32 = 0;
/// The frame header fed before each bare datum, naming [`INLINE_ID`].
const INLINE_FRAME: [u8; 5] = [0, 0, 0, 0, 0];

/// The reader schema and columns, settled at `CREATE SOURCE`.
#[derive(Debug, Clone)]
struct Resolved {
    /// The reader schema's JSON.
    reader: String,
    /// Its registry id (or [`INLINE_ID`]).
    reader_id: u32,
    /// Top-level fields decoded, in column order.
    projection: Vec<usize>,
}

/// A source's `ENCODE AVRO (…)`, shared by its readers.
#[derive(Debug)]
pub struct AvroFormat {
    origin: SchemaOrigin,
    resolved: OnceLock<Resolved>,
}

impl AvroFormat {
    /// Takes `schema`, or `schema.registry` and its options, from `options`.
    pub fn from_options(options: &mut Options) -> Result<Self> {
        Ok(Self {
            origin: SchemaOrigin::from_options(
                options,
                "AVRO",
                "schema = '{\"type\": \"record\", …}'",
            )?,
            resolved: OnceLock::new(),
        })
    }

    /// The registry schema id the source was created with, for the catalog to keep.
    pub fn pinned_options(&self) -> Vec<(String, String)> {
        self.origin.pinned_options()
    }

    /// Settles the reader schema (asking the registry for `topic`'s subject when there is one)
    /// and the columns: `declared`, each matched to a field by name, or all the schema's fields.
    pub async fn resolve(&self, declared: Option<SchemaRef>, topic: &str) -> Result<SchemaRef> {
        let (reader, id) = self.origin.schema_text(topic, "AVRO").await?;
        let reader_id = id.unwrap_or(INLINE_ID);
        let full = arrow_fields(&reader)?;
        let (projection, columns) = match declared {
            Some(declared) => {
                let mut projection = Vec::with_capacity(declared.fields().len());
                for field in declared.fields() {
                    let index = find_field(&full, field.name())?;
                    let avro_type = full.field(index).data_type();
                    if !can_cast_types(avro_type, field.data_type()) {
                        return Err(EngineError::User(format!(
                            "column \"{}\": the Avro field is {avro_type}, which cannot be read as {}",
                            field.name(),
                            field.data_type()
                        )));
                    }
                    projection.push(index);
                }
                (projection, declared)
            }
            None => {
                let fields: Vec<Field> = full
                    .fields()
                    .iter()
                    .map(|f| {
                        f.as_ref()
                            .clone()
                            .with_data_type(column_type(f.data_type()))
                    })
                    .collect();
                (
                    (0..full.fields().len()).collect(),
                    Arc::new(Schema::new(fields)),
                )
            }
        };
        let _ = self.resolved.set(Resolved {
            reader,
            reader_id,
            projection,
        });
        Ok(columns)
    }

    fn resolved(&self) -> Result<&Resolved> {
        self.resolved.get().ok_or_else(|| {
            EngineError::Internal("an Avro source's schema was used before it was resolved".into())
        })
    }
}

/// The Arrow fields arrow-avro gives a record schema.
fn arrow_fields(schema_json: &str) -> Result<SchemaRef> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store
        .set(
            Fingerprint::Id(INLINE_ID),
            AvroSchema::new(schema_json.to_string()),
        )
        .map_err(|e| EngineError::User(format!("Avro schema: {e}")))?;
    let decoder = ReaderBuilder::new()
        .with_writer_schema_store(store)
        .with_active_fingerprint(Fingerprint::Id(INLINE_ID))
        .build_decoder()
        .map_err(|e| EngineError::User(format!("Avro schema: {e}")))?;
    Ok(decoder.schema())
}

/// The index of the field named `name`: an exact match, else the one matching without case.
fn find_field(schema: &Schema, name: &str) -> Result<usize> {
    if let Ok(i) = schema.index_of(name) {
        return Ok(i);
    }
    let matches: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name().eq_ignore_ascii_case(name))
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [i] => Ok(*i),
        _ => Err(EngineError::User(format!(
            "column \"{name}\" is not a field of the Avro schema (fields: {})",
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The column type Weir gives an Avro field's Arrow type when columns are not declared.
fn column_type(avro: &DataType) -> DataType {
    match avro {
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Nanosecond, tz.clone()),
        DataType::Dictionary(_, value) => column_type(value),
        other => other.clone(),
    }
}

/// Decodes Avro records of one source into batches of its columns.
pub struct AvroDecoder {
    format: Arc<AvroFormat>,
    schema: SchemaRef,
    max_records: usize,
    decoder: Decoder,
    /// Writer schemas the decoder knows, by id.
    writers: BTreeMap<u32, String>,
    /// Ids the registry does not have, with its answer: their records are bad.
    missing: BTreeMap<u32, String>,
    /// Rows flushed early because the writer schema changed within a run.
    done: Vec<RecordBatch>,
    /// Rows in the decoder (fed and not flushed).
    rows: usize,
}

impl std::fmt::Debug for AvroDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroDecoder")
            .field("writers", &self.writers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AvroDecoder {
    /// A decoder for runs of at most `max_records` records, giving batches of `schema`.
    pub fn try_new(format: Arc<AvroFormat>, schema: SchemaRef, max_records: usize) -> Result<Self> {
        let resolved = format.resolved()?.clone();
        let writers = BTreeMap::from([(resolved.reader_id, resolved.reader.clone())]);
        let decoder = build(&resolved, &writers, max_records)?;
        Ok(Self {
            format,
            schema,
            max_records,
            decoder,
            writers,
            missing: BTreeMap::new(),
            done: Vec::new(),
            rows: 0,
        })
    }

    fn inline(&self) -> bool {
        self.format.origin.registry().is_none()
    }

    /// Casts a decoded batch to the source's columns.
    fn to_columns(&self, batch: &RecordBatch) -> std::result::Result<RecordBatch, String> {
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(Arc::clone(column))
                } else {
                    cast(column, field.data_type()).map_err(|e| format!("{}: {e}", field.name()))
                }
            })
            .collect::<std::result::Result<_, _>>()?;
        RecordBatch::try_new(Arc::clone(&self.schema), columns).map_err(|e| e.to_string())
    }
}

fn build(resolved: &Resolved, writers: &BTreeMap<u32, String>, max: usize) -> Result<Decoder> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    for (id, text) in writers {
        store
            .set(Fingerprint::Id(*id), AvroSchema::new(text.clone()))
            .map_err(|e| EngineError::User(format!("Avro schema {id}: {e}")))?;
    }
    ReaderBuilder::new()
        // One row of headroom, as for JSON: the decoder never stops short of a record.
        .with_batch_size(max + 1)
        .with_reader_schema(AvroSchema::new(resolved.reader.clone()))
        .with_projection(resolved.projection.clone())
        .with_writer_schema_store(store)
        .with_active_fingerprint(Fingerprint::Id(resolved.reader_id))
        .build_decoder()
        .map_err(|e| EngineError::User(format!("Avro schema: {e}")))
}

impl RecordDecoder for AvroDecoder {
    fn prepare(&mut self, records: &super::RecordBuffer) -> Result<()> {
        let Some(registry) = self.format.origin.registry() else {
            return Ok(());
        };
        let new: BTreeSet<u32> = (0..records.len())
            .filter_map(|i| confluent_frame(records.record(i)).ok().map(|(id, _)| id))
            .filter(|id| !self.writers.contains_key(id) && !self.missing.contains_key(id))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        for id in new {
            match registry.by_id_blocking(id) {
                Ok(schema) if schema.schema_type == "AVRO" => {
                    self.writers.insert(id, schema.schema);
                }
                Ok(schema) => {
                    self.missing.insert(
                        id,
                        format!(
                            "schema id {id} is a {} schema, not Avro",
                            schema.schema_type
                        ),
                    );
                }
                Err(LookupError::NotFound(message)) => {
                    self.missing.insert(id, message);
                }
                Err(LookupError::Unavailable(message)) => {
                    return Err(EngineError::External(message));
                }
            }
        }
        self.reset()
    }

    fn feed(&mut self, record: &[u8]) -> std::result::Result<(), String> {
        // Records come with a newline after them (see `RecordBuffer`); Avro is binary.
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        let body_start = if self.inline() {
            let consumed = self
                .decoder
                .decode(&INLINE_FRAME)
                .map_err(|e| e.to_string())?;
            if consumed != INLINE_FRAME.len() {
                return Err("the Avro decoder did not take a record's start".into());
            }
            0
        } else {
            let (id, _) = confluent_frame(record)?;
            if let Some(message) = self.missing.get(&id) {
                return Err(message.clone());
            }
            if !self.writers.contains_key(&id) {
                return Err(format!("schema id {id} is not known to this reader"));
            }
            let consumed = self
                .decoder
                .decode(&record[..5])
                .map_err(|e| e.to_string())?;
            if consumed != 5 {
                return Err("the Avro decoder did not take the record's frame".into());
            }
            if self.decoder.batch_is_full() && self.rows > 0 {
                // Another writer schema than the rows before: those are flushed first.
                if let Some(batch) = self.decoder.flush().map_err(|e| e.to_string())? {
                    self.done.push(batch);
                }
                self.rows = 0;
            }
            5
        };
        let body = &record[body_start..];
        let before = self.decoder.capacity();
        let consumed = self.decoder.decode(body).map_err(|e| e.to_string())?;
        let decoded = before - self.decoder.capacity();
        if decoded != 1 || consumed != body.len() {
            return Err(if decoded == 0 {
                format!(
                    "truncated Avro record: {} bytes do not hold a whole record",
                    body.len()
                )
            } else {
                format!(
                    "Avro record followed by {} more bytes",
                    body.len() - consumed.min(body.len())
                )
            });
        }
        self.rows += 1;
        Ok(())
    }

    fn flush(&mut self) -> std::result::Result<RecordBatch, String> {
        let mut batches = std::mem::take(&mut self.done);
        if let Some(batch) = self.decoder.flush().map_err(|e| e.to_string())? {
            batches.push(batch);
        }
        self.rows = 0;
        let decoded = match batches.len() {
            0 => return Ok(RecordBatch::new_empty(Arc::clone(&self.schema))),
            1 => batches.swap_remove(0),
            _ => concat_batches(&batches[0].schema(), &batches).map_err(|e| e.to_string())?,
        };
        self.to_columns(&decoded)
    }

    fn reset(&mut self) -> Result<()> {
        let resolved = self.format.resolved()?.clone();
        self.decoder = build(&resolved, &self.writers, self.max_records)?;
        self.done.clear();
        self.rows = 0;
        Ok(())
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::format::{RecordBuffer, decode_records};
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType};

    const READING: &str = r#"{"type": "record", "name": "reading", "fields": [
        {"name": "id", "type": "long"},
        {"name": "sensor", "type": "string"},
        {"name": "v", "type": ["null", "double"], "default": null},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#;

    /// Avro's zig-zag varint encoding of a long.
    pub(crate) fn long(out: &mut Vec<u8>, v: i64) {
        let mut n = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
        long(out, s.len() as i64);
        out.extend_from_slice(s.as_bytes());
    }

    fn reading(id: i64, sensor: &str, v: Option<f64>, ts_ms: i64) -> Vec<u8> {
        let mut out = Vec::new();
        long(&mut out, id);
        string(&mut out, sensor);
        match v {
            None => long(&mut out, 0),
            Some(v) => {
                long(&mut out, 1);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        long(&mut out, ts_ms);
        out
    }

    fn framed(id: u32, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    async fn inline(declared: Option<SchemaRef>) -> Result<(Arc<AvroFormat>, SchemaRef)> {
        let mut options = Options::new("test", vec![("schema".into(), READING.into())])?;
        let format = Arc::new(AvroFormat::from_options(&mut options)?);
        let columns = format.resolve(declared, "t").await?;
        Ok((format, columns))
    }

    #[tokio::test]
    async fn bare_datums_decode_and_bad_ones_are_isolated() -> Result<()> {
        let (format, columns) = inline(None).await?;
        let names: Vec<&str> = columns.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "sensor", "v", "ts"]);
        assert_eq!(
            columns.field(3).data_type(),
            &DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()))
        );
        let mut decoder = AvroDecoder::try_new(format, columns, 16)?;
        let mut buffer = RecordBuffer::default();
        buffer.push(&reading(1, "a", Some(1.5), 1_000));
        let mut truncated = reading(2, "bb", Some(2.5), 2_000);
        truncated.truncate(5);
        buffer.push(&truncated);
        buffer.push(&reading(3, "c", None, 3_000));
        let mut trailing = reading(4, "d", Some(4.0), 4_000);
        trailing.extend_from_slice(&[7, 7]);
        buffer.push(&trailing);
        // A datum holding a newline byte: records are framed by the transport, not by lines.
        buffer.push(&reading(10, "x\ny", Some(10.0), 10_000));
        let decoded = decode_records(&mut decoder, &buffer)?;
        let bad: Vec<usize> = decoded.bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, [1, 3], "{:?}", decoded.bad);
        let batch = decoded.batch;
        let ids: Vec<i64> = batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(ids, [1, 3, 10]);
        assert_eq!(batch.column(1).as_string::<i32>().value(2), "x\ny");
        assert!(batch.column(2).is_null(1));
        assert_eq!(batch.column(2).as_primitive::<Float64Type>().value(0), 1.5);
        let ts = batch.column(3).as_primitive::<TimestampNanosecondType>();
        assert_eq!(ts.value(1), 3_000_000_000);
        Ok(())
    }

    #[tokio::test]
    async fn declared_columns_pick_fields_by_name_and_cast() -> Result<()> {
        let declared = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
                true,
            ),
            Field::new("ID", DataType::Utf8, true),
        ]));
        let (format, columns) = inline(Some(Arc::clone(&declared))).await?;
        assert_eq!(columns, declared);
        let mut decoder = AvroDecoder::try_new(format, columns, 16)?;
        let mut buffer = RecordBuffer::default();
        buffer.push(&reading(7, "a", Some(1.0), 5));
        let decoded = decode_records(&mut decoder, &buffer)?;
        assert!(decoded.bad.is_empty());
        assert_eq!(decoded.batch.column(1).as_string::<i32>().value(0), "7");
        let missing = Arc::new(Schema::new(vec![Field::new("nope", DataType::Utf8, true)]));
        let err = inline(Some(missing)).await.unwrap_err().to_string();
        assert!(
            err.contains("not a field") && err.contains("sensor"),
            "{err}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn options_are_checked() {
        let mut none = Options::new("t", vec![]).unwrap();
        assert!(AvroFormat::from_options(&mut none).is_err());
        let mut both = Options::new(
            "t",
            vec![
                ("schema".into(), READING.into()),
                ("schema.registry".into(), "http://127.0.0.1:1".into()),
            ],
        )
        .unwrap();
        assert!(AvroFormat::from_options(&mut both).is_err());
        let mut bad = Options::new("t", vec![("schema".into(), "{not json".into())]).unwrap();
        let format = AvroFormat::from_options(&mut bad).unwrap();
        assert!(format.resolve(None, "t").await.is_err());
    }

    #[test]
    fn frames_name_writer_schemas_resolved_against_the_reader_schema() -> Result<()> {
        // Version 1 lacks `v` (it gets the reader's default); version 2 is the reader schema.
        let v1 = r#"{"type": "record", "name": "reading", "fields": [
            {"name": "id", "type": "long"},
            {"name": "sensor", "type": "string"},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#;
        let mut options = Options::new(
            "test",
            vec![("schema.registry".into(), "http://127.0.0.1:1".into())],
        )?;
        let format = Arc::new(AvroFormat::from_options(&mut options)?);
        let full = arrow_fields(READING)?;
        let _ = format.resolved.set(Resolved {
            reader: READING.into(),
            reader_id: 2,
            projection: (0..4).collect(),
        });
        let columns = Arc::new(Schema::new(
            full.fields()
                .iter()
                .map(|f| {
                    f.as_ref()
                        .clone()
                        .with_data_type(column_type(f.data_type()))
                })
                .collect::<Vec<_>>(),
        ));
        let mut decoder = AvroDecoder::try_new(format, columns, 16)?;
        decoder.writers.insert(1, v1.into());
        decoder.missing.insert(9, "no schema 9".into());
        decoder.reset()?;
        let mut old = Vec::new();
        long(&mut old, 5);
        string(&mut old, "old");
        long(&mut old, 5_000);
        let mut buffer = RecordBuffer::default();
        buffer.push(&framed(2, &reading(1, "a", Some(1.0), 1_000)));
        buffer.push(&framed(1, &old));
        buffer.push(&framed(2, &reading(2, "b", Some(2.0), 2_000)));
        buffer.push(&framed(9, &reading(3, "c", None, 3_000)));
        buffer.push(&reading(4, "no frame", None, 4_000));
        let decoded = decode_records(&mut decoder, &buffer)?;
        let bad: Vec<(usize, bool)> = decoded
            .bad
            .iter()
            .map(|(i, e)| (*i, e.contains("no schema 9") || e.contains("magic byte")))
            .collect();
        assert_eq!(bad, [(3, true), (4, true)], "{:?}", decoded.bad);
        let batch = decoded.batch;
        let ids: Vec<i64> = batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(ids, [1, 5, 2]);
        assert!(batch.column(2).is_null(1), "v1 rows get the default");
        assert_eq!(batch.column(1).as_string::<i32>().value(1), "old");
        Ok(())
    }
}
