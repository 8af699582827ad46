//! The upsert step's changes: by default a batch's last message per key against the live rows;
//! with every version kept, every message in order (a delete between two messages of other
//! keys stays between them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

use super::upsert::UpsertOperator;
use crate::changes::Op;
use crate::message::Message;
use crate::operator::{Collector, StreamOperator};

/// Messages `(key, value or None for a tombstone)` as the reader delivers them.
fn messages(list: &[(i64, Option<i64>)]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
        Field::new("__weir_key", DataType::Utf8, true),
        Field::new("__weir_tombstone", DataType::Boolean, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(vec![None::<i64>; list.len()])),
            Arc::new(Int64Array::from(
                list.iter().map(|m| m.1).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from_iter_values(
                list.iter().map(|m| m.0.to_string()),
            )),
            Arc::new(BooleanArray::from(
                list.iter().map(|m| m.1.is_none()).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

/// `(op, key, value)` of everything `op` emitted.
fn emitted(out: &mut Collector) -> Vec<(Op, i64, Option<i64>)> {
    let mut got = Vec::new();
    for message in out.drain() {
        if let Message::Changes(changes) = message {
            let rows = changes.rows();
            let (k, v) = (
                rows.column(0).as_primitive::<Int64Type>(),
                rows.column(1).as_primitive::<Int64Type>(),
            );
            for i in 0..rows.num_rows() {
                got.push((changes.op(i), k.value(i), v.is_valid(i).then(|| v.value(i))));
            }
        }
    }
    got
}

fn operator(every_version: bool) -> UpsertOperator {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]));
    let op = UpsertOperator::try_new(schema, vec![0]).unwrap();
    if every_version {
        op.keeping_every_version()
    } else {
        op
    }
}

#[test]
fn every_version_keeps_each_message_in_order() {
    let batch = messages(&[
        (1, Some(10)),
        (2, Some(20)),
        (1, None),
        (1, Some(11)),
        (2, Some(21)),
    ]);
    let mut op = operator(true);
    let mut out = Collector::default();
    op.process_batch(batch.clone(), &mut out).unwrap();
    assert_eq!(
        emitted(&mut out),
        vec![
            (Op::Insert, 1, Some(10)),
            (Op::Insert, 2, Some(20)),
            (Op::Delete, 1, Some(10)),
            (Op::Insert, 1, Some(11)),
            (Op::UpdateBefore, 2, Some(20)),
            (Op::UpdateAfter, 2, Some(21)),
        ]
    );
    // A second batch: an update of 2 before a delete of 1, in that order.
    op.process_batch(messages(&[(2, Some(22)), (1, None)]), &mut out)
        .unwrap();
    assert_eq!(
        emitted(&mut out),
        vec![
            (Op::UpdateBefore, 2, Some(21)),
            (Op::UpdateAfter, 2, Some(22)),
            (Op::Delete, 1, Some(11)),
        ]
    );

    // By default only each key's last message in a batch counts.
    let mut op = operator(false);
    op.process_batch(batch, &mut out).unwrap();
    let mut got = emitted(&mut out);
    got.sort_by_key(|c| c.1);
    assert_eq!(
        got,
        vec![(Op::Insert, 1, Some(11)), (Op::Insert, 2, Some(21))]
    );
}
