//! Interval joins against a nested-loop join of the same rows: inner and left outer, rows out of
//! order within the watermark delay, a checkpoint and restore half way, a NULL key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};

use super::{Interval, JoinKind, JoinSpec, StreamJoin};
use crate::changes::Changes;
use crate::error::Result;
use crate::late_rows::LateRowLog;
use crate::message::{CheckpointBarrier, Message, Watermark};
use crate::operator::{Collector, StreamOperator};

const MS: i64 = 1_000_000;

/// A deterministic stream of draws below a bound (xorshift), one per call.
pub(super) fn draws(seed: u64) -> impl FnMut(i64) -> i64 {
    let mut state = seed;
    move |below: i64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as i64
    }
}

pub(super) fn side_schema(prefix: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(format!("{prefix}k"), DataType::Int64, true),
        Field::new(
            format!("{prefix}t"),
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        // The time again, as a number the join condition compares.
        Field::new(format!("{prefix}v"), DataType::Int64, false),
    ]))
}

pub(super) fn rows(schema: &SchemaRef, rows: &[(Option<i64>, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::clone(schema),
        vec![
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .unwrap()
}

pub(super) fn column(name: &str, index: usize) -> Arc<dyn PhysicalExpr> {
    Arc::new(Column::new(name, index))
}

/// `l.v - r.v BETWEEN lower AND upper` (in ms) over the joined row.
pub(super) fn condition(lower: i64, upper: i64) -> Arc<dyn PhysicalExpr> {
    let diff: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
        column("lv", 2),
        Operator::Minus,
        column("rv", 5),
    ));
    let literal = |v: i64| -> Arc<dyn PhysicalExpr> {
        Arc::new(Literal::new(datafusion::common::ScalarValue::Int64(Some(
            v,
        ))))
    };
    Arc::new(BinaryExpr::new(
        Arc::new(BinaryExpr::new(
            Arc::clone(&diff),
            Operator::GtEq,
            literal(lower),
        )),
        Operator::And,
        Arc::new(BinaryExpr::new(diff, Operator::LtEq, literal(upper))),
    ))
}

fn join(kind: JoinKind, lower: i64, upper: i64) -> StreamJoin {
    let (left, right) = (side_schema("l"), side_schema("r"));
    let mut fields: Vec<Field> = left.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(
        right
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true)),
    );
    if kind != JoinKind::Inner {
        fields = fields.into_iter().map(|f| f.with_nullable(true)).collect();
    }
    let output: Vec<Field> = if kind.left_only() {
        left.fields().iter().map(|f| f.as_ref().clone()).collect()
    } else {
        fields.clone()
    };
    StreamJoin::try_new(
        JoinSpec {
            view: "j".into(),
            kind,
            left_keys: vec![column("lk", 0)],
            right_keys: vec![column("rk", 0)],
            filter: Some(condition(lower, upper)),
            left_schema: left,
            right_schema: right,
            output_schema: Arc::new(Schema::new(output)),
            joined_schema: Arc::new(Schema::new(fields)),
            interval: Some(Interval {
                left_time: 1,
                right_time: 1,
                lower: lower * MS,
                upper: upper * MS,
            }),
            ttl: None,
            condition: "test".into(),
            updating: [false, false],
        },
        Arc::new(LateRowLog::default()),
    )
    .unwrap()
}

/// `(left key, left time, right key, right time)` of every output row, sorted.
/// `(left key, left time, right key, right time)`.
pub(super) type Pair = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);

fn collected(out: &mut Collector) -> Vec<Pair> {
    let mut got = Vec::new();
    for message in out.drain() {
        if let Message::Changes(changes) = message {
            let rows = changes.rows();
            let value = |c: usize, i: usize| {
                let a = rows.column(c).as_primitive::<Int64Type>();
                a.is_valid(i).then(|| a.value(i))
            };
            for i in 0..rows.num_rows() {
                if rows.num_columns() == 3 {
                    // A semi or anti join: the left row alone.
                    got.push((value(0, i), value(2, i), None, None));
                } else {
                    got.push((value(0, i), value(2, i), value(3, i), value(5, i)));
                }
            }
        }
    }
    got
}

#[test]
fn interval_joins_equal_a_nested_loop_join_across_a_checkpoint() -> Result<()> {
    let mut next = draws(0x9e37_79b9_7f4a_7c15);
    for kind in [
        JoinKind::Inner,
        JoinKind::Left,
        JoinKind::Right,
        JoinKind::Full,
        JoinKind::Semi,
        JoinKind::Anti,
    ] {
        let (lower, upper) = (-5, 3);
        let (ls, rs) = (side_schema("l"), side_schema("r"));
        // Rows of both sides, time ascending with up to 3 ms of disorder (the watermark is 30
        // ms behind the newest row, so none is late); one left row has a NULL key.
        let mut left = Vec::new();
        let mut right = Vec::new();
        for i in 0..300 {
            let key = |n: &mut dyn FnMut(i64) -> i64| Some(n(6));
            left.push((key(&mut next), i * 2 + next(4)));
            right.push((key(&mut next), i * 2 + next(4)));
        }
        left[17].0 = None;
        let mut op = join(kind, lower, upper);
        let mut out = Collector::default();
        let mut got = Vec::new();
        let mut newest = i64::MIN;
        let (mut li, mut ri) = (0, 0);
        let mut steps = 0;
        while li < left.len() || ri < right.len() {
            let take = 1 + next(7) as usize;
            // The side whose next row is older, mostly: both sides advance together.
            let side = match (left.get(li), right.get(ri)) {
                (Some(l), Some(r)) if (l.1 - r.1).abs() <= 2 => next(2) as usize,
                (Some(l), Some(r)) => usize::from(r.1 < l.1),
                (Some(_), None) => 0,
                _ => 1,
            };
            let (all, at, schema) = if side == 0 {
                (&left, &mut li, &ls)
            } else {
                (&right, &mut ri, &rs)
            };
            let part = &all[*at..(*at + take).min(all.len())];
            *at += part.len();
            newest = newest.max(part.iter().map(|r| r.1).max().unwrap_or(i64::MIN));
            op.process_input(side, Changes::inserts(rows(schema, part)), &mut out)?;
            op.on_watermark(Watermark::EventTime((newest - 30) * MS), &mut out)?;
            steps += 1;
            // Rows leave as the watermark passes them: what is held stays near 30 ms of rows.
            let held: usize = op.sides.iter().map(|s| s.rows).sum();
            assert!(held < 100, "{kind:?}: {held} rows held at step {steps}");
            if steps == 60 {
                // Half way: a checkpoint, and a new operator restored from it goes on.
                let state = op.snapshot(CheckpointBarrier { epoch: 1 })?;
                got.extend(collected(&mut out));
                op = join(kind, lower, upper);
                op.restore(state)?;
            }
        }
        op.on_end(&mut out)?;
        got.extend(collected(&mut out));
        got.sort_unstable();

        let mut want = Vec::new();
        let mut left_joined = vec![false; left.len()];
        let mut right_joined = vec![false; right.len()];
        for (a, l) in left.iter().enumerate() {
            for (b, r) in right.iter().enumerate() {
                let d = l.1 - r.1;
                if l.0.is_some() && l.0 == r.0 && d >= lower && d <= upper {
                    want.push((l.0, Some(l.1), r.0, Some(r.1)));
                    left_joined[a] = true;
                    right_joined[b] = true;
                }
            }
        }
        if kind.left_only() {
            // Each left row once: those that joined (semi) or those that never did (anti).
            want = left
                .iter()
                .enumerate()
                .filter(|(a, _)| left_joined[*a] == (kind == JoinKind::Semi))
                .map(|(_, l)| (l.0, Some(l.1), None, None))
                .collect();
        } else if kind.preserves(0) {
            for (a, l) in left.iter().enumerate() {
                if !left_joined[a] {
                    want.push((l.0, Some(l.1), None, None));
                }
            }
        }
        if kind.preserves(1) && !kind.left_only() {
            for (b, r) in right.iter().enumerate() {
                if !right_joined[b] {
                    want.push((None, None, r.0, Some(r.1)));
                }
            }
        }
        want.sort_unstable();
        assert!(want.len() > 50, "{kind:?}: {}", want.len());
        assert_eq!(got, want, "{kind:?}");
    }
    Ok(())
}
