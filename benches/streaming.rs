//! Streaming benchmarks through the real engine: generator → pipeline → view.
//!
//! `cargo bench --bench streaming -- [WORKLOAD…] [--events N] [--flink FILE]`
//!
//! | workload | what |
//! |---|---|
//! | `tumble` | `COUNT(*)` per auction per 10 s tumbling window, 10,000 auctions, 10 bids per ms (the peers' shape) |
//! | `ceiling` | DataFusion's batch `GROUP BY` over the same rows, one partition: the ceiling for `tumble` |
//! | `q0`, `q1`, `q2` | Nexmark pass-through, currency conversion, filter (`auction % 123 = 0`) over bids |
//! | `q5` | Nexmark q5's windowed part: bids per auction per 10 s window every 2 s (HOP) |
//! | `sensors` | 5-minute tumbling stats per sensor over 10,000 sensors |
//! | `memory` | 1 M open window groups: bytes per group |
//! | `latency` | p50/p99 event-to-view latency of a pass-through view at 100,000 events/s |
//! | `latency_window` | the same for 1 s tumbling windows, from the moment a window can close |
//! | `generator` | the bids generator alone (what every `tumble` row costs before the engine) |
//! | `updating` | an updating `GROUP BY` over 1 M groups, 1 % touched per refresh: rows emitted per refresh, CPU per changed group |
//! | `topn` | top 10 bids by price per auction over 10,000 auctions (append-only input), 1 M bids |
//! | `scaling` | `tumble`, `q5` and `sensors` on 1 and then 2 workers (threads and shards), alone: the speed-up (section `scaling`) |
//! | `topn_updates` | the Top-N operator alone: top 10 per key over 10,000 keys of 100 rows, then 1 M updates (update pairs), beside a batch `row_number()` over the final rows |
//!
//! Each workload runs in its own child process (so peak RSS and CPU time are its own) with
//! `rate = 'unbounded'` and a fixed event count (default 10,000,000; latency runs 10 s at
//! 100,000 events/s). Figures: wall time, events/s, events per CPU-second (process CPU time, all
//! threads), peak RSS. `--flink FILE` adds Flink's figures measured by `scripts/bench-peers.sh`
//! in the same run. The table goes to BENCHMARKS.md with machine, commit and command.

// A bench program: it prints its figures, and a failed expectation aborts the run.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimestampMillisecondType};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use weir_connectors::datagen::Generator;
use weir_connectors::datagen::uniform_bids::UniformBids;
use weir_engine::message::Message;

mod common;
use common::child::{
    Args, KeyFigures as Figures, figure, millions, parse_pairs, per_cpu, result_line, run_child,
    run_view,
};
use common::{commit, cpu_seconds, machine, peak_rss_mb, today, write_section};

const ALL: [&str; 10] = [
    "generator",
    "ceiling",
    "tumble",
    "q0",
    "q1",
    "q2",
    "q5",
    "sensors",
    "memory",
    "latency",
];

/// Partitions of the generators: 2 (one per worker on this 2-core box), or `WEIR_BENCH_PARTITIONS`.
fn partitions() -> u32 {
    std::env::var("WEIR_BENCH_PARTITIONS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(2)
}

/// Nexmark's `bid` table as every Nexmark workload declares it.
fn nexmark_bid(events: u64) -> String {
    format!(
        "CREATE SOURCE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
                            date_time TIMESTAMP(3) WITH TIME ZONE, extra VARCHAR,
                            WATERMARK FOR date_time AS date_time - INTERVAL '4 seconds')
         WITH (connector = 'datagen', generator = 'nexmark', table = 'bid', rate = 'unbounded',
               events = {events}, batch_size = 4096, partitions = {p}, start_time = '2015-07-15T00:00:00Z');",
        p = partitions()
    )
}

/// The peers' bids: every column generated, as Flink's datagen does.
fn uniform_bids(events: u64, extra: &str) -> String {
    format!(
        "CREATE SOURCE bids (id BIGINT, auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3) WITH TIME ZONE,
                             WATERMARK FOR ts AS ts - INTERVAL '4 seconds')
         WITH (connector = 'datagen', generator = 'bids', events = {events}, partitions = {p},
               start_time = '2024-01-01T00:00:00Z'{extra});",
        p = partitions()
    )
}

/// (source DDL, view DDL, what the view computes) of a throughput workload.
fn workload(name: &str, events: u64) -> Option<(String, &'static str, &'static str)> {
    Some(match name {
        "tumble" => (
            uniform_bids(events, ""),
            "CREATE MATERIALIZED VIEW v AS SELECT auction, window_start, window_end, count(*) AS num
             FROM TUMBLE(bids, ts, INTERVAL '10 seconds') GROUP BY auction, window_start, window_end
             EMIT ON WINDOW CLOSE",
            "COUNT(*) per auction per 10 s tumbling window, 10,000 auctions, 10 bids per ms",
        ),
        "q0" => (
            nexmark_bid(events),
            "CREATE MATERIALIZED VIEW v AS SELECT auction, bidder, price, date_time, extra FROM bid",
            "Nexmark q0: pass-through of every bid",
        ),
        "q1" => (
            nexmark_bid(events),
            "CREATE MATERIALIZED VIEW v AS SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid",
            "Nexmark q1: price in euros (a decimal product per bid)",
        ),
        "q2" => (
            nexmark_bid(events),
            "CREATE MATERIALIZED VIEW v AS SELECT auction, price FROM bid WHERE auction % 123 = 0",
            "Nexmark q2: bids on every 123rd auction",
        ),
        "q5" => (
            nexmark_bid(events),
            "CREATE MATERIALIZED VIEW v AS SELECT auction, count(*) AS num, window_start, window_end
             FROM HOP(bid, date_time, INTERVAL '2 seconds', INTERVAL '10 seconds')
             GROUP BY auction, window_start, window_end EMIT ON WINDOW CLOSE",
            "Nexmark q5, windowed part: bids per auction per 10 s window every 2 s (hot-item join not yet)",
        ),
        "sensors" => (
            format!(
                "CREATE SOURCE readings (sensor_id VARCHAR, temperature DOUBLE, vibration DOUBLE, ts TIMESTAMP WITH TIME ZONE,
                                         WATERMARK FOR ts AS ts - INTERVAL '10 seconds')
                 WITH (connector = 'datagen', generator = 'sensors', sensors = 10000, rate = 'unbounded',
                       events = {events}, batch_size = 4096, partitions = {p}, start_time = '2024-01-01T00:00:00Z');",
                p = partitions()
            ),
            "CREATE MATERIALIZED VIEW v AS SELECT sensor_id, window_start, count(*) AS n, avg(temperature) AS avg_t,
                    min(temperature) AS min_t, max(temperature) AS max_t, max(vibration) AS max_vibration
             FROM TUMBLE(readings, ts, INTERVAL '5 minutes') GROUP BY sensor_id, window_start EMIT ON WINDOW CLOSE",
            "count/avg/min/max per sensor per 5-minute window, 10,000 sensors, 10,000 readings per second",
        ),
        "topn" => (
            uniform_bids(events, ""),
            "CREATE MATERIALIZED VIEW v AS SELECT * FROM (
               SELECT auction, bidder, price, row_number() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM bids
             ) WHERE rn <= 10",
            "top 10 bids by price per auction, 10,000 auctions",
        ),
        "memory" => (
            uniform_bids(events, ", event_rate = 1000000"),
            "CREATE MATERIALIZED VIEW v AS SELECT id, window_start, count(*) AS num
             FROM TUMBLE(bids, ts, INTERVAL '1 hour') GROUP BY id, window_start EMIT ON WINDOW CLOSE",
            "one group per event (GROUP BY id) in one 1-hour window that stays open until the input ends",
        ),
        _ => return None,
    })
}

/// Runs a throughput workload to the end of its input.
async fn throughput(name: &str, events: u64) -> Figures {
    let (source, view, _) = workload(name, events).expect("known workload");
    run_view(name, &source, view, events).await
}

/// The bids generator alone, every column, batches of 4096.
fn generator(events: u64) -> Figures {
    let g = UniformBids::new(42, 10_000, 1_704_067_200_000, 10_000.0).expect("generator");
    let (t, c) = (Instant::now(), cpu_seconds());
    let mut start = 0;
    let mut rows = 0;
    while start < events {
        let n = 4096.min(events - start) as usize;
        rows += std::hint::black_box(g.rows(start, n).expect("rows")).num_rows();
        start += n as u64;
    }
    let mut f = Figures::new();
    f.insert("events".into(), rows.to_string());
    f.insert("wall".into(), format!("{:.3}", t.elapsed().as_secs_f64()));
    f.insert("cpu".into(), format!("{:.3}", cpu_seconds() - c));
    f.insert("peak_rss_mb".into(), format!("{:.0}", peak_rss_mb()));
    f
}

/// DataFusion's batch GROUP BY over the `tumble` rows, one partition, best of three (as the
/// peers' `datafusion_groupby_ceiling.py` does).
async fn ceiling(events: u64) -> Figures {
    let g = UniformBids::new(42, 10_000, 0, 10_000.0).expect("generator");
    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
    ]));
    let mut batches = Vec::new();
    let mut start = 0;
    while start < events {
        let n = 8192.min(events - start) as usize;
        let b = g.rows(start, n).expect("rows");
        let ts = b.column(4).as_primitive::<TimestampMillisecondType>();
        let ts = Int64Array::new(ts.values().clone(), None);
        let columns = vec![
            Arc::clone(b.column(1)),
            Arc::clone(b.column(2)),
            Arc::clone(b.column(3)),
            Arc::new(ts) as _,
        ];
        batches.push(RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch"));
        start += n as u64;
    }
    let ctx = SessionContext::new_with_config(
        SessionConfig::new()
            .with_target_partitions(1)
            .with_batch_size(8192),
    );
    ctx.register_table(
        "bids",
        Arc::new(MemTable::try_new(schema, vec![batches]).expect("table")),
    )
    .expect("register");
    let query =
        "SELECT auction, ts / 10000 AS w, count(*) AS num FROM bids GROUP BY auction, ts / 10000";
    let mut best: Option<(f64, f64, usize)> = None;
    for _ in 0..3 {
        let (t, c) = (Instant::now(), cpu_seconds());
        let out = ctx
            .sql(query)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
        let groups = out.iter().map(RecordBatch::num_rows).sum();
        if best.is_none_or(|b| wall < b.0) {
            best = Some((wall, cpu, groups));
        }
    }
    let (wall, cpu, groups) = best.expect("three runs");
    let mut f = Figures::new();
    f.insert("events".into(), events.to_string());
    f.insert("rows_out".into(), groups.to_string());
    f.insert("wall".into(), format!("{wall:.3}"));
    f.insert("cpu".into(), format!("{cpu:.3}"));
    f.insert("peak_rss_mb".into(), format!("{:.0}", peak_rss_mb()));
    f
}

fn now_millis() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Event-to-view latency at 100,000 events/s for 10 s. Event time is wall time (the source
/// starts now and runs in real time), so a row's latency is the moment the view applied it minus
/// its event time; that includes up to 1 ms the paced generator holds rows to release them in
/// batches of 100. For windows, latency counts from the moment the window could close: the
/// event time of its end plus the watermark delay (1 s).
async fn latency(windowed: bool) -> Figures {
    const RATE: u64 = 100_000;
    const SECONDS: u64 = 10;
    let events = RATE * SECONDS;
    let db = weir::database().build().expect("database");
    let session = db.session();
    let start = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    session
        .execute_all(&format!(
            "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3) WITH TIME ZONE,
                                 WATERMARK FOR ts AS ts - INTERVAL '1 second')
             WITH (connector = 'datagen', generator = 'bids', events = {events}, rate = {RATE},
                   event_rate = {RATE}, batch_size = 100, start_time = '{start}');"
        ))
        .await
        .expect("source");
    let view = if windowed {
        "CREATE MATERIALIZED VIEW v AS SELECT auction, window_end, count(*) AS num
         FROM TUMBLE(bids, ts, INTERVAL '1 second') GROUP BY auction, window_end EMIT ON WINDOW CLOSE"
    } else {
        "CREATE MATERIALIZED VIEW v AS SELECT auction, price, ts FROM bids"
    };
    let (t, c) = (Instant::now(), cpu_seconds());
    session.execute_all(view).await.expect("view");
    let entry = db.catalog().view("v").expect("view");
    let (_, mut live) = entry.fanout.subscribe().await.expect("subscribe");
    let mut latencies: Vec<f64> = Vec::with_capacity(events as usize);
    let delay_ms = if windowed { 1000.0 } else { 0.0 };
    let time_column = if windowed { 1 } else { 2 };
    while let Some(message) = live.recv().await {
        match message {
            Message::Changes(changes) => {
                let batch = changes.rows();
                let now = now_millis();
                let times = batch
                    .column(time_column)
                    .as_primitive::<TimestampMillisecondType>();
                latencies.extend(
                    times
                        .values()
                        .iter()
                        .map(|&ms| now - (ms as f64 + delay_ms)),
                );
            }
            Message::End => break,
            _ => {}
        }
    }
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    // Windows still open at the end of input are closed by the end, not by time: not counted.
    if windowed {
        latencies.retain(|l| *l < 60_000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let mut f = Figures::new();
    f.insert("events".into(), events.to_string());
    f.insert("rows_out".into(), latencies.len().to_string());
    f.insert("wall".into(), format!("{wall:.3}"));
    f.insert("cpu".into(), format!("{cpu:.3}"));
    f.insert(
        "p50_ms".into(),
        format!("{:.2}", percentile(&latencies, 0.5)),
    );
    f.insert(
        "p99_ms".into(),
        format!("{:.2}", percentile(&latencies, 0.99)),
    );
    f.insert(
        "max_ms".into(),
        format!("{:.2}", latencies.last().copied().unwrap_or(f64::NAN)),
    );
    f.insert("peak_rss_mb".into(), format!("{:.0}", peak_rss_mb()));
    f
}

fn child(name: &str, events: u64) {
    let runtime = common::child::runtime();
    let figures = match name {
        "generator" => generator(events),
        "ceiling" => runtime.block_on(ceiling(events)),
        "latency" => runtime.block_on(latency(false)),
        "latency_window" => runtime.block_on(latency(true)),
        "updating" => runtime.block_on(updating()),
        "topn_updates" => runtime.block_on(topn_updates()),
        other => runtime.block_on(throughput(other, events)),
    };
    println!("{}", result_line(&figures));
}

/// An updating `GROUP BY` over 1,000,000 groups fed at 100,000 events/s, refreshed every 100 ms:
/// the first 10 s create the groups (1 % of them per refresh), the next 10 s touch each group
/// once more (1 % per refresh). The figures are for the second half: changed rows emitted per
/// refresh (an update is a before/after pair, so 2 per changed group is proportional) and
/// process CPU per changed group.
async fn updating() -> Figures {
    const GROUPS: u64 = 1_000_000;
    const RATE: u64 = 100_000;
    let db = weir::database().build().expect("database");
    let session = db.session();
    session
        .execute_all(&format!(
            "CREATE SOURCE bids (id BIGINT, price BIGINT, ts TIMESTAMP(3) WITH TIME ZONE,
                                 WATERMARK FOR ts AS ts - INTERVAL '1 second')
             WITH (connector = 'datagen', generator = 'bids', events = {events}, rate = {RATE},
                   event_rate = {RATE}, batch_size = 1000, start_time = '2024-01-01T00:00:00Z');",
            events = 2 * GROUPS
        ))
        .await
        .expect("source");
    session
        .execute_all(&format!(
            "CREATE MATERIALIZED VIEW v AS SELECT id % {GROUPS} AS g, count(*) AS n, sum(price) AS p
             FROM bids GROUP BY id % {GROUPS}"
        ))
        .await
        .expect("view");
    let entry = db.catalog().view("v").expect("view");
    let (_, mut live) = entry
        .fanout
        .subscribe_changes(weir_engine::fanout::ReadMode::Changes)
        .await
        .expect("subscribe");
    // Second half: from the first update pair on.
    let mut second_half: Option<(Instant, f64)> = None;
    let (mut inserts, mut updated_groups, mut refreshes) = (0u64, 0u64, 0u64);
    let mut last_message: Option<Instant> = None;
    while let Some(message) = live.recv().await {
        let changes = match message {
            Message::Changes(changes) => changes,
            Message::End => break,
            _ => continue,
        };
        let pairs = changes.ops().map_or(0, |ops| {
            ops.values()
                .iter()
                .filter(|b| **b == weir_engine::changes::Op::UpdateAfter as u8)
                .count() as u64
        });
        if pairs > 0 && second_half.is_none() {
            second_half = Some((Instant::now(), cpu_seconds()));
        }
        if second_half.is_some() {
            updated_groups += pairs;
            // Messages closer than 50 ms apart belong to one refresh (chunks of 8,192 rows).
            if last_message.is_none_or(|t| t.elapsed() > Duration::from_millis(50)) {
                refreshes += 1;
            }
            last_message = Some(Instant::now());
        } else {
            inserts += changes.num_rows() as u64;
        }
    }
    let (started, cpu_at) = second_half.expect("the second half updates groups");
    let (wall, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu_at);
    let mut f = Figures::new();
    f.insert("events".into(), (2 * GROUPS).to_string());
    f.insert("groups".into(), GROUPS.to_string());
    f.insert("inserts".into(), inserts.to_string());
    f.insert("updated_groups".into(), updated_groups.to_string());
    f.insert("refreshes".into(), refreshes.to_string());
    f.insert("wall".into(), format!("{wall:.3}"));
    f.insert("cpu".into(), format!("{cpu:.3}"));
    f.insert("peak_rss_mb".into(), format!("{:.0}", peak_rss_mb()));
    f
}

/// The Top-N operator driven directly with an updating input: 10,000 keys of 100 rows each
/// (1 M rows, inserted first), then 1,000,000 updates of random rows' values as update pairs in
/// batches of 4,096 pairs, keeping the top 10 per key. The figures are for the updates: updates
/// per CPU-second and rows emitted. Beside it, DataFusion computing the same top 10 per key
/// once, as a batch query over the final 1 M rows (best of three): what a single recompute costs.
async fn topn_updates() -> Figures {
    use datafusion::arrow::array::UInt8Array;
    use datafusion::arrow::compute::SortOptions;
    use datafusion::physical_expr::PhysicalSortExpr;
    use datafusion::physical_expr::expressions::Column;
    use rand::{Rng, SeedableRng};
    use weir_engine::changes::{Changes, Op};
    use weir_engine::operator::{Collector, StreamOperator};
    use weir_engine::top_n::{RankFunction, TopN, TopNSpec};

    const KEYS: i64 = 10_000;
    const ROWS_PER_KEY: i64 = 100;
    const UPDATES: usize = 1_000_000;
    const PAIRS_PER_BATCH: usize = 4096;
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]));
    let mut output_fields: Vec<_> = schema.fields().iter().cloned().collect();
    output_fields.push(Arc::new(Field::new("rn", DataType::UInt64, false)));
    let mut top = TopN::try_new(
        TopNSpec {
            view: "v".into(),
            partition_by: vec![Arc::new(Column::new("k", 0))],
            order_by: vec![PhysicalSortExpr {
                expr: Arc::new(Column::new("v", 2)),
                options: SortOptions {
                    descending: true,
                    nulls_first: false,
                },
            }],
            function: RankFunction::RowNumber,
            limit: 10,
            input_schema: Arc::clone(&schema),
            output_schema: Arc::new(Schema::new(output_fields)),
            updating_input: true,
            seal: None,
            emit_at_close: false,
        },
        Arc::new(weir_engine::late_rows::LateRowLog::default()),
    )
    .expect("top-n");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let rows = (KEYS * ROWS_PER_KEY) as usize;
    let mut values: Vec<i64> = (0..rows).map(|_| rng.random_range(0..1_000_000)).collect();
    let batch = |k: Vec<i64>, id: Vec<i64>, v: Vec<i64>| {
        RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(k)),
                Arc::new(Int64Array::from(id)),
                Arc::new(Int64Array::from(v)),
            ],
        )
        .expect("batch")
    };
    let mut out = Collector::default();
    let (t, c) = (Instant::now(), cpu_seconds());
    for start in (0..rows).step_by(8192) {
        let end = (start + 8192).min(rows);
        let k = (start..end).map(|i| i as i64 / ROWS_PER_KEY).collect();
        let id = (start..end).map(|i| i as i64 % ROWS_PER_KEY).collect();
        top.process_batch(batch(k, id, values[start..end].to_vec()), &mut out)
            .expect("insert");
        out.drain().count();
    }
    let (load_wall, load_cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    // The updates, generated before the clock starts.
    let mut batches = Vec::new();
    for _ in 0..UPDATES / PAIRS_PER_BATCH {
        let (mut k, mut id, mut v) = (Vec::new(), Vec::new(), Vec::new());
        let mut ops = Vec::new();
        for _ in 0..PAIRS_PER_BATCH {
            let row = rng.random_range(0..rows);
            let new = rng.random_range(0..1_000_000);
            for value in [values[row], new] {
                k.push(row as i64 / ROWS_PER_KEY);
                id.push(row as i64 % ROWS_PER_KEY);
                v.push(value);
            }
            ops.extend([Op::UpdateBefore as u8, Op::UpdateAfter as u8]);
            values[row] = new;
        }
        batches.push(Changes::try_new(batch(k, id, v), UInt8Array::from(ops)).expect("changes"));
    }
    let updates = batches.len() * PAIRS_PER_BATCH;
    let mut emitted = 0usize;
    let (t, c) = (Instant::now(), cpu_seconds());
    for changes in batches {
        top.process_changes(changes, &mut out).expect("update");
        for message in out.drain() {
            if let Message::Changes(changes) = message {
                emitted += changes.num_rows();
            }
        }
    }
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    let state_bytes = top.state_size();
    // One batch recompute of the same answer over the final rows.
    let ids: Vec<i64> = (0..rows as i64).collect();
    let final_rows = batch(
        ids.iter().map(|i| i / ROWS_PER_KEY).collect(),
        ids.iter().map(|i| i % ROWS_PER_KEY).collect(),
        values,
    );
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(Arc::clone(&schema), vec![vec![final_rows]]).expect("table")),
    )
    .expect("register");
    let mut batch_cpu = f64::MAX;
    for _ in 0..3 {
        let c = cpu_seconds();
        ctx.sql("SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY k ORDER BY v DESC) AS rn FROM t) WHERE rn <= 10")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        batch_cpu = batch_cpu.min(cpu_seconds() - c);
    }
    let mut f = Figures::new();
    f.insert("events".into(), updates.to_string());
    f.insert("rows_out".into(), emitted.to_string());
    f.insert("wall".into(), format!("{wall:.3}"));
    f.insert("cpu".into(), format!("{cpu:.3}"));
    f.insert("load_rows".into(), rows.to_string());
    f.insert("load_wall".into(), format!("{load_wall:.3}"));
    f.insert("load_cpu".into(), format!("{load_cpu:.3}"));
    f.insert("batch_cpu".into(), format!("{batch_cpu:.3}"));
    f.insert("state_bytes".into(), state_bytes.to_string());
    f.insert("peak_rss_mb".into(), format!("{:.0}", peak_rss_mb()));
    f
}

/// Flink's figures from `scripts/bench-peers.sh`: `rows=… cpu=… wall=… startup_cpu=… startup_wall=…`.
fn read_flink(path: &str) -> Option<Figures> {
    std::fs::read_to_string(path).ok().map(|t| parse_pairs(&t))
}

fn goal(name: &str) -> &'static str {
    match name {
        "tumble" => "≥ 5 M/CPU-s",
        "q0" | "q1" | "q2" => "≥ 2 M/CPU-s",
        "q5" => "≥ 1 M/CPU-s",
        "latency" | "latency_window" => "p99 ≤ 20 ms",
        "memory" => "≤ 200 B/group",
        _ => "",
    }
}

fn report(
    args: &str,
    events: u64,
    results: &[(String, Figures)],
    flink: Option<&Figures>,
) -> String {
    let mut s = format!(
        "## Streaming workloads\n\n`cargo bench --bench streaming --{args}` · commit {} · {} · {}\n\n\
         Every run is the real engine (datagen source → pipeline → materialized view, `rate = 'unbounded'`) in its \
         own process; CPU is process CPU time over all threads (the generator included), from `CREATE MATERIALIZED \
         VIEW` until the view has every final row. {events} events per run unless the row says otherwise.\n\n\
         | workload | events | wall s | events/s | events per CPU-s | rows out | peak RSS MB | goal |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
        commit(),
        today(),
        machine()
    );
    let get = |n: &str| results.iter().find(|(name, _)| name == n).map(|(_, f)| f);
    for (name, f) in results {
        if name.starts_with("latency") || name == "updating" || name == "topn_updates" {
            continue;
        }
        let per_second = figure(f, "events")
            .zip(figure(f, "wall"))
            .map(|(e, w)| e / w);
        s.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |\n",
            f.get("events").map_or("–", String::as_str),
            f.get("wall").map_or("–", String::as_str),
            millions(per_second),
            millions(per_cpu(f)),
            f.get("rows_out").map_or("–", String::as_str),
            f.get("peak_rss_mb").map_or("–", String::as_str),
            goal(name)
        ));
    }
    if let Some(fl) = flink {
        let net_cpu = figure(fl, "cpu")
            .zip(figure(fl, "startup_cpu"))
            .map(|(c, st)| c - st);
        let rows = figure(fl, "rows");
        let flink_rate = rows.zip(net_cpu).map(|(r, c)| r / c);
        s.push_str(&format!(
            "| Flink 2.3 tumble count (p=1, net of start-up) | {} | {} | – | {} | – | {} | peer |\n",
            fl.get("rows").map_or("–", String::as_str),
            fl.get("wall").map_or("–", String::as_str),
            millions(flink_rate),
            fl.get("maxrss_mb").map_or("–", String::as_str),
        ));
        if let (Some(weir), Some(flink_rate)) = (get("tumble").and_then(per_cpu), flink_rate) {
            s.push_str(&format!(
                "\nTumble count, Weir / Flink per CPU-second: **{:.1}×** (goal ≥ 17×).\n",
                weir / flink_rate
            ));
        }
    } else {
        s.push_str("\nFlink: not in this run (`scripts/bench-peers.sh` runs it side by side).\n");
    }
    if let (Some(weir), Some(ceiling)) = (
        get("tumble").and_then(per_cpu),
        get("ceiling").and_then(per_cpu),
    ) {
        s.push_str(&format!(
            "Tumble count, Weir / DataFusion batch ceiling per CPU-second: **{:.0} %** (goal ≥ 25 %).\n",
            100.0 * weir / ceiling
        ));
    }
    if let Some(m) = get("memory")
        && let (Some(state), Some(growth), Some(groups)) = (
            figure(m, "peak_state_bytes"),
            figure(m, "rss_growth_mb"),
            figure(m, "events"),
        )
    {
        s.push_str(&format!(
                "Memory: {groups:.0} open groups held **{:.0} bytes per group** of operator state (DataFusion's own \
                 accounting), {:.0} bytes per group of peak RSS growth (state, the generator's batches and the final \
                 rows written to the view; goal ≤ 200 B).\n",
                state / groups,
                growth * 1024.0 * 1024.0 / groups
            ));
    }
    for name in ["latency", "latency_window"] {
        if let Some(l) = get(name) {
            s.push_str(&format!(
                "Latency ({}): 100,000 events/s for 10 s, p50 **{} ms**, p99 **{} ms**, max {} ms over {} rows; \
                 {:.2} CPU-s (goal p99 ≤ 20 ms).\n",
                if name == "latency" { "pass-through view, event to view" } else { "1 s tumbling windows, window closable to view" },
                l.get("p50_ms").map_or("–", String::as_str),
                l.get("p99_ms").map_or("–", String::as_str),
                l.get("max_ms").map_or("–", String::as_str),
                l.get("rows_out").map_or("–", String::as_str),
                figure(l, "cpu").unwrap_or(f64::NAN),
            ));
        }
    }
    if let Some(t) = get("topn_updates") {
        s.push_str(&format!(
            "Top-N over updating input (the operator alone): top 10 per key over 10,000 keys of 100 rows; \
             {} rows loaded at **{}** rows per CPU-s, then {} updates (update pairs) at **{}** updates per CPU-s \
             ({} CPU-s, {} rows emitted, {:.1} MB of state). One DataFusion batch `row_number()` over the final \
             rows: {} CPU-s, i.e. the {} updates cost as much as {:.1} batch recomputes.\n",
            t.get("load_rows").map_or("–", String::as_str),
            millions(figure(t, "load_rows").zip(figure(t, "load_cpu")).map(|(r, c)| r / c)),
            t.get("events").map_or("–", String::as_str),
            millions(per_cpu(t)),
            t.get("cpu").map_or("–", String::as_str),
            t.get("rows_out").map_or("–", String::as_str),
            figure(t, "state_bytes").unwrap_or(f64::NAN) / 1e6,
            t.get("batch_cpu").map_or("–", String::as_str),
            t.get("events").map_or("–", String::as_str),
            figure(t, "cpu").zip(figure(t, "batch_cpu")).map_or(f64::NAN, |(c, b)| c / b),
        ));
    }
    if let Some(u) = get("updating") {
        let per_refresh = figure(u, "updated_groups")
            .zip(figure(u, "refreshes"))
            .map(|(g, r)| g / r.max(1.0));
        let cpu_per_group = figure(u, "cpu")
            .zip(figure(u, "updated_groups"))
            .map(|(c, g)| c * 1e6 / g.max(1.0));
        s.push_str(&format!(
            "Updating GROUP BY over {} groups, 100,000 events/s, refresh 100 ms, second half (every group \
             touched once more, 1 % per refresh): **{:.0} changed groups per refresh** (each an update pair: \
             {:.0} rows emitted, of a {}-row view), {} refreshes, **{:.2} µs CPU per changed group** ({} CPU-s \
             over {} s wall, generator and ingest included).\n",
            u.get("groups").map_or("–", String::as_str),
            per_refresh.unwrap_or(f64::NAN),
            2.0 * per_refresh.unwrap_or(f64::NAN),
            u.get("groups").map_or("–", String::as_str),
            u.get("refreshes").map_or("–", String::as_str),
            cpu_per_group.unwrap_or(f64::NAN),
            u.get("cpu").map_or("–", String::as_str),
            u.get("wall").map_or("–", String::as_str),
        ));
    }
    s
}

fn main() {
    let args = Args::from_env();
    let events = args.events();
    if let Some(name) = args.value("--child") {
        child(&name, events);
        return;
    }
    let flink = args.value("--flink").and_then(|p| read_flink(&p));
    let mut names = args.names();
    if names == ["scaling"] {
        let workloads: Vec<(&str, u64, &str)> = ["tumble", "q5", "sensors"]
            .into_iter()
            .filter_map(|n| Some((n, events, workload(n, events)?.2)))
            .collect();
        let text = common::scaling::scaling_report(
            &format!("cargo bench --bench streaming --{}", args.shown()),
            &workloads,
        );
        println!("\n{text}");
        write_section("scaling", &text);
        return;
    }
    if names.is_empty() {
        names = ALL.iter().map(|s| (*s).to_string()).collect();
        names.push("latency_window".into());
        names.push("updating".into());
        names.push("topn".into());
        names.push("topn_updates".into());
    }
    let mut results = Vec::new();
    for name in &names {
        let n = if name == "memory" || name == "topn" {
            1_000_000
        } else {
            events
        };
        println!("running {name} ({n} events)…");
        if let Some(f) = run_child(name, n) {
            println!("  {}", result_line(&f));
            results.push((name.clone(), f));
        }
    }
    let text = report(&args.shown(), events, &results, flink.as_ref());
    println!("\n{text}");
    write_section("streaming", &text);
}
