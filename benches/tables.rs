//! Tables: what writing with SQL costs, each figure beside a ceiling measured in the same run.
//!
//! - `COPY … FROM STDIN` (CSV) of 1,000,000 rows into a keyed table, durable (one log entry):
//!   rows/s, against arrow-csv decoding the same bytes alone.
//! - 5,000 single-row `INSERT`s, each committed (a log entry written before it returns): µs per
//!   statement, against a put of a log-sized object into the same checkpoint store alone.
//! - `UPDATE` of 1 % of the rows (10,000): ms per statement, against DataFusion running the same
//!   filter and projection over the table as a query.
//! - A view over the table (`GROUP BY` 1,000 groups) following that update: time until it shows
//!   it.
//!
//! `cargo bench --bench tables` writes its section of BENCHMARKS.md.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use weir_sql::{DatabaseOptions, Session};

mod common;
use common::{commit, cpu_seconds, machine, scalar, today, write_section};

const ROWS: u64 = 1_000_000;
const INSERTS: u64 = 5_000;

fn csv(rows: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows as usize * 24);
    for i in 0..rows {
        out.extend_from_slice(format!("{i},g{},{}.5\n", i % 1000, i % 977).as_bytes());
    }
    out
}

async fn copy(session: &Session, bytes: &[u8]) {
    let statement = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        "COPY t FROM STDIN WITH (FORMAT csv)",
    )
    .expect("parse");
    let mut copy = session.start_copy(&statement[0]).expect("copy");
    // As psql sends it: 64 KiB CopyData messages.
    for chunk in bytes.chunks(64 << 10) {
        copy.push(chunk).expect("copy data");
    }
    session
        .finish_copy(&session.statement_state(), copy)
        .await
        .expect("copy");
}

fn arrow_csv_ceiling(bytes: &[u8]) -> f64 {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("g", DataType::Utf8, true),
        Field::new("v", DataType::Float64, true),
    ]));
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            let reader = arrow_csv::ReaderBuilder::new(Arc::clone(&schema))
                .with_batch_size(8192)
                .build(std::io::Cursor::new(bytes))
                .expect("reader");
            let rows: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
            assert_eq!(rows as u64, ROWS);
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min);
    ROWS as f64 / best
}

async fn wait_for(session: &Session, sql: &str, want: &str) -> Duration {
    let t = Instant::now();
    loop {
        if scalar(session, sql).await == want {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{sql} never gave {want}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn run() -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = DatabaseOptions::new(dir.path());
    options.checkpoint_interval = Duration::from_secs(3600);
    let (db, _) = weir::database().open(options).await.expect("open");
    let session = db.session();
    session
        .execute_all(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, g TEXT, v DOUBLE PRECISION);
             CREATE MATERIALIZED VIEW per_g AS SELECT g, count(*) AS n, sum(v) AS s FROM t GROUP BY g",
        )
        .await
        .expect("ddl");
    let bytes = csv(ROWS);
    let ceiling = arrow_csv_ceiling(&bytes);
    let (t, c) = (Instant::now(), cpu_seconds());
    copy(&session, &bytes).await;
    let (copy_wall, copy_cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    let view_caught_up = wait_for(&session, "SELECT sum(n) FROM per_g", &ROWS.to_string()).await;

    // Single-row INSERTs, each its own durable commit.
    let mut latencies = Vec::with_capacity(INSERTS as usize);
    let (t, c) = (Instant::now(), cpu_seconds());
    for i in 0..INSERTS {
        let s = Instant::now();
        session
            .execute_all(&format!("INSERT INTO t VALUES ({}, 'new', 1.0)", ROWS + i))
            .await
            .expect("insert");
        latencies.push(s.elapsed().as_secs_f64() * 1e6);
    }
    let (insert_wall, insert_cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    latencies.sort_by(f64::total_cmp);
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    // The ceiling of a durable commit: one put of a log-sized object into the same store.
    let store = db
        .durability()
        .expect("durable")
        .coordinator
        .store()
        .clone();
    let t = Instant::now();
    for i in 0..INSERTS {
        store
            .put(&format!("bench/put-{i:020}.arrow"), vec![0u8; 600])
            .await
            .expect("put");
    }
    let put_us = t.elapsed().as_secs_f64() * 1e6 / INSERTS as f64;

    // UPDATE 1 % of the rows; the view follows.
    let before = scalar(&session, "SELECT sum(s) FROM per_g").await;
    let t = Instant::now();
    session
        .execute_all("UPDATE t SET v = v + 1 WHERE id % 100 = 0")
        .await
        .expect("update");
    let update_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    loop {
        let now = scalar(&session, "SELECT sum(s) FROM per_g").await;
        if now != before {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the view never followed the update"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let view_followed_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut best_query = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        scalar(
            &session,
            "SELECT count(*) FROM (SELECT id, g, v + 1 AS v, id AS old_id, g AS old_g, v AS old_v \
               FROM t WHERE id % 100 = 0) u",
        )
        .await;
        best_query = best_query.min(t.elapsed().as_secs_f64() * 1e3);
    }
    format!(
        "## Tables\n\n`cargo bench --bench tables` · commit {} · {} · {}\n\n\
         | figure | Weir | ceiling (same run) | ratio |\n|---|---:|---:|---:|\n\
         | COPY 1 M rows (CSV) into a keyed table, durable | {:.2} M rows/s ({:.2} M rows/CPU-s) | arrow-csv decode alone: {:.2} M rows/s | {:.1}x |\n\
         | single-row INSERT, committed (log entry per statement) | p50 {:.0} µs, p99 {:.0} µs ({:.0} statements/s, {:.0} µs CPU each) | one store put: {:.0} µs | {:.1}x |\n\
         | UPDATE 1 % of 1 M rows (10,000 update pairs) | {:.1} ms | the same filter + projection as a query: {:.1} ms | {:.1}x |\n\n\
         A view over the table (GROUP BY 1,000 groups) showed the 1 M copied rows {:.0} ms after the COPY \
         returned and the update {:.0} ms after the UPDATE returned (its refresh is 100 ms).\n",
        commit(),
        machine(),
        today(),
        ROWS as f64 / copy_wall / 1e6,
        ROWS as f64 / copy_cpu / 1e6,
        ceiling / 1e6,
        ceiling / (ROWS as f64 / copy_wall),
        p50,
        p99,
        INSERTS as f64 / insert_wall,
        insert_cpu * 1e6 / INSERTS as f64,
        put_us,
        p50 / put_us,
        update_ms,
        best_query,
        update_ms / best_query,
        view_caught_up.as_secs_f64() * 1e3,
        view_followed_ms,
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let text = runtime.block_on(run());
    println!("{text}");
    write_section("tables", &text);
}
