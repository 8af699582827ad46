//! Workloads run in a fresh process each (so CPU time and peak RSS are theirs alone): the parent
//! re-runs the bench binary with `--child NAME --events N`, and the child prints its figures as
//! one `RESULT key=value …` line.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use weir_engine::pipeline::PipelineState;

use super::{cpu_seconds, peak_rss_mb, rss_mb};

/// One child's figures, by name.
pub type KeyFigures = BTreeMap<String, String>;

/// The `RESULT` line a child prints.
pub fn result_line(figures: &KeyFigures) -> String {
    let pairs: Vec<String> = figures
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "_")))
        .collect();
    format!("RESULT {}", pairs.join(" "))
}

/// A figure as a number.
pub fn figure(figures: &KeyFigures, key: &str) -> Option<f64> {
    figures.get(key).and_then(|v| v.parse().ok())
}

/// Events per CPU-second.
pub fn per_cpu(f: &KeyFigures) -> Option<f64> {
    Some(figure(f, "events")? / figure(f, "cpu")?)
}

/// `1.23 M`, or `–`.
pub fn millions(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.2} M", v / 1e6))
}

/// Runs one workload in a fresh process and parses its figures.
pub fn run_child(name: &str, events: u64) -> Option<KeyFigures> {
    run_child_on(name, events, None)
}

/// [`run_child`] on `workers` threads and shards (None: one per core).
pub fn run_child_on(name: &str, events: u64, workers: Option<usize>) -> Option<KeyFigures> {
    let exe = std::env::current_exe().expect("current exe");
    let mut command = Command::new(exe);
    command.args(["--child", name, "--events", &events.to_string()]);
    match workers {
        Some(w) => command.env(WORKERS_VAR, w.to_string()),
        None => command.env_remove(WORKERS_VAR),
    };
    let out = command.output().expect("spawn");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find(|l| l.starts_with("RESULT ")) else {
        eprintln!(
            "{name} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    };
    Some(parse_pairs(line.trim_start_matches("RESULT ")))
}

/// Where a child learns its worker count.
const WORKERS_VAR: &str = "WEIR_WORKERS";

/// The child's worker count, when the parent set one.
pub fn workers() -> Option<usize> {
    std::env::var(WORKERS_VAR).ok().and_then(|w| w.parse().ok())
}

/// A runtime on the child's workers (one thread per core unless the parent said otherwise).
pub fn runtime() -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(w) = workers() {
        builder.worker_threads(w);
    }
    builder.enable_all().build().expect("runtime")
}

/// A database with the child's workers.
pub fn database() -> std::sync::Arc<weir_sql::Database> {
    let mut builder = weir::database();
    if let Some(w) = workers() {
        builder = builder.workers(w);
    }
    builder.build().expect("database")
}

/// `key=value` pairs separated by whitespace (a child's line, or a peer's result file).
pub fn parse_pairs(text: &str) -> KeyFigures {
    text.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A bench binary's command line: workload names, `--events N`, `--child NAME` and other
/// `--flag value` pairs.
pub struct Args {
    args: Vec<String>,
}

impl Args {
    pub fn from_env() -> Self {
        Self {
            args: std::env::args()
                .skip(1)
                .filter(|a| a != "--bench")
                .collect(),
        }
    }

    /// The value after `flag`.
    pub fn value(&self, flag: &str) -> Option<String> {
        self.args
            .iter()
            .position(|a| a == flag)
            .and_then(|i| self.args.get(i + 1))
            .cloned()
    }

    /// `--events`, 10,000,000 by default.
    pub fn events(&self) -> u64 {
        self.value("--events")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000_000)
    }

    /// The workload names (arguments not part of a `--flag value` pair).
    pub fn names(&self) -> Vec<String> {
        let mut skip_next = false;
        let mut names = Vec::new();
        for a in &self.args {
            if std::mem::take(&mut skip_next) {
                continue;
            }
            if a.starts_with("--") {
                skip_next = true;
                continue;
            }
            names.push(a.clone());
        }
        names
    }

    /// The command line as shown in BENCHMARKS.md (` arg arg …`).
    pub fn shown(&self) -> String {
        self.args.iter().map(|a| format!(" {a}")).collect()
    }
}

/// Creates `source`, then view `v` from `view`, and runs it to the end of its input: wall and
/// process CPU seconds from the view's creation, rows in and out, peak RSS and its growth, and
/// the view's peak operator state.
pub async fn run_view(name: &str, source: &str, view: &str, events: u64) -> KeyFigures {
    let db = database();
    let session = db.session();
    session.execute_all(source).await.expect("create source");
    let rss_before = rss_mb();
    let (t, c) = (Instant::now(), cpu_seconds());
    session.execute_all(view).await.expect("create view");
    let entry = db.catalog().view("v").expect("view");
    loop {
        match entry.status.state() {
            PipelineState::Running => tokio::time::sleep(Duration::from_millis(2)).await,
            PipelineState::Finished => break,
            PipelineState::Failed(e) => panic!("{name}: pipeline failed: {e}"),
        }
    }
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    let (final_rows, open_rows, _) = entry.table.stats();
    let mut f = KeyFigures::new();
    f.insert("events".into(), events.to_string());
    f.insert(
        "rows_in".into(),
        entry.status.rows_in.load(Ordering::Relaxed).to_string(),
    );
    f.insert("rows_out".into(), (final_rows + open_rows).to_string());
    f.insert(
        "view_memory_bytes".into(),
        entry.table.bytes().0.to_string(),
    );
    f.insert("wall".into(), format!("{wall:.3}"));
    f.insert("cpu".into(), format!("{cpu:.3}"));
    f.insert("peak_rss_mb".into(), format!("{:.0}", peak_rss_mb()));
    f.insert(
        "rss_growth_mb".into(),
        format!("{:.0}", peak_rss_mb() - rss_before),
    );
    f.insert(
        "peak_state_bytes".into(),
        entry
            .status
            .peak_state_bytes
            .load(Ordering::Relaxed)
            .to_string(),
    );
    f
}
