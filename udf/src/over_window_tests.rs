//! The engine's streaming OVER operator running this crate's functions: out-of-order input
//! within the watermark gives the in-order results for every detector (across a checkpoint),
//! late rows and idle keys, `lead`'s held rows, and a stream without `PARTITION BY`. These live
//! here because the engine knows no function library (it defines the trait this crate
//! implements).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use datafusion::arrow::array::{
    AsArray, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use datafusion::arrow::compute::{
    SortColumn, concat_batches, lexsort_to_indices, take_record_batch,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::WindowUDF;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use weir_engine::late_rows::LateRowLog;
use weir_engine::message::{CheckpointBarrier, Message, Watermark};
use weir_engine::operator::{Collector, StreamOperator};
use weir_engine::over_window::{OverCall, OverWindow, OverWindowSpec};

fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("x", DataType::Float64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
    ]))
}

fn operator(name: &str) -> OverWindow {
    operator_with(name, true, None, Arc::new(LateRowLog::default()))
}

/// An OVER operator running `name`, partitioned by `k` or not, with a state TTL, logging late
/// rows to `late`.
fn operator_with(
    name: &str,
    partitioned: bool,
    state_ttl: Option<i64>,
    late: Arc<LateRowLog>,
) -> OverWindow {
    let functions = crate::functions::detector_functions().unwrap();
    let function = functions
        .into_iter()
        .find(|f| datafusion::logical_expr::WindowUDFImpl::name(f) == name)
        .unwrap();
    let udf = WindowUDF::new_from_impl(function);
    let mut args: Vec<Arc<dyn PhysicalExpr>> = vec![Arc::new(Column::new("x", 1))];
    if matches!(name, "anomaly_zscore" | "anomaly_mad") {
        args.push(Arc::new(Literal::new(ScalarValue::Int64(Some(20)))));
    }
    let bound = crate::keyed_window_function(&udf, &args).unwrap().unwrap();
    let mut fields = input_schema().fields().to_vec();
    fields.push(Arc::new(Field::new(
        "r",
        crate::result::result_type(),
        true,
    )));
    OverWindow::new(
        OverWindowSpec {
            view: "v".into(),
            partition_by: if partitioned {
                vec![Arc::new(Column::new("k", 0))]
            } else {
                Vec::new()
            },
            order_by: Arc::new(Column::new("ts", 2)),
            calls: vec![OverCall {
                function: bound,
                args,
            }],
            output_schema: Arc::new(Schema::new(fields)),
            state_ttl,
        },
        late,
    )
}

/// 3 keys × 200 rows at 1 s steps with spikes; each row's time is unique.
fn rows() -> Vec<(String, f64, i64)> {
    let mut seed = 5u64;
    let mut out = Vec::new();
    for i in 0..200i64 {
        for k in 0..3 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = (seed >> 33) as f64 / (1u64 << 31) as f64;
            let x = if i % 37 == 36 {
                50.0
            } else {
                10.0 + k as f64 + noise
            };
            out.push((format!("k{k}"), x, i * 1_000_000_000 + k * 1000));
        }
    }
    out
}

fn batch(rows: &[(String, f64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        input_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_str()),
            )),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(TimestampNanosecondArray::from_iter_values(
                rows.iter().map(|r| r.2),
            )),
        ],
    )
    .unwrap()
}

fn sorted_output(out: &mut Collector) -> RecordBatch {
    let batches: Vec<RecordBatch> = out
        .drain()
        .filter_map(|m| match m {
            Message::Changes(c) => c.into_inserts(),
            _ => None,
        })
        .collect();
    let all = concat_batches(&batches[0].schema(), &batches).unwrap();
    let order = lexsort_to_indices(
        &[
            SortColumn {
                values: Arc::clone(all.column(0)),
                options: None,
            },
            SortColumn {
                values: Arc::clone(all.column(2)),
                options: None,
            },
        ],
        None,
    )
    .unwrap();
    take_record_batch(&all, &order).unwrap()
}

#[test]
fn without_partition_by_the_whole_stream_is_one_key() {
    let unpartitioned = || operator_with("anomaly_zscore", false, None, Arc::default());
    let mut op = unpartitioned();
    let rows = rows();
    let mut out = Collector::default();
    let (first, second) = rows.split_at(rows.len() / 2);
    op.process_batch(batch(first), &mut out).unwrap();
    op.on_watermark(Watermark::EventTime(first[first.len() - 1].2), &mut out)
        .unwrap();
    let state = op.snapshot(CheckpointBarrier { epoch: 1 }).unwrap();
    let mut restored = unpartitioned();
    restored.restore(state).unwrap();
    assert_eq!(restored.key_count(), 1, "one key for the whole stream");
    restored.process_batch(batch(second), &mut out).unwrap();
    restored.on_end(&mut out).unwrap();
    let emitted: usize = out
        .drain()
        .filter_map(|m| match m {
            Message::Changes(c) => Some(c.num_rows()),
            _ => None,
        })
        .sum();
    assert_eq!(emitted, rows.len());
}

#[test]
fn out_of_order_input_within_the_watermark_gives_the_in_order_results() {
    for name in [
        "anomaly_zscore",
        "anomaly_ewma",
        "anomaly_mad",
        "anomaly_diff",
        "anomaly_seasonal",
        "changepoint_cusum",
        "changepoint_page_hinkley",
    ] {
        let rows = rows();
        let mut in_order = operator(name);
        let mut out = Collector::default();
        in_order.process_batch(batch(&rows), &mut out).unwrap();
        in_order.on_end(&mut out).unwrap();
        let want = sorted_output(&mut out);

        // Shuffle within 5 s of event time, cut into batches of 17, watermark 6 s behind the
        // newest row; checkpoint and restore half-way.
        let mut shuffled = rows.clone();
        let mut seed = 9u64;
        for chunk in shuffled.chunks_mut(15) {
            for i in (1..chunk.len()).rev() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                chunk.swap(i, (seed >> 33) as usize % (i + 1));
            }
        }
        let late = Arc::new(LateRowLog::default());
        let mut op = operator_with(name, true, None, Arc::clone(&late));
        let mut out = Collector::default();
        let mut newest = i64::MIN;
        for (n, part) in shuffled.chunks(17).enumerate() {
            op.process_batch(batch(part), &mut out).unwrap();
            newest = newest.max(part.iter().map(|r| r.2).max().unwrap());
            op.on_watermark(Watermark::EventTime(newest - 6_000_000_000), &mut out)
                .unwrap();
            if n == 15 {
                let state = op.snapshot(CheckpointBarrier { epoch: 1 }).unwrap();
                op = operator_with(name, true, None, Arc::clone(&late));
                op.restore(state).unwrap();
            }
        }
        op.on_end(&mut out).unwrap();
        let got = sorted_output(&mut out);
        assert_eq!(got, want, "{name}");
        assert_eq!(late.count("v"), 0, "{name}");
    }
}

#[test]
fn rows_at_or_below_the_watermark_are_late_and_idle_keys_expire() {
    let late = Arc::new(LateRowLog::default());
    let mut op = operator_with("anomaly_mad", true, Some(10_000_000_000), Arc::clone(&late));
    let mut out = Collector::default();
    let rows = rows();
    op.process_batch(batch(&rows[..30]), &mut out).unwrap();
    op.on_watermark(Watermark::EventTime(5_000_000_000), &mut out)
        .unwrap();
    op.process_batch(batch(&rows[..3]), &mut out).unwrap();
    assert_eq!(late.count("v"), 3);
    assert_eq!(op.key_count(), 3);
    op.on_watermark(Watermark::EventTime(100_000_000_000), &mut out)
        .unwrap();
    assert_eq!(
        op.key_count(),
        0,
        "keys idle for more than state_ttl are dropped"
    );
}

#[test]
fn lead_holds_each_keys_last_row_back_and_the_watermark_with_it() {
    let lead = Arc::new(crate::lag::LeadFunction::new(
        1,
        ScalarValue::Float64(Some(-1.0)),
    ));
    let mut fields = input_schema().fields().to_vec();
    fields.push(Arc::new(Field::new("next", DataType::Float64, true)));
    let mut op = OverWindow::new(
        OverWindowSpec {
            view: "v".into(),
            partition_by: vec![Arc::new(Column::new("k", 0))],
            order_by: Arc::new(Column::new("ts", 2)),
            calls: vec![OverCall {
                function: lead,
                args: vec![Arc::new(Column::new("x", 1))],
            }],
            output_schema: Arc::new(Schema::new(fields)),
            state_ttl: None,
        },
        Arc::new(LateRowLog::default()),
    );
    let rows = rows();
    let mut out = Collector::default();
    // 10 seconds of rows, 3 keys; the watermark passes 5 of them.
    op.process_batch(batch(&rows[..30]), &mut out).unwrap();
    let forwarded = op
        .on_watermark(Watermark::EventTime(4_500_000_000), &mut out)
        .unwrap();
    let first = sorted_output(&mut out);
    assert_eq!(
        first.num_rows(),
        12,
        "each key's 5th row waits for its follower"
    );
    // Held rows are at 4 s: downstream time stays below them.
    assert_eq!(forwarded, Some(Watermark::EventTime(3_999_999_999)));
    op.process_batch(batch(&rows[30..60]), &mut out).unwrap();
    op.on_end(&mut out).unwrap();
    let rest = sorted_output(&mut out);
    assert_eq!(first.num_rows() + rest.num_rows(), 60);
    let all = concat_batches(&first.schema(), &[first, rest]).unwrap();
    let order = lexsort_to_indices(
        &[
            SortColumn {
                values: Arc::clone(all.column(0)),
                options: None,
            },
            SortColumn {
                values: Arc::clone(all.column(2)),
                options: None,
            },
        ],
        None,
    )
    .unwrap();
    let all = take_record_batch(&all, &order).unwrap();
    let x = all
        .column(1)
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    let next = all
        .column(3)
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    for i in 0..60 {
        let last_of_key = i % 20 == 19;
        let want = if last_of_key { -1.0 } else { x.value(i + 1) };
        assert_eq!(next.value(i), want, "row {i}");
    }
}
