//! Workloads run in a fresh process each (so CPU time and peak RSS are theirs alone): the parent
//! re-runs the bench binary with `--child NAME --events N`, and the child prints its figures as
//! one `RESULT key=value …` line.

use std::collections::BTreeMap;
use std::process::Command;

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
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .args(["--child", name, "--events", &events.to_string()])
        .output()
        .expect("spawn");
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

/// `key=value` pairs separated by whitespace (a child's line, or a peer's result file).
pub fn parse_pairs(text: &str) -> KeyFigures {
    text.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
