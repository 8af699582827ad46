//! Joins: Nexmark q7 (bids joined with their window's highest price: an interval join of a
//! source and a windowed view) and an interval self-join, each in its own process, with the
//! state they hold, written to BENCHMARKS.md's `joins` section.
//!
//! `cargo bench --bench joins -- [WORKLOAD…] [--events N] [--flink-q7 FILE]`
//!
//! | workload | what |
//! |---|---|
//! | `q7` | Nexmark q7 over the peers' bids (10 bids per ms, prices uniform over 10⁸): the bids at the highest price of each 10 s window |
//! | `self_interval` | bids of one auction less than 100 ms apart (10,000 auctions): an interval self-join |
//!
//! `--flink-q7 FILE` adds Flink 2.3's q7 over the same rows, measured by
//! `scripts/bench-peers.sh … q7` (net of JVM start-up), and the per-CPU-second ratio.

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

const ALL: [&str; 2] = ["q7", "self_interval"];

/// The peers' bids (as in the windows bench and Flink's datagen table).
fn bids(events: u64) -> String {
    format!(
        "CREATE SOURCE bids (id BIGINT, auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3) WITH TIME ZONE,
                             WATERMARK FOR ts AS ts - INTERVAL '4 seconds')
         WITH (connector = 'datagen', generator = 'bids', events = {events},
               start_time = '2024-01-01T00:00:00Z');"
    )
}

/// (source DDL, views DDL; the last view is `v`) of a workload.
fn workload(name: &str, events: u64) -> Option<(String, &'static str)> {
    Some(match name {
        "q7" => (
            bids(events),
            "CREATE MATERIALIZED VIEW top_prices AS
               SELECT max(price) AS maxprice, window_end FROM TUMBLE(bids, ts, INTERVAL '10 seconds')
               GROUP BY window_start, window_end EMIT ON WINDOW CLOSE;
             CREATE MATERIALIZED VIEW v AS
               SELECT B.auction, B.price, B.bidder, B.ts FROM bids AS B JOIN top_prices AS B1
                 ON B.price = B1.maxprice
                AND B.ts >= B1.window_end - INTERVAL '10 seconds' AND B.ts < B1.window_end",
        ),
        "self_interval" => (
            bids(events),
            "CREATE MATERIALIZED VIEW v AS
               SELECT a.auction, a.id AS first, b.id AS second FROM bids AS a JOIN bids AS b
                 ON a.auction = b.auction AND b.ts > a.ts AND b.ts < a.ts + INTERVAL '100 milliseconds'",
        ),
        _ => return None,
    })
}

async fn run(name: &str, events: u64) -> KeyFigures {
    let (source, view) = workload(name, events).expect("known workload");
    run_view(name, &source, view, events).await
}

fn goal(name: &str) -> &'static str {
    match name {
        "q7" => "≥ 0.5 M/CPU-s",
        _ => "",
    }
}

fn report(args: &str, results: &[(String, KeyFigures)], flink: Option<&KeyFigures>) -> String {
    let mut s = format!(
        "## Joins\n\n`cargo bench --bench joins --{args}` · commit {} · {} · {}\n\n\
         Each run is the real engine (datagen source → pipeline(s) → materialized view, `rate = 'unbounded'`) \
         in its own process; CPU is process CPU time over all threads (the generator and, for q7, the \
         windowed view feeding the join included) until the view has every row. Peak state is the join's \
         (held rows, key lists and key table) at its largest.\n\n\
         | workload | events | wall s | events per CPU-s | rows out | peak RSS MB | peak state MB | goal |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
        commit(),
        today(),
        machine()
    );
    for (name, f) in results {
        s.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {:.1} | {} |\n",
            f.get("events").map_or("–", String::as_str),
            f.get("wall").map_or("–", String::as_str),
            millions(per_cpu(f)),
            f.get("rows_out").map_or("–", String::as_str),
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
            "| Flink 2.3 q7 (p=1, net of start-up) | {} | {} | {} | – | {} | – | peer |\n",
            fl.get("rows").map_or("–", String::as_str),
            fl.get("wall").map_or("–", String::as_str),
            millions(flink_rate),
            fl.get("maxrss_mb").map_or("–", String::as_str),
        ));
    }
    s.push('\n');
    let weir_q7 = results
        .iter()
        .find(|(n, _)| n == "q7")
        .and_then(|(_, f)| per_cpu(f));
    match (weir_q7, flink_rate) {
        (Some(weir), Some(flink)) => s.push_str(&format!(
            "q7, Weir / Flink per CPU-second: **{:.1}×**.\n",
            weir / flink
        )),
        _ => s.push_str(
            "Flink: not in this run (`scripts/bench-peers.sh 10000000 q7` runs it side by side).\n",
        ),
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
        .value("--flink-q7")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| parse_pairs(&t));
    let mut names = args.names();
    if names.is_empty() {
        names = ALL.iter().map(|s| (*s).to_string()).collect();
    }
    let mut results = Vec::new();
    for name in &names {
        println!("running {name} ({events} events)…");
        if let Some(f) = run_child(name, events) {
            println!("  {}", result_line(&f));
            results.push((name.clone(), f));
        }
    }
    let text = report(&args.shown(), &results, flink.as_ref());
    println!("\n{text}");
    write_section("joins", &text);
}
