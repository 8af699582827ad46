//! `INCLUDE partition | offset | key | timestamp | header 'name'` for Kafka: columns filled from
//! each message's metadata and appended after the payload's columns.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Int32Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use weir_engine::source::IncludeColumn;
use weir_engine::{EngineError, Result};

/// One metadata column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataColumn {
    /// The message's partition (`INT`).
    Partition,
    /// The message's offset (`BIGINT`).
    Offset,
    /// The message key (`VARCHAR` by default, or `BYTEA`).
    Key {
        /// Keep the bytes as they are.
        binary: bool,
    },
    /// The message timestamp (`TIMESTAMPTZ`, millisecond precision).
    Timestamp,
    /// True for a message without a value, a tombstone (`BOOLEAN`): what deletes a key of an
    /// upsert topic. The payload columns of a tombstone are NULL.
    Tombstone,
    /// The value of the first header with this name (`VARCHAR` by default, or `BYTEA`).
    Header {
        /// Header name.
        name: String,
        /// Keep the bytes as they are.
        binary: bool,
    },
}

impl MetadataColumn {
    /// Resolves an `INCLUDE` clause to a column and its field.
    pub fn from_include(include: &IncludeColumn) -> Result<(Self, Field)> {
        let binary = match include.data_type.as_deref() {
            None | Some("varchar") | Some("text") | Some("string") => false,
            Some("bytea") => true,
            Some(other) => {
                return Err(EngineError::User(format!(
                    "INCLUDE {}: type {other} is not available (use VARCHAR or BYTEA)",
                    include.kind
                )));
            }
        };
        let typed = include.data_type.is_some();
        let (column, default_name) = match (include.kind.as_str(), &include.header) {
            ("partition", None) if !typed => (Self::Partition, "kafka_partition".to_string()),
            ("offset", None) if !typed => (Self::Offset, "kafka_offset".to_string()),
            ("timestamp", None) if !typed => (Self::Timestamp, "kafka_timestamp".to_string()),
            ("tombstone", None) if !typed => (Self::Tombstone, "kafka_tombstone".to_string()),
            ("key", None) => (Self::Key { binary }, "kafka_key".to_string()),
            ("header", Some(name)) => (
                Self::Header {
                    name: name.clone(),
                    binary,
                },
                format!("kafka_header_{}", name.to_ascii_lowercase()),
            ),
            ("header", None) => {
                return Err(EngineError::User(
                    "INCLUDE header needs the header's name: INCLUDE header 'name' AS col".into(),
                ));
            }
            ("partition" | "offset" | "timestamp" | "tombstone", None) => {
                return Err(EngineError::User(format!(
                    "INCLUDE {} has a fixed type; drop the type",
                    include.kind
                )));
            }
            (other, _) => {
                return Err(EngineError::User(format!(
                    "INCLUDE {other} is not available; Kafka sources include partition, offset, key, timestamp, tombstone or header 'name'"
                )));
            }
        };
        let name = include.alias.clone().unwrap_or(default_name);
        let data_type = match &column {
            Self::Partition => DataType::Int32,
            Self::Offset => DataType::Int64,
            Self::Tombstone => DataType::Boolean,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            Self::Key { binary } | Self::Header { binary, .. } => {
                if *binary {
                    DataType::Binary
                } else {
                    DataType::Utf8
                }
            }
        };
        Ok((column, Field::new(name, data_type, true)))
    }

    /// True when the column needs each message's key.
    pub fn needs_key(&self) -> bool {
        matches!(self, Self::Key { .. })
    }

    /// True when the column needs to know which messages have no value.
    pub fn needs_tombstones(&self) -> bool {
        matches!(self, Self::Tombstone)
    }
}

/// Metadata of buffered messages, kept only for what the source includes.
#[derive(Debug, Default)]
pub struct MessageMetadata {
    /// Offsets (always kept: they also trace bad records).
    pub offsets: Vec<i64>,
    /// Timestamps in milliseconds (always kept: they also trace bad records).
    pub timestamps: Vec<Option<i64>>,
    /// Keys, when included.
    pub keys: Vec<Option<Vec<u8>>>,
    /// Per message: it had no value (when tombstones are included).
    pub tombstones: Vec<bool>,
    /// Values of each included header, in `MetadataColumn` order of the header columns.
    pub headers: Vec<Vec<Option<Vec<u8>>>>,
}

impl MessageMetadata {
    /// Clears all, keeping allocations.
    pub fn clear(&mut self) {
        self.offsets.clear();
        self.timestamps.clear();
        self.keys.clear();
        self.tombstones.clear();
        for h in &mut self.headers {
            h.clear();
        }
    }

    /// Builds the column for `column` over every buffered message of `partition`.
    pub fn array(&self, column: &MetadataColumn, partition: i32, header_index: usize) -> ArrayRef {
        let bytes = |values: &[Option<Vec<u8>>], binary: bool| -> ArrayRef {
            if binary {
                Arc::new(BinaryArray::from_iter(values.iter().map(|v| v.as_deref())))
            } else {
                Arc::new(StringArray::from_iter(values.iter().map(|v| {
                    v.as_deref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                })))
            }
        };
        match column {
            MetadataColumn::Partition => {
                Arc::new(Int32Array::from_value(partition, self.offsets.len()))
            }
            MetadataColumn::Offset => Arc::new(Int64Array::from(self.offsets.clone())),
            MetadataColumn::Timestamp => Arc::new(
                TimestampMillisecondArray::from(self.timestamps.clone()).with_timezone("+00:00"),
            ),
            MetadataColumn::Key { binary } => bytes(&self.keys, *binary),
            MetadataColumn::Tombstone => Arc::new(BooleanArray::from(self.tombstones.clone())),
            MetadataColumn::Header { binary, .. } => bytes(
                self.headers
                    .get(header_index)
                    .map_or(&[][..], |h| h.as_slice()),
                *binary,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn include(
        kind: &str,
        header: Option<&str>,
        data_type: Option<&str>,
        alias: Option<&str>,
    ) -> IncludeColumn {
        IncludeColumn {
            kind: kind.into(),
            header: header.map(Into::into),
            data_type: data_type.map(Into::into),
            alias: alias.map(Into::into),
        }
    }

    #[test]
    fn resolves_includes() -> Result<()> {
        let (c, f) = MetadataColumn::from_include(&include("offset", None, None, Some("off")))?;
        assert_eq!(
            (c, f.name().as_str(), f.data_type()),
            (MetadataColumn::Offset, "off", &DataType::Int64)
        );
        let (c, f) = MetadataColumn::from_include(&include(
            "header",
            Some("Trace-Id"),
            Some("bytea"),
            None,
        ))?;
        assert_eq!(
            c,
            MetadataColumn::Header {
                name: "Trace-Id".into(),
                binary: true
            }
        );
        assert_eq!(f.name(), "kafka_header_trace-id");
        assert!(MetadataColumn::from_include(&include("header", None, None, None)).is_err());
        assert!(
            MetadataColumn::from_include(&include("offset", None, Some("text"), None)).is_err()
        );
        assert!(MetadataColumn::from_include(&include("checksum", None, None, None)).is_err());
        Ok(())
    }
}
