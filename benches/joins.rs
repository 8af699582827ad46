//! Joins: Nexmark q7 (bids joined with their window's highest price: an interval join of a
//! source and a windowed view), q3, q4, q8 and q9 over the Nexmark generator's persons,
//! auctions and bids, an interval self-join and a join of an updating aggregate, each in its
//! own process, with the state they hold, written to BENCHMARKS.md's `joins` section.
//!
//! `cargo bench --bench joins -- [WORKLOAD…] [--events N] [--flink-q7 FILE]`
//!
//! | workload | what |
//! |---|---|
//! | `q7` | Nexmark q7 over the peers' bids (10 bids per ms, prices uniform over 10⁸): the bids at the highest price of each 10 s window |
//! | `self_interval` | bids of one auction less than 100 ms apart (10,000 auctions): an interval self-join |
//! | `q3` | Nexmark q3: sellers in three states and their auctions in one category (a regular join, every person and matching auction held) |
//! | `q4` | Nexmark q4: average winning price per category (interval join of auctions and bids, max per auction, avg of those over an updating input) |
//! | `q8` | Nexmark q8: persons who opened auctions in the 10 s window they registered in (a window join of two windowed aggregates) |
//! | `q9` | Nexmark q9: each auction's winning bid (interval join, then Top-1 per auction) |
//! | `updating` | auctions joined with the highest bid so far on each (a regular join of a source and an updating aggregate: retract and re-emit) |
//!
//! The Nexmark workloads count Nexmark events (persons, auctions and bids together: 2 %, 6 % and
//! 92 % of them), each source generating only its own table's rows.
//!
//! `--flink-q7 FILE` adds Flink 2.3's q7 over the same rows, measured by
//! `scripts/bench-peers.sh … q7` (net of JVM start-up), and the per-CPU-second ratio.
//!
//! Against Flink over the same rows: `q3_csv`, `q4_csv`, `q8_csv` and `q9_csv` are the same
//! queries over Nexmark CSV files in `$WEIR_NEXMARK_CSV` (written by `--dump-nexmark DIR --events
//! N` from the generator), which Flink 2.3 reads too (`scripts/bench-peers.sh … q3_csv`);
//! `--flink-dir DIR` reads Flink's figures (`flink-q3-N.txt`, …) and the `joins_flink` section of
//! BENCHMARKS.md gets both, with their ratios.

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
use common::nexmark_csv;
use common::{commit, machine, today, write_section};

const ALL: [&str; 7] = ["q7", "self_interval", "q3", "q4", "q8", "q9", "updating"];

/// The peers' bids (as in the windows bench and Flink's datagen table).
fn bids(events: u64) -> String {
    format!(
        "CREATE SOURCE bids (id BIGINT, auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3) WITH TIME ZONE,
                             WATERMARK FOR ts AS ts - INTERVAL '4 seconds')
         WITH (connector = 'datagen', generator = 'bids', events = {events},
               start_time = '2024-01-01T00:00:00Z');"
    )
}

/// The Nexmark generator's three tables, `events` events in all.
fn nexmark(events: u64) -> String {
    let table = |name: &str, columns: &str| {
        format!(
            "CREATE SOURCE {name} ({columns}, WATERMARK FOR date_time AS date_time - INTERVAL '4 seconds')
             WITH (connector = 'datagen', generator = 'nexmark', table = '{name}', rate = 'unbounded',
                   events = '{events}', start_time = '2015-07-15T00:00:00Z');"
        )
    };
    [
        table(
            "person",
            "id BIGINT, name VARCHAR, city VARCHAR, state VARCHAR, date_time TIMESTAMPTZ",
        ),
        table(
            "auction",
            "id BIGINT, seller BIGINT, category BIGINT, initial_bid BIGINT, date_time TIMESTAMPTZ, \
             expires TIMESTAMPTZ",
        ),
        table(
            "bid",
            "auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMPTZ",
        ),
    ]
    .join("\n")
}

/// (source DDL, views DDL; the last view is `v`) of a workload.
fn workload(name: &str, events: u64) -> Option<(String, &'static str)> {
    if let Some(query) = name.strip_suffix("_csv") {
        let dir = std::env::var("WEIR_NEXMARK_CSV").ok()?;
        let (_, views) = workload(query, events)?;
        return Some((nexmark_csv::sources(std::path::Path::new(&dir)), views));
    }
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
        "q3" => (
            nexmark(events),
            "CREATE MATERIALIZED VIEW v AS
               SELECT P.name, P.city, P.state, A.id
               FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
               WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')",
        ),
        "q4" => (
            nexmark(events),
            "CREATE MATERIALIZED VIEW winning AS
               SELECT A.id, A.category, max(B.price) AS final
               FROM auction AS A JOIN bid AS B
                 ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
               GROUP BY A.id, A.category;
             CREATE MATERIALIZED VIEW v AS
               SELECT category, avg(final) AS avg_final FROM winning GROUP BY category",
        ),
        "q8" => (
            nexmark(events),
            "CREATE MATERIALIZED VIEW new_people AS
               SELECT id, name, window_start, window_end FROM TUMBLE(person, date_time, INTERVAL '10 seconds')
               GROUP BY id, name, window_start, window_end EMIT ON WINDOW CLOSE;
             CREATE MATERIALIZED VIEW new_sellers AS
               SELECT seller, window_start, window_end FROM TUMBLE(auction, date_time, INTERVAL '10 seconds')
               GROUP BY seller, window_start, window_end EMIT ON WINDOW CLOSE;
             CREATE MATERIALIZED VIEW v AS
               SELECT P.id, P.name, P.window_start FROM new_people AS P JOIN new_sellers AS A
                 ON P.id = A.seller AND P.window_start = A.window_start AND P.window_end = A.window_end",
        ),
        "q9" => (
            nexmark(events),
            "CREATE MATERIALIZED VIEW v AS
               SELECT id, seller, auction, bidder, price FROM (
                 SELECT A.id, A.seller, B.auction, B.bidder, B.price,
                        row_number() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC) AS rn
                 FROM auction AS A JOIN bid AS B
                   ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires)
               WHERE rn = 1",
        ),
        "updating" => (
            nexmark(events),
            "CREATE MATERIALIZED VIEW v AS
               SELECT A.id, A.seller, W.final
               FROM auction AS A JOIN (SELECT auction, max(price) AS final FROM bid GROUP BY auction) AS W
                 ON A.id = W.auction",
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
        "q3" | "q8" => "≥ 1 M/CPU-s",
        "q4" | "q9" => "≥ 0.3 M/CPU-s",
        _ => "",
    }
}

fn report(args: &str, results: &[(String, KeyFigures)], flink: Option<&KeyFigures>) -> String {
    let mut s = format!(
        "## Joins\n\n`cargo bench --bench joins --{args}` · commit {} · {} · {}\n\n\
         Each run is the real engine (datagen source → pipeline(s) → materialized view, `rate = 'unbounded'`) \
         in its own process; CPU is process CPU time over all threads (the generators and, for q7 and \
         q8, the windowed views feeding the join included) until the view has every row. Peak state is \
         the view pipeline's operators' at their largest (the join's held rows, key lists and key \
         table, and for q9 and `updating` the Top-N or aggregate with it; the views feeding q4's, q7's and \
         q8's are not in it: q4's is its join and max per auction).\n\n\
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

/// The `joins_flink` section: Weir and Flink over the same CSV rows, and the ratios.
fn report_flink(args: &str, results: &[(String, KeyFigures)], flink_dir: Option<&str>) -> String {
    let mut s = format!(
        "## Joins against Flink, same rows\n\n`WEIR_NEXMARK_CSV=… cargo bench --bench joins --{args}` · \
         commit {} · {} · {}\n\n\
         Nexmark q3, q4, q8 and q9 over the same persons, auctions and bids: CSV files written from \
         Weir's `nexmark` generator (`--dump-nexmark`), read by Weir's file source and by Flink 2.3's \
         filesystem connector (parallelism 1, an embedded MiniCluster, heap state, blackhole sink; \
         `scripts/bench-peers.sh 10000000 q3_csv q4_csv q8_csv q9_csv`). Both parse the CSV; CPU is \
         process CPU time, Flink's net of a 1,000-event run of the same query (JVM start-up and job \
         submission).\n\n\
         | query | events | Weir events per CPU-s | Weir peak RSS MB | Weir peak state MB | Flink events per CPU-s | Flink peak RSS MB | Weir / Flink |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        commit(),
        today(),
        machine()
    );
    for (name, f) in results {
        let query = name.trim_end_matches("_csv");
        let flink = flink_dir
            .and_then(|d| {
                let events = f.get("events")?;
                std::fs::read_to_string(format!("{d}/flink-{query}-{events}.txt")).ok()
            })
            .map(|t| parse_pairs(&t));
        let flink_rate = flink.as_ref().and_then(|fl| {
            let net_cpu = figure(fl, "cpu")? - figure(fl, "startup_cpu")?;
            Some(figure(fl, "rows")? / net_cpu)
        });
        let ratio = match (per_cpu(f), flink_rate) {
            (Some(w), Some(fl)) => format!("**{:.1}×**", w / fl),
            _ => "–".into(),
        };
        s.push_str(&format!(
            "| {query} | {} | {} | {} | {:.1} | {} | {} | {ratio} |\n",
            f.get("events").map_or("–", String::as_str),
            millions(per_cpu(f)),
            f.get("peak_rss_mb").map_or("–", String::as_str),
            figure(f, "peak_state_bytes").unwrap_or(f64::NAN) / 1e6,
            millions(flink_rate),
            flink
                .as_ref()
                .and_then(|fl| fl.get("maxrss_mb").cloned())
                .unwrap_or_else(|| "–".into()),
        ));
    }
    s
}

fn main() {
    let args = Args::from_env();
    let events = args.events();
    if let Some(dir) = args.value("--dump-nexmark") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(nexmark_csv::dump(std::path::Path::new(&dir), events));
        return;
    }
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
    let (csv, generated): (Vec<_>, Vec<_>) =
        results.into_iter().partition(|(n, _)| n.ends_with("_csv"));
    if !generated.is_empty() {
        let text = report(&args.shown(), &generated, flink.as_ref());
        println!("\n{text}");
        write_section("joins", &text);
    }
    if !csv.is_empty() {
        let text = report_flink(&args.shown(), &csv, args.value("--flink-dir").as_deref());
        println!("\n{text}");
        write_section("joins_flink", &text);
    }
}
