//! Rows a session aggregate emits, collected as sessions change and built into one batch.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, UInt8Array};
use datafusion::arrow::compute::cast;
use datafusion::common::ScalarValue;

use super::store::EmittedRow;
use super::{GroupColumn, SessionAggregate};
use crate::changes::{Changes, Op};
use crate::error::{EngineError, Result};

/// Changed session rows with their keys and ops.
#[derive(Default)]
pub(super) struct ChangeRows {
    keys: Vec<Box<[u8]>>,
    rows: Vec<EmittedRow>,
    ops: Vec<u8>,
}

impl ChangeRows {
    fn push(&mut self, key: Box<[u8]>, row: EmittedRow, op: Op) {
        self.keys.push(key);
        self.rows.push(row);
        self.ops.push(op as u8);
    }

    pub(super) fn insert(&mut self, key: Box<[u8]>, row: EmittedRow) {
        self.push(key, row, Op::Insert);
    }

    pub(super) fn delete(&mut self, key: Box<[u8]>, row: EmittedRow) {
        self.push(key, row, Op::Delete);
    }

    /// What turns `before` (what downstream holds, if anything) into `now`. The window
    /// columns are part of the row's key: a session that grew is a delete and an insert.
    pub(super) fn follow(&mut self, key: &[u8], before: Option<EmittedRow>, now: EmittedRow) {
        match before {
            None => self.insert(key.into(), now),
            Some(old) if old.start == now.start && old.end == now.end => {
                if old.values != now.values {
                    self.push(key.into(), old, Op::UpdateBefore);
                    self.push(key.into(), now, Op::UpdateAfter);
                }
            }
            Some(old) => {
                self.delete(key.into(), old);
                self.insert(key.into(), now);
            }
        }
    }

    /// The rows as one batch of changes; None when nothing changed.
    pub(super) fn finish(self, op: &SessionAggregate) -> Result<Option<Changes>> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        let parser = op.converter.parser();
        let keys = op
            .converter
            .convert_rows(self.keys.iter().map(|k| parser.parse(k)))?;
        let time = |pick: fn(&EmittedRow) -> i64| -> Result<ArrayRef> {
            let values: Int64Array = self.rows.iter().map(|r| pick(r) / op.per).collect();
            Ok(cast(&values, &op.spec.time_type)?)
        };
        let schema = Arc::clone(&op.spec.output_schema);
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (column, field) in op.layout.iter().zip(schema.fields()) {
            let array = match *column {
                GroupColumn::Key(i) => keys
                    .get(i)
                    .cloned()
                    .ok_or_else(|| EngineError::Internal("missing session key".into()))?,
                GroupColumn::Start => time(|r| r.start)?,
                GroupColumn::End => time(|r| r.end)?,
            };
            columns.push(cast(&array, field.data_type())?);
        }
        for (a, field) in schema.fields().iter().skip(op.layout.len()).enumerate() {
            let values = self.rows.iter().map(|r| r.values[a].clone());
            let array = ScalarValue::iter_to_array(values)?;
            columns.push(cast(&array, field.data_type())?);
        }
        let batch = RecordBatch::try_new(schema, columns)?;
        if self.ops.iter().all(|&o| o == Op::Insert as u8) {
            return Ok(Some(Changes::inserts(batch)));
        }
        Ok(Some(Changes::try_new(batch, UInt8Array::from(self.ops))?))
    }
}
