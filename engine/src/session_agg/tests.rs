//! The session aggregate against sessions computed by brute force, with shuffled input split
//! into random batches, refreshes at random points and checkpoint/restore cycles in between.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::Column;

use super::*;
use crate::changes::ChangelogChecker;
use crate::message::Message;

const GAP_MS: i64 = 150;

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
        Field::new(WINDOW_START, ts_type(), false),
        Field::new(WINDOW_END, ts_type(), false),
    ]))
}

fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new(WINDOW_START, ts_type(), false),
        Field::new(WINDOW_END, ts_type(), false),
        Field::new("n", DataType::Int64, false),
        Field::new("s", DataType::Int64, true),
    ]))
}

fn operator(emit: EmitMode) -> Result<SessionAggregate> {
    let schema = input_schema();
    let column = |name: &str| -> Result<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(Column::new(name, schema.index_of(name)?)))
    };
    let aggregate = |udaf, alias: &str| -> Result<AggregateCall> {
        let function = AggregateExprBuilder::new(udaf, vec![column("v")?])
            .schema(Arc::clone(&schema))
            .alias(alias)
            .build()?;
        Ok(AggregateCall {
            function: Arc::new(function),
            filter: None,
        })
    };
    SessionAggregate::try_new(
        SessionAggregateSpec {
            view: "sessions".into(),
            group_exprs: vec![column("k")?, column(WINDOW_START)?, column(WINDOW_END)?],
            time: column(WINDOW_START)?,
            time_shift_nanos: 0,
            time_type: ts_type(),
            aggregates: vec![aggregate(count_udaf(), "n")?, aggregate(sum_udaf(), "s")?],
            output_schema: output_schema(),
            gap_nanos: GAP_MS * 1_000_000,
            lateness_nanos: 0,
            emit,
        },
        Arc::new(LateRowLog::default()),
    )
}

fn batch(rows: &[(i64, i64, i64)]) -> Result<RecordBatch> {
    let times = |shift: i64| {
        Arc::new(TimestampMillisecondArray::from_iter_values(
            rows.iter().map(move |r| r.2 + shift),
        ))
    };
    Ok(RecordBatch::try_new(
        input_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            times(0),
            times(GAP_MS),
        ],
    )?)
}

/// `(k, start, end) -> (count, sum)`.
type Sessions = BTreeMap<(i64, i64, i64), (i64, i64)>;

/// Sessions by brute force.
fn expected(rows: &[(i64, i64, i64)]) -> Sessions {
    let mut by_key: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for &(k, v, t) in rows {
        by_key.entry(k).or_default().push((t, v));
    }
    let mut out = BTreeMap::new();
    for (k, mut rows) in by_key {
        rows.sort_unstable();
        let mut i = 0;
        while i < rows.len() {
            let mut j = i;
            while j + 1 < rows.len() && rows[j + 1].0 - rows[j].0 < GAP_MS {
                j += 1;
            }
            let sum = rows[i..=j].iter().map(|r| r.1).sum();
            out.insert(
                (k, rows[i].0, rows[j].0 + GAP_MS),
                ((j + 1 - i) as i64, sum),
            );
            i = j + 1;
        }
    }
    out
}

fn live(checker: &ChangelogChecker) -> Result<Sessions> {
    let rows = checker.live_rows()?;
    let int = |i: usize| rows.column(i).as_primitive::<Int64Type>().clone();
    let time = |i: usize| {
        rows.column(i)
            .as_primitive::<TimestampMillisecondType>()
            .clone()
    };
    let (k, start, end, n, s) = (int(0), time(1), time(2), int(3), int(4));
    Ok((0..rows.num_rows())
        .map(|i| {
            (
                (k.value(i), start.value(i), end.value(i)),
                (n.value(i), s.value(i)),
            )
        })
        .collect())
}

/// A small deterministic generator (no test-only dependency needed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn run(emit: EmitMode, seed: u64) -> Result<()> {
    let mut rng = Lcg(seed);
    // Rows about 40 ms apart per key on average, up to 400 ms out of order.
    let rows: Vec<(i64, i64, i64)> = (0..3000)
        .map(|i| {
            let t = i * 8 - rng.below(400) as i64;
            (rng.below(5) as i64, rng.below(100) as i64, t)
        })
        .collect();
    let mut op = operator(emit)?;
    let mut checker = ChangelogChecker::new(output_schema(), Some(vec![0, 1, 2]))?;
    let mut out = Collector::default();
    let apply = |out: &mut Collector, checker: &mut ChangelogChecker| -> Result<()> {
        for message in out.drain() {
            if let Message::Changes(changes) = message {
                checker.apply(&changes)?;
            }
        }
        Ok(())
    };
    let mut at = 0;
    let mut max_t = i64::MIN;
    while at < rows.len() {
        let len = (1 + rng.below(200) as usize).min(rows.len() - at);
        let part = &rows[at..at + len];
        at += len;
        max_t = max_t.max(part.iter().map(|r| r.2).max().unwrap_or(max_t));
        op.process_batch(batch(part)?, &mut out)?;
        if rng.below(3) == 0 {
            op.on_tick(&mut out)?;
        }
        // Behind the newest row by more than the disorder: nothing is late.
        let wm = (max_t - 1_000) * 1_000_000;
        op.on_watermark(Watermark::EventTime(wm), &mut out)?;
        if rng.below(10) == 0 {
            let barrier = CheckpointBarrier { epoch: at as u64 };
            op.before_barrier(barrier, &mut out)?;
            let state = op.snapshot(barrier)?;
            op = operator(emit)?;
            op.restore(state)?;
        }
        apply(&mut out, &mut checker)?;
    }
    op.on_end(&mut out)?;
    apply(&mut out, &mut checker)?;
    assert_eq!(live(&checker)?, expected(&rows), "{emit:?} seed {seed}");
    Ok(())
}

#[test]
fn sessions_on_window_close_equal_brute_force() -> Result<()> {
    for seed in 1..6 {
        run(EmitMode::OnWindowClose, seed)?;
    }
    Ok(())
}

#[test]
fn updating_sessions_equal_brute_force_through_merges_and_restores() -> Result<()> {
    for seed in 1..6 {
        run(
            EmitMode::OnUpdate {
                refresh: Duration::from_millis(100),
            },
            seed,
        )?;
    }
    Ok(())
}
