//! The oracle over tables: random INSERT / ON CONFLICT / UPDATE (moving keys and groups) /
//! DELETE / COPY / rolled-back transactions into two keyed tables and an append-only one, under
//! views stacked three deep, Top-N, DISTINCT, DISTINCT ON, UNION ALL, aggregates that must
//! retract (min / max) and joins of every kind over the updating tables. Once the writes stop, every view equals its query run as a DataFusion
//! batch query over the tables' final rows, and every view's change stream, followed from before
//! the first write through the changelog checker, replays to the view's rows.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::oneshot;
use weir_engine::changes::ChangelogChecker;
use weir_engine::fanout::ReadMode;
use weir_engine::message::Message;
use weir_sql::Session;

use crate::harness::{query_rows, render};

/// Each view, and the batch query over the tables that computes the same rows.
const VIEWS: &[(&str, &str, &str)] = &[
    (
        "per_g",
        "SELECT g, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi FROM kv GROUP BY g",
        "SELECT g, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi FROM kv GROUP BY g",
    ),
    (
        "big_g",
        "SELECT g, s FROM per_g WHERE n > 2",
        "SELECT g, sum(v) AS s FROM kv GROUP BY g HAVING count(*) > 2",
    ),
    (
        "big_total",
        "SELECT count(*) AS groups, sum(s) AS s, max(s) AS hi FROM big_g",
        "SELECT count(*) AS groups, sum(s) AS s, max(s) AS hi FROM \
           (SELECT g, sum(v) AS s FROM kv GROUP BY g HAVING count(*) > 2) t",
    ),
    (
        "top2",
        "SELECT * FROM (SELECT g, k, v, row_number() OVER (PARTITION BY g ORDER BY v DESC, k) AS rn \
           FROM kv) WHERE rn <= 2",
        "SELECT * FROM (SELECT g, k, v, row_number() OVER (PARTITION BY g ORDER BY v DESC, k) AS rn \
           FROM kv) WHERE rn <= 2",
    ),
    (
        "groups",
        "SELECT DISTINCT g FROM kv",
        "SELECT DISTINCT g FROM kv",
    ),
    (
        "lowest",
        "SELECT DISTINCT ON (g) g, k, v FROM kv ORDER BY g, v, k",
        "SELECT DISTINCT ON (g) g, k, v FROM kv ORDER BY g, v, k",
    ),
    (
        "both",
        "SELECT g, v FROM kv UNION ALL SELECT g, v FROM kw",
        "SELECT g, v FROM kv UNION ALL SELECT g, v FROM kw",
    ),
    (
        "both_sum",
        "SELECT g, sum(v) AS s, count(*) AS n FROM both GROUP BY g",
        "SELECT g, sum(v) AS s, count(*) AS n FROM (SELECT g, v FROM kv UNION ALL SELECT g, v FROM kw) t GROUP BY g",
    ),
    // Joins of updating inputs: every kind, retracting and re-emitting as either side changes
    // (keys move between groups, rows are deleted, a join key changes under an update).
    (
        "kv_kw",
        "SELECT kv.k, kv.v, kw.k AS wk, kw.v AS wv FROM kv JOIN kw ON kv.g = kw.g AND kv.v >= kw.v",
        "SELECT kv.k, kv.v, kw.k AS wk, kw.v AS wv FROM kv JOIN kw ON kv.g = kw.g AND kv.v >= kw.v",
    ),
    (
        "kv_left_kw",
        "SELECT kv.k, kw.k AS wk FROM kv LEFT JOIN kw ON kv.g = kw.g AND kw.v > 50",
        "SELECT kv.k, kw.k AS wk FROM kv LEFT JOIN kw ON kv.g = kw.g AND kw.v > 50",
    ),
    (
        "kv_full_per_g",
        "SELECT kv.k, p.g, p.n FROM kv FULL JOIN per_g AS p ON kv.g = p.g AND kv.v = p.hi",
        "SELECT kv.k, p.g, p.n FROM kv FULL JOIN \
           (SELECT g, count(*) AS n, max(v) AS hi FROM kv GROUP BY g) p ON kv.g = p.g AND kv.v = p.hi",
    ),
    (
        "ev_right_kw",
        "SELECT ev.v, kw.k FROM ev RIGHT JOIN kw ON ev.g = kw.g AND ev.v < kw.v",
        "SELECT ev.v, kw.k FROM ev RIGHT JOIN kw ON ev.g = kw.g AND ev.v < kw.v",
    ),
    (
        "kv_in_kw",
        "SELECT k, g FROM kv WHERE g IN (SELECT g FROM kw WHERE v > 0)",
        "SELECT k, g FROM kv WHERE g IN (SELECT g FROM kw WHERE v > 0)",
    ),
    (
        "kv_not_in_kw",
        "SELECT k, g FROM kv WHERE NOT EXISTS (SELECT 1 FROM kw WHERE kw.g = kv.g AND kw.v > 0)",
        "SELECT k, g FROM kv WHERE NOT EXISTS (SELECT 1 FROM kw WHERE kw.g = kv.g AND kw.v > 0)",
    ),
    (
        "ev_stats",
        "SELECT g, count(*) AS n, min(v) AS lo, max(v) AS hi FROM ev GROUP BY g",
        "SELECT g, count(*) AS n, min(v) AS lo, max(v) AS hi FROM ev GROUP BY g",
    ),
];

/// One random write (several statements for a transaction).
fn random_write(rng: &mut ChaCha8Rng) -> String {
    let g = |rng: &mut ChaCha8Rng| format!("g{}", rng.random_range(0..6));
    let table = if rng.random_bool(0.7) { "kv" } else { "kw" };
    match rng.random_range(0..9) {
        0..=2 => {
            let mut keys: Vec<i64> = (0..rng.random_range(1..25))
                .map(|_| rng.random_range(0..200))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            let rows: Vec<String> = keys
                .iter()
                .map(|k| format!("({k}, '{}', {})", g(rng), rng.random_range(-100..100)))
                .collect();
            format!(
                "INSERT INTO {table} VALUES {} ON CONFLICT (k) DO UPDATE SET g = excluded.g, v = excluded.v",
                rows.join(", ")
            )
        }
        3 => format!(
            "UPDATE {table} SET v = v + {} WHERE k % 5 = {}",
            rng.random_range(-10..10),
            rng.random_range(0..5)
        ),
        4 => format!(
            "UPDATE {table} SET g = '{}' WHERE k % 13 = {}",
            g(rng),
            rng.random_range(0..13)
        ),
        5 => format!(
            "DELETE FROM {table} WHERE k % 7 = {} AND v > {}",
            rng.random_range(0..7),
            rng.random_range(-100..100)
        ),
        6 => {
            // Moves a key into the free range above 1000 (never a duplicate).
            let k = rng.random_range(0..200);
            format!(
                "UPDATE {table} SET k = k + 1000 + {} WHERE k = {k}",
                rng.random_range(0..1_000_000) * 1000
            )
        }
        7 => {
            let rows: Vec<String> = (0..rng.random_range(1..40))
                .map(|_| format!("('{}', {})", g(rng), rng.random_range(0..1000)))
                .collect();
            format!("INSERT INTO ev VALUES {}", rows.join(", "))
        }
        _ => format!(
            "BEGIN; DELETE FROM {table} WHERE k % 3 = 0; INSERT INTO ev VALUES ('{}', -1); ROLLBACK",
            g(rng)
        ),
    }
}

/// Follows `view`'s changes through the changelog checker until `stop`, then returns the rows
/// they leave live.
async fn follow(
    session: &Session,
    view: &str,
    key: Option<Vec<usize>>,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<Result<Vec<String>, String>> {
    let entry = session.database().catalog().view(view).expect("view");
    let schema = entry.table.schema_ref();
    let (backfill, mut live) = entry
        .fanout
        .subscribe_changes(ReadMode::Changes)
        .await
        .expect("subscribe");
    tokio::spawn(async move {
        let mut checker = ChangelogChecker::new(schema, key).map_err(|e| e.to_string())?;
        let mut apply = |message: Message| -> Result<(), String> {
            let changes = match message {
                Message::Changes(changes) => changes,
                _ => return Ok(()),
            };
            checker.apply(&changes).map_err(|e| e.to_string())
        };
        for message in backfill {
            apply(message)?;
        }
        let mut stop = stop;
        loop {
            tokio::select! {
                message = live.recv() => match message {
                    Some(m) => apply(m)?,
                    None => return Err("the view's stream closed".into()),
                },
                _ = &mut stop => break,
            }
        }
        while let Ok(message) = live.try_recv() {
            apply(message)?;
        }
        let mut rows = render(&[checker.live_rows().map_err(|e| e.to_string())?]);
        rows.sort();
        Ok(rows)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_tables_equal_batch_queries_after_random_writes() {
    let session = weir::database().build().expect("database").session();
    for sql in [
        "CREATE TABLE kv (k BIGINT PRIMARY KEY, g TEXT, v BIGINT)",
        "CREATE TABLE kw (k BIGINT PRIMARY KEY, g TEXT, v BIGINT)",
        "CREATE TABLE ev (g TEXT, v BIGINT)",
        "INSERT INTO kv VALUES (1, 'g0', 5), (2, 'g0', 6), (3, 'g0', 7), (4, 'g1', 1)",
        "INSERT INTO kw VALUES (1, 'g0', 5)",
        "INSERT INTO ev VALUES ('g0', 1)",
    ] {
        session
            .execute_all(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let mut followers = Vec::new();
    for (name, query, _) in VIEWS {
        let sql = format!("CREATE MATERIALIZED VIEW {name} AS {query}");
        session
            .execute_all(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let key = session
            .database()
            .catalog()
            .view(name)
            .and_then(|v| v.props.key.clone());
        let (tx, rx) = oneshot::channel();
        followers.push((*name, tx, follow(&session, name, key, rx).await));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let mut done = 0;
    for i in 0..400 {
        let sql = random_write(&mut rng);
        session
            .execute_all(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        done += 1;
        if i % 50 == 49 {
            // A COPY now and then, as psql's \copy sends it.
            let copy = session.start_copy(
                &datafusion::sql::sqlparser::parser::Parser::parse_sql(
                    &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                    "COPY ev (g, v) FROM STDIN WITH (FORMAT csv)",
                )
                .expect("parse")[0],
            );
            let mut copy = copy.expect("copy");
            copy.push(b"g1,10\ng2,20\ng1,30\n").expect("copy data");
            session
                .finish_copy(&session.statement_state(), copy)
                .await
                .expect("copy");
        }
    }
    assert_eq!(done, 400);
    for (name, _, batch) in VIEWS {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let missing = query_rows(
                &session,
                &format!("SELECT count(*) FROM (({batch}) EXCEPT ALL (SELECT * FROM {name})) d"),
            )
            .await;
            let extra = query_rows(
                &session,
                &format!("SELECT count(*) FROM ((SELECT * FROM {name}) EXCEPT ALL ({batch})) d"),
            )
            .await;
            if missing == ["0"] && extra == ["0"] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "view {name} differs from its batch query: {missing:?} missing, {extra:?} extra"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Every change is in the views; let their streams' last messages reach the followers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (name, stop, follower) in followers {
        let _ = stop.send(());
        let replayed = follower
            .await
            .unwrap_or_else(|e| panic!("follower of {name}: {e}"))
            .unwrap_or_else(|e| {
                panic!("view {name}'s change stream breaks the changelog rules: {e}")
            });
        let mut rows = query_rows(&session, &format!("SELECT * FROM {name}")).await;
        rows.sort();
        assert_eq!(
            replayed, rows,
            "view {name}: its change stream replays to other rows"
        );
    }
}
