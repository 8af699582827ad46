use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit, UInt64Type};
use datafusion::physical_expr::expressions::Column;

use super::*;
use crate::changes::ChangelogChecker;
use crate::changes::testing::key_value_rows;
use crate::message::Message;

fn with_rank(input: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<_> = input.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("rn", DataType::UInt64, false)));
    Arc::new(Schema::new(fields))
}

/// Top `limit` values per key `k`, largest first.
fn top_by_value(function: RankFunction, limit: u64, updating: bool) -> TopN {
    let input = key_value_rows(&[], &[]).schema();
    TopN::try_new(
        TopNSpec {
            view: "v".into(),
            partition_by: vec![Arc::new(Column::new("k", 0))],
            order_by: vec![PhysicalSortExpr {
                expr: Arc::new(Column::new("v", 1)),
                options: SortOptions {
                    descending: true,
                    nulls_first: false,
                },
            }],
            function,
            limit,
            output_schema: with_rank(&input),
            input_schema: input,
            updating_input: updating,
            seal: None,
            emit_at_close: false,
        },
        Arc::new(LateRowLog::default()),
    )
    .expect("top-n")
}

/// Replays everything `out` holds into `checker`.
fn replay(out: &mut Collector, checker: &mut ChangelogChecker) {
    for message in out.drain() {
        if let Message::Changes(c) = message {
            checker.apply(&c).expect("valid changes");
        }
    }
}

/// Live rows as sorted `(k, v, rank)` triples.
fn live(checker: &ChangelogChecker) -> Vec<(String, i64, u64)> {
    let rows = checker.live_rows().expect("rows");
    let mut out: Vec<_> = (0..rows.num_rows())
        .map(|i| {
            (
                rows.column(0).as_string::<i32>().value(i).to_string(),
                rows.column(1).as_primitive::<Int64Type>().value(i),
                rows.column(2).as_primitive::<UInt64Type>().value(i),
            )
        })
        .collect();
    out.sort();
    out
}

fn triples(rows: &[(&str, i64, u64)]) -> Vec<(String, i64, u64)> {
    rows.iter()
        .map(|(k, v, r)| (k.to_string(), *v, *r))
        .collect()
}

#[test]
fn append_only_input_keeps_the_top_rows_and_renumbers() -> Result<()> {
    let mut top = top_by_value(RankFunction::RowNumber, 2, false);
    let mut checker = ChangelogChecker::new(
        with_rank(&key_value_rows(&[], &[]).schema()),
        Some(vec![0, 2]),
    )?;
    let mut out = Collector::default();
    top.process_batch(key_value_rows(&["a", "a", "b"], &[1, 5, 7]), &mut out)?;
    replay(&mut out, &mut checker);
    assert_eq!(
        live(&checker),
        triples(&[("a", 1, 2), ("a", 5, 1), ("b", 7, 1)])
    );
    // 9 becomes a's leader; 1 falls out; 0 cannot enter; b is untouched.
    top.process_batch(key_value_rows(&["a", "a"], &[9, 0]), &mut out)?;
    let messages: Vec<Message> = out.drain().collect();
    let Some(Message::Changes(changes)) = messages.first() else {
        panic!("expected changes, got {messages:?}");
    };
    assert_eq!(
        changes.num_rows(),
        4,
        "two positions changed: two update pairs"
    );
    checker.apply(changes)?;
    assert_eq!(
        live(&checker),
        triples(&[("a", 5, 2), ("a", 9, 1), ("b", 7, 1)])
    );
    assert!(top.state_size() > 0);
    Ok(())
}

#[test]
fn updating_input_promotes_the_successor_of_a_deleted_leader() -> Result<()> {
    let mut top = top_by_value(RankFunction::RowNumber, 1, true);
    let mut checker =
        ChangelogChecker::new(with_rank(&key_value_rows(&[], &[]).schema()), Some(vec![0]))?;
    let mut out = Collector::default();
    top.process_batch(key_value_rows(&["a", "a", "a"], &[3, 8, 5]), &mut out)?;
    replay(&mut out, &mut checker);
    assert_eq!(live(&checker), triples(&[("a", 8, 1)]));
    let delete = Changes::from_ops(key_value_rows(&["a"], &[8]), &[Op::Delete])?;
    top.process_changes(delete, &mut out)?;
    replay(&mut out, &mut checker);
    assert_eq!(live(&checker), triples(&[("a", 5, 1)]));
    // An update of a non-leader that makes it the leader.
    let update = Changes::from_ops(
        key_value_rows(&["a", "a"], &[3, 30]),
        &[Op::UpdateBefore, Op::UpdateAfter],
    )?;
    top.process_changes(update, &mut out)?;
    replay(&mut out, &mut checker);
    assert_eq!(live(&checker), triples(&[("a", 30, 1)]));
    // Deleting everything deletes the row.
    let delete = Changes::from_ops(
        key_value_rows(&["a", "a"], &[30, 5]),
        &[Op::Delete, Op::Delete],
    )?;
    top.process_changes(delete, &mut out)?;
    replay(&mut out, &mut checker);
    assert_eq!(live(&checker), Vec::new());
    // A retraction of a row never seen is a broken upstream, not something to guess around.
    let bogus = Changes::from_ops(key_value_rows(&["z"], &[1]), &[Op::Delete])?;
    assert!(top.process_changes(bogus, &mut out).is_err());
    Ok(())
}

#[test]
fn checkpoint_restores_the_same_ranking() -> Result<()> {
    let mut top = top_by_value(RankFunction::Rank, 2, true);
    let mut out = Collector::default();
    top.process_batch(
        key_value_rows(&["a", "a", "a", "b"], &[4, 4, 1, 2]),
        &mut out,
    )?;
    let state = top.snapshot(CheckpointBarrier { epoch: 1 })?;
    let mut restored = top_by_value(RankFunction::Rank, 2, true);
    restored.restore(state)?;
    assert_eq!(restored.state_size(), top.state_size());
    // Deleting one of the tied leaders makes the rest move identically in both.
    let delete = || Changes::from_ops(key_value_rows(&["a"], &[4]), &[Op::Delete]);
    let (mut a, mut b) = (Collector::default(), Collector::default());
    top.process_changes(delete()?, &mut a)?;
    restored.process_changes(delete()?, &mut b)?;
    let rows = |c: &mut Collector| -> Vec<String> { c.drain().map(|m| format!("{m:?}")).collect() };
    assert_eq!(rows(&mut a), rows(&mut b));
    Ok(())
}

#[test]
fn window_top_n_emits_each_window_once_when_it_closes() -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "window_end",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        ),
        Field::new("v", DataType::Int64, false),
    ]));
    let batch = |windows: &[i64], values: &[i64]| {
        RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(TimestampNanosecondArray::from(windows.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
    };
    let late = Arc::new(LateRowLog::default());
    let mut top = TopN::try_new(
        TopNSpec {
            view: "w".into(),
            partition_by: vec![Arc::new(Column::new("window_end", 0))],
            order_by: vec![PhysicalSortExpr {
                expr: Arc::new(Column::new("v", 1)),
                options: SortOptions::default(),
            }],
            function: RankFunction::RowNumber,
            limit: 2,
            output_schema: with_rank(&schema),
            input_schema: Arc::clone(&schema),
            updating_input: false,
            seal: Some((0, 0)),
            emit_at_close: true,
        },
        Arc::clone(&late),
    )?;
    let mut out = Collector::default();
    top.process_batch(batch(&[10, 10, 10, 20], &[3, 1, 2, 9])?, &mut out)?;
    assert_eq!(out.drain().count(), 0, "nothing before the window closes");
    top.on_watermark(Watermark::EventTime(10), &mut out)?;
    let emitted: Vec<Message> = out.drain().collect();
    let [Message::Changes(rows)] = emitted.as_slice() else {
        panic!("one batch of inserts expected, got {emitted:?}");
    };
    assert!(rows.is_inserts_only());
    let rows = rows.rows();
    let values = rows.column(1).as_primitive::<Int64Type>();
    assert_eq!(values.values().to_vec(), vec![1, 2]);
    // A row for the closed window is late; the open one still takes rows.
    top.process_batch(batch(&[10, 20], &[0, 4])?, &mut out)?;
    assert_eq!(late.count("w"), 1);
    top.on_end(&mut out)?;
    let emitted: Vec<Message> = out.drain().collect();
    let [Message::Changes(rows)] = emitted.as_slice() else {
        panic!("the last window at the end, got {emitted:?}");
    };
    assert!(rows.is_inserts_only());
    let rows = rows.rows();
    assert_eq!(
        rows.column(1).as_primitive::<Int64Type>().values().to_vec(),
        vec![4, 9]
    );
    assert_eq!(top.state_size(), 0, "closed windows are forgotten");
    Ok(())
}

#[test]
fn changes_below_a_full_top_emit_nothing_and_a_rise_into_it_does() -> Result<()> {
    let mut top = top_by_value(RankFunction::RowNumber, 2, true);
    let mut checker = ChangelogChecker::new(
        with_rank(&key_value_rows(&[], &[]).schema()),
        Some(vec![0, 2]),
    )?;
    let mut out = Collector::default();
    top.process_batch(
        key_value_rows(&["a", "a", "a", "a"], &[9, 8, 2, 1]),
        &mut out,
    )?;
    replay(&mut out, &mut checker);
    let below = Changes::from_ops(
        key_value_rows(&["a", "a"], &[2, 3]),
        &[Op::UpdateBefore, Op::UpdateAfter],
    )?;
    top.process_changes(below, &mut out)?;
    assert_eq!(
        out.drain().count(),
        0,
        "rank 3 and 4 moved: the top 2 did not change"
    );
    let rise = Changes::from_ops(
        key_value_rows(&["a", "a"], &[1, 10]),
        &[Op::UpdateBefore, Op::UpdateAfter],
    )?;
    top.process_changes(rise, &mut out)?;
    replay(&mut out, &mut checker);
    assert_eq!(live(&checker), triples(&[("a", 9, 2), ("a", 10, 1)]));
    // The leader leaves: the next row (3, updated earlier without output) takes rank 2.
    let leave = Changes::from_ops(
        key_value_rows(&["a", "a"], &[10, 9]),
        &[Op::Delete, Op::Delete],
    )?;
    top.process_changes(leave, &mut out)?;
    replay(&mut out, &mut checker);
    assert_eq!(live(&checker), triples(&[("a", 3, 2), ("a", 8, 1)]));
    Ok(())
}
