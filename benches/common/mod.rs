//! What every bench target shares: process CPU time, peak memory, the machine and commit a run
//! was taken on, and rewriting its own section of BENCHMARKS.md.

#![allow(dead_code)]

pub mod accuracy;
pub mod child;
pub mod kafka_latency;
pub mod nexmark_csv;
// The integration tests' tansu broker (started from the `.venv` that `scripts/test.sh` makes).
#[path = "../../tests/integration/broker.rs"]
pub mod broker;
// The integration tests' throwaway PostgreSQL server.
#[path = "../../tests/integration/postgres_server.rs"]
pub mod postgres_server;
pub mod scaling;
pub mod sensors;

use std::path::PathBuf;
use std::process::Command;

/// CPU seconds used by this process so far (user + system, all threads).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn status_mb(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Peak resident memory of this process, MB.
pub fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

/// Current resident memory of this process, MB.
pub fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

/// "N cores, CPU model".
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cores} cores, {cpu}")
}

/// The short hash of HEAD, with `+dirty` when the work tree has changes.
pub fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let hash = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    if dirty { format!("{hash}+dirty") } else { hash }
}

/// Today's date (UTC).
pub fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// Replaces the text between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->` in
/// BENCHMARKS.md (appending the section when it is missing).
pub fn write_section(name: &str, body: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let (start, end) = (
        format!("<!-- bench:{name}:start -->"),
        format!("<!-- bench:{name}:end -->"),
    );
    let section = format!("{start}\n{}\n{end}", body.trim_end());
    let text = match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{section}{}", &text[..a], &text[b + end.len()..]),
        _ => format!("{}\n\n{section}\n", text.trim_end()),
    };
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("could not write {}: {e}", path.display());
    }
}

/// One timed run: wall and process CPU seconds for `items` rows or records.
pub struct Figures {
    pub name: String,
    pub wall: f64,
    pub cpu: f64,
    pub items: u64,
}

impl Figures {
    pub fn per_second(&self) -> f64 {
        self.items as f64 / self.wall
    }

    pub fn per_cpu_second(&self) -> f64 {
        self.items as f64 / self.cpu
    }
}

/// The first value of `sql`'s first row as text (empty when there is none).
pub async fn scalar(session: &weir_sql::Session, sql: &str) -> String {
    let mut results = session.execute_all(sql).await.expect(sql);
    let Some(weir_sql::QueryResult::Rows { stream, .. }) = results.pop() else {
        panic!("{sql}: no rows")
    };
    let batches: Vec<_> = futures::TryStreamExt::try_collect(stream)
        .await
        .expect("rows");
    batches
        .first()
        .filter(|b| b.num_rows() > 0)
        .map(|b| {
            datafusion::arrow::util::display::array_value_to_string(b.column(0), 0)
                .unwrap_or_default()
        })
        .unwrap_or_default()
}
