//! The bad-record log behind `weir_source_errors`: a record that does not decode, a value that
//! does not fit its column, or an event time far in the future is not allowed to stop a source
//! (unless `bad_records = 'fail'`) nor to vanish. Each is counted per source and the most recent
//! ones are kept with where they came from and a truncated copy of their bytes, bounded so a
//! flood of garbage cannot exhaust memory.
//!
//! Every view reads its source with its own reader, so the same bad record is found once per
//! view: a record with a partition and offset is logged and counted once per source (see
//! [`crate::checked_offsets`]).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::bounded_log::BoundedLog;
use crate::checked_offsets::CheckedOffsets;
use crate::error::{EngineError, Result};
use datafusion::arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Records kept by default; older ones are dropped (their count stays).
pub const DEFAULT_SOURCE_ERRORS_KEPT: usize = 10_000;

/// Bytes of a bad record's payload kept for inspection.
pub const RAW_BYTES_KEPT: usize = 256;

/// What to do with a record that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadRecords {
    /// Log it in `weir_source_errors`, count it, keep going (the default).
    #[default]
    Skip,
    /// Stop the source with an error naming the record.
    Fail,
}

impl BadRecords {
    /// Parses the `bad_records` option.
    pub fn parse(value: &str) -> Result<Self> {
        match value.to_ascii_lowercase().as_str() {
            "skip" => Ok(Self::Skip),
            "fail" => Ok(Self::Fail),
            other => Err(EngineError::User(format!(
                "bad_records must be 'skip' or 'fail', not '{other}'"
            ))),
        }
    }
}

/// One unreadable record.
#[derive(Debug, Clone)]
pub struct BadRecord {
    /// Partition it came from, when the transport has partitions.
    pub partition: Option<i32>,
    /// Its offset in the partition, when the transport has offsets.
    pub offset: Option<i64>,
    /// The transport's timestamp of the record (milliseconds since the epoch), if any.
    pub timestamp_millis: Option<i64>,
    /// The record's bytes (truncated to [`RAW_BYTES_KEPT`] when logged).
    pub raw: Vec<u8>,
    /// Why it was rejected.
    pub error: String,
}

impl BadRecord {
    /// A bad record, keeping at most [`RAW_BYTES_KEPT`] of `raw` plus its full length.
    pub fn new(raw: &[u8], error: impl Into<String>) -> Self {
        Self {
            partition: None,
            offset: None,
            timestamp_millis: None,
            raw: raw[..raw.len().min(RAW_BYTES_KEPT)].to_vec(),
            error: error.into(),
        }
    }

    /// The same record, placed in its partition.
    pub fn at(
        mut self,
        partition: Option<i32>,
        offset: Option<i64>,
        timestamp_millis: Option<i64>,
    ) -> Self {
        self.partition = partition;
        self.offset = offset;
        self.timestamp_millis = timestamp_millis;
        self
    }

    /// A one-line description for errors (`bad_records = 'fail'`).
    pub fn describe(&self, source: &str) -> String {
        let place = match (self.partition, self.offset) {
            (Some(p), Some(o)) => format!(" (partition {p}, offset {o})"),
            (Some(p), None) => format!(" (partition {p})"),
            _ => String::new(),
        };
        format!("source \"{source}\": bad record{place}: {}", self.error)
    }
}

/// Which check rejected a record. Each reader runs every check on every record it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// The record did not decode (or was too large to try).
    Decode,
    /// Its event time is too far past the wall clock (`source.max_future`).
    FutureTime,
}

/// The offsets of one partition a reader ran a check over in one step: the first and last
/// offset of the records it read. Every bad record the check found there is reported with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedSpan {
    /// The check.
    pub check: Check,
    /// The partition.
    pub partition: i32,
    /// First offset read (inclusive).
    pub first: i64,
    /// Last offset read (inclusive).
    pub last: i64,
}

/// Bad records of every source.
#[derive(Debug)]
pub struct SourceErrorLog {
    log: BoundedLog<BadRecord>,
    /// Per source, check and partition: the offsets whose bad records are already logged.
    checked: Mutex<HashMap<(String, Check, i32), CheckedOffsets>>,
}

impl Default for SourceErrorLog {
    fn default() -> Self {
        Self::new(DEFAULT_SOURCE_ERRORS_KEPT)
    }
}

impl SourceErrorLog {
    /// A log keeping at most `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            log: BoundedLog::new(capacity),
            checked: Mutex::new(HashMap::new()),
        }
    }

    /// Logs `records` of `source`, found by a reader running a check over `span`: those in
    /// offsets another reader already reported are skipped. Returns how many were logged.
    pub fn record(
        &self,
        source: &str,
        span: Option<CheckedSpan>,
        records: Vec<BadRecord>,
    ) -> usize {
        let records = match span {
            None => records,
            Some(span) => {
                let claimed = self
                    .checked
                    .lock()
                    .entry((source.to_string(), span.check, span.partition))
                    .or_default()
                    .claim(span.first, span.last);
                records
                    .into_iter()
                    .filter(|r| {
                        let same_partition = r.partition.is_none_or(|p| p == span.partition);
                        !(same_partition && r.offset.is_some_and(|o| claimed.already(o)))
                    })
                    .collect()
            }
        };
        let logged = records.len();
        if logged > 0 {
            self.log.record(source, records);
        }
        logged
    }

    /// Bad records ever seen for `source`.
    pub fn count(&self, source: &str) -> u64 {
        self.log.count(source)
    }

    /// Forgets a dropped source's records and count.
    pub fn forget(&self, source: &str) {
        self.log.forget(source);
        self.checked.lock().retain(|(s, _, _), _| s != source);
    }

    /// Schema of `weir_source_errors`.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("source_name", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, true),
            Field::new("offset", DataType::Int64, true),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
                true,
            ),
            Field::new(
                "recorded_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                false,
            ),
            Field::new("raw", DataType::Utf8, false),
            Field::new("error", DataType::Utf8, false),
        ]))
    }

    /// The kept records as a batch of [`SourceErrorLog::schema`]; `raw` is shown as text, or in
    /// PostgreSQL's hex form for `bytea` (`\x…`) when it is binary ([`shown_raw`]).
    pub fn to_batch(&self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self.log.with_kept(|r| -> Vec<ArrayRef> {
            vec![
                Arc::new(StringArray::from_iter_values(
                    r.iter().map(|l| l.owner.as_str()),
                )),
                Arc::new(Int32Array::from_iter(r.iter().map(|l| l.entry.partition))),
                Arc::new(Int64Array::from_iter(r.iter().map(|l| l.entry.offset))),
                Arc::new(
                    TimestampMillisecondArray::from_iter(
                        r.iter().map(|l| l.entry.timestamp_millis),
                    )
                    .with_timezone("+00:00"),
                ),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        r.iter().map(|l| l.recorded_micros),
                    )
                    .with_timezone("+00:00"),
                ),
                Arc::new(StringArray::from_iter_values(
                    r.iter().map(|l| shown_raw(&l.entry.raw)),
                )),
                Arc::new(StringArray::from_iter_values(
                    r.iter().map(|l| l.entry.error.as_str()),
                )),
            ]
        });
        Ok(RecordBatch::try_new(Self::schema(), columns)?)
    }
}

/// A bad record's bytes as the `raw` column shows them: as text when they are text (a record cut
/// at [`RAW_BYTES_KEPT`] mid-character still is), else hex as PostgreSQL shows `bytea`, so a
/// binary record (Avro, Protobuf) can be read back exactly.
fn shown_raw(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write;
    let text = match std::str::from_utf8(raw) {
        Ok(text) => Some(text),
        // Only the last character is incomplete: the cut, not the record.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&raw[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    match text {
        Some(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) =>
        {
            std::borrow::Cow::Borrowed(text)
        }
        _ => {
            let mut hex = String::with_capacity(2 + raw.len() * 2);
            hex.push_str("\\x");
            for byte in raw {
                let _ = write!(hex, "{byte:02x}");
            }
            std::borrow::Cow::Owned(hex)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_records_are_shown_in_hex_text_as_text() {
        assert_eq!(shown_raw(b"{\"a\": 1}\tx"), "{\"a\": 1}\tx");
        assert_eq!(shown_raw(&[0, 0, 0, 0, 99, 6]), "\\x000000006306");
        assert_eq!(shown_raw(&[0xff, b'a']), "\\xff61");
        // Cut mid-character by the size limit: still text.
        let cut = "é".repeat(3).into_bytes();
        assert_eq!(shown_raw(&cut[..5]), "éé");
    }

    #[test]
    fn bounded_but_counted_and_truncated() -> Result<()> {
        let log = SourceErrorLog::new(2);
        let big = vec![b'x'; 10_000];
        log.record(
            "s",
            None,
            (0..3)
                .map(|i| BadRecord::new(&big, "too big").at(Some(1), Some(i), None))
                .collect(),
        );
        assert_eq!(log.count("s"), 3);
        let batch = log.to_batch()?;
        assert_eq!(batch.num_rows(), 2);
        let raw = batch
            .column(5)
            .as_any()
            .downcast_ref::<StringArray>()
            .map(|a| a.value(0).len());
        assert_eq!(raw, Some(RAW_BYTES_KEPT));
        log.forget("s");
        assert_eq!(log.count("s"), 0);
        assert_eq!(log.to_batch()?.num_rows(), 0);
        Ok(())
    }

    #[test]
    fn a_record_found_by_several_readers_is_logged_once() {
        let log = SourceErrorLog::new(100);
        let bad = |offsets: &[i64]| -> Vec<BadRecord> {
            offsets
                .iter()
                .map(|o| BadRecord::new(b"{", "incomplete").at(Some(0), Some(*o), None))
                .collect()
        };
        let span = |first, last| {
            Some(CheckedSpan {
                check: Check::Decode,
                partition: 0,
                first,
                last,
            })
        };
        // Two views' readers, batching differently, over offsets 0..=99 with bad 10, 50, 90.
        assert_eq!(log.record("s", span(0, 59), bad(&[10, 50])), 2);
        assert_eq!(log.record("s", span(0, 29), bad(&[10])), 0);
        assert_eq!(log.record("s", span(30, 99), bad(&[50, 90])), 1);
        assert_eq!(log.record("s", span(60, 99), bad(&[90])), 0);
        // Another partition and another check are judged on their own.
        let other = Some(CheckedSpan {
            check: Check::FutureTime,
            partition: 0,
            first: 0,
            last: 99,
        });
        assert_eq!(log.record("s", other, bad(&[10])), 1);
        assert_eq!(log.count("s"), 4);
        log.forget("s");
        assert_eq!(log.record("s", span(0, 99), bad(&[10])), 1);
    }

    #[test]
    fn bad_records_option() {
        assert_eq!(BadRecords::parse("FAIL").ok(), Some(BadRecords::Fail));
        assert!(BadRecords::parse("ignore").is_err());
    }
}
