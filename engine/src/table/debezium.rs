//! Debezium change events as upserts (`CREATE TABLE … FORMAT DEBEZIUM ENCODE JSON`): what CDC
//! users already have in their topics. Each event (with or without the `schema`/`payload`
//! envelope) carries `before`, `after` and `op`: `c` (create), `r` (snapshot read) and `u`
//! (update) say "the row with this key is now `after`", `d` says "the row with `before`'s key is
//! gone". That is exactly an upsert, so this step only reshapes events into the
//! [`super::upsert::UpsertOperator`]'s input; the rows live per key there supply the full old
//! row of every retraction (so a source table without `REPLICA IDENTITY FULL`, whose `before`
//! holds only the key, is handled the same way). Tombstones and events without a known `op`
//! (truncate, heartbeat) change nothing.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, StructArray, new_null_array,
};
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{filter_record_batch, is_not_null};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};

use crate::error::{EngineError, Result};
use crate::operator::{Collector, StreamOperator};

/// The value schema a reader decodes Debezium events with: `before`, `after`, `op`, and the same
/// three inside `payload` (the envelope `value.converter.schemas.enable = true` adds).
pub fn event_schema(table: &Schema) -> Schema {
    let row = DataType::Struct(Fields::from(
        table
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<Field>>(),
    ));
    let inner = vec![
        Field::new("before", row.clone(), true),
        Field::new("after", row, true),
        Field::new("op", DataType::Utf8, true),
    ];
    let mut fields = inner.clone();
    fields.push(Field::new(
        "payload",
        DataType::Struct(Fields::from(inner)),
        true,
    ));
    Schema::new(fields)
}

/// Debezium events in (the [`event_schema`] columns, then the message key and tombstone flag),
/// upsert messages out (the table's columns, then a NULL key, then "deleted").
pub struct DebeziumToUpsert {
    table_schema: SchemaRef,
    out_schema: SchemaRef,
}

impl DebeziumToUpsert {
    /// The step for a table of `table_schema`.
    pub fn new(table_schema: SchemaRef) -> Self {
        let mut fields: Vec<Field> = table_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new("__weir_key", DataType::Utf8, true));
        fields.push(Field::new("__weir_tombstone", DataType::Boolean, true));
        Self {
            table_schema,
            out_schema: Arc::new(Schema::new(fields)),
        }
    }

    fn reshape(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let column = |name: &str| {
            batch.column_by_name(name).cloned().ok_or_else(|| {
                EngineError::Internal(format!("Debezium input lacks its \"{name}\" column"))
            })
        };
        let payload = column("payload")?;
        let payload = payload.as_struct();
        let enveloped = is_not_null(payload)?;
        // Each of before / after / op from the envelope when there is one.
        let pick = |name: &str| -> Result<ArrayRef> {
            let plain = column(name)?;
            let inner = payload.column_by_name(name).cloned().ok_or_else(|| {
                EngineError::Internal(format!("Debezium payload lacks \"{name}\""))
            })?;
            Ok(zip(&enveloped, &inner, &plain)?)
        };
        let before = pick("before")?;
        let after = pick("after")?;
        let op = pick("op")?;
        let op = op.as_string::<i32>();
        let is = |code: &str| eq(op, &StringArray::new_scalar(code));
        let deleted = is("d")?;
        let upserted = datafusion::arrow::compute::or(
            &datafusion::arrow::compute::or(&is("c")?, &is("u")?)?,
            &is("r")?,
        )?;
        let known = datafusion::arrow::compute::or(&deleted, &upserted)?;
        let known = deleted_or_false(&known);
        let before = before.as_struct();
        let after = after.as_struct();
        let n = batch.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.table_schema.fields().len() + 2);
        for field in self.table_schema.fields() {
            let from = |s: &StructArray| -> Result<ArrayRef> {
                let Some(c) = s.column_by_name(field.name()) else {
                    return Ok(new_null_array(field.data_type(), n));
                };
                // The fields of a NULL row struct are NULL.
                Ok(match s.nulls() {
                    Some(nulls) if nulls.null_count() > 0 => {
                        let valid = BooleanArray::new(nulls.inner().clone(), None);
                        zip(&valid, c, &new_null_array(c.data_type(), n))?
                    }
                    _ => Arc::clone(c),
                })
            };
            let (b, a) = (from(before)?, from(after)?);
            columns.push(zip(&deleted_or_false(&deleted), &b, &a)?);
        }
        columns.push(new_null_array(&DataType::Utf8, n));
        columns.push(Arc::new(deleted_or_false(&deleted)));
        let reshaped = RecordBatch::try_new(Arc::clone(&self.out_schema), columns)?;
        Ok(filter_record_batch(&reshaped, &known)?)
    }
}

/// `mask` with NULL as false.
fn deleted_or_false(mask: &BooleanArray) -> BooleanArray {
    match mask.nulls() {
        Some(nulls) => BooleanArray::new(mask.values() & nulls.inner(), None),
        None => mask.clone(),
    }
}

impl StreamOperator for DebeziumToUpsert {
    fn name(&self) -> String {
        "debezium".into()
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let reshaped = self.reshape(&batch)?;
        if reshaped.num_rows() > 0 {
            out.data(reshaped);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "Debezium: c / r / u events upsert `after`, d deletes `before`'s key".into()
    }
}
