//! A view's change stream as a sink's changes.
//!
//! PLAIN sinks write each final row once: they read appended rows (inserts-only `Changes`); of
//! an updating view they read only rows the watermark sealed
//! ([`crate::fanout::ReadMode::Sealed`]), so an update or delete reaching one is a bug upstream.
//! UPSERT sinks write every current value by key: inserts and update-afters are upserts,
//! deletes are deletes, and an update-before is skipped because its update-after follows with
//! the same key and overwrites it. DEBEZIUM sinks write inserts, deletes, and each update pair
//! as one update carrying both versions.

use datafusion::arrow::array::{BooleanArray, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;

use super::{ChangeBatch, ChangeOp, SinkFormat};
use crate::changes::{Changes, Op};
use crate::error::{EngineError, Result};
use crate::message::Message;

/// Turns a view's messages into [`ChangeBatch`]es for one sink.
#[derive(Debug)]
pub struct ChangeTracker {
    format: SinkFormat,
}

impl ChangeTracker {
    /// A tracker for rows of `schema`; an UPSERT key must name its columns.
    pub fn new(format: SinkFormat, schema: &Schema) -> Result<Self> {
        if let Some(key) = format.key() {
            for k in key {
                if schema.index_of(k).is_err() {
                    return Err(EngineError::User(format!(
                        "primary key column \"{k}\" is not a column of the sink's rows ({})",
                        schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        Ok(Self { format })
    }

    /// The changes `message` makes (none for control messages).
    pub fn changes(&mut self, message: &Message) -> Result<Vec<ChangeBatch>> {
        match message {
            Message::Changes(changes) => op_changes(&self.format, changes),
            _ => Ok(Vec::new()),
        }
    }
}

fn non_empty(op: ChangeOp, rows: RecordBatch) -> Vec<ChangeBatch> {
    if rows.num_rows() == 0 {
        Vec::new()
    } else {
        vec![ChangeBatch {
            op,
            rows,
            before: None,
        }]
    }
}

/// Row-level changes as sink changes; see the module docs.
fn op_changes(format: &SinkFormat, changes: &Changes) -> Result<Vec<ChangeBatch>> {
    let Some(ops) = changes.ops() else {
        return Ok(non_empty(ChangeOp::Upsert, changes.rows().clone()));
    };
    if matches!(format, SinkFormat::Plain) {
        if !changes.is_inserts_only() {
            return Err(EngineError::Internal(
                "a FORMAT PLAIN sink received updates or deletes".into(),
            ));
        }
        return Ok(non_empty(ChangeOp::Upsert, changes.rows().clone()));
    }
    if matches!(format, SinkFormat::Debezium { .. }) {
        return debezium_changes(changes.rows(), ops.values());
    }
    // Drop the update-befores, then cut what is left into runs of deletes and upserts: order
    // matters when one batch deletes a key and inserts it again.
    let bytes = ops.values();
    let kept: BooleanArray = bytes
        .iter()
        .map(|b| Some(*b != Op::UpdateBefore as u8))
        .collect();
    let rows = filter_record_batch(changes.rows(), &kept)?;
    let deletes: Vec<bool> = bytes
        .iter()
        .filter(|b| **b != Op::UpdateBefore as u8)
        .map(|b| *b == Op::Delete as u8)
        .collect();
    let mut out = Vec::new();
    let mut start = 0;
    while start < deletes.len() {
        let delete = deletes[start];
        let end = deletes[start..]
            .iter()
            .position(|d| *d != delete)
            .map_or(deletes.len(), |n| start + n);
        let op = if delete {
            ChangeOp::Delete
        } else {
            ChangeOp::Upsert
        };
        out.extend(non_empty(op, rows.slice(start, end - start)));
        start = end;
    }
    Ok(out)
}

/// Runs of inserts, deletes and updates (before and after side by side), in order.
fn debezium_changes(rows: &RecordBatch, ops: &[u8]) -> Result<Vec<ChangeBatch>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ops.len() {
        let op = ops[i];
        if op == Op::UpdateBefore as u8 {
            // A run of update pairs: befores at even offsets, afters at odd ones.
            let mut end = i;
            while end + 1 < ops.len()
                && ops[end] == Op::UpdateBefore as u8
                && ops[end + 1] == Op::UpdateAfter as u8
            {
                end += 2;
            }
            if end == i {
                return Err(EngineError::Internal(
                    "an update-before without its update-after reached a sink".into(),
                ));
            }
            let pairs = (end - i) / 2;
            let befores = UInt32Array::from_iter_values((0..pairs).map(|p| (i + 2 * p) as u32));
            let afters = UInt32Array::from_iter_values((0..pairs).map(|p| (i + 2 * p + 1) as u32));
            out.push(ChangeBatch {
                op: ChangeOp::Update,
                rows: take_record_batch(rows, &afters)?,
                before: Some(take_record_batch(rows, &befores)?),
            });
            i = end;
            continue;
        }
        let delete = op == Op::Delete as u8;
        let mut end = i;
        while end < ops.len()
            && ops[end] != Op::UpdateBefore as u8
            && (ops[end] == Op::Delete as u8) == delete
        {
            end += 1;
        }
        let kind = if delete {
            ChangeOp::Delete
        } else {
            ChangeOp::Upsert
        };
        out.extend(non_empty(kind, rows.slice(i, end - i)));
        i = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};

    use super::*;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Float64, false),
        ]))
    }

    fn rows(data: &[(&str, f64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(data.iter().map(|d| d.0))),
                Arc::new(Float64Array::from_iter_values(data.iter().map(|d| d.1))),
            ],
        )
        .unwrap()
    }

    /// (op, key) per row, in order.
    fn written(changes: &[ChangeBatch]) -> Vec<(ChangeOp, String)> {
        changes
            .iter()
            .flat_map(|c| {
                let k = c.rows.column(0).as_any().downcast_ref::<StringArray>();
                k.into_iter()
                    .flat_map(|k| k.iter().flatten().map(|k| (c.op, k.to_string())))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn upsert_writes_afters_and_deletes_in_order() {
        let format = SinkFormat::Upsert {
            key: vec!["k".into()],
        };
        let mut t = ChangeTracker::new(format, &schema()).unwrap();
        let changes = Changes::from_ops(
            rows(&[
                ("a", 1.0),
                ("a", 2.0),
                ("b", 1.0),
                ("b", 1.0),
                ("c", 5.0),
                ("d", 1.0),
            ]),
            &[
                Op::UpdateBefore,
                Op::UpdateAfter,
                Op::Delete,
                Op::Insert,
                Op::Insert,
                Op::Delete,
            ],
        )
        .unwrap();
        let out = t.changes(&Message::Changes(changes)).unwrap();
        let expected = [
            (ChangeOp::Upsert, "a"),
            (ChangeOp::Delete, "b"),
            (ChangeOp::Upsert, "b"),
            (ChangeOp::Upsert, "c"),
            (ChangeOp::Delete, "d"),
        ];
        let expected: Vec<(ChangeOp, String)> =
            expected.iter().map(|(o, k)| (*o, k.to_string())).collect();
        assert_eq!(written(&out), expected);
        // Three runs: upsert a; delete b; upsert b, c; delete d.
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn debezium_pairs_each_update_and_keeps_order() {
        let format = SinkFormat::Debezium {
            key: vec!["k".into()],
        };
        let mut t = ChangeTracker::new(format, &schema()).unwrap();
        let changes = Changes::from_ops(
            rows(&[
                ("a", 1.0),
                ("a", 2.0),
                ("b", 1.0),
                ("b", 3.0),
                ("c", 5.0),
                ("d", 1.0),
            ]),
            &[
                Op::UpdateBefore,
                Op::UpdateAfter,
                Op::UpdateBefore,
                Op::UpdateAfter,
                Op::Insert,
                Op::Delete,
            ],
        )
        .unwrap();
        let out = t.changes(&Message::Changes(changes)).unwrap();
        let expected: Vec<(ChangeOp, String)> = [
            (ChangeOp::Update, "a"),
            (ChangeOp::Update, "b"),
            (ChangeOp::Upsert, "c"),
            (ChangeOp::Delete, "d"),
        ]
        .iter()
        .map(|(o, k)| (*o, k.to_string()))
        .collect();
        assert_eq!(written(&out), expected);
        // One update batch with both pairs, its befores beside its afters.
        let update = &out[0];
        let value = |b: &RecordBatch, i: usize| {
            b.column(1)
                .as_any()
                .downcast_ref::<Float64Array>()
                .map(|v| v.value(i))
        };
        let before = update.before.as_ref().unwrap();
        assert_eq!(
            (value(before, 0), value(&update.rows, 0)),
            (Some(1.0), Some(2.0))
        );
        assert_eq!(
            (value(before, 1), value(&update.rows, 1)),
            (Some(1.0), Some(3.0))
        );
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn plain_writes_appended_rows_and_refuses_retractions() {
        let mut t = ChangeTracker::new(SinkFormat::Plain, &schema()).unwrap();
        let data = t
            .changes(&Message::Changes(Changes::inserts(rows(&[("c", 1.0)]))))
            .unwrap();
        assert_eq!(written(&data), vec![(ChangeOp::Upsert, "c".to_string())]);
        let delete = Changes::from_ops(rows(&[("c", 1.0)]), &[Op::Delete]).unwrap();
        assert!(t.changes(&Message::Changes(delete)).is_err());
    }

    #[test]
    fn unknown_key_column_is_refused() {
        let format = SinkFormat::Upsert {
            key: vec!["nope".into()],
        };
        assert!(ChangeTracker::new(format, &schema()).is_err());
    }
}
