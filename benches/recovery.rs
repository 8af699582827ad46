//! Restart benchmark: how long a server with a large operator state takes to come back.
//!
//! `cargo bench --bench recovery -- [--groups N]`
//!
//! 1. `build` (its own process): a durable database in a fresh data directory; a view holding one
//!    open-window group per event (`GROUP BY id` in a 1-day window, `count` and `sum`), fed by an
//!    unbounded generator until it has `N` groups (default 16 M, about 1 GB of state); then
//!    `CHECKPOINT`, and the process exits without any shutdown, as a crash would.
//! 2. `restart` (a new process on the same directory): `Database::open` (catalog, newest
//!    checkpoint verified and decoded, views and operator state restored, pipelines started), then
//!    the first query answered: that is "back to serving". Then the time until the operator has
//!    its state back in memory.
//!
//! Ratios in the same run: restart time against rebuilding the same state from the source (the
//! `build` phase's ingest, what a restart without checkpoints would cost), and against reading the
//! checkpoint's bytes from disk (the floor for anything that restores from files).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use weir_sql::{DatabaseOptions, QueryResult, Session};

mod common;
use common::{commit, machine, peak_rss_mb, rss_mb, today, write_section};

type Figures = BTreeMap<String, String>;

async fn one_value(session: &Session, sql: &str) -> String {
    let mut results = session
        .execute_all(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let Some(QueryResult::Rows { stream, .. }) = results.pop() else {
        panic!("{sql}: no rows")
    };
    let batches: Vec<_> = stream.try_collect().await.expect("rows");
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    datafusion::arrow::util::display::array_value_to_string(batch.column(0), 0).expect("value")
}

fn options(dir: &Path) -> DatabaseOptions {
    let mut o = DatabaseOptions::new(dir);
    // Only the explicit CHECKPOINT: the figures are one checkpoint's.
    o.checkpoint_interval = Duration::from_secs(3600);
    o.checkpoint_timeout = Duration::from_secs(600);
    o
}

async fn build(dir: &Path, groups: u64) -> Figures {
    let (db, _) = weir::database().open(options(dir)).await.expect("open");
    let session = db.session();
    let started = Instant::now();
    session
        .execute_all(
            "CREATE SOURCE bids (id BIGINT, price BIGINT, ts TIMESTAMP(3) WITH TIME ZONE,
                                 WATERMARK FOR ts AS ts - INTERVAL '4 seconds')
               WITH (connector = 'datagen', generator = 'bids', event_rate = 1000000,
                     start_time = '2024-01-01T00:00:00Z');
             CREATE MATERIALIZED VIEW v AS SELECT id, window_start, count(*) AS n, sum(price) AS total
               FROM TUMBLE(bids, ts, INTERVAL '1 day') GROUP BY id, window_start EMIT ON WINDOW CLOSE;",
        )
        .await
        .expect("ddl");
    loop {
        let rows: u64 = one_value(&session, "SELECT rows_in FROM weir_views WHERE name = 'v'")
            .await
            .parse()
            .unwrap();
        if rows >= groups {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ingest = started.elapsed();
    let checkpoint = Instant::now();
    session.execute_all("CHECKPOINT").await.expect("checkpoint");
    let checkpoint = checkpoint.elapsed();
    let rows_in = one_value(&session, "SELECT rows_in FROM weir_views WHERE name = 'v'").await;
    let state = one_value(
        &session,
        "SELECT state_bytes FROM weir_views WHERE name = 'v'",
    )
    .await;
    let bytes = one_value(
        &session,
        "SELECT bytes FROM weir_checkpoints WHERE status = 'committed'",
    )
    .await;
    let mut f = Figures::new();
    f.insert("ingest_s".into(), format!("{:.2}", ingest.as_secs_f64()));
    f.insert("groups".into(), rows_in);
    f.insert("state_bytes".into(), state);
    f.insert(
        "checkpoint_s".into(),
        format!("{:.2}", checkpoint.as_secs_f64()),
    );
    f.insert("checkpoint_bytes".into(), bytes);
    f.insert("build_peak_rss_mb".into(), format!("{:.0}", peak_rss_mb()));
    f
}

async fn restart(dir: &Path, process_start: Instant) -> Figures {
    let (db, _) = weir::database().open(options(dir)).await.expect("open");
    let opened = process_start.elapsed();
    let session = db.session();
    let _ = one_value(&session, "SELECT count(*) FROM v").await;
    let serving = process_start.elapsed();
    let loaded = one_value(
        &session,
        "SELECT duration_ms FROM weir_checkpoints WHERE status = 'recovered'",
    )
    .await;
    let restored = loop {
        let state: u64 = one_value(
            &session,
            "SELECT state_bytes FROM weir_views WHERE name = 'v'",
        )
        .await
        .parse()
        .unwrap();
        if state > 0 {
            break process_start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut f = Figures::new();
    f.insert("open_s".into(), format!("{:.2}", opened.as_secs_f64()));
    f.insert(
        "load_checkpoint_s".into(),
        format!("{:.2}", loaded.parse::<f64>().unwrap() / 1000.0),
    );
    f.insert("serving_s".into(), format!("{:.2}", serving.as_secs_f64()));
    f.insert(
        "state_restored_s".into(),
        format!("{:.2}", restored.as_secs_f64()),
    );
    f.insert("restart_rss_mb".into(), format!("{:.0}", rss_mb()));
    f
}

/// Time to read every file of the data directory (the floor for restoring from files).
fn read_floor(dir: &Path) -> (f64, u64) {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out)
            } else {
                out.push(path)
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    let started = Instant::now();
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::read(f).map(|b| b.len() as u64).unwrap_or(0))
        .sum();
    (started.elapsed().as_secs_f64(), bytes)
}

fn run_child(args: &[&str]) -> Figures {
    let exe = std::env::current_exe().expect("exe");
    let out = Command::new(exe).args(args).output().expect("spawn");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find(|l| l.starts_with("RESULT ")) else {
        panic!(
            "{args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    line.trim_start_matches("RESULT ")
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

fn print_result(f: &Figures) {
    let line: Vec<String> = f.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("RESULT {}", line.join(" "));
    // Exit at once, without dropping anything: for `build` this is the crash.
    std::process::exit(0);
}

fn main() {
    let process_start = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(phase) = arg("--child") {
        let dir = PathBuf::from(arg("--dir").expect("--dir"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let figures = match phase.as_str() {
            "build" => runtime.block_on(build(
                &dir,
                arg("--groups")
                    .and_then(|g| g.parse().ok())
                    .unwrap_or(16_000_000),
            )),
            _ => runtime.block_on(restart(&dir, process_start)),
        };
        print_result(&figures);
    }
    let groups = arg("--groups").unwrap_or_else(|| "16000000".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir.path().to_string_lossy().to_string();
    let built = run_child(&["--child", "build", "--dir", &dir_arg, "--groups", &groups]);
    println!("build: {built:?}");
    let (read_s, read_bytes) = read_floor(dir.path());
    let spawned = Instant::now();
    let restarted = run_child(&["--child", "restart", "--dir", &dir_arg]);
    let process_wall = spawned.elapsed().as_secs_f64();
    println!(
        "restart: {restarted:?} (process wall {process_wall:.2} s); reading {read_bytes} bytes: {read_s:.2} s"
    );
    let get = |f: &Figures, k: &str| {
        f.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let serving = get(&restarted, "serving_s");
    let body = format!(
        "## Restart with a large operator state\n\n`cargo bench --bench recovery -- --groups {groups}` · commit {} · {} · {}\n\n\
         One view with one open-window group per event (`GROUP BY id`, `count`, `sum`) fed by the bids generator; \
         `CHECKPOINT`; the process exits without shutting down; a new process opens the same data directory.\n\n\
         | figure | value |\n|---|---:|\n\
         | groups in the open window | {} |\n\
         | operator state (DataFusion's accounting) | {:.2} GB |\n\
         | checkpoint: files / time to take it | {:.2} GB / {} s |\n\
         | restart: open (catalog, checkpoint verified + decoded, views restored) | {} s |\n\
         | of which loading the checkpoint | {} s |\n\
         | **restart: back to serving queries** (goal ≤ 3 s) | **{} s** |\n\
         | restart: operator state back in memory | {} s |\n\
         | rebuilding the same state from the source (no checkpoint) | {} s |\n\
         | reading the data directory's bytes (floor) | {read_s:.2} s |\n\n\
         Back to serving in **{:.1}×** less time than rebuilding from the source, and **{:.1}×** the time just reading the \
         files takes. Peak RSS of the building process {} MB; RSS after the restart {} MB.\n",
        commit(),
        today(),
        machine(),
        built.get("groups").map_or("–", String::as_str),
        get(&built, "state_bytes") / 1e9,
        get(&built, "checkpoint_bytes") / 1e9,
        built.get("checkpoint_s").map_or("–", String::as_str),
        restarted.get("open_s").map_or("–", String::as_str),
        restarted
            .get("load_checkpoint_s")
            .map_or("–", String::as_str),
        restarted.get("serving_s").map_or("–", String::as_str),
        restarted
            .get("state_restored_s")
            .map_or("–", String::as_str),
        built.get("ingest_s").map_or("–", String::as_str),
        get(&built, "ingest_s") / serving,
        serving / read_s,
        built.get("build_peak_rss_mb").map_or("–", String::as_str),
        restarted.get("restart_rss_mb").map_or("–", String::as_str),
    );
    println!("{body}");
    write_section("recovery", &body);
}
