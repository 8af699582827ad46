//! Hopping windows from panes, including a late row thawing a frozen pane, against the windows
//! the same rows give when copied per window.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::Column;

use super::*;
use crate::message::{Message, Watermark};
use crate::window::WindowAssigner;

const MS: i64 = 1_000_000;

fn input() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("v", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

fn rows(times: &[i64]) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        input(),
        vec![
            // v: the row's time in ms.
            Arc::new(Int64Array::from_iter_values(times.iter().copied())),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                times.iter().copied(),
            )),
        ],
    )?)
}

/// `(window end in ms, count)` of every window, in order, for rows arriving in `arrivals`
/// (batches with the watermark in ms after each), from panes or from copies.
fn windows(arrivals: &[(&[i64], i64)], panes: bool) -> Result<Vec<(i64, i64)>> {
    let hop = WindowSpec::Hop {
        size: 30 * MS,
        slide: 10 * MS,
        offset: 0,
    };
    hop_windows(hop, arrivals, panes)
}

/// [`windows`] of any hopping windows.
fn hop_windows(
    hop: WindowSpec,
    arrivals: &[(&[i64], i64)],
    panes: bool,
) -> Result<Vec<(i64, i64)>> {
    let copies = WindowAssigner::try_new(&input(), "ts", hop)?;
    let assigner = if panes {
        copies
            .panes()
            .ok_or_else(|| EngineError::Internal("no panes".into()))?
    } else {
        copies
    };
    let windowed = assigner.output_schema();
    let end = windowed.index_of(WINDOW_END)?;
    let function = AggregateExprBuilder::new(count_udaf(), vec![Arc::new(Column::new("v", 0))])
        .schema(Arc::clone(&windowed))
        .alias("n")
        .build()?;
    let output = Arc::new(Schema::new(vec![
        windowed.field(end).clone(),
        Field::new("n", DataType::Int64, false),
    ]));
    let mut op = WindowAggregate::try_new(
        WindowAggregateSpec {
            view: "hop".into(),
            group_exprs: vec![Arc::new(Column::new(WINDOW_END, end))],
            aggregates: vec![AggregateCall {
                function: Arc::new(function),
                filter: None,
            }],
            output_schema: output,
            window: Some(WindowKey {
                group_index: 0,
                is_end: true,
                spec: hop,
                pane: panes.then(|| assigner.spec().max_size()),
            }),
            lateness_nanos: 0,
            emit: EmitMode::OnWindowClose,
        },
        Arc::new(LateRowLog::default()),
    )?;
    let mut out = Collector::default();
    for (times, watermark) in arrivals {
        op.process_batch(assigner.assign(&rows(times)?)?, &mut out)?;
        op.on_watermark(Watermark::EventTime(watermark * MS), &mut out)?;
    }
    op.on_end(&mut out)?;
    let mut got = Vec::new();
    for message in out.drain() {
        if let Message::Changes(changes) = message {
            let rows = changes.rows();
            let ends = rows.column(0).as_primitive::<TimestampMillisecondType>();
            let counts = rows.column(1).as_primitive::<Int64Type>();
            got.extend((0..rows.num_rows()).map(|i| (ends.value(i), counts.value(i))));
        }
    }
    got.sort_unstable();
    Ok(got)
}

#[test]
fn panes_give_the_windows_copies_give_with_a_late_row_in_a_frozen_pane() -> Result<()> {
    // 7 arrives after the watermark passed its pane [0, 10) (frozen, window ending 10 emitted)
    // while the windows ending 20 and 30 still need that pane; 1 arrives after every window
    // holding it closed.
    let arrivals: &[(&[i64], i64)] = &[(&[5, 25], 12), (&[7], 13), (&[33], 45), (&[1], 46)];
    let from_panes = windows(arrivals, true)?;
    assert_eq!(
        from_panes,
        vec![(10, 1), (20, 2), (30, 3), (40, 2), (50, 2), (60, 1)]
    );
    assert_eq!(from_panes, windows(arrivals, false)?);
    Ok(())
}

/// Panes of `gcd(size, slide)` when the slide does not divide the size (30 ms every 20 ms:
/// 10 ms panes, windows every 2 panes), with an offset, against copies: rows out of order,
/// some late for a frozen pane still needed, some late for every window.
#[test]
fn panes_of_a_common_divisor_give_the_windows_copies_give() -> Result<()> {
    // A small deterministic generator (xorshift): the same arrivals on every run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |below: i64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as i64
    };
    for (size, slide, offset) in [(30, 20, 0), (30, 20, 5), (50, 20, 3), (12, 8, 0)] {
        let hop = WindowSpec::Hop {
            size: size * MS,
            slide: slide * MS,
            offset: offset * MS,
        };
        let assigner = WindowAssigner::try_new(&input(), "ts", hop)?;
        let pane = assigner
            .panes()
            .ok_or_else(|| EngineError::Internal("no panes".into()))?
            .spec()
            .max_size();
        assert_eq!(pane, (if size == 12 { 4 } else { 10 }) * MS);
        let mut batches: Vec<(Vec<i64>, i64)> = Vec::new();
        let mut watermark = 0;
        for _ in 0..150 {
            watermark += next(6);
            let rows = (0..next(5)).map(|_| watermark + next(40) - 25).collect();
            batches.push((rows, watermark));
        }
        let arrivals: Vec<(&[i64], i64)> =
            batches.iter().map(|(r, w)| (r.as_slice(), *w)).collect();
        let from_panes = hop_windows(hop, &arrivals, true)?;
        assert!(from_panes.len() > 10, "{from_panes:?}");
        assert_eq!(
            from_panes,
            hop_windows(hop, &arrivals, false)?,
            "HOP {size} ms every {slide} ms, offset {offset} ms"
        );
    }
    Ok(())
}

/// An updating window aggregate with an aggregate DataFusion runs through its per-group adapter
/// (`approx_percentile_cont`): a checkpoint right after a refresh, when the window's delta holds
/// no groups, and a restore, then more rows (the demo's view once failed exactly here).
#[test]
fn an_updating_window_with_an_adapted_aggregate_checkpoints_after_a_refresh() -> Result<()> {
    use datafusion::functions_aggregate::approx_percentile_cont::approx_percentile_cont_udaf;
    use datafusion::physical_expr::expressions::Literal;

    let tumble = WindowSpec::Tumble {
        size: 10 * MS,
        offset: 0,
    };
    let assigner = WindowAssigner::try_new(&input(), "ts", tumble)?;
    let windowed = assigner.output_schema();
    let end = windowed.index_of(WINDOW_END)?;
    let median = AggregateExprBuilder::new(
        approx_percentile_cont_udaf(),
        vec![
            Arc::new(datafusion::physical_expr::expressions::CastExpr::new(
                Arc::new(Column::new("v", 0)),
                DataType::Float64,
                None,
            )),
            Arc::new(Literal::new(datafusion::common::ScalarValue::Float64(
                Some(0.5),
            ))),
        ],
    )
    .schema(Arc::clone(&windowed))
    .alias("mid")
    .build()?;
    let output = Arc::new(Schema::new(vec![
        windowed.field(end).clone(),
        Field::new("mid", DataType::Float64, true),
    ]));
    let spec = WindowAggregateSpec {
        view: "mid".into(),
        group_exprs: vec![Arc::new(Column::new(WINDOW_END, end))],
        aggregates: vec![AggregateCall {
            function: Arc::new(median),
            filter: None,
        }],
        output_schema: output,
        window: Some(WindowKey {
            group_index: 0,
            is_end: true,
            spec: tumble,
            pane: None,
        }),
        lateness_nanos: 0,
        emit: EmitMode::OnUpdate {
            refresh: std::time::Duration::from_millis(100),
        },
    };
    let late = Arc::new(LateRowLog::default());
    let mut op = WindowAggregate::try_new(spec.clone(), Arc::clone(&late))?;
    let mut out = Collector::default();
    op.process_batch(assigner.assign(&rows(&[1, 2, 3])?)?, &mut out)?;
    let barrier = crate::message::CheckpointBarrier { epoch: 1 };
    op.before_barrier(barrier, &mut out)?;
    let state = op.snapshot(barrier)?;
    let mut op = WindowAggregate::try_new(spec, late)?;
    op.restore(state)?;
    op.process_batch(assigner.assign(&rows(&[9, 9, 9, 9, 15])?)?, &mut out)?;
    op.on_end(&mut out)?;
    let emitted: usize = out
        .drain()
        .map(|m| match m {
            Message::Changes(c) => c.num_rows(),
            _ => 0,
        })
        .sum();
    // The first window's insert, its update pair after the restore (its median moves from 2
    // towards 9), the second window's insert.
    assert_eq!(emitted, 4);
    Ok(())
}
