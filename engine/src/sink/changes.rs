//! A view's messages as a sink's changes.
//!
//! A view's stream says "these rows are final" (`Data`, `Finalize`) or "partition P's rows are
//! now exactly these" (`Upsert`, an open window). PLAIN sinks emit each final row once. UPSERT
//! sinks emit every current value by key: for a partition they compare the new rows with the
//! ones they last sent, and emit the rows that changed and a delete for each key that went away.

use std::collections::{BTreeMap, HashSet};

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};

use super::{ChangeBatch, ChangeOp, SinkFormat};
use crate::changes::{Changes, Op};
use crate::error::{EngineError, Result};
use crate::message::Message;

/// Turns a view's messages into [`ChangeBatch`]es for one sink.
#[derive(Debug)]
pub struct ChangeTracker {
    format: SinkFormat,
    /// Positions of the key columns (UPSERT).
    key_columns: Vec<usize>,
    /// UPSERT: each open partition's rows as last sent.
    open: BTreeMap<i64, RecordBatch>,
}

impl ChangeTracker {
    /// A tracker for rows of `schema`. `open` holds the partitions' rows already sent (on
    /// recovery, the upstream view's provisional rows at the checkpoint).
    pub fn new(
        format: SinkFormat,
        schema: &Schema,
        open: BTreeMap<i64, RecordBatch>,
    ) -> Result<Self> {
        let key_columns = match &format {
            SinkFormat::Plain => Vec::new(),
            SinkFormat::Upsert { key } => key
                .iter()
                .map(|k| {
                    schema.index_of(k).map_err(|_| {
                        EngineError::User(format!(
                            "primary key column \"{k}\" is not a column of the sink's rows ({})",
                            schema
                                .fields()
                                .iter()
                                .map(|f| f.name().as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })
                })
                .collect::<Result<_>>()?,
        };
        Ok(Self {
            format,
            key_columns,
            open,
        })
    }

    /// The changes `message` makes (none for control messages).
    pub fn changes(&mut self, message: &Message) -> Result<Vec<ChangeBatch>> {
        let upsert = |rows: &RecordBatch| ChangeBatch {
            op: ChangeOp::Upsert,
            rows: rows.clone(),
        };
        Ok(match (&self.format, message) {
            (_, Message::Data(rows)) if rows.num_rows() > 0 => vec![upsert(rows)],
            (format, Message::Changes(changes)) => op_changes(format, changes)?,
            (SinkFormat::Plain, Message::Finalize(p)) if p.rows.num_rows() > 0 => {
                vec![upsert(&p.rows)]
            }
            (SinkFormat::Upsert { .. }, Message::Upsert(p)) => {
                let out = self.diff(p.partition, &p.rows)?;
                self.open.insert(p.partition, p.rows.clone());
                out
            }
            (SinkFormat::Upsert { .. }, Message::Finalize(p)) => {
                let out = self.diff(p.partition, &p.rows)?;
                self.open.remove(&p.partition);
                out
            }
            _ => Vec::new(),
        })
    }

    /// Deletes for keys of `partition` that are gone from `rows`, and the rows of `rows` that
    /// differ from what was sent.
    fn diff(&self, partition: i64, rows: &RecordBatch) -> Result<Vec<ChangeBatch>> {
        let Some(previous) = self.open.get(&partition).filter(|p| p.num_rows() > 0) else {
            return Ok(non_empty(ChangeOp::Upsert, rows.clone()));
        };
        let keys = |b: &RecordBatch| -> Vec<ArrayRef> {
            self.key_columns
                .iter()
                .map(|&i| b.column(i).clone())
                .collect()
        };
        let new_keys: HashSet<OwnedRow> = owned_rows(&keys(rows))?.into_iter().collect();
        let gone = BooleanArray::from(
            owned_rows(&keys(previous))?
                .iter()
                .map(|k| !new_keys.contains(k))
                .collect::<Vec<_>>(),
        );
        let sent: HashSet<OwnedRow> = owned_rows(previous.columns())?.into_iter().collect();
        let changed = BooleanArray::from(
            owned_rows(rows.columns())?
                .iter()
                .map(|r| !sent.contains(r))
                .collect::<Vec<_>>(),
        );
        let mut out = non_empty(ChangeOp::Delete, filter_record_batch(previous, &gone)?);
        out.extend(non_empty(
            ChangeOp::Upsert,
            filter_record_batch(rows, &changed)?,
        ));
        Ok(out)
    }
}

fn non_empty(op: ChangeOp, rows: RecordBatch) -> Vec<ChangeBatch> {
    if rows.num_rows() == 0 {
        Vec::new()
    } else {
        vec![ChangeBatch { op, rows }]
    }
}

/// Each row of `columns` as a comparable, hashable value.
fn owned_rows(columns: &[ArrayRef]) -> Result<Vec<OwnedRow>> {
    let converter = RowConverter::new(
        columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(columns)?;
    Ok(rows.iter().map(|r| r.owned()).collect())
}

/// Row-level changes as sink changes. PLAIN sinks take inserts only. UPSERT sinks upsert inserts
/// and update-afters and delete deletes; an update-before is skipped, since its update-after
/// follows with the same key and overwrites it.
fn op_changes(format: &SinkFormat, changes: &Changes) -> Result<Vec<ChangeBatch>> {
    let Some(ops) = changes.ops() else {
        return Ok(non_empty(ChangeOp::Upsert, changes.rows().clone()));
    };
    match format {
        SinkFormat::Plain => {
            if !changes.is_inserts_only() {
                return Err(EngineError::User(
                    "a FORMAT PLAIN sink received updates or deletes; use FORMAT UPSERT with the \
                     view's key"
                        .into(),
                ));
            }
            Ok(non_empty(ChangeOp::Upsert, changes.rows().clone()))
        }
        SinkFormat::Upsert { .. } => {
            // Runs of one kind keep their order: a key deleted then re-inserted in one batch must
            // arrive as delete, then upsert.
            let mut out = Vec::new();
            let mut start = 0;
            let kind = |b: u8| match Op::from_byte(b) {
                Some(Op::Delete) => Some(ChangeOp::Delete),
                Some(Op::UpdateBefore) => None,
                _ => Some(ChangeOp::Upsert),
            };
            let bytes = ops.values();
            while start < bytes.len() {
                let run = kind(bytes[start]);
                let mut end = start + 1;
                while end < bytes.len() && kind(bytes[end]) == run {
                    end += 1;
                }
                if let Some(op) = run {
                    out.extend(non_empty(op, changes.rows().slice(start, end - start)));
                }
                start = end;
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};

    use super::*;
    use crate::message::PartitionRows;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("w", DataType::Int64, false),
            Field::new("v", DataType::Float64, false),
        ]))
    }

    fn rows(data: &[(&str, f64)]) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(data.iter().map(|d| d.0))),
                Arc::new(Int64Array::from(vec![7; data.len()])),
                Arc::new(Float64Array::from_iter_values(data.iter().map(|d| d.1))),
            ],
        )?)
    }

    fn keys(changes: &[ChangeBatch], op: ChangeOp) -> Vec<String> {
        changes
            .iter()
            .filter(|c| c.op == op)
            .flat_map(|c| {
                let k = c
                    .rows
                    .column(0)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .cloned();
                k.into_iter()
                    .flat_map(|k| k.iter().flatten().map(str::to_string).collect::<Vec<_>>())
            })
            .collect()
    }

    fn partition(rows: RecordBatch) -> PartitionRows {
        PartitionRows { partition: 7, rows }
    }

    #[test]
    fn plain_sends_final_rows_once() -> Result<()> {
        let mut t = ChangeTracker::new(SinkFormat::Plain, &schema(), BTreeMap::new())?;
        assert!(
            t.changes(&Message::Upsert(partition(rows(&[("a", 1.0)])?)))?
                .is_empty()
        );
        let fin = t.changes(&Message::Finalize(partition(rows(&[
            ("a", 2.0),
            ("b", 1.0),
        ])?)))?;
        assert_eq!(keys(&fin, ChangeOp::Upsert), ["a", "b"]);
        let data = t.changes(&Message::Data(rows(&[("c", 1.0)])?))?;
        assert_eq!(keys(&data, ChangeOp::Upsert), ["c"]);
        Ok(())
    }

    #[test]
    fn upsert_sends_what_changed_and_deletes_what_went() -> Result<()> {
        let format = SinkFormat::Upsert {
            key: vec!["k".into(), "w".into()],
        };
        let mut t = ChangeTracker::new(format, &schema(), BTreeMap::new())?;
        let first = t.changes(&Message::Upsert(partition(rows(&[
            ("a", 1.0),
            ("b", 1.0),
        ])?)))?;
        assert_eq!(keys(&first, ChangeOp::Upsert), ["a", "b"]);
        // b changes, a stays, c appears.
        let second = t.changes(&Message::Upsert(partition(rows(&[
            ("a", 1.0),
            ("b", 2.0),
            ("c", 1.0),
        ])?)))?;
        assert_eq!(keys(&second, ChangeOp::Upsert), ["b", "c"]);
        assert!(keys(&second, ChangeOp::Delete).is_empty());
        // The final rows lack a (filtered by HAVING, say): a delete.
        let fin = t.changes(&Message::Finalize(partition(rows(&[
            ("b", 2.0),
            ("c", 3.0),
        ])?)))?;
        assert_eq!(keys(&fin, ChangeOp::Delete), ["a"]);
        assert_eq!(keys(&fin, ChangeOp::Upsert), ["c"]);
        Ok(())
    }

    #[test]
    fn unknown_key_column_is_refused() {
        let format = SinkFormat::Upsert {
            key: vec!["nope".into()],
        };
        assert!(ChangeTracker::new(format, &schema(), BTreeMap::new()).is_err());
    }
}
