//! The oracle: for random streams (out-of-order, duplicate keys, rows far behind the watermark,
//! NULL event times, random batch sizes), every windowed view after the final watermark equals
//! DataFusion's batch `GROUP BY` of the rows that were on time, and every other row is accounted
//! for in `weir_late_rows`. Views over those (a filter and a regrouping of an updating view,
//! Top-N over updating and append-only input, DISTINCT ON, window Top-N, UNION ALL of a source
//! with itself and of an updating view with an append-only one) equal the same queries run as
//! batch queries, and their change streams replay, through the changelog checker, to the same
//! rows.
//!
//! Which rows are late is modelled independently of the engine: the file source hands out
//! batches of exactly `batch_size` rows and emits a watermark after each batch, so a row is late
//! exactly when its window ended at or before `max(ts - delay)` over all earlier batches.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::prelude::SessionContext;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use weir_engine::changes::ChangelogChecker;
use weir_engine::fanout::ReadMode;
use weir_engine::message::Message;
use weir_sql::Session;

use crate::harness::{query_rows, render};

const CASES: u64 = 200;

struct Row {
    key: String,
    value: i64,
    /// Event time in milliseconds; None for a row with no event time.
    ts: Option<i64>,
}

struct Case {
    rows: Vec<Row>,
    window_ms: i64,
    delay_ms: i64,
    batch_size: usize,
}

fn generate(seed: u64) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = rng.random_range(20..600);
    let keys = rng.random_range(1..8);
    let window_ms = [500, 1_000, 2_000, 5_000, 10_000][rng.random_range(0..5)];
    let delay_ms = [0, 250, 1_000, 3_000][rng.random_range(0..4)];
    let jitter_ms = rng.random_range(0..5_000);
    let step_ms = rng.random_range(1..60);
    let batch_size = [1, 2, 7, 16, 64, 1000][rng.random_range(0..6)];
    let t0: i64 = 1_700_000_000_000 + rng.random_range(-100_000..100_000);
    let mut rows: Vec<Row> = Vec::with_capacity(n);
    for i in 0..n as i64 {
        let base = t0 + i * step_ms;
        let roll: f64 = rng.random();
        let ts = if roll < 0.01 {
            None
        } else if roll < 0.06 {
            // Far behind: usually in a window that already closed.
            Some(base - jitter_ms - rng.random_range(0..4 * window_ms))
        } else {
            Some(base - rng.random_range(0..=jitter_ms))
        };
        let duplicate = i > 0 && rng.random::<f64>() < 0.05;
        let (key, ts) = match (duplicate, rows.last()) {
            (true, Some(prev)) => (prev.key.clone(), prev.ts),
            _ => (format!("k{}", rng.random_range(0..keys)), ts),
        };
        rows.push(Row {
            key,
            value: rng.random_range(-100..100),
            ts,
        });
    }
    Case {
        rows,
        window_ms,
        delay_ms,
        batch_size,
    }
}

/// Splits rows into on-time and late, as the engine must.
fn model_late(case: &Case) -> Vec<bool> {
    let mut late = Vec::with_capacity(case.rows.len());
    let mut watermark: Option<i64> = None;
    for batch in case.rows.chunks(case.batch_size) {
        for row in batch {
            late.push(match row.ts {
                None => true,
                Some(ts) => {
                    let end = ts.div_euclid(case.window_ms) * case.window_ms + case.window_ms;
                    watermark.is_some_and(|wm| end <= wm)
                }
            });
        }
        if let Some(max) = batch.iter().filter_map(|r| r.ts).max() {
            let candidate = max - case.delay_ms;
            watermark = Some(watermark.map_or(candidate, |w| w.max(candidate)));
        }
    }
    late
}

fn json_lines(case: &Case) -> String {
    let mut out = String::new();
    for r in &case.rows {
        match r.ts {
            Some(ts) => {
                let t = chrono::DateTime::from_timestamp_millis(ts).expect("time");
                let _ = writeln!(
                    out,
                    "{{\"k\":\"{}\",\"v\":{},\"ts\":\"{}\"}}",
                    r.key,
                    r.value,
                    t.format("%Y-%m-%dT%H:%M:%S%.3fZ")
                );
            }
            None => {
                let _ = writeln!(out, "{{\"k\":\"{}\",\"v\":{},\"ts\":null}}", r.key, r.value);
            }
        }
    }
    out
}

/// DataFusion batch GROUP BY over the on-time rows, windows computed with `date_bin`.
async fn batch_answer(case: &Case, late: &[bool]) -> Vec<String> {
    batch_query(case, late, "SELECT * FROM windows ORDER BY 1, 2").await
}

/// `sql` over the on-time rows, with `windows` the per-key, per-window aggregate.
async fn batch_query(case: &Case, late: &[bool], sql: &str) -> Vec<String> {
    let kept: Vec<&Row> = case
        .rows
        .iter()
        .zip(late)
        .filter(|(_, l)| !**l)
        .map(|(r, _)| r)
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            true,
        ),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            kept.iter().map(|r| r.key.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(kept.iter().map(|r| r.value))),
        Arc::new(
            TimestampMillisecondArray::from(kept.iter().map(|r| r.ts).collect::<Vec<_>>())
                .with_timezone("+00:00"),
        ),
    ];
    let ctx = SessionContext::new();
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch");
    ctx.register_batch("t", batch).expect("register");
    let window_start = format!(
        "arrow_cast(date_bin(INTERVAL '{w} milliseconds', ts, TIMESTAMP '1970-01-01T00:00:00Z'), 'Timestamp(Nanosecond, Some(\"+00:00\"))')",
        w = case.window_ms
    );
    let sql = format!(
        "WITH windows AS (SELECT k, {window_start} AS ws, count(*) AS n, sum(v) AS s, min(v) AS mn, max(v) AS mx FROM t GROUP BY 1, 2), \
         windowed AS (SELECT k, v, ts, {window_start} + INTERVAL '{w} milliseconds' AS we FROM t) {sql}",
        w = case.window_ms
    );
    let batches = ctx
        .sql(&sql)
        .await
        .expect("batch sql")
        .collect()
        .await
        .expect("batch rows");
    render(&batches)
}

/// Follows `view`'s change stream (its current rows first) to its end on a task, checking the
/// changelog invariants with `key` as the stream's key, and renders the rows the stream leaves
/// live.
async fn follow(
    db: &weir_sql::Database,
    view: &str,
    key: Option<Vec<usize>>,
) -> tokio::task::JoinHandle<Result<Vec<String>, String>> {
    let entry = db.catalog().view(view).expect("view");
    let schema = entry.table.schema_ref();
    let (backfill, mut live) = entry
        .fanout
        .subscribe_changes(ReadMode::Changes)
        .await
        .expect("subscribe");
    tokio::spawn(async move {
        let mut checker = ChangelogChecker::new(schema, key).map_err(|e| e.to_string())?;
        let mut apply = |message: Message| -> Result<bool, String> {
            let changes = match message {
                Message::Changes(changes) => changes,
                Message::End => return Ok(false),
                _ => return Ok(true),
            };
            checker.apply(&changes).map_err(|e| e.to_string())?;
            Ok(true)
        };
        let mut open = true;
        for message in backfill {
            open = apply(message)?;
        }
        while open {
            let Some(message) = live.recv().await else {
                return Err("the view's stream closed without End".into());
            };
            open = apply(message)?;
        }
        Ok(render(&[checker.live_rows().map_err(|e| e.to_string())?]))
    })
}

async fn wait_finished(session: &Session, views: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let list = views
        .iter()
        .map(|v| format!("'{v}'"))
        .collect::<Vec<_>>()
        .join(",");
    let sql =
        format!("SELECT count(*) FROM weir_views WHERE name IN ({list}) AND status = 'finished'");
    loop {
        let rows = query_rows(session, &sql).await;
        if rows == vec![views.len().to_string()] {
            return;
        }
        let failed = query_rows(
            session,
            "SELECT name, status FROM weir_views WHERE status LIKE 'failed%'",
        )
        .await;
        assert!(failed.is_empty(), "pipeline failed: {failed:?}");
        assert!(Instant::now() < deadline, "views {views:?} did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_equals_batch_after_final_watermark() {
    let db = weir::database().build().expect("database");
    let session = db.session();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut total_late = 0usize;
    for seed in 0..CASES {
        let case = generate(seed);
        let late = model_late(&case);
        let path = dir.path().join(format!("case{seed}.jsonl"));
        std::fs::write(&path, json_lines(&case)).expect("write");
        let (src, upd, eowc, stacked, regrouped) = (
            format!("src{seed}"),
            format!("upd{seed}"),
            format!("eowc{seed}"),
            format!("stacked{seed}"),
            format!("regrouped{seed}"),
        );
        let aggregate = format!(
            "SELECT k, window_start, count(*) AS n, sum(v) AS s, min(v) AS mn, max(v) AS mx \
             FROM TUMBLE({src}, ts, INTERVAL '{} milliseconds') GROUP BY k, window_start",
            case.window_ms
        );
        let ddl = format!(
            "CREATE SOURCE {src} (k TEXT, v BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '{d} milliseconds') \
             WITH (connector = 'file', path = '{p}', batch_size = '{b}') FORMAT PLAIN ENCODE JSON; \
             CREATE MATERIALIZED VIEW {upd} AS {aggregate}; \
             CREATE MATERIALIZED VIEW {eowc} AS {aggregate} EMIT ON WINDOW CLOSE; \
             CREATE MATERIALIZED VIEW {stacked} AS SELECT k, window_start, n, s FROM {upd} WHERE s > 0; \
             CREATE MATERIALIZED VIEW {regrouped} AS SELECT k, count(*) AS windows, sum(n) AS n, sum(s) AS s, min(s) AS lo, max(n) AS hi FROM {stacked} GROUP BY k;",
            d = case.delay_ms,
            p = path.display(),
            b = case.batch_size,
        );
        session
            .execute_all(&ddl)
            .await
            .unwrap_or_else(|e| panic!("case {seed}: {e}"));
        let changelog = follow(&db, &upd, Some(vec![0, 1])).await;
        let stacked_changelog = follow(&db, &stacked, Some(vec![0, 1])).await;
        let regrouped_changelog = follow(&db, &regrouped, Some(vec![0])).await;
        let top_n = TopNViews::create(&session, &db, seed, &case).await;
        wait_finished(
            &session,
            &[
                upd.clone(),
                eowc.clone(),
                stacked.clone(),
                regrouped.clone(),
            ],
        )
        .await;
        top_n.check(&session, &case, &late).await;

        let expected = batch_answer(&case, &late).await;
        // The updating view's change stream obeys the changelog's rules and replays to the
        // batch answer.
        let replayed = changelog.await.expect("changelog reader");
        let mut replayed = replayed.unwrap_or_else(|e| panic!("case {seed}: {e}"));
        replayed.sort();
        let mut sorted = expected.clone();
        sorted.sort();
        assert_eq!(replayed, sorted, "case {seed}: replayed changes of {upd}");
        // A view over the updating view: a filter that groups enter and leave as their sums
        // change sign, so update pairs it splits must turn into inserts and deletes.
        let expected_stacked: Vec<String> = expected
            .iter()
            .filter_map(|r| {
                let columns: Vec<&str> = r.split(" | ").collect();
                let sum: i64 = columns.get(3)?.parse().ok()?;
                (sum > 0).then(|| columns[..4].join(" | "))
            })
            .collect();
        let got = query_rows(
            &session,
            &format!("SELECT * FROM {stacked} ORDER BY k, window_start"),
        )
        .await;
        assert_eq!(
            got, expected_stacked,
            "case {seed}: view {stacked} over {upd}"
        );
        let mut replayed = stacked_changelog
            .await
            .expect("changelog reader")
            .unwrap_or_else(|e| panic!("case {seed}: {e}"));
        replayed.sort();
        let mut sorted = expected_stacked.clone();
        sorted.sort();
        assert_eq!(
            replayed, sorted,
            "case {seed}: replayed changes of {stacked}"
        );
        // An aggregate over that: groups gain and lose rows as windows enter and leave the
        // filter, and disappear when their last one leaves.
        let expected_regrouped = batch_query(
            &case,
            &late,
            "SELECT k, count(*), sum(n), sum(s), min(s), max(n) FROM windows WHERE s > 0 GROUP BY k ORDER BY k",
        )
        .await;
        let got = query_rows(&session, &format!("SELECT * FROM {regrouped} ORDER BY k")).await;
        assert_eq!(
            got, expected_regrouped,
            "case {seed}: view {regrouped} over {stacked}"
        );
        let mut replayed = regrouped_changelog
            .await
            .expect("changelog reader")
            .unwrap_or_else(|e| panic!("case {seed}: {e}"));
        replayed.sort();
        assert_eq!(
            replayed, expected_regrouped,
            "case {seed}: replayed changes of {regrouped}"
        );
        for view in [&upd, &eowc] {
            let got = query_rows(
                &session,
                &format!("SELECT * FROM {view} ORDER BY k, window_start"),
            )
            .await;
            assert_eq!(
                got, expected,
                "case {seed}: view {view} differs from the batch GROUP BY"
            );
            let late_count = late.iter().filter(|l| **l).count();
            let logged = query_rows(
                &session,
                &format!("SELECT count(*) FROM weir_late_rows WHERE view_name = '{view}'"),
            )
            .await;
            assert_eq!(
                logged,
                vec![late_count.to_string()],
                "case {seed}: late rows of {view}"
            );
            let counted = query_rows(
                &session,
                &format!("SELECT late_rows FROM weir_views WHERE name = '{view}'"),
            )
            .await;
            assert_eq!(
                counted,
                vec![late_count.to_string()],
                "case {seed}: late count of {view}"
            );
            let on_time: i64 = expected
                .iter()
                .map(|r| {
                    r.split(" | ")
                        .nth(2)
                        .and_then(|n| n.parse::<i64>().ok())
                        .unwrap_or(0)
                })
                .sum();
            assert_eq!(
                on_time as usize + late_count,
                case.rows.len(),
                "case {seed}: rows unaccounted for"
            );
        }
        total_late += late.iter().filter(|l| **l).count();
        session
            .execute_all(&format!("DROP SOURCE {src} CASCADE"))
            .await
            .expect("drop");
    }
    // The generator must actually exercise lateness.
    assert!(
        total_late > CASES as usize,
        "only {total_late} late rows in {CASES} cases"
    );
}

/// Top-N, DISTINCT ON, window Top-N and UNION ALL views of one case, each checked against the
/// batch query.
struct TopNViews {
    seed: u64,
    /// (view, its batch query over the on-time rows or over all rows, the changes it streamed)
    views: Vec<(String, String, bool, ChangeFollower)>,
}

type ChangeFollower = tokio::task::JoinHandle<Result<Vec<String>, String>>;

impl TopNViews {
    async fn create(session: &Session, db: &weir_sql::Database, seed: u64, case: &Case) -> Self {
        let (src, eowc, stacked, upd) = (
            format!("src{seed}"),
            format!("eowc{seed}"),
            format!("stacked{seed}"),
            format!("upd{seed}"),
        );
        // (name, view query, batch query, batch over on-time rows only, key of the stream)
        let specs = [
            (
                format!("topn{seed}"),
                // Three deep: a Top-N over a filter over an updating aggregate.
                format!("SELECT * FROM (SELECT k, window_start, s, row_number() OVER (PARTITION BY k ORDER BY s DESC, window_start) AS rn FROM {stacked}) WHERE rn <= 2"),
                "SELECT k, ws, s, rn FROM (SELECT k, ws, s, row_number() OVER (PARTITION BY k ORDER BY s DESC, ws) AS rn FROM windows WHERE s > 0) WHERE rn <= 2".to_string(),
                true,
                Some(vec![0, 3]),
            ),
            (
                format!("leaders{seed}"),
                // Ties share the rank: a multiset without a key.
                format!("SELECT * FROM (SELECT window_start, k, n, rank() OVER (PARTITION BY window_start ORDER BY n DESC) AS r FROM {eowc}) WHERE r <= 1"),
                "SELECT ws, k, n, r FROM (SELECT ws, k, n, rank() OVER (PARTITION BY ws ORDER BY n DESC) AS r FROM windows) WHERE r <= 1".to_string(),
                true,
                None,
            ),
            (
                format!("firsts{seed}"),
                format!("SELECT DISTINCT ON (k) k, v FROM {src} ORDER BY k, v DESC"),
                "SELECT k, max(v) FROM t GROUP BY k".to_string(),
                false,
                Some(vec![0]),
            ),
            (
                format!("unioned{seed}"),
                // One source read twice, split by sign and merged again.
                format!("SELECT k, count(*) AS n, sum(v) AS s FROM (SELECT k, v FROM {src} WHERE v >= 0 UNION ALL SELECT k, v FROM {src} WHERE v < 0) GROUP BY k"),
                "SELECT k, count(*), sum(v) FROM t GROUP BY k".to_string(),
                false,
                Some(vec![0]),
            ),
            (
                format!("union_upd{seed}"),
                // An updating view and an append-only one merged, then summed per window.
                format!("SELECT k, window_start, sum(n) AS n FROM (SELECT k, window_start, n FROM {upd} UNION ALL SELECT k, window_start, n FROM {eowc}) GROUP BY k, window_start"),
                "SELECT k, ws, 2 * n FROM windows".to_string(),
                true,
                Some(vec![0, 1]),
            ),
            (
                format!("wintop{seed}"),
                format!("SELECT * FROM (SELECT k, v, window_end, row_number() OVER (PARTITION BY window_end, k ORDER BY v DESC, ts) AS rn FROM TUMBLE({src}, ts, INTERVAL '{} milliseconds')) WHERE rn <= 2 EMIT ON WINDOW CLOSE", case.window_ms),
                "SELECT k, v, we, rn FROM (SELECT k, v, we, row_number() OVER (PARTITION BY we, k ORDER BY v DESC, ts) AS rn FROM windowed) WHERE rn <= 2".to_string(),
                true,
                None,
            ),
        ];
        let mut views = Vec::new();
        for (name, query, batch, on_time, key) in specs {
            session
                .execute_all(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
                .await
                .unwrap_or_else(|e| panic!("case {seed}: {name}: {e}"));
            let follower = follow(db, &name, key).await;
            views.push((name, batch, on_time, follower));
        }
        Self { seed, views }
    }

    async fn check(self, session: &Session, case: &Case, late: &[bool]) {
        let seed = self.seed;
        let names: Vec<String> = self.views.iter().map(|v| v.0.clone()).collect();
        wait_finished(session, &names).await;
        let all = vec![false; case.rows.len()];
        for (name, batch, on_time, follower) in self.views {
            let mut expected = batch_query(case, if on_time { late } else { &all }, &batch).await;
            expected.sort();
            let mut got = query_rows(session, &format!("SELECT * FROM {name}")).await;
            got.sort();
            assert_eq!(
                got, expected,
                "case {seed}: view {name} differs from the batch query"
            );
            let mut replayed = follower
                .await
                .expect("changelog reader")
                .unwrap_or_else(|e| panic!("case {seed}: {name}: {e}"));
            replayed.sort();
            assert_eq!(
                replayed, expected,
                "case {seed}: replayed changes of {name}"
            );
        }
        let late_count = late.iter().filter(|l| **l).count();
        let logged = query_rows(
            session,
            &format!("SELECT late_rows FROM weir_views WHERE name = 'wintop{seed}'"),
        )
        .await;
        assert_eq!(
            logged,
            vec![late_count.to_string()],
            "case {seed}: late rows of the window Top-N"
        );
    }
}
