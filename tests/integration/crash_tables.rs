//! Tables under SIGKILL: random INSERT / ON CONFLICT / UPDATE (moving keys too) / DELETE
//! and transactions (committed and rolled back) into a keyed and an append-only table, with
//! the real `weir` binary killed right after a write is acknowledged, at random points between
//! checkpoints, and restarted on the same data directory. Every acknowledged write must be there
//! after each restart (the write-ahead log), nothing rolled back or unacknowledged may be, and
//! the views over the tables (aggregates that retract, min/max, a view of a view) must equal
//! their queries over the tables' final contents.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::harness::{Server, client_rows};

/// The views, and the same query over the tables (compared after the last restart).
const VIEWS: [(&str, &str); 3] = [
    (
        "CREATE MATERIALIZED VIEW per_tag AS SELECT tag, count(*) AS n, sum(v) AS total, \
           min(v) AS lo, max(v) AS hi FROM kv GROUP BY tag",
        "SELECT tag, count(*) AS n, sum(v) AS total, min(v) AS lo, max(v) AS hi FROM kv GROUP BY tag",
    ),
    (
        "CREATE MATERIALIZED VIEW big_tags AS SELECT tag, total FROM per_tag WHERE n > 5",
        "SELECT tag, sum(v) AS total FROM kv GROUP BY tag HAVING count(*) > 5",
    ),
    (
        "CREATE MATERIALIZED VIEW log_counts AS SELECT k % 5 AS bucket, count(*) AS n, sum(v) AS s \
           FROM events GROUP BY k % 5",
        "SELECT k % 5 AS bucket, count(*) AS n, sum(v) AS s FROM events GROUP BY k % 5",
    ),
];

/// What the tables must hold: acknowledged writes only.
#[derive(Default, Clone)]
struct Model {
    kv: BTreeMap<i64, (i64, String)>,
    events: Vec<(i64, i64)>,
}

impl Model {
    fn kv_rows(&self) -> Vec<String> {
        self.kv
            .iter()
            .map(|(k, (v, tag))| format!("{k} | {v} | {tag}"))
            .collect()
    }
}

/// One random write: the SQL, and the model after it if it succeeds (None: it must fail).
fn random_write(rng: &mut ChaCha8Rng, model: &Model) -> (String, Option<Model>) {
    let mut next = model.clone();
    let tag = |rng: &mut ChaCha8Rng| ["a", "b", "c", "d"][rng.random_range(0..4)].to_string();
    let sql = match rng.random_range(0..10) {
        0..=2 => {
            // Upsert a few distinct keys.
            let mut keys: Vec<i64> = (0..rng.random_range(1..15))
                .map(|_| rng.random_range(0..300))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            let rows: Vec<String> = keys
                .iter()
                .map(|k| {
                    let v = rng.random_range(-500..500);
                    let t = tag(rng);
                    next.kv.insert(*k, (v, t.clone()));
                    format!("({k}, {v}, '{t}')")
                })
                .collect();
            format!(
                "INSERT INTO kv VALUES {} ON CONFLICT (k) DO UPDATE SET v = excluded.v, tag = excluded.tag",
                rows.join(", ")
            )
        }
        3 => {
            // A plain insert: fails on a live key, as a whole.
            let k = rng.random_range(0..300);
            let v = rng.random_range(-500..500);
            let t = tag(rng);
            if next.kv.contains_key(&k) {
                return (format!("INSERT INTO kv VALUES ({k}, {v}, '{t}')"), None);
            }
            next.kv.insert(k, (v, t.clone()));
            format!("INSERT INTO kv VALUES ({k}, {v}, '{t}')")
        }
        4 => {
            let r = rng.random_range(0..7);
            let d = rng.random_range(-20..20);
            for (k, (v, _)) in next.kv.iter_mut() {
                if k % 7 == r {
                    *v += d;
                }
            }
            format!("UPDATE kv SET v = v + {d} WHERE k % 7 = {r}")
        }
        5 => {
            let r = rng.random_range(0..11);
            let x = rng.random_range(-500..500);
            next.kv.retain(|k, (v, _)| !(k % 11 == r && *v > x));
            format!("DELETE FROM kv WHERE k % 11 = {r} AND v > {x}")
        }
        6 => {
            // Move a key; onto a live key it is a unique violation.
            let from = rng.random_range(0..300);
            let to = rng.random_range(300..400);
            let sql = format!("UPDATE kv SET k = {to} WHERE k = {from}");
            if let Some(row) = next.kv.remove(&from) {
                if next.kv.contains_key(&to) {
                    return (sql, None);
                }
                next.kv.insert(to, row);
            }
            sql
        }
        7 => {
            let rows: Vec<String> = (0..rng.random_range(1..30))
                .map(|_| {
                    let (k, v) = (rng.random_range(0..100), rng.random_range(0..10));
                    next.events.push((k, v));
                    format!("({k}, {v})")
                })
                .collect();
            format!("INSERT INTO events VALUES {}", rows.join(", "))
        }
        _ => {
            // A transaction over both tables, committed or rolled back.
            let k = rng.random_range(400..500);
            let v = rng.random_range(0..10);
            let commit = rng.random_bool(0.5);
            let sql = format!(
                "BEGIN; INSERT INTO kv VALUES ({k}, {v}, 'tx') ON CONFLICT (k) DO UPDATE SET v = kv.v + 1; \
                 INSERT INTO events VALUES ({k}, {v}); {}",
                if commit { "COMMIT" } else { "ROLLBACK" }
            );
            if commit {
                let entry = next.kv.entry(k).or_insert((v - 1, "tx".into()));
                entry.0 += 1;
                next.events.push((k, v));
            }
            sql
        }
    };
    (sql, Some(next))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_writes_survive_sigkill() {
    let kills: usize = std::env::var("WEIR_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let data = tempfile::tempdir().expect("tempdir");
    let args = ["--no-demo", "--checkpoint-interval", "150ms"];
    let server = Server::start_in(data.path(), &args);
    let client = server.connect().await;
    for sql in [
        "CREATE TABLE kv (k BIGINT PRIMARY KEY, v BIGINT, tag TEXT)",
        "CREATE TABLE events (k BIGINT, v BIGINT)",
    ]
    .into_iter()
    .chain(VIEWS.iter().map(|v| v.0))
    {
        client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    drop(client);
    let mut model = Model::default();
    let mut server = Some(server);
    let mut writes = 0usize;
    for round in 0..kills {
        let s = server.take().expect("server");
        let client = s.connect().await;
        for _ in 0..rng.random_range(5..40) {
            let (sql, after) = random_write(&mut rng, &model);
            let result = client.batch_execute(&sql).await;
            match (result, after) {
                (Ok(()), Some(after)) => {
                    model = after;
                    writes += 1;
                }
                (Err(e), None) => {
                    let code = e.code().map(|c| c.code().to_string());
                    assert_eq!(code.as_deref(), Some("23505"), "{sql}: {e}");
                }
                (Ok(()), None) => panic!("{sql} succeeded but should have failed"),
                (Err(e), Some(_)) => panic!("{sql}: {e}"),
            }
            if rng.random_bool(0.1) {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
            }
        }
        let failed = client_rows(
            &client,
            "SELECT name || ': ' || status FROM weir_views WHERE status LIKE 'failed%'",
        )
        .await;
        assert!(
            failed.is_empty(),
            "views failed before kill {round}: {failed:?}"
        );
        // Killed right after the last acknowledgement: no checkpoint has those writes yet.
        s.kill();
        let restarted = Server::start_in(data.path(), &args);
        let client = restarted.connect().await;
        assert_eq!(
            client_rows(&client, "SELECT k, v, tag FROM kv ORDER BY k").await,
            model.kv_rows(),
            "kv after restart {round}"
        );
        let events = client_rows(&client, "SELECT count(*), coalesce(sum(v), 0) FROM events").await;
        let sum: i64 = model.events.iter().map(|e| e.1).sum();
        assert_eq!(
            events,
            vec![format!("{} | {sum}", model.events.len())],
            "events after restart {round}"
        );
        server = Some(restarted);
    }
    assert!(
        writes > kills * 10,
        "only {writes} writes were acknowledged"
    );
    // The views equal their queries over the tables.
    let server = server.expect("server");
    let client = server.connect().await;
    for (view, query) in VIEWS {
        let name = view.split_whitespace().nth(3).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let missing = client_rows(
                &client,
                &format!("SELECT count(*) FROM (({query}) EXCEPT ALL (SELECT * FROM {name})) d"),
            )
            .await;
            let extra = client_rows(
                &client,
                &format!("SELECT count(*) FROM ((SELECT * FROM {name}) EXCEPT ALL ({query})) d"),
            )
            .await;
            if missing == ["0"] && extra == ["0"] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "view {name} differs from its query: {missing:?} missing, {extra:?} extra"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An upsert table (`FORMAT UPSERT`) killed while its topic is being produced to: after the
/// restarts it holds the latest value per key and its view agrees, as if it never stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_table_resumes_after_sigkill() {
    let broker = crate::broker::Broker::start();
    broker.create_topic("latest", 1);
    let producer = broker.producer();
    let data = tempfile::tempdir().expect("tempdir");
    let args = ["--no-demo", "--checkpoint-interval", "100ms"];
    let server = Server::start_in(data.path(), &args);
    let client = server.connect().await;
    for sql in [
        format!(
            "CREATE TABLE latest (k BIGINT PRIMARY KEY, v BIGINT) WITH (connector = 'kafka', \
               topic = 'latest', properties.bootstrap.server = '{}') FORMAT UPSERT ENCODE JSON",
            broker.address
        ),
        "CREATE MATERIALIZED VIEW latest_sum AS SELECT count(*) AS n, sum(v) AS s FROM latest"
            .into(),
    ] {
        client
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    drop(client);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut model: BTreeMap<i64, i64> = BTreeMap::new();
    let mut server = Some(server);
    for round in 0..6 {
        let records: Vec<crate::broker::Record> = (0..500)
            .map(|_| {
                let k = rng.random_range(0..100);
                let mut r = crate::broker::Record::new(0, Vec::new());
                r.key = Some(k.to_string());
                if rng.random_bool(0.15) {
                    r.tombstone = true;
                    model.remove(&k);
                } else {
                    let v = rng.random_range(0..1000);
                    r.payload = format!(r#"{{"v": {v}}}"#).into_bytes();
                    model.insert(k, v);
                }
                r
            })
            .collect();
        producer.send("latest", &records).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        server.take().expect("server").kill();
        server = Some(Server::start_in(data.path(), &args));
        let _ = round;
    }
    let server = server.expect("server");
    let client = server.connect().await;
    let expected: Vec<String> = model.iter().map(|(k, v)| format!("{k} | {v}")).collect();
    let sum: i64 = model.values().sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = client_rows(&client, "SELECT k, v FROM latest ORDER BY k").await;
        let view = client_rows(&client, "SELECT n, s FROM latest_sum").await;
        if rows == expected && view == vec![format!("{} | {sum}", model.len())] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after restarts: {} rows (want {}), view {view:?} (want {} | {sum})",
            rows.len(),
            expected.len(),
            model.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
