//! Window kinds: sessions (Nexmark q11), cumulating and hopping windows, and the memory of open
//! sessions, each in its own process, written to BENCHMARKS.md's `windows` section.
//!
//! `cargo bench --bench windows -- [WORKLOAD…] [--events N] [--flink-q11 FILE]`
//!
//! | workload | what |
//! |---|---|
//! | `q11` | Nexmark q11: bids per bidder session (10 s of inactivity closes one), the peers' bids (100,000 bidders, 10 bids per ms) |
//! | `tumble2s` | bids per auction per 2 s tumbling window: the pane a 10 s / 2 s hop would be built from |
//! | `hop` | bids per auction per 10 s window every 2 s (each row in 5 windows; built from 2 s panes) |
//! | `cumulate` | bids per auction so far in each 10 s cycle, every 2 s |
//! | `session_memory` | 1,000,000 keys each with one session left open (1 hour gap): state bytes and RSS per open session |
//! | `tumble2s_retained` | `tumble2s` with `retention = '20 seconds'`: the view's memory stays bounded |
//!
//! `--flink-q11 FILE` adds Flink 2.3's q11 over the same rows, measured by
//! `scripts/bench-peers.sh … q11` (net of JVM start-up), and the per-CPU-second ratio.

// A bench program: it prints its figures, and a failed expectation aborts the run.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;
use common::child::{
    Args, KeyFigures, figure, millions, parse_pairs, per_cpu, result_line, run_child, run_view,
};
use common::{commit, machine, today, write_section};

const ALL: [&str; 6] = [
    "q11",
    "tumble2s",
    "tumble2s_retained",
    "hop",
    "cumulate",
    "session_memory",
];

/// The peers' bids (as in the streaming bench and Flink's datagen table).
fn bids(events: u64, extra: &str) -> String {
    format!(
        "CREATE SOURCE bids (id BIGINT, auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3) WITH TIME ZONE,
                             WATERMARK FOR ts AS ts - INTERVAL '4 seconds')
         WITH (connector = 'datagen', generator = 'bids', events = {events},
               start_time = '2024-01-01T00:00:00Z'{extra});"
    )
}

/// (source DDL, view DDL) of a workload.
fn workload(name: &str, events: u64) -> Option<(String, &'static str)> {
    Some(match name {
        "q11" => (
            bids(events, ""),
            "CREATE MATERIALIZED VIEW v AS SELECT bidder, count(*) AS bid_count, window_start, window_end
             FROM SESSION(bids, ts, INTERVAL '10 seconds') GROUP BY bidder, window_start, window_end
             EMIT ON WINDOW CLOSE",
        ),
        "tumble2s" => (
            bids(events, ""),
            "CREATE MATERIALIZED VIEW v AS SELECT auction, window_start, window_end, count(*) AS num
             FROM TUMBLE(bids, ts, INTERVAL '2 seconds') GROUP BY auction, window_start, window_end
             EMIT ON WINDOW CLOSE",
        ),
        "tumble2s_retained" => (
            bids(events, ""),
            "CREATE MATERIALIZED VIEW v WITH (retention = '20 seconds') AS
             SELECT auction, window_start, window_end, count(*) AS num
             FROM TUMBLE(bids, ts, INTERVAL '2 seconds') GROUP BY auction, window_start, window_end
             EMIT ON WINDOW CLOSE",
        ),
        "hop" => (
            bids(events, ""),
            "CREATE MATERIALIZED VIEW v AS SELECT auction, window_start, window_end, count(*) AS num
             FROM HOP(bids, ts, INTERVAL '2 seconds', INTERVAL '10 seconds')
             GROUP BY auction, window_start, window_end EMIT ON WINDOW CLOSE",
        ),
        "cumulate" => (
            bids(events, ""),
            "CREATE MATERIALIZED VIEW v AS SELECT auction, window_start, window_end, count(*) AS num
             FROM CUMULATE(bids, ts, INTERVAL '2 seconds', INTERVAL '10 seconds')
             GROUP BY auction, window_start, window_end EMIT ON WINDOW CLOSE",
        ),
        "session_memory" => (
            bids(events, ", event_rate = 1000000"),
            "CREATE MATERIALIZED VIEW v AS SELECT id, count(*) AS n, window_start, window_end
             FROM SESSION(bids, ts, INTERVAL '1 hour') GROUP BY id, window_start, window_end
             EMIT ON WINDOW CLOSE",
        ),
        _ => return None,
    })
}

/// Runs a workload to the end of its input (every session closes when the input ends).
async fn run(name: &str, events: u64) -> KeyFigures {
    let (source, view) = workload(name, events).expect("known workload");
    run_view(name, &source, view, events).await
}

fn goal(name: &str) -> &'static str {
    match name {
        "q11" => "≥ 0.5 M/CPU-s",
        "session_memory" => "100 k windows well under 2 GB",
        _ => "",
    }
}

fn report(args: &str, results: &[(String, KeyFigures)], flink: Option<&KeyFigures>) -> String {
    let mut s = format!(
        "## Window kinds\n\n`cargo bench --bench windows --{args}` · commit {} · {} · {}\n\n\
         Each run is the real engine (datagen source → pipeline → materialized view, `rate = 'unbounded'`, \
         `EMIT ON WINDOW CLOSE`) in its own process; CPU is process CPU time over all threads (the generator \
         included) until the view has every row.\n\n\
         | workload | events | wall s | events per CPU-s | rows out | view rows in memory MB | peak RSS MB | peak state MB | goal |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
        commit(),
        today(),
        machine()
    );
    let get = |n: &str| results.iter().find(|(name, _)| name == n).map(|(_, f)| f);
    for (name, f) in results {
        s.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {:.1} | {} | {:.1} | {} |\n",
            f.get("events").map_or("–", String::as_str),
            f.get("wall").map_or("–", String::as_str),
            millions(per_cpu(f)),
            f.get("rows_out").map_or("–", String::as_str),
            figure(f, "view_memory_bytes").unwrap_or(f64::NAN) / 1e6,
            f.get("peak_rss_mb").map_or("–", String::as_str),
            figure(f, "peak_state_bytes").unwrap_or(f64::NAN) / 1e6,
            goal(name)
        ));
    }
    let flink_rate = flink.and_then(|fl| {
        let net_cpu = figure(fl, "cpu")? - figure(fl, "startup_cpu")?;
        Some(figure(fl, "rows")? / net_cpu)
    });
    if let Some(fl) = flink {
        s.push_str(&format!(
            "| Flink 2.3 q11 (p=1, net of start-up) | {} | {} | {} | – | – | {} | – | peer |\n",
            fl.get("rows").map_or("–", String::as_str),
            fl.get("wall").map_or("–", String::as_str),
            millions(flink_rate),
            fl.get("maxrss_mb").map_or("–", String::as_str),
        ));
    }
    s.push('\n');
    match (get("q11").and_then(per_cpu), flink_rate) {
        (Some(weir), Some(flink)) => s.push_str(&format!(
            "q11 (sessions), Weir / Flink per CPU-second: **{:.1}×**.\n",
            weir / flink
        )),
        _ => s.push_str(
            "Flink: not in this run (`scripts/bench-peers.sh 10000000 q11` runs it side by side).\n",
        ),
    }
    if let (Some(hop), Some(pane)) = (
        get("hop").and_then(per_cpu),
        get("tumble2s").and_then(per_cpu),
    ) {
        s.push_str(&format!(
            "HOP 10 s / 2 s costs {:.1}× a 2 s TUMBLE per event (built from 2 s panes: each row folded \
             once into its pane, 5 panes merged per window).\n",
            pane / hop
        ));
    }
    if let (Some(all), Some(kept)) = (get("tumble2s"), get("tumble2s_retained"))
        && let (Some(all_rows), Some(kept_rows), Some(all_mb), Some(kept_mb)) = (
            figure(all, "rows_out"),
            figure(kept, "rows_out"),
            figure(all, "view_memory_bytes"),
            figure(kept, "view_memory_bytes"),
        )
    {
        s.push_str(&format!(
            "Retention: the 2 s TUMBLE view kept for 20 s holds {kept_rows:.0} rows ({:.1} MB) at the end \
             against {all_rows:.0} ({:.1} MB) without, the last 20 s of a stream of any length; per event it \
             costs {:.2}× the view without retention.\n",
            kept_mb / 1e6,
            all_mb / 1e6,
            per_cpu(all).zip(per_cpu(kept)).map_or(f64::NAN, |(a, k)| a / k)
        ));
    }
    if let Some(m) = get("session_memory")
        && let (Some(state), Some(rss), Some(sessions)) = (
            figure(m, "peak_state_bytes"),
            figure(m, "rss_growth_mb"),
            figure(m, "events"),
        )
    {
        s.push_str(&format!(
            "Open sessions: {sessions:.0} keys with one open session each held **{:.0} bytes per session** of \
             operator state and {:.0} bytes per session of peak RSS growth (state, generator batches and the \
             rows written to the view); 100,000 open sessions would take about {:.0} MB.\n",
            state / sessions,
            rss * 1024.0 * 1024.0 / sessions,
            rss * 100_000.0 / sessions
        ));
    }
    s
}

fn main() {
    let args = Args::from_env();
    let events = args.events();
    if let Some(name) = args.value("--child") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let figures = runtime.block_on(run(&name, events));
        println!("{}", result_line(&figures));
        return;
    }
    let flink = args
        .value("--flink-q11")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| parse_pairs(&t));
    let mut names = args.names();
    if names.is_empty() {
        names = ALL.iter().map(|s| (*s).to_string()).collect();
    }
    let mut results = Vec::new();
    for name in &names {
        let n = if name == "session_memory" {
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
    let text = report(&args.shown(), &results, flink.as_ref());
    println!("\n{text}");
    write_section("windows", &text);
}
