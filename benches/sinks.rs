//! Sink throughput: a view's rows delivered to Kafka (exactly once and at least once) and to
//! Parquet files, with librdkafka's own produce rate of the same JSON records as the ceiling.
//!
//! `cargo bench --bench sinks [-- <rows>]` (default 1,000,000). Starts tansu (from the `.venv`
//! that `scripts/test.sh` creates, or `WEIR_TANSU`) on a free loopback port. In one process and
//! run:
//!
//! 1. **ceiling**: a bare librdkafka producer sends `rows` JSON records shaped like the sink's
//!    (pre-rendered, so only the produce path is paid) and flushes;
//! 2. **view only**: a bounded generator → append-only view, no sink: the cost of the rows
//!    before any sink;
//! 3. the same view with a Kafka sink (`exactly_once`, transactions per 1 s checkpoint), then
//!    `at_least_once`, then a Parquet sink; each until `weir_sinks` says finished.
//!
//! Each prints wall time, rows per second and rows per CPU-second (the process's CPU time, all
//! threads); the figures go to BENCHMARKS.md with machine and commit.

// A bench program: it prints its figures, and a failed expectation aborts the run.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_sql::{Database, DatabaseOptions, QueryResult, Session};

mod common;
use common::broker::start_broker;
use common::{commit, cpu_seconds, machine, peak_rss_mb, today, write_section};

struct Figures {
    name: String,
    wall: f64,
    cpu: f64,
    rows: u64,
}

impl Figures {
    fn per_second(&self) -> f64 {
        self.rows as f64 / self.wall
    }
    fn per_cpu_second(&self) -> f64 {
        self.rows as f64 / self.cpu
    }
}

fn ceiling(bootstrap: &str, rows: u64) -> Figures {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let payloads: Vec<String> = (0..rows)
        .map(|i| {
            format!(
                r#"{{"auction":{},"price":{},"ts":"2024-01-01T00:00:{:02}.{:03}"}}"#,
                i % 1000,
                i * 7 % 100_000,
                i / 1000 % 60,
                i % 1000
            )
        })
        .collect();
    let (t, c) = (Instant::now(), cpu_seconds());
    for p in &payloads {
        let mut record = BaseRecord::<(), str>::to("ceiling").payload(p.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(5));
                    record = r;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    Figures {
        name: "librdkafka produce (ceiling)".into(),
        wall: t.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c,
        rows,
    }
}

async fn scalar(session: &Session, sql: &str) -> String {
    let mut results = session.execute_all(sql).await.expect(sql);
    let Some(QueryResult::Rows { stream, .. }) = results.pop() else {
        panic!("{sql}: no rows")
    };
    let batches: Vec<_> = stream.try_collect().await.expect("rows");
    batches
        .first()
        .filter(|b| b.num_rows() > 0)
        .map(|b| {
            datafusion::arrow::util::display::array_value_to_string(b.column(0), 0)
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// Generator → append-only view (→ `sink`, when given) until everything is delivered.
async fn run(name: &str, rows: u64, sink: Option<String>) -> Figures {
    let data = tempfile::tempdir().expect("tempdir");
    let mut options = DatabaseOptions::new(data.path());
    options.checkpoint_interval = Duration::from_secs(1);
    let (db, _) = Database::open(options).await.expect("database");
    let s = db.session();
    let (t, c) = (Instant::now(), cpu_seconds());
    s.execute_all(&format!(
        "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
                             WATERMARK FOR ts AS ts - INTERVAL '1 second')
           WITH (connector = 'datagen', generator = 'bids', events = '{rows}');
         CREATE MATERIALIZED VIEW all_bids AS SELECT auction, price, ts FROM bids WHERE price >= 0;"
    ))
    .await
    .expect("create");
    match &sink {
        Some(sink) => {
            s.execute_all(sink).await.expect("sink");
            loop {
                if scalar(&s, "SELECT status FROM weir_sinks").await == "finished" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let written = scalar(&s, "SELECT rows_written FROM weir_sinks").await;
            assert_eq!(
                written,
                rows.to_string(),
                "{name}: every row delivered once"
            );
        }
        None => loop {
            if scalar(&s, "SELECT status FROM weir_views").await == "finished" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        },
    }
    Figures {
        name: name.to_string(),
        wall: t.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c,
        rows,
    }
}

fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let broker = start_broker(&["ceiling", "eo", "alo"]);
    let b = broker.1.clone();
    let files = tempfile::tempdir().expect("tempdir");
    let mut figures = vec![ceiling(&b, rows)];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    figures.push(runtime.block_on(run("view only (no sink)", rows, None)));
    figures.push(runtime.block_on(run(
        "view → Kafka sink, exactly once",
        rows,
        Some(format!("CREATE SINK out FROM all_bids WITH (connector = 'kafka', topic = 'eo', properties.bootstrap.server = '{b}')")),
    )));
    figures.push(runtime.block_on(run(
        "view → Kafka sink, at least once",
        rows,
        Some(format!("CREATE SINK out FROM all_bids WITH (connector = 'kafka', topic = 'alo', properties.bootstrap.server = '{b}', sink.delivery = 'at_least_once')")),
    )));
    figures.push(runtime.block_on(run(
        "view → Parquet sink",
        rows,
        Some(format!(
            "CREATE SINK out FROM all_bids WITH (connector = 'parquet', path = '{}')",
            files.path().display()
        )),
    )));
    for f in &figures {
        println!(
            "{:<40} {:>7.2} s wall  {:>12.0} rows/s  {:>12.0} rows/CPU-s",
            f.name,
            f.wall,
            f.per_second(),
            f.per_cpu_second()
        );
    }
    let rss = peak_rss_mb();
    let mut section = format!(
        "## Sinks\n\n`cargo bench --bench sinks -- {rows}` · commit {} · {} · {}\n\n\
         {rows} generated bids through an append-only view, delivered by each sink until `weir_sinks` \
         says finished (checkpoints every second; the exactly-once Kafka sink commits one transaction per \
         checkpoint). The ceiling is a bare librdkafka producer sending the same number of pre-rendered \
         JSON records of the same shape to the same tansu broker on loopback. Process CPU time includes \
         librdkafka's threads; the broker runs on the same 2 cores and is not counted.\n\n\
         | run | wall s | rows/s | rows per CPU-second |\n|---|---:|---:|---:|\n",
        commit(),
        today(),
        machine()
    );
    for f in &figures {
        section.push_str(&format!(
            "| {} | {:.2} | {:.0} | {:.0} |\n",
            f.name,
            f.wall,
            f.per_second(),
            f.per_cpu_second()
        ));
    }
    let ceiling = &figures[0];
    let eo = &figures[2];
    section.push_str(&format!(
        "\nKafka sink (exactly once) / ceiling, rows per second: **{:.2}**. Peak RSS of the bench process: {rss:.0} MB.\n",
        eo.per_second() / ceiling.per_second()
    ));
    write_section("sinks", &section);
}
