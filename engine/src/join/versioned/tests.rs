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

/// After a step of input: the watermark 10 ms behind the slower input's newest row, and when
/// `checkpoint`, a snapshot restored into a fresh join (what was out so far moved to `got`).
fn after_step(
    op: &mut VersionedJoin,
    kind: JoinKind,
    newest: [i64; 2],
    checkpoint: bool,
    out: &mut Collector,
    got: &mut Vec<Pair>,
) -> Result<()> {
    let slowest = newest[0].min(newest[1]);
    if slowest > i64::MIN {
        op.on_watermark(Watermark::EventTime((slowest - 10) * MS), out)?;
    }
    if checkpoint {
        let state = op.snapshot(CheckpointBarrier { epoch: 1 })?;
        got.extend(collected(out));
        *op = join(kind);
        op.restore(state)?;
    }
    Ok(())
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
            steps += 1;
            after_step(&mut op, kind, newest, steps == 100, &mut out, &mut got)?;
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

/// A table that updates by key as the versions: an insert or an update's new row starts a
/// version at its time, an update's old row changes nothing, a delete ends the key's versions
/// from the newest time the table has shown. Checked against that reading of the definition,
/// with a checkpoint (deletes kept in it) half way.
#[test]
fn a_table_that_updates_is_versioned_by_its_changes() -> Result<()> {
    use crate::changes::Op;
    let mut next = draws(0x0dd_ba11_5eed_0001);
    for kind in [JoinKind::Inner, JoinKind::Left] {
        // The table's changes, one every 3 ms over 4 keys: (op, key, time of the row).
        let mut live: [Option<i64>; 4] = [None; 4];
        let mut changes: Vec<(Op, i64, i64)> = Vec::new();
        // Per key: (start, Some(version time)) or (start, None) from a delete.
        let mut history: Vec<Vec<(i64, Option<i64>)>> = vec![Vec::new(); 4];
        let mut clock = 0;
        for i in 0..400 {
            let t = i * 3;
            let key = next(4);
            let k = key as usize;
            if next(4) == 0 {
                if let Some(old) = live[k].take() {
                    changes.push((Op::Delete, key, old));
                    history[k].push((clock, None));
                }
                continue;
            }
            match live[k].replace(t) {
                Some(old) => {
                    changes.push((Op::UpdateBefore, key, old));
                    changes.push((Op::UpdateAfter, key, t));
                }
                None => changes.push((Op::Insert, key, t)),
            }
            history[k].push((t, Some(t)));
            clock = t;
        }
        let lefts: Vec<(Option<i64>, i64)> = (0..600).map(|i| (Some(next(4)), i * 2 + 1)).collect();
        let (ls, rs) = (side_schema("l"), side_schema("r"));
        let mut op = join(kind);
        let mut out = Collector::default();
        let mut got = Vec::new();
        let (mut li, mut ri, mut steps) = (0, 0, 0);
        let mut newest = [i64::MIN; 2];
        while li < lefts.len() || ri < changes.len() {
            let take = 1 + next(6) as usize;
            let left_first = match (lefts.get(li), changes.get(ri)) {
                (Some(l), Some(r)) => l.1 <= r.2,
                (Some(_), None) => true,
                _ => false,
            };
            if left_first {
                let part = &lefts[li..(li + take).min(lefts.len())];
                li += part.len();
                newest[0] = part.iter().map(|r| r.1).max().unwrap_or(newest[0]);
                op.process_input(0, Changes::inserts(rows(&ls, part)), &mut out)?;
            } else {
                let mut end = (ri + take).min(changes.len());
                // An update's two rows travel together.
                if end < changes.len() && changes[end].0 == Op::UpdateAfter {
                    end += 1;
                }
                let part = &changes[ri..end];
                ri = end;
                let batch: Vec<(Option<i64>, i64)> =
                    part.iter().map(|c| (Some(c.1), c.2)).collect();
                let ops: Vec<Op> = part.iter().map(|c| c.0).collect();
                newest[1] = newest[1].max(part.iter().map(|c| c.2).max().unwrap_or(i64::MIN));
                op.process_input(1, Changes::from_ops(rows(&rs, &batch), &ops)?, &mut out)?;
            }
            steps += 1;
            after_step(&mut op, kind, newest, steps == 150, &mut out, &mut got)?;
        }
        op.on_end(&mut out)?;
        got.extend(collected(&mut out));
        got.sort_unstable();

        let mut want = Vec::new();
        for l in &lefts {
            let key = l.0.unwrap_or(-1) as usize;
            let valid = history[key].iter().rfind(|h| h.0 <= l.1).and_then(|h| h.1);
            match valid {
                Some(v) if l.1 - v <= 12 => want.push((l.0, Some(l.1), l.0, Some(v))),
                _ if kind == JoinKind::Left => want.push((l.0, Some(l.1), None, None)),
                _ => {}
            }
        }
        want.sort_unstable();
        let nulls = want.iter().filter(|w| w.2.is_none()).count();
        assert!(want.len() > 200, "{kind:?}: {}", want.len());
        assert!(
            kind == JoinKind::Inner || nulls > 50,
            "{kind:?}: {nulls} without a version"
        );
        assert_eq!(got, want, "{kind:?}");
    }
    Ok(())
}
