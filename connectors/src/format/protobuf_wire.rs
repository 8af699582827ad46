//! The Protobuf wire format read straight into Arrow column buffers: one pass over each record's
//! bytes, no message objects. Singular fields keep the last value on the wire (as Protobuf
//! says); repeated fields take packed and unpacked items alike; fields the source does not read
//! are skipped by their wire type; nested messages become struct columns, repeated ones lists
//! (map fields are repeated entry messages, so they are lists of `{key, value}`).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array,
    ListArray, StringArray, StructArray, TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};

/// What a field's values are, as far as the wire and Arrow are concerned.
#[derive(Debug, Clone)]
pub enum Kind {
    Bool,
    Int32,
    Int64,
    UInt32,
    UInt64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Float,
    Double,
    String,
    Bytes,
    /// An enum, read as its value's name (an unknown number as the number).
    Enum(Arc<Vec<(i32, String)>>),
    /// `google.protobuf.Timestamp`.
    Timestamp,
    Message(Arc<MessageLayout>),
}

/// One field of a message as a column.
#[derive(Debug, Clone)]
pub struct FieldLayout {
    pub number: u32,
    pub name: String,
    pub kind: Kind,
    pub repeated: bool,
    /// Absent means NULL (messages, `optional`, oneof members); otherwise the type's default.
    pub presence: bool,
}

/// The fields of a message that are read, in column order.
#[derive(Debug, Clone, Default)]
pub struct MessageLayout {
    pub fields: Vec<FieldLayout>,
    /// `(field number, position in fields)`, sorted by number.
    by_number: Vec<(u32, usize)>,
}

impl MessageLayout {
    pub fn new(fields: Vec<FieldLayout>) -> Self {
        let mut by_number: Vec<(u32, usize)> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.number, i))
            .collect();
        by_number.sort_unstable();
        Self { fields, by_number }
    }

    fn find(&self, number: u32) -> Option<usize> {
        self.by_number
            .binary_search_by_key(&number, |(n, _)| *n)
            .ok()
            .map(|i| self.by_number[i].1)
    }

    /// The Arrow fields of the columns.
    pub fn arrow_fields(&self) -> Fields {
        self.fields.iter().map(arrow_field).collect()
    }
}

fn item_type(kind: &Kind) -> DataType {
    match kind {
        Kind::Bool => DataType::Boolean,
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => DataType::Int32,
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => DataType::Int64,
        Kind::UInt32 | Kind::Fixed32 => DataType::UInt32,
        Kind::UInt64 | Kind::Fixed64 => DataType::UInt64,
        Kind::Float => DataType::Float32,
        Kind::Double => DataType::Float64,
        Kind::String | Kind::Enum(_) => DataType::Utf8,
        Kind::Bytes => DataType::Binary,
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
        Kind::Message(m) => DataType::Struct(m.arrow_fields()),
    }
}

/// The Arrow field of a column: a list of items for a repeated field.
pub fn arrow_field(f: &FieldLayout) -> Field {
    let item = item_type(&f.kind);
    if f.repeated {
        Field::new(
            &f.name,
            DataType::List(Arc::new(Field::new_list_field(item, true))),
            false,
        )
    } else {
        Field::new(&f.name, item, true)
    }
}

/// A value as the wire gives it.
#[derive(Debug, Clone, Copy)]
enum Wire {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// A length-delimited value: its range in the record.
    Len(usize, usize),
}

impl Wire {
    fn name(&self) -> &'static str {
        match self {
            Wire::Varint(_) => "varint",
            Wire::Fixed64(_) => "64-bit",
            Wire::Fixed32(_) => "32-bit",
            Wire::Len(..) => "length-delimited",
        }
    }
}

fn varint(data: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data
            .get(*pos)
            .ok_or("truncated Protobuf record: a varint is cut off")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("malformed Protobuf record: a varint longer than 10 bytes".into())
}

fn fixed<const N: usize>(data: &[u8], pos: &mut usize) -> Result<[u8; N], String> {
    let bytes = data
        .get(*pos..*pos + N)
        .ok_or("truncated Protobuf record: a fixed-width value is cut off")?;
    *pos += N;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

fn read_wire(data: &[u8], pos: &mut usize, wire_type: u64) -> Result<Wire, String> {
    Ok(match wire_type {
        0 => Wire::Varint(varint(data, pos)?),
        1 => Wire::Fixed64(u64::from_le_bytes(fixed::<8>(data, pos)?)),
        5 => Wire::Fixed32(u32::from_le_bytes(fixed::<4>(data, pos)?)),
        2 => {
            let len = usize::try_from(varint(data, pos)?).map_err(|e| e.to_string())?;
            let start = *pos;
            let end = start
                .checked_add(len)
                .filter(|end| *end <= data.len())
                .ok_or("truncated Protobuf record: a length-delimited value runs past its end")?;
            *pos = end;
            Wire::Len(start, end)
        }
        3 | 4 => return Err("Protobuf groups (a deprecated encoding) are not supported".into()),
        other => return Err(format!("malformed Protobuf record: wire type {other}")),
    })
}

/// Buffered values of one column.
#[derive(Debug)]
enum Values {
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes { data: Vec<u8>, offsets: Vec<i32> },
    Struct(Vec<Column>),
}

/// One column's buffers: an entry per item (per row for a singular field).
#[derive(Debug)]
pub struct Column {
    field: FieldLayout,
    values: Values,
    valid: Vec<bool>,
    /// Repeated fields: where each row's items start (and the end).
    offsets: Vec<i32>,
}

impl Column {
    pub fn new(field: &FieldLayout) -> Self {
        let values = match &field.kind {
            Kind::Bool => Values::Bool(Vec::new()),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Values::I32(Vec::new()),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Timestamp => {
                Values::I64(Vec::new())
            }
            Kind::UInt32 | Kind::Fixed32 => Values::U32(Vec::new()),
            Kind::UInt64 | Kind::Fixed64 => Values::U64(Vec::new()),
            Kind::Float => Values::F32(Vec::new()),
            Kind::Double => Values::F64(Vec::new()),
            Kind::String | Kind::Bytes | Kind::Enum(_) => Values::Bytes {
                data: Vec::new(),
                offsets: vec![0],
            },
            Kind::Message(m) => Values::Struct(m.fields.iter().map(Column::new).collect()),
        };
        Self {
            field: field.clone(),
            values,
            valid: Vec::new(),
            offsets: vec![0],
        }
    }

    /// Appends one item decoded from `wire` (bytes of `data` for length-delimited values).
    fn push(&mut self, wire: Wire, data: &[u8], depth: usize) -> Result<(), String> {
        let mismatch = |wire: Wire, field: &FieldLayout| {
            format!(
                "field \"{}\" (number {}): a {} value where {:?} was expected",
                field.name,
                field.number,
                wire.name(),
                item_type(&field.kind)
            )
        };
        match (&mut self.values, &self.field.kind, wire) {
            (Values::Bool(v), _, Wire::Varint(x)) => v.push(x != 0),
            (Values::I32(v), Kind::Int32, Wire::Varint(x)) => v.push(x as i32),
            (Values::I32(v), Kind::Sint32, Wire::Varint(x)) => {
                let x = x as u32;
                v.push((x >> 1) as i32 ^ -((x & 1) as i32));
            }
            (Values::I32(v), Kind::Sfixed32, Wire::Fixed32(x)) => v.push(x as i32),
            (Values::I64(v), Kind::Int64, Wire::Varint(x)) => v.push(x as i64),
            (Values::I64(v), Kind::Sint64, Wire::Varint(x)) => {
                v.push((x >> 1) as i64 ^ -((x & 1) as i64));
            }
            (Values::I64(v), Kind::Sfixed64, Wire::Fixed64(x)) => v.push(x as i64),
            (Values::I64(v), Kind::Timestamp, Wire::Len(s, e)) => {
                v.push(timestamp_nanos(&data[s..e])?);
            }
            (Values::U32(v), Kind::UInt32, Wire::Varint(x)) => v.push(x as u32),
            (Values::U32(v), Kind::Fixed32, Wire::Fixed32(x)) => v.push(x),
            (Values::U64(v), Kind::UInt64, Wire::Varint(x)) => v.push(x),
            (Values::U64(v), Kind::Fixed64, Wire::Fixed64(x)) => v.push(x),
            (Values::F32(v), _, Wire::Fixed32(x)) => v.push(f32::from_bits(x)),
            (Values::F64(v), _, Wire::Fixed64(x)) => v.push(f64::from_bits(x)),
            (Values::Bytes { data: out, offsets }, Kind::String, Wire::Len(s, e)) => {
                let text = std::str::from_utf8(&data[s..e]).map_err(|err| {
                    format!(
                        "field \"{}\": text that is not UTF-8: {err}",
                        self.field.name
                    )
                })?;
                out.extend_from_slice(text.as_bytes());
                offsets.push(offset(out.len())?);
            }
            (Values::Bytes { data: out, offsets }, Kind::Bytes, Wire::Len(s, e)) => {
                out.extend_from_slice(&data[s..e]);
                offsets.push(offset(out.len())?);
            }
            (Values::Bytes { data: out, offsets }, Kind::Enum(names), Wire::Varint(x)) => {
                let number = x as i32;
                match names.iter().find(|(n, _)| *n == number) {
                    Some((_, name)) => out.extend_from_slice(name.as_bytes()),
                    None => out.extend_from_slice(number.to_string().as_bytes()),
                }
                offsets.push(offset(out.len())?);
            }
            (Values::Struct(children), Kind::Message(layout), Wire::Len(s, e)) => {
                if depth >= MAX_DEPTH {
                    return Err(format!(
                        "Protobuf record nested deeper than {MAX_DEPTH} messages"
                    ));
                }
                read_message(&data[s..e], layout, children, depth + 1)?;
            }
            (_, _, wire) => return Err(mismatch(wire, &self.field)),
        }
        self.valid.push(true);
        Ok(())
    }

    /// Appends the items of a repeated field's occurrence: several when packed.
    fn push_repeated(&mut self, wire: Wire, data: &[u8], depth: usize) -> Result<(), String> {
        let packable = !matches!(
            self.field.kind,
            Kind::String | Kind::Bytes | Kind::Message(_) | Kind::Timestamp
        );
        let Wire::Len(start, end) = wire else {
            return self.push(wire, data, depth);
        };
        if !packable {
            return self.push(wire, data, depth);
        }
        let packed = &data[..end];
        let mut pos = start;
        let wire_type = match self.values {
            Values::F64(_) => 1,
            Values::F32(_) => 5,
            _ if matches!(self.field.kind, Kind::Fixed64 | Kind::Sfixed64) => 1,
            _ if matches!(self.field.kind, Kind::Fixed32 | Kind::Sfixed32) => 5,
            _ => 0,
        };
        while pos < end {
            let item = read_wire(packed, &mut pos, wire_type)?;
            self.push(item, data, depth)?;
        }
        Ok(())
    }

    /// Appends the value of an absent singular field: NULL, or the type's default.
    fn push_absent(&mut self) -> Result<(), String> {
        let null = self.field.presence;
        match &mut self.values {
            Values::Bool(v) => v.push(false),
            Values::I32(v) => v.push(0),
            Values::I64(v) => v.push(0),
            Values::U32(v) => v.push(0),
            Values::U64(v) => v.push(0),
            Values::F32(v) => v.push(0.0),
            Values::F64(v) => v.push(0.0),
            Values::Bytes { data, offsets } => {
                if let (Kind::Enum(names), false) = (&self.field.kind, null) {
                    // An enum's default is its value numbered 0.
                    if let Some((_, name)) = names.iter().find(|(n, _)| *n == 0) {
                        data.extend_from_slice(name.as_bytes());
                    }
                }
                offsets.push(offset(data.len())?);
            }
            Values::Struct(children) => {
                for child in children {
                    child.push_row_absent()?;
                }
            }
        }
        self.valid.push(!null);
        Ok(())
    }

    /// Appends a row in which the field does not occur.
    fn push_row_absent(&mut self) -> Result<(), String> {
        if self.field.repeated {
            let items = offset(self.valid.len())?;
            self.offsets.push(items);
            Ok(())
        } else {
            self.push_absent()
        }
    }

    /// The column's array; the buffers start again empty.
    pub fn finish(&mut self) -> Result<ArrayRef, String> {
        let valid = std::mem::take(&mut self.valid);
        let nulls = Some(NullBuffer::from(valid)).filter(|n| n.null_count() > 0);
        let items: ArrayRef = match &mut self.values {
            Values::Bool(v) => Arc::new(BooleanArray::new(std::mem::take(v).into(), nulls)),
            Values::I32(v) => Arc::new(Int32Array::new(std::mem::take(v).into(), nulls)),
            Values::I64(v) if matches!(self.field.kind, Kind::Timestamp) => Arc::new(
                TimestampNanosecondArray::new(std::mem::take(v).into(), nulls)
                    .with_timezone("+00:00"),
            ),
            Values::I64(v) => Arc::new(Int64Array::new(std::mem::take(v).into(), nulls)),
            Values::U32(v) => Arc::new(UInt32Array::new(std::mem::take(v).into(), nulls)),
            Values::U64(v) => Arc::new(UInt64Array::new(std::mem::take(v).into(), nulls)),
            Values::F32(v) => Arc::new(Float32Array::new(std::mem::take(v).into(), nulls)),
            Values::F64(v) => Arc::new(Float64Array::new(std::mem::take(v).into(), nulls)),
            Values::Bytes { data, offsets } => {
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                let data = std::mem::take(data).into();
                if matches!(self.field.kind, Kind::Bytes) {
                    Arc::new(BinaryArray::try_new(offsets, data, nulls).map_err(|e| e.to_string())?)
                } else {
                    Arc::new(StringArray::try_new(offsets, data, nulls).map_err(|e| e.to_string())?)
                }
            }
            Values::Struct(children) => {
                let Kind::Message(layout) = &self.field.kind else {
                    return Err("a struct column without its message".into());
                };
                let arrays = children
                    .iter_mut()
                    .map(Column::finish)
                    .collect::<Result<Vec<_>, _>>()?;
                Arc::new(
                    StructArray::try_new(layout.arrow_fields(), arrays, nulls)
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        if !self.field.repeated {
            return Ok(items);
        }
        let offsets = OffsetBuffer::new(std::mem::replace(&mut self.offsets, vec![0]).into());
        let item = Arc::new(Field::new_list_field(item_type(&self.field.kind), true));
        Ok(Arc::new(
            ListArray::try_new(item, offsets, items, None).map_err(|e| e.to_string())?,
        ))
    }

    /// Drops everything buffered.
    pub fn clear(&mut self) {
        *self = Column::new(&self.field);
    }
}

/// Messages nested deeper than this are refused (a malicious record could recurse without end).
pub const MAX_DEPTH: usize = 32;

fn offset(len: usize) -> Result<i32, String> {
    i32::try_from(len).map_err(|_| "a batch of Protobuf text over 2 GiB".to_string())
}

/// A `google.protobuf.Timestamp` (seconds, nanos) as nanoseconds since the epoch.
fn timestamp_nanos(data: &[u8]) -> Result<i64, String> {
    let (mut seconds, mut nanos) = (0i64, 0i64);
    let mut pos = 0;
    while pos < data.len() {
        let key = varint(data, &mut pos)?;
        let wire = read_wire(data, &mut pos, key & 7)?;
        match (key >> 3, wire) {
            (1, Wire::Varint(s)) => seconds = s as i64,
            (2, Wire::Varint(n)) => nanos = i64::from(n as i32),
            _ => {}
        }
    }
    seconds
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(nanos))
        .ok_or_else(|| format!("timestamp of {seconds} s is out of range"))
}

/// Reads one message into `columns` (one row each), the columns of `layout`'s fields.
pub fn read_message(
    data: &[u8],
    layout: &MessageLayout,
    columns: &mut [Column],
    depth: usize,
) -> Result<(), String> {
    // The last occurrence of each singular field; small messages need no allocation.
    let mut last: smallvec_like::Slots = smallvec_like::Slots::new(columns.len());
    let mut pos = 0;
    while pos < data.len() {
        let key = varint(data, &mut pos)?;
        let number = u32::try_from(key >> 3).map_err(|_| "malformed Protobuf field number")?;
        if number == 0 {
            return Err("malformed Protobuf record: field number 0".into());
        }
        let wire = read_wire(data, &mut pos, key & 7)?;
        let Some(i) = layout.find(number) else {
            continue;
        };
        let column = &mut columns[i];
        if column.field.repeated {
            column.push_repeated(wire, data, depth)?;
        } else {
            last.set(i, wire);
        }
    }
    for (i, column) in columns.iter_mut().enumerate() {
        if column.field.repeated {
            let items = offset(column.valid.len())?;
            column.offsets.push(items);
        } else {
            match last.get(i) {
                Some(wire) => column.push(wire, data, depth)?,
                None => column.push_absent()?,
            }
        }
    }
    Ok(())
}

/// Per-message slots for the last value of each field, inline for up to 16 fields.
mod smallvec_like {
    use super::Wire;

    // Lives on the stack for one message: the inline array is the point (no allocation per
    // record), so its size is intended.
    #[allow(clippy::large_enum_variant)]
    pub enum Slots {
        Inline([Option<Wire>; 16]),
        Heap(Vec<Option<Wire>>),
    }

    impl Slots {
        pub fn new(n: usize) -> Self {
            if n <= 16 {
                Slots::Inline([None; 16])
            } else {
                Slots::Heap(vec![None; n])
            }
        }

        pub fn set(&mut self, i: usize, wire: Wire) {
            match self {
                Slots::Inline(a) => a[i] = Some(wire),
                Slots::Heap(v) => v[i] = Some(wire),
            }
        }

        pub fn get(&self, i: usize) -> Option<Wire> {
            match self {
                Slots::Inline(a) => a[i],
                Slots::Heap(v) => v[i],
            }
        }
    }
}
