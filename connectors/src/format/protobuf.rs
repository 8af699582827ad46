//! `ENCODE PROTOBUF`: Protobuf records read straight into Arrow ([`super::protobuf_wire`]).
//!
//! The schema is `.proto` source, given inline (`schema = 'syntax = "proto3"; …'`) or the newest
//! version of a registry subject (`schema.registry`, `schema.registry.subject` defaulting to
//! `<topic>-value`; records then carry the Confluent frame: magic byte, schema id and the
//! message-index path, which are skipped). It is compiled with protox (imports of Google's
//! well-known types work); `message` names the record's message (default: the file's first).
//!
//! Protobuf decodes by field number, so records written with an older or newer version of the
//! message decode with the source's: fields it does not know are skipped, fields a record lacks
//! are NULL (fields with presence: messages, `optional`, oneof members) or the type's default.
//! Without declared columns the source gets the message's fields; declared columns pick fields
//! by name and are cast to their declared types.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use prost_reflect::{Cardinality, DescriptorPool, FieldDescriptor, MessageDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use weir_engine::options::Options;
use weir_engine::{EngineError, Result};

use super::RecordDecoder;
use super::protobuf_wire::{Column, FieldLayout, Kind, MAX_DEPTH, MessageLayout, read_message};
use super::registry::{SchemaOrigin, confluent_frame};

/// The name the inline or registry schema is compiled under.
const FILE_NAME: &str = "weir_source.proto";

/// A source's `ENCODE PROTOBUF (…)`, shared by its readers.
#[derive(Debug)]
pub struct ProtobufFormat {
    message: Option<String>,
    origin: SchemaOrigin,
    /// The columns read, settled at `CREATE SOURCE`.
    layout: OnceLock<Arc<MessageLayout>>,
}

impl ProtobufFormat {
    /// Takes `message` and `schema`, or `schema.registry` and its options, from `options`.
    pub fn from_options(options: &mut Options) -> Result<Self> {
        Ok(Self {
            message: options.take("message"),
            origin: SchemaOrigin::from_options(
                options,
                "PROTOBUF",
                "message = 'pkg.Name', schema = 'syntax = \"proto3\"; …'",
            )?,
            layout: OnceLock::new(),
        })
    }

    /// The registry schema id the source was created with, for the catalog to keep.
    pub fn pinned_options(&self) -> Vec<(String, String)> {
        self.origin.pinned_options()
    }

    fn framed(&self) -> bool {
        self.origin.registry().is_some()
    }

    /// Compiles the schema (from the registry for `topic`'s subject when there is one), finds
    /// the message and settles the columns: `declared`, matched to fields by name, or all of
    /// the message's fields.
    pub async fn resolve(&self, declared: Option<SchemaRef>, topic: &str) -> Result<SchemaRef> {
        let (text, _) = self.origin.schema_text(topic, "PROTOBUF").await?;
        let pool = compile(&text)?;
        let message = match &self.message {
            Some(name) => pool.get_message_by_name(name).ok_or_else(|| {
                EngineError::User(format!(
                    "message \"{name}\" is not in the schema (messages: {})",
                    pool.all_messages()
                        .filter(|m| !m.is_map_entry())
                        .map(|m| m.full_name().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
            None => pool
                .files()
                .find(|f| f.name() == FILE_NAME)
                .and_then(|f| f.messages().next())
                .ok_or_else(|| EngineError::User("the Protobuf schema has no message".into()))?,
        };
        let (fields, columns) = match declared {
            Some(declared) => {
                // Only the declared fields' types are built, so a recursive message whose
                // recursion is left out can be read.
                let descriptors: Vec<FieldDescriptor> = message.fields().collect();
                let mut fields = Vec::with_capacity(declared.fields().len());
                for column in declared.fields() {
                    let descriptor = descriptors
                        .iter()
                        .find(|f| f.name() == column.name())
                        .or_else(|| {
                            descriptors
                                .iter()
                                .find(|f| f.name().eq_ignore_ascii_case(column.name()))
                        })
                        .ok_or_else(|| {
                            EngineError::User(format!(
                                "column \"{}\" is not a field of {} (fields: {})",
                                column.name(),
                                message.full_name(),
                                descriptors
                                    .iter()
                                    .map(FieldDescriptor::name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        })?;
                    let field = field_layout(descriptor, 0)?;
                    let wire_type = super::protobuf_wire::arrow_field(&field);
                    if !can_cast_types(wire_type.data_type(), column.data_type()) {
                        return Err(EngineError::User(format!(
                            "column \"{}\": the Protobuf field is {}, which cannot be read as {}",
                            column.name(),
                            wire_type.data_type(),
                            column.data_type()
                        )));
                    }
                    fields.push(field);
                }
                (fields, declared)
            }
            None => {
                let full = message_fields(&message, 0)?;
                let layout = MessageLayout::new(full.clone());
                (full, Arc::new(Schema::new(layout.arrow_fields())))
            }
        };
        let _ = self.layout.set(Arc::new(MessageLayout::new(fields)));
        Ok(columns)
    }
}

/// An in-memory `.proto` file, with Google's well-known types importable beside it.
struct InlineFile(String);

impl FileResolver for InlineFile {
    fn open_file(&self, name: &str) -> std::result::Result<File, protox::Error> {
        if name == FILE_NAME {
            File::from_source(name, &self.0)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

fn compile(text: &str) -> Result<DescriptorPool> {
    let mut resolver = ChainFileResolver::new();
    resolver.add(InlineFile(text.to_string()));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler
        .open_file(FILE_NAME)
        .map_err(|e| EngineError::User(format!("Protobuf schema: {e}")))?;
    Ok(compiler.descriptor_pool())
}

/// The columns of `message`'s fields (nested messages as structs).
fn message_fields(message: &MessageDescriptor, depth: usize) -> Result<Vec<FieldLayout>> {
    if depth > MAX_DEPTH {
        return Err(EngineError::User(format!(
            "message {} nests deeper than {MAX_DEPTH} levels (a recursive message?); declare \
             columns that leave the recursion out",
            message.full_name()
        )));
    }
    message.fields().map(|f| field_layout(&f, depth)).collect()
}

fn field_layout(field: &FieldDescriptor, depth: usize) -> Result<FieldLayout> {
    use prost_reflect::Kind as P;
    let kind = match field.kind() {
        P::Double => Kind::Double,
        P::Float => Kind::Float,
        P::Int32 => Kind::Int32,
        P::Int64 => Kind::Int64,
        P::Uint32 => Kind::UInt32,
        P::Uint64 => Kind::UInt64,
        P::Sint32 => Kind::Sint32,
        P::Sint64 => Kind::Sint64,
        P::Fixed32 => Kind::Fixed32,
        P::Fixed64 => Kind::Fixed64,
        P::Sfixed32 => Kind::Sfixed32,
        P::Sfixed64 => Kind::Sfixed64,
        P::Bool => Kind::Bool,
        P::String => Kind::String,
        P::Bytes => Kind::Bytes,
        P::Enum(e) => Kind::Enum(Arc::new(
            e.values()
                .map(|v| (v.number(), v.name().to_string()))
                .collect(),
        )),
        P::Message(m) if m.full_name() == "google.protobuf.Timestamp" => Kind::Timestamp,
        P::Message(m) => {
            Kind::Message(Arc::new(MessageLayout::new(message_fields(&m, depth + 1)?)))
        }
    };
    Ok(FieldLayout {
        number: field.number(),
        name: field.name().to_string(),
        kind,
        repeated: field.cardinality() == Cardinality::Repeated,
        presence: field.supports_presence(),
    })
}

/// Skips the Confluent frame of a Protobuf record: magic byte, schema id, and the message-index
/// path (a zig-zag varint count, then that many indexes; a lone 0 means the first message).
fn skip_frame(record: &[u8]) -> std::result::Result<&[u8], String> {
    let (_, rest) = confluent_frame(record)?;
    let mut pos = 0;
    let zigzag = |v: u64| ((v >> 1) as i64) ^ -((v & 1) as i64);
    let count = zigzag(frame_varint(rest, &mut pos)?);
    if !(0..=64).contains(&count) {
        return Err(format!(
            "malformed Confluent Protobuf frame: {count} message indexes"
        ));
    }
    for _ in 0..count {
        frame_varint(rest, &mut pos)?;
    }
    Ok(&rest[pos..])
}

fn frame_varint(data: &[u8], pos: &mut usize) -> std::result::Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*pos).ok_or("truncated Confluent Protobuf frame")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("malformed Confluent Protobuf frame".into())
}

/// Decodes Protobuf records of one source into batches of its columns.
#[derive(Debug)]
pub struct ProtobufDecoder {
    layout: Arc<MessageLayout>,
    framed: bool,
    schema: SchemaRef,
    columns: Vec<Column>,
}

impl ProtobufDecoder {
    /// A decoder giving batches of `schema` (the source's columns).
    pub fn try_new(format: &ProtobufFormat, schema: SchemaRef) -> Result<Self> {
        let layout = format.layout.get().cloned().ok_or_else(|| {
            EngineError::Internal(
                "a Protobuf source's schema was used before it was resolved".into(),
            )
        })?;
        let columns = layout.fields.iter().map(Column::new).collect();
        Ok(Self {
            layout,
            framed: format.framed(),
            schema,
            columns,
        })
    }
}

impl RecordDecoder for ProtobufDecoder {
    fn feed(&mut self, record: &[u8]) -> std::result::Result<(), String> {
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        let body = if self.framed {
            skip_frame(record)?
        } else {
            record
        };
        read_message(body, &self.layout, &mut self.columns, 0)
    }

    fn flush(&mut self) -> std::result::Result<RecordBatch, String> {
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (column, field) in self.columns.iter_mut().zip(self.schema.fields()) {
            let array = column.finish()?;
            arrays.push(if array.data_type() == field.data_type() {
                array
            } else {
                cast(&array, field.data_type()).map_err(|e| format!("{}: {e}", field.name()))?
            });
        }
        RecordBatch::try_new(Arc::clone(&self.schema), arrays).map_err(|e| e.to_string())
    }

    fn reset(&mut self) -> Result<()> {
        for column in &mut self.columns {
            column.clear();
        }
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
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type};
    use datafusion::arrow::util::display::ArrayFormatter;

    const PROTO: &str = r#"
        syntax = "proto3";
        package demo;
        import "google/protobuf/timestamp.proto";
        message Reading {
          int64 id = 1;
          string sensor = 2;
          optional double v = 3;
          google.protobuf.Timestamp ts = 4;
          repeated int32 codes = 5;
          Location loc = 6;
          Status status = 7;
          map<string, int64> counts = 8;
          sint32 delta = 9;
        }
        message Location { int32 bay = 1; string line = 2; }
        enum Status { UNKNOWN = 0; OK = 1; FAULT = 2; }
    "#;

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn key(out: &mut Vec<u8>, number: u64, wire_type: u64) {
        varint(out, (number << 3) | wire_type);
    }

    fn bytes(out: &mut Vec<u8>, number: u64, value: &[u8]) {
        key(out, number, 2);
        varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }

    fn full_record() -> Vec<u8> {
        let mut r = Vec::new();
        key(&mut r, 1, 0);
        varint(&mut r, 7);
        bytes(&mut r, 2, b"first");
        bytes(&mut r, 2, b"press-7"); // the last occurrence wins
        key(&mut r, 3, 1);
        r.extend_from_slice(&2.5f64.to_le_bytes());
        let mut ts = Vec::new();
        key(&mut ts, 1, 0);
        varint(&mut ts, 1_704_067_200);
        key(&mut ts, 2, 0);
        varint(&mut ts, 5);
        bytes(&mut r, 4, &ts);
        let mut packed = Vec::new();
        varint(&mut packed, 1);
        varint(&mut packed, 2);
        bytes(&mut r, 5, &packed);
        key(&mut r, 5, 0); // and one unpacked
        varint(&mut r, 3);
        let mut loc = Vec::new();
        key(&mut loc, 1, 0);
        varint(&mut loc, 4);
        bytes(&mut loc, 2, b"L2");
        bytes(&mut r, 6, &loc);
        key(&mut r, 7, 0);
        varint(&mut r, 2);
        let mut entry = Vec::new();
        bytes(&mut entry, 1, b"k");
        key(&mut entry, 2, 0);
        varint(&mut entry, 9);
        bytes(&mut r, 8, &entry);
        key(&mut r, 9, 0);
        varint(&mut r, 3); // zig-zag -2
        key(&mut r, 99, 0); // a field this schema does not know
        varint(&mut r, 1);
        r
    }

    fn minimal(id: u64) -> Vec<u8> {
        let mut r = Vec::new();
        key(&mut r, 1, 0);
        varint(&mut r, id);
        r
    }

    async fn resolved(
        declared: Option<SchemaRef>,
        message: Option<&str>,
    ) -> Result<(ProtobufFormat, SchemaRef)> {
        let mut pairs = vec![("schema".to_string(), PROTO.to_string())];
        if let Some(m) = message {
            pairs.push(("message".into(), m.into()));
        }
        let mut options = Options::new("test", pairs)?;
        let format = ProtobufFormat::from_options(&mut options)?;
        let columns = format.resolve(declared, "t").await?;
        Ok((format, columns))
    }

    fn shown(batch: &RecordBatch, column: usize) -> Vec<String> {
        let options = datafusion::arrow::util::display::FormatOptions::default().with_null("NULL");
        let f = ArrayFormatter::try_new(batch.column(column).as_ref(), &options).unwrap();
        (0..batch.num_rows())
            .map(|i| f.value(i).to_string())
            .collect()
    }

    #[tokio::test]
    async fn the_wire_format_reads_into_columns_by_field_number() -> Result<()> {
        let (format, columns) = resolved(None, Some("demo.Reading")).await?;
        let names: Vec<&str> = columns.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "id", "sensor", "v", "ts", "codes", "loc", "status", "counts", "delta"
            ]
        );
        let mut decoder = ProtobufDecoder::try_new(&format, columns)?;
        let mut buffer = RecordBuffer::default();
        buffer.push(&full_record());
        buffer.push(&minimal(8));
        let decoded = decode_records(&mut decoder, &buffer)?;
        assert!(decoded.bad.is_empty(), "{:?}", decoded.bad);
        let b = decoded.batch;
        assert_eq!(
            b.column(0).as_primitive::<Int64Type>().values().to_vec(),
            [7, 8]
        );
        assert_eq!(shown(&b, 1), ["press-7", ""]);
        assert_eq!(shown(&b, 2), ["2.5", "NULL"], "optional: absent is NULL");
        assert_eq!(shown(&b, 3), ["2024-01-01T00:00:00.000000005Z", "NULL"]);
        assert_eq!(shown(&b, 4), ["[1, 2, 3]", "[]"]);
        assert_eq!(shown(&b, 5), ["{bay: 4, line: L2}", "NULL"]);
        assert_eq!(
            shown(&b, 6),
            ["FAULT", "UNKNOWN"],
            "proto3 default is the 0 value"
        );
        assert_eq!(shown(&b, 7), ["[{key: k, value: 9}]", "[]"]);
        assert_eq!(
            b.column(8).as_primitive::<Int32Type>().values().to_vec(),
            [-2, 0]
        );
        Ok(())
    }

    #[tokio::test]
    async fn malformed_records_are_bad_alone() -> Result<()> {
        let (format, columns) = resolved(None, None).await?;
        let mut decoder = ProtobufDecoder::try_new(&format, columns)?;
        let mut truncated = full_record();
        truncated.truncate(truncated.len() - 4);
        let mut wrong_wire = minimal(3);
        key(&mut wrong_wire, 2, 0); // sensor as a varint
        varint(&mut wrong_wire, 1);
        let mut not_utf8 = minimal(4);
        bytes(&mut not_utf8, 2, &[0xff, 0xfe]);
        let mut buffer = RecordBuffer::default();
        for r in [
            minimal(1),
            truncated,
            minimal(2),
            wrong_wire,
            not_utf8,
            minimal(5),
        ] {
            buffer.push(&r);
        }
        let decoded = decode_records(&mut decoder, &buffer)?;
        let bad: Vec<usize> = decoded.bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, [1, 3, 4], "{:?}", decoded.bad);
        assert!(decoded.bad[1].1.contains("sensor"), "{:?}", decoded.bad);
        let ids = decoded
            .batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(ids, [1, 2, 5]);
        Ok(())
    }

    #[tokio::test]
    async fn declared_columns_and_framed_records() -> Result<()> {
        let declared = Arc::new(Schema::new(vec![
            Field::new("sensor", DataType::Utf8, true),
            Field::new("ID", DataType::Utf8, true),
        ]));
        let (format, columns) = resolved(Some(Arc::clone(&declared)), None).await?;
        assert_eq!(columns, declared);
        let mut decoder = ProtobufDecoder::try_new(&format, columns)?;
        decoder.framed = true;
        let mut first = vec![0, 0, 0, 0, 1, 0];
        first.extend(full_record());
        let mut second = vec![0, 0, 0, 0, 1, 2, 2]; // one index: message 1
        second.extend(minimal(8));
        let mut buffer = RecordBuffer::default();
        buffer.push(&first);
        buffer.push(&second);
        buffer.push(&minimal(9)); // no frame
        let decoded = decode_records(&mut decoder, &buffer)?;
        assert_eq!(decoded.bad.len(), 1, "{:?}", decoded.bad);
        assert_eq!(shown(&decoded.batch, 0), ["press-7", ""]);
        assert_eq!(shown(&decoded.batch, 1), ["7", "8"]);
        assert!(decoded.batch.column(1).null_count() == 0);
        // Mistakes are named.
        let missing = Arc::new(Schema::new(vec![Field::new("nope", DataType::Utf8, true)]));
        let err = resolved(Some(missing), None).await.unwrap_err().to_string();
        assert!(err.contains("not a field of demo.Reading"), "{err}");
        let err = resolved(None, Some("demo.Nope"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("demo.Location"), "{err}");
        // A recursive message is read when the declared columns leave the recursion out.
        let mut tree = Options::new(
            "t",
            vec![(
                "schema".into(),
                "syntax = \"proto3\"; message Node { repeated Node child = 1; int32 a = 2; }"
                    .into(),
            )],
        )?;
        let tree = ProtobufFormat::from_options(&mut tree)?;
        let only_a = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true)]));
        assert_eq!(tree.resolve(Some(Arc::clone(&only_a)), "t").await?, only_a);
        let err = tree.resolve(None, "t").await.unwrap_err().to_string();
        assert!(err.contains("recursive"), "{err}");
        let mut bad = Options::new("t", vec![("schema".into(), "message {".into())])?;
        let err = ProtobufFormat::from_options(&mut bad)?
            .resolve(None, "t")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("Protobuf schema"), "{err}");
        Ok(())
    }
}
