//! Sink throughput: a view's rows delivered to Kafka (exactly once and at least once), to
//! Parquet files and into a PostgreSQL table, each beside a ceiling measured in the same run.
//!
//! `cargo bench --bench sinks [-- <rows>]` (default 1,000,000). Starts tansu (from the `.venv`
//! that `scripts/test.sh` creates, or `WEIR_TANSU`) and a PostgreSQL server (Debian's package,
//! which `scripts/test.sh` installs) on free loopback ports. In one process and run:
//!
//! 1. **Kafka ceiling**: a bare librdkafka producer sends `rows` JSON records shaped like the
//!    sink's (pre-rendered, so only the produce path is paid) and flushes;
//! 2. **PostgreSQL ceilings**: the same rows, pre-rendered, loaded by a bare tokio-postgres
//!    client with `COPY … FROM STDIN` (PostgreSQL's fastest load path), and with the sink's own
//!    statement shape (`INSERT … SELECT FROM unnest($n::text[]) ON CONFLICT DO UPDATE`, 10,000
//!    rows per statement, one transaction each): what the sink's SQL costs without Weir;
//! 3. **view only**: a bounded generator → append-only view, no sink: the cost of the rows
//!    before any sink;
//! 4. the same view with a Kafka sink (`exactly_once`, transactions per 1 s checkpoint), then
//!    `at_least_once`, then a Parquet sink, then a PostgreSQL sink (upsert by `id`); each until
//!    `weir_sinks` says finished.
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

use futures::SinkExt;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_sql::DatabaseOptions;

mod common;
use common::broker::Broker;
use common::postgres_server::PgServer;
use common::{Figures, commit, cpu_seconds, machine, peak_rss_mb, scalar, today, write_section};

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
                r#"{{"id":{},"auction":{},"price":{},"ts":"2024-01-01T00:00:{:02}.{:03}"}}"#,
                i + 1,
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
        items: rows,
    }
}

/// `rows` bids as text columns (id, auction, price, ts), like the sink's text arrays.
fn text_columns(rows: u64) -> [Vec<String>; 4] {
    let mut columns: [Vec<String>; 4] = Default::default();
    for i in 0..rows {
        columns[0].push((i + 1).to_string());
        columns[1].push((1000 + i % 10_000).to_string());
        columns[2].push((100 + i * 7 % 100_000_000).to_string());
        columns[3].push(format!(
            "2024-01-01 00:{:02}:{:02}.{:03}",
            i / 600_000 % 60,
            i / 10_000 % 60,
            i / 10 % 1000
        ));
    }
    columns
}

const BARE_TABLE: &str = "(id bigint PRIMARY KEY, auction bigint, price bigint, ts timestamp)";

/// PostgreSQL's load ceiling: `COPY … FROM STDIN` of pre-rendered rows.
async fn postgres_copy(pg: &PgServer, rows: u64) -> Figures {
    let client = pg.connect().await;
    client
        .batch_execute(&format!("CREATE TABLE copied {BARE_TABLE}"))
        .await
        .expect("table");
    let columns = text_columns(rows);
    let mut text = String::with_capacity(rows as usize * 48);
    let [ids, auctions, prices, times] = &columns;
    for (((id, auction), price), ts) in ids.iter().zip(auctions).zip(prices).zip(times) {
        text.push_str(&format!("{id}\t{auction}\t{price}\t{ts}\n"));
    }
    let (t, c) = (Instant::now(), cpu_seconds());
    let sink = client
        .copy_in("COPY copied FROM STDIN")
        .await
        .expect("copy");
    futures::pin_mut!(sink);
    for chunk in text.as_bytes().chunks(1 << 20) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .expect("copy data");
    }
    let copied = sink.finish().await.expect("copy done");
    assert_eq!(copied, rows);
    Figures {
        name: "PostgreSQL COPY, bare client (ceiling)".into(),
        wall: t.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c,
        items: rows,
    }
}

/// The PostgreSQL sink's statement shape from a bare client: batched upserts over text arrays.
async fn postgres_bare_upsert(pg: &PgServer, rows: u64) -> Figures {
    let mut client = pg.connect().await;
    client
        .batch_execute(&format!("CREATE TABLE upserted {BARE_TABLE}"))
        .await
        .expect("table");
    let columns = text_columns(rows);
    let statement = client
        .prepare(
            "INSERT INTO upserted (id, auction, price, ts) \
             SELECT c0::bigint, c1::bigint, c2::bigint, c3::timestamp \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(c0, c1, c2, c3) \
             ON CONFLICT (id) DO UPDATE SET auction = EXCLUDED.auction, price = EXCLUDED.price, \
             ts = EXCLUDED.ts",
        )
        .await
        .expect("prepare");
    let (t, c) = (Instant::now(), cpu_seconds());
    for start in (0..rows as usize).step_by(10_000) {
        let end = (start + 10_000).min(rows as usize);
        let slice = |k: usize| &columns[k][start..end];
        let transaction = client.transaction().await.expect("begin");
        transaction
            .execute(&statement, &[&slice(0), &slice(1), &slice(2), &slice(3)])
            .await
            .expect("upsert");
        transaction.commit().await.expect("commit");
    }
    Figures {
        name: "PostgreSQL batched upsert, bare client".into(),
        wall: t.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c,
        items: rows,
    }
}

/// Generator → append-only view (→ `sink`, when given) until everything is delivered.
async fn run(name: &str, rows: u64, sink: Option<String>) -> Figures {
    let data = tempfile::tempdir().expect("tempdir");
    let mut options = DatabaseOptions::new(data.path());
    options.checkpoint_interval = Duration::from_secs(1);
    let (db, _) = weir::database().open(options).await.expect("database");
    let s = db.session();
    let (t, c) = (Instant::now(), cpu_seconds());
    s.execute_all(&format!(
        "CREATE SOURCE bids (id BIGINT, auction BIGINT, price BIGINT, ts TIMESTAMP(3),
                             WATERMARK FOR ts AS ts - INTERVAL '1 second')
           WITH (connector = 'datagen', generator = 'bids', events = '{rows}');
         CREATE MATERIALIZED VIEW all_bids AS SELECT id, auction, price, ts FROM bids WHERE price >= 0;"
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
        items: rows,
    }
}

fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let broker = Broker::start();
    for topic in ["ceiling", "eo", "alo"] {
        broker.create_topic(topic, 1);
    }
    let b = broker.address.clone();
    let files = tempfile::tempdir().expect("tempdir");
    let pg = PgServer::start();
    let mut figures = vec![ceiling(&b, rows)];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    figures.push(runtime.block_on(postgres_copy(&pg, rows)));
    figures.push(runtime.block_on(postgres_bare_upsert(&pg, rows)));
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
    figures.push(runtime.block_on(run(
        "view → PostgreSQL sink",
        rows,
        Some(format!(
            "CREATE SINK out FROM all_bids WITH (connector = 'postgres', connection = '{}', \
               table = 'sink_out', primary_key = 'id')",
            pg.conninfo()
        )),
    )));
    let in_table = runtime.block_on(async {
        let client = pg.connect().await;
        let row = client
            .query_one("SELECT count(*) FROM sink_out", &[])
            .await
            .expect("count");
        row.get::<_, i64>(0)
    });
    assert_eq!(in_table as u64, rows, "every row in the PostgreSQL table");
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
         says finished, which includes the checkpoint recording the end that a sink waits for (checkpoints every second; the exactly-once Kafka sink commits one transaction per \
         checkpoint). The Kafka ceiling is a bare librdkafka producer sending the same number of pre-rendered \
         JSON records of the same shape to the same tansu broker on loopback. The PostgreSQL ceilings load the \
         same number of pre-rendered rows into a local PostgreSQL 15 (fsync off, as in the tests) with a bare \
         client: by `COPY`, and by the sink's own batched upsert statement. Process CPU time includes \
         librdkafka's threads; the broker and PostgreSQL run on the same 2 cores and are not counted.\n\n\
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
    let by_name = |prefix: &str| {
        figures
            .iter()
            .find(|f| f.name.starts_with(prefix))
            .expect("a run")
    };
    let ceiling = by_name("librdkafka");
    let eo = by_name("view → Kafka sink, exactly");
    let copy = by_name("PostgreSQL COPY");
    let bare_upsert = by_name("PostgreSQL batched upsert");
    let pg_sink = by_name("view → PostgreSQL");
    section.push_str(&format!(
        "\nRows per second, same run: Kafka sink (exactly once) / librdkafka ceiling **{:.2}**; \
         PostgreSQL sink / bare batched upsert **{:.2}**, / COPY **{:.2}**. \
         Peak RSS of the bench process: {rss:.0} MB.\n",
        eo.per_second() / ceiling.per_second(),
        pg_sink.per_second() / bare_upsert.per_second(),
        pg_sink.per_second() / copy.per_second(),
    ));
    write_section("sinks", &section);
}
