//! Sessions and cumulating windows through a real broker, against DataFusion batch queries:
//! rows out of order by up to 4 s behind a watermark only 1 s behind the newest row (so most
//! disorder is covered only by `allowed_lateness = '5 seconds'`), then rows a minute too late
//! that must land in `weir_late_rows` and nowhere else.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::broker::{Broker, Record};
use crate::harness::query_rows;

/// 2024-01-01T00:00:00Z in milliseconds.
const T0: i64 = 1_704_067_200_000;
const PARTITIONS: i32 = 2;
const ROWS_PER_PARTITION: i64 = 1200;

/// `(id, k, v, ts)` per partition: 100 ms apart, a 5 s pause every 150 rows (so sessions end),
/// each row up to 4 s early.
fn rows(rng: &mut ChaCha8Rng) -> Vec<Vec<(i64, i64, i64, i64)>> {
    let mut id = 0;
    (0..PARTITIONS)
        .map(|_| {
            (0..ROWS_PER_PARTITION)
                .map(|i| {
                    let ts = T0 + 10_000 + i * 100 + (i / 150) * 5_000 - rng.random_range(0..4_000);
                    id += 1;
                    (id, rng.random_range(0..4), rng.random_range(0..100), ts)
                })
                .collect()
        })
        .collect()
}

fn record(p: i32, (id, k, v, ts): (i64, i64, i64, i64)) -> Record {
    Record::new(
        p,
        format!(r#"{{"id": {id}, "k": {k}, "v": {v}, "ts": {ts}}}"#),
    )
}

/// Sessions per key with a 2 s gap, found in batch.
const SESSIONS: &str = "WITH marked AS (
      SELECT k, v, ts, CASE WHEN lag(ts) OVER (PARTITION BY k ORDER BY ts)
                                 > ts - INTERVAL '2 seconds' THEN 0 ELSE 1 END AS starts
      FROM readings
    ), numbered AS (
      SELECT *, sum(starts) OVER (PARTITION BY k ORDER BY ts
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session
      FROM marked
    )
    SELECT k, CAST(min(ts) AS BIGINT), CAST(max(ts) AS BIGINT) + 2000, count(*), sum(v)
    FROM numbered GROUP BY k, session ORDER BY 1, 2";

/// Rows so far in each 20 s cycle at every 5 s step, per key, found in batch: a row is in the
/// steps of its cycle that end after it.
const CUMULATE: &str = "WITH windows AS (
      SELECT r.k, r.v, CAST(date_bin(INTERVAL '20 seconds', r.ts) AS BIGINT) AS ws,
             CAST(date_bin(INTERVAL '20 seconds', r.ts) AS BIGINT) + 5000 * m.step AS we,
             CAST(r.ts AS BIGINT) AS t
      FROM readings r CROSS JOIN (VALUES (1), (2), (3), (4)) AS m(step)
    )
    SELECT k, ws, we, count(*), sum(v) FROM windows WHERE we > t GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_cumulate_with_lateness_match_the_batch_oracle() {
    let broker = Broker::start();
    broker.create_topic("late", PARTITIONS as u32);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let produced = rows(&mut rng);
    let mut records = Vec::new();
    let mut cursors = vec![0usize; PARTITIONS as usize];
    while (0..PARTITIONS as usize).any(|p| cursors[p] < produced[p].len()) {
        let p = rng.random_range(0..PARTITIONS as usize);
        if let Some(&row) = produced[p].get(cursors[p]) {
            records.push(record(p as i32, row));
            cursors[p] += 1;
        }
    }
    // Sent once the rows above are in (lateness is judged against the watermark a row meets):
    // rows more than two minutes behind the newest, beyond the lateness; then the end of the
    // data, far ahead, which closes everything.
    let mut after = Vec::new();
    for i in 0..10 {
        after.push(record(
            i as i32 % PARTITIONS,
            (-10 - i, i % 4, 1_000, T0 + 20_000 + i * 300),
        ));
    }
    for p in 0..PARTITIONS {
        after.push(record(p, (-1, -1, 0, T0 + 10_000_000)));
    }
    let s = weir::database().build().expect("database").session();
    s.execute_all(&format!(
        "CREATE SOURCE readings (id BIGINT, k BIGINT, v BIGINT, ts TIMESTAMP(3) WITH TIME ZONE,
                                WATERMARK FOR ts AS ts - INTERVAL '1 second')
         WITH (connector = 'kafka', topic = 'late', properties.bootstrap.server = '{}',
               source.idle_timeout = '60s') FORMAT PLAIN ENCODE JSON;
         CREATE MATERIALIZED VIEW sessions WITH (allowed_lateness = '5 seconds') AS
           SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s
           FROM SESSION(readings, ts, INTERVAL '2 seconds') WHERE k >= 0
           GROUP BY k, window_start, window_end EMIT ON WINDOW CLOSE;
         CREATE MATERIALIZED VIEW live_sessions WITH (allowed_lateness = '5 seconds') AS
           SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s
           FROM SESSION(readings, ts, INTERVAL '2 seconds') WHERE k >= 0
           GROUP BY k, window_start, window_end;
         CREATE MATERIALIZED VIEW so_far WITH (allowed_lateness = '5 seconds') AS
           SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s
           FROM CUMULATE(readings, ts, INTERVAL '5 seconds', INTERVAL '20 seconds') WHERE k >= 0
           GROUP BY k, window_start, window_end EMIT ON WINDOW CLOSE;",
        broker.address
    ))
    .await
    .expect("ddl");
    let producer = broker.producer();
    producer.send("late", &records).await;
    let accepted = (PARTITIONS as i64 * ROWS_PER_PARTITION).to_string();
    crate::harness::wait_first_row(&s, "SELECT min(rows_in) FROM weir_views", &accepted).await;
    producer.send("late", &after).await;
    crate::harness::wait_first_row(&s, "SELECT sum(n) FROM sessions", &accepted).await;
    crate::harness::wait_first_row(&s, "SELECT sum(n) FROM live_sessions", &accepted).await;
    crate::harness::wait_first_row(
        &s,
        "SELECT sum(n) FROM so_far WHERE window_end - window_start = INTERVAL '20 seconds'",
        &accepted,
    )
    .await;

    // The oracle: DataFusion over the accepted rows.
    let ctx = datafusion::prelude::SessionContext::new();
    let values: Vec<String> = produced
        .iter()
        .flatten()
        .map(|(id, k, v, ts)| format!("({id}, {k}, {v}, to_timestamp_millis({ts}))"))
        .collect();
    ctx.sql(&format!(
        "CREATE VIEW readings AS SELECT * FROM (VALUES {}) AS t(id, k, v, ts)",
        values.join(", ")
    ))
    .await
    .expect("oracle table");
    let oracle = |sql: &'static str| {
        let ctx = ctx.clone();
        async move { crate::harness::batch_rows(&ctx, sql).await }
    };
    let sessions = oracle(SESSIONS).await;
    for view in ["sessions", "live_sessions"] {
        let got = query_rows(
            &s,
            &format!(
                "SELECT k, CAST(window_start AS BIGINT), CAST(window_end AS BIGINT), n, s FROM {view} ORDER BY 1, 2"
            ),
        )
        .await;
        assert_eq!(got.len(), sessions.len(), "{view}: sessions");
        assert_eq!(got, sessions, "{view}");
    }
    let cumulate = oracle(CUMULATE).await;
    let got = query_rows(
        &s,
        "SELECT k, CAST(window_start AS BIGINT), CAST(window_end AS BIGINT), n, s FROM so_far ORDER BY 1, 2, 3",
    )
    .await;
    assert_eq!(got, cumulate, "cumulate");

    // Only the too-late rows are late, and they are in the log.
    let late = query_rows(
        &s,
        "SELECT name, late_rows FROM weir_views WHERE name IN ('sessions', 'live_sessions') ORDER BY name",
    )
    .await;
    assert_eq!(late, vec!["live_sessions | 10", "sessions | 10"]);
    let logged = query_rows(
        &s,
        "SELECT count(DISTINCT reason) FROM weir_late_rows WHERE view_name = 'sessions'",
    )
    .await;
    assert_eq!(logged, vec!["1"]);
    let cumulate_late = query_rows(
        &s,
        "SELECT late_rows >= 10 FROM weir_views WHERE name = 'so_far'",
    )
    .await;
    assert_eq!(cumulate_late, vec!["t"]);
}
