//! Event-time temporal joins against a direct reading of the definition: each left row with the
//! version of its key valid at its time (the newest at or before it), inner and left, rows out
//! of order within the watermark delay, a condition besides the key, a checkpoint and restore
//! half way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};

use super::super::JoinKind;
use super::super::tests::{Pair, column, condition, draws, rows, side_schema};
use super::{VersionedJoin, VersionedSpec};
use crate::changes::Changes;
use crate::error::Result;
use crate::late_rows::LateRowLog;
use crate::message::{CheckpointBarrier, Message, Watermark};
use crate::operator::{Collector, StreamOperator};

const MS: i64 = 1_000_000;

fn join(kind: JoinKind) -> VersionedJoin {
    let (left, right) = (side_schema("l"), side_schema("r"));
    let fields: Vec<Field> = left
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .chain(
            right
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        )
        .collect();
    VersionedJoin::try_new(
        VersionedSpec {
            view: "t".into(),
            kind,
            left_keys: vec![column("lk", 0)],
            right_keys: vec![column("rk", 0)],
            // The version is at most 12 ms older than the row: older ones are no match.
            filter: Some(condition(0, 12)),
            left_schema: left,
            right_schema: right,
            output_schema: Arc::new(Schema::new(fields.clone())),
            joined_schema: Arc::new(Schema::new(fields)),
            left_time: 1,
            right_time: 1,
            condition: "test".into(),
        },
        Arc::new(LateRowLog::default()),
    )
    .unwrap()
}

fn collected(out: &mut Collector) -> Vec<Pair> {
    let mut got = Vec::new();
    for message in out.drain() {
        if let Message::Changes(changes) = message {
            got.extend(super::super::retracting_tests::as_tuples(changes.rows()));
        }
    }
    got
}

#[test]
fn each_row_joins_the_version_valid_at_its_time() -> Result<()> {
    let mut next = draws(0x1234_5678_9abc_def1);
    for kind in [JoinKind::Inner, JoinKind::Left] {
        // Versions of 4 keys every 3 ms (distinct times), left rows every 2 ms, each stream
        // out of order by up to 4 ms; the watermark is 10 ms behind the newest row of either.
        let mut versions: Vec<(Option<i64>, i64)> =
            (0..400).map(|i| (Some(next(4)), i * 3)).collect();
        let mut lefts: Vec<(Option<i64>, i64)> = (0..600)
            .map(|i| (if i == 33 { None } else { Some(next(5)) }, i * 2 + 1))
            .collect();
        for list in [&mut versions, &mut lefts] {
            for i in 0..list.len() - 1 {
                if next(3) == 0 && (list[i + 1].1 - list[i].1).abs() < 4 {
                    list.swap(i, i + 1);
                }
            }
        }
        let (ls, rs) = (side_schema("l"), side_schema("r"));
        let mut op = join(kind);
        let mut out = Collector::default();
        let mut got = Vec::new();
        let (mut li, mut ri, mut steps) = (0, 0, 0);
        let mut newest = [i64::MIN; 2];
        while li < lefts.len() || ri < versions.len() {
            let side = match (lefts.get(li), versions.get(ri)) {
                (Some(l), Some(r)) => usize::from(r.1 < l.1),
                (Some(_), None) => 0,
                _ => 1,
            };
            let take = 1 + next(6) as usize;
            let (all, at, schema) = if side == 0 {
                (&lefts, &mut li, &ls)
            } else {
                (&versions, &mut ri, &rs)
            };
            let part = &all[*at..(*at + take).min(all.len())];
            *at += part.len();
            newest[side] = newest[side].max(part.iter().map(|r| r.1).max().unwrap_or(i64::MIN));
            op.process_input(side, Changes::inserts(rows(schema, part)), &mut out)?;
            let slowest = newest[0].min(newest[1]);
            if slowest > i64::MIN {
                op.on_watermark(Watermark::EventTime((slowest - 10) * MS), &mut out)?;
            }
            steps += 1;
            if steps == 100 {
                let state = op.snapshot(CheckpointBarrier { epoch: 1 })?;
                got.extend(collected(&mut out));
                op = join(kind);
                op.restore(state)?;
            }
        }
        op.on_end(&mut out)?;
        got.extend(collected(&mut out));
        got.sort_unstable();
        // What is kept stays small: old versions are dropped as the watermark passes.
        assert!(op.kept < 40, "{kind:?}: {} versions kept", op.kept);

        let mut want = Vec::new();
        for l in &lefts {
            let valid = versions
                .iter()
                .filter(|r| l.0.is_some() && r.0 == l.0 && r.1 <= l.1)
                .max_by_key(|r| r.1);
            match valid {
                Some(r) if l.1 - r.1 <= 12 => want.push((l.0, Some(l.1), r.0, Some(r.1))),
                _ if kind == JoinKind::Left => want.push((l.0, Some(l.1), None, None)),
                _ => {}
            }
        }
        want.sort_unstable();
        assert!(want.len() > 300, "{kind:?}: {}", want.len());
        assert_eq!(got, want, "{kind:?}");
    }
    Ok(())
}
