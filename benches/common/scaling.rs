//! 1 → 2 workers: the same workload in child processes on one worker thread and shard, then on
//! two, alternating for a few rounds (these machines are shared and noisy; each figure is the
//! median of its rounds). The ratio of wall-clock throughputs is what a second core buys.

use super::child::{KeyFigures, figure, run_child_on};
use super::{commit, machine, today};

/// Rounds per worker count.
const ROUNDS: usize = 3;

/// Wall-clock events per second of a child's run.
fn per_second(f: &KeyFigures) -> Option<f64> {
    Some(figure(f, "events")? / figure(f, "wall")?)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// Runs `workloads` (with their `events`) on 1 and 2 workers and returns the BENCHMARKS.md
/// section: `command` is how the bench was invoked, `what` says what the workloads are.
pub fn scaling_report(command: &str, workloads: &[(&str, u64, &str)]) -> String {
    let mut s = format!(
        "## 1 → 2 workers\n\n`{command}` · commit {} · {} · {}\n\n\
         Each workload runs in its own process with `--workers 1` (one runtime thread, keyed \
         operators in one shard) and `--workers 2` (two threads, two shards), alternately, \
         {ROUNDS} rounds each; the figures are the medians. Throughput is wall-clock events per \
         second from `CREATE MATERIALIZED VIEW` until the view has every final row.\n\n\
         | workload | events | 1 worker: events/s | 2 workers: events/s | speed-up | CPU-s 1 → 2 | goal |\n\
         |---|---:|---:|---:|---:|---:|---|\n",
        commit(),
        today(),
        machine()
    );
    let mut notes = Vec::new();
    for (name, events, what) in workloads {
        let mut rates = [Vec::new(), Vec::new()];
        let mut cpus = [Vec::new(), Vec::new()];
        for round in 0..ROUNDS {
            for (slot, workers) in [1usize, 2].into_iter().enumerate() {
                println!("  {name}: {workers} worker(s), round {}…", round + 1);
                if let Some(f) = run_child_on(name, *events, Some(workers)) {
                    println!("    {}", super::child::result_line(&f));
                    rates[slot].extend(per_second(&f));
                    cpus[slot].extend(figure(&f, "cpu"));
                }
            }
        }
        let [one, two] = rates.map(median);
        let [cpu_one, cpu_two] = cpus.map(median);
        let speedup = one.zip(two).map(|(a, b)| b / a);
        s.push_str(&format!(
            "| {name} | {events} | {} | {} | **{}** | {} → {} | ≥ 1.7× |\n",
            one.map_or("–".into(), |v| format!("{:.2} M", v / 1e6)),
            two.map_or("–".into(), |v| format!("{:.2} M", v / 1e6)),
            speedup.map_or("–".into(), |v| format!("{v:.2}×")),
            cpu_one.map_or("–".into(), |v| format!("{v:.2}")),
            cpu_two.map_or("–".into(), |v| format!("{v:.2}")),
        ));
        notes.push(format!("- `{name}`: {what}"));
    }
    s.push('\n');
    s.push_str(&notes.join("\n"));
    s.push('\n');
    s
}
