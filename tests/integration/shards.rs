//! Keyed operators split into shards (`--workers`): the same rows as one worker, and state that
//! follows its keys when a restart brings another number of workers. Window aggregates (updating
//! and closing) and sessions over a source of three partitions (read by one reader per worker),
//! and a retracting aggregate and a Top-N over an updating view.

use std::time::Duration;

use crate::harness::query_rows;

/// A bounded, paced generator and two views keyed on `auction % 50`: an updating windowed
/// aggregate and one emitted when windows close, with a filter after it in each shard.
const STATEMENTS: &str = "
    CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
        WATERMARK FOR ts AS ts - INTERVAL '1 second')
      WITH (connector = 'datagen', generator = 'bids', rate = '40000', events = '60000',
            partitions = '3', batch_size = '1000');
    CREATE MATERIALIZED VIEW per_key AS
      SELECT auction % 50 AS k, window_start, count(*) AS n, sum(price) AS p, max(price) AS top
      FROM TUMBLE(bids, ts, INTERVAL '1 second') GROUP BY auction % 50, window_start;
    CREATE MATERIALIZED VIEW closed AS
      SELECT auction % 50 AS k, window_end, count(*) AS n
      FROM TUMBLE(bids, ts, INTERVAL '1 second') GROUP BY auction % 50, window_end
      HAVING count(*) > 0 EMIT ON WINDOW CLOSE;
    CREATE MATERIALIZED VIEW sessions AS
      SELECT auction % 50 AS k, window_start, window_end, count(*) AS n, sum(price) AS p
      FROM SESSION(bids, ts, INTERVAL '5 milliseconds') GROUP BY auction % 50, window_start, window_end
      EMIT ON WINDOW CLOSE;
    CREATE MATERIALIZED VIEW leaders AS
      SELECT k, n, rn FROM (SELECT k, n, row_number() OVER (PARTITION BY k ORDER BY n DESC, window_start) AS rn
                            FROM per_key) WHERE rn <= 2;
    CREATE MATERIALIZED VIEW totals AS
      SELECT k % 7 AS g, sum(n) AS n, count(*) AS windows, max(top) AS top FROM per_key GROUP BY k % 7;";

const PER_KEY: &str = "SELECT k, to_unixtime(window_start) - (SELECT min(to_unixtime(window_start)) FROM per_key), n, p, top \
                       FROM per_key ORDER BY 1, 2";
const TOTALS: &str = "SELECT g, n, windows, top FROM totals ORDER BY g";
const LEADERS: &str = "SELECT k, n, rn FROM leaders ORDER BY k, rn";
const SESSIONS: &str = "SELECT k, CAST(window_start AS BIGINT) - (SELECT min(CAST(window_start AS BIGINT)) FROM sessions), \
                        CAST(window_end AS BIGINT) - CAST(window_start AS BIGINT), n, p FROM sessions ORDER BY 1, 2, 3, 4, 5";
const CLOSED: &str = "SELECT k, to_unixtime(window_end) - (SELECT min(to_unixtime(window_end)) FROM closed), n \
                      FROM closed ORDER BY 1, 2";

/// The views' rows once every event is in.
async fn results(
    session: &weir_sql::Session,
) -> (
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
) {
    crate::harness::wait_first_row(session, "SELECT sum(n) FROM per_key", "60000").await;
    crate::harness::wait_first_row(session, "SELECT sum(n) FROM totals", "60000").await;
    crate::harness::wait_first_row(
        session,
        "SELECT status FROM weir_views WHERE name = 'closed'",
        "finished",
    )
    .await;
    for view in ["sessions", "leaders"] {
        crate::harness::wait_first_row(
            session,
            &format!("SELECT status FROM weir_views WHERE name = '{view}'"),
            "finished",
        )
        .await;
    }
    (
        query_rows(session, PER_KEY).await,
        query_rows(session, CLOSED).await,
        query_rows(session, TOTALS).await,
        query_rows(session, SESSIONS).await,
        query_rows(session, LEADERS).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_views_match_one_worker_and_their_state_follows_keys_to_other_worker_counts() {
    // One worker: the reference.
    let single = weir::database().workers(1).build().expect("database");
    let session = single.session();
    session.execute_all(STATEMENTS).await.expect("statements");
    let want = results(&session).await;
    assert_eq!(want.1.len(), want.0.len(), "every window closed");
    drop(session);
    drop(single);

    // Two shards; EXPLAIN says which operators run in each.
    let data = tempfile::tempdir().expect("tempdir");
    let (db, _) = weir::database()
        .workers(2)
        .open(weir_sql::DatabaseOptions::new(data.path()))
        .await
        .expect("open");
    let session = db.session();
    session.execute_all(STATEMENTS).await.expect("statements");
    let explain = query_rows(
        &session,
        "EXPLAIN CREATE MATERIALIZED VIEW x AS SELECT auction % 50 AS k, window_end, count(*) AS n
         FROM TUMBLE(bids, ts, INTERVAL '1 second') GROUP BY auction % 50, window_end
         HAVING count(*) > 0 EMIT ON WINDOW CLOSE",
    )
    .await
    .join("\n");
    assert!(
        explain.contains(
            "Parallel: window aggregate → stateless in one shard per worker, rows by hash of"
        ),
        "{explain}"
    );
    assert!(
        explain.contains("Parallel: one reader per worker over the source's 3 partitions"),
        "{explain}"
    );
    // Part-way through, a checkpoint holds both shards' open windows.
    tokio::time::sleep(Duration::from_millis(700)).await;
    session.execute_all("CHECKPOINT").await.expect("checkpoint");
    let state = query_rows(
        &session,
        "SELECT sum(rows) FROM weir_checkpoint_state WHERE view = 'per_key'",
    )
    .await;
    assert!(
        state.first().and_then(|s| s.parse::<u64>().ok()) > Some(0),
        "the checkpoint holds open windows: {state:?}"
    );
    drop(session);
    drop(db);

    // Three workers now: every key's state must reach the shard that owns it, once.
    let (db, _) = weir::database()
        .workers(3)
        .open(weir_sql::DatabaseOptions::new(data.path()))
        .await
        .expect("reopen");
    let session = db.session();
    let got = results(&session).await;
    assert_eq!(
        got.0, want.0,
        "per_key after 2 → 3 workers (checkpointed state rows: {state:?})"
    );
    assert_eq!(got.1, want.1, "closed after 2 → 3 workers");
    assert_eq!(
        got.2, want.2,
        "totals (a retracting aggregate) after 2 → 3 workers"
    );
    assert!(want.3.len() > 50, "sessions: {}", want.3.len());
    assert_eq!(got.3, want.3, "sessions after 2 → 3 workers");
    assert_eq!(want.4.len(), 100, "two leaders per key: {:?}", want.4);
    assert_eq!(got.4, want.4, "Top-N after 2 → 3 workers");
}

/// A source of two partitions read by two readers, one of which has had no rows when a checkpoint
/// is taken: after recovery that reader must hold time back for its own partition, not take up
/// the time the other reader had reached (its rows would all be late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_without_rows_at_a_checkpoint_keeps_its_own_time_after_recovery() {
    const T0: i64 = 1_704_067_200_000;
    let broker = crate::broker::Broker::start();
    broker.create_topic("two", 2);
    let producer = broker.producer();
    let rows = |partition: i32, seconds: std::ops::Range<i64>| -> Vec<crate::broker::Record> {
        seconds
            .map(|s| {
                crate::broker::Record::new(
                    partition,
                    format!(r#"{{"k": {s}, "ts": {}}}"#, T0 + s * 1000),
                )
            })
            .collect()
    };
    let statements = format!(
        "CREATE SOURCE two (k BIGINT, ts TIMESTAMP(3) WITH TIME ZONE,
             WATERMARK FOR ts AS ts - INTERVAL '1 second')
           WITH (connector = 'kafka', topic = 'two', properties.bootstrap.server = '{}',
                 source.idle_timeout = '1h') FORMAT PLAIN ENCODE JSON;
         CREATE MATERIALIZED VIEW per_second AS
           SELECT window_start, count(*) AS n FROM TUMBLE(two, ts, INTERVAL '1 second')
           GROUP BY window_start EMIT ON WINDOW CLOSE;",
        broker.address
    );
    let data = tempfile::tempdir().expect("tempdir");
    let (db, _) = weir::database()
        .workers(2)
        .open(weir_sql::DatabaseOptions::new(data.path()))
        .await
        .expect("open");
    let session = db.session();
    session.execute_all(&statements).await.expect("statements");
    // Partition 0 is 100 s ahead; partition 1 has nothing yet, so time stands still.
    producer.send("two", &rows(0, 100..110)).await;
    crate::harness::wait_first_row(
        &session,
        "SELECT sum(records) FROM weir_source_partitions",
        "10",
    )
    .await;
    session.execute_all("CHECKPOINT").await.expect("checkpoint");
    drop(session);
    drop(db);

    let (db, _) = weir::database()
        .workers(2)
        .open(weir_sql::DatabaseOptions::new(data.path()))
        .await
        .expect("reopen");
    let session = db.session();
    // Two batches: rows sent after the reader's first watermark are the ones that could be late.
    producer.send("two", &rows(1, 1..6)).await;
    crate::harness::wait_first_row(
        &session,
        "SELECT records FROM weir_source_partitions WHERE partition = 1",
        "5",
    )
    .await;
    producer.send("two", &rows(1, 6..11)).await;
    producer
        .send("two", &[rows(0, 300..301), rows(1, 300..301)].concat())
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let late = query_rows(&session, "SELECT sum(late_rows) FROM weir_views").await;
        assert_eq!(late, vec!["0".to_string()], "late rows after recovery");
        if query_rows(&session, "SELECT sum(n) FROM per_second").await == vec!["20".to_string()] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "per_second did not reach 20 rows"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Views over one topic share its reader: a view created when the others are far ahead reads the
/// history with a reader of its own, then joins theirs. Every view has every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_one_topic_come_to_share_its_readers() {
    const T0: i64 = 1_704_067_200_000;
    let broker = crate::broker::Broker::start();
    broker.create_topic("shared", 2);
    let producer = broker.producer();
    let rows = |from: i64, to: i64| -> Vec<crate::broker::Record> {
        (from..to)
            .map(|i| {
                crate::broker::Record::new(
                    (i % 2) as i32,
                    format!(r#"{{"k": {}, "v": {i}, "ts": {}}}"#, i % 7, T0 + i * 10),
                )
            })
            .collect()
    };
    for workers in [1, 2] {
        let db = weir::database().workers(workers).build().expect("database");
        let session = db.session();
        session
            .execute_all(&format!(
                "CREATE SOURCE s{workers} (k BIGINT, v BIGINT, ts TIMESTAMP(3) WITH TIME ZONE,
                     WATERMARK FOR ts AS ts - INTERVAL '1 second')
                   WITH (connector = 'kafka', topic = 'shared', properties.bootstrap.server = '{}',
                         source.idle_timeout = '1h') FORMAT PLAIN ENCODE JSON;
                 CREATE MATERIALIZED VIEW a{workers} AS SELECT k, count(*) AS n, sum(v) AS s FROM s{workers} GROUP BY k;",
                broker.address
            ))
            .await
            .expect("statements");
        if workers == 1 {
            producer.send("shared", &rows(0, 4000)).await;
        }
        // The second round reads the topic as the first left it.
        let first = if workers == 1 { "4000" } else { "6000" };
        crate::harness::wait_first_row(&session, &format!("SELECT sum(n) FROM a{workers}"), first)
            .await;
        // Two more views, far behind: they catch up and join the first one's readers.
        session
            .execute_all(&format!(
                "CREATE MATERIALIZED VIEW b{workers} AS SELECT k, count(*) AS n, sum(v) AS s FROM s{workers} GROUP BY k;
                 CREATE MATERIALIZED VIEW c{workers} AS SELECT window_start, count(*) AS n
                   FROM TUMBLE(s{workers}, ts, INTERVAL '1 second') GROUP BY window_start;"
            ))
            .await
            .expect("more views");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let readers = || db.catalog().shared_sources.readers();
        while readers() > workers {
            assert!(
                std::time::Instant::now() < deadline,
                "{} readers for 3 views on {workers} workers",
                readers()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if workers == 1 {
            producer.send("shared", &rows(4000, 6000)).await;
        }
        for view in ["a", "b", "c"] {
            crate::harness::wait_first_row(
                &session,
                &format!("SELECT sum(n) FROM {view}{workers}"),
                "6000",
            )
            .await;
        }
        let a = query_rows(&session, &format!("SELECT * FROM a{workers} ORDER BY k")).await;
        let b = query_rows(&session, &format!("SELECT * FROM b{workers} ORDER BY k")).await;
        assert_eq!(a, b, "{workers} workers");
        // Each view still has its own row per partition in weir_source_partitions.
        let partitions = query_rows(
            &session,
            &format!(
                "SELECT view_name, count(*), sum(records) FROM weir_source_partitions \
                 WHERE source_name = 's{workers}' GROUP BY view_name ORDER BY 1"
            ),
        )
        .await;
        assert_eq!(partitions.len(), 3, "{partitions:?}");
    }
}

/// A view created while another is part-way through a generator catches up with it: where every
/// index gives a row (`bids`) it joins the other's reader; where rows have no offsets (Nexmark
/// bids, one event kind of three) it cannot cut there, gives up and reads on alone. Either way
/// both views hold every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_view_on_a_generator_ends_with_the_same_rows() {
    let db = weir::database().workers(1).build().expect("database");
    let session = db.session();
    for (source, options, time) in [
        ("plain_bids", "generator = 'bids'", "ts"),
        (
            "nexmark_bids",
            "generator = 'nexmark', table = 'bid'",
            "date_time",
        ),
    ] {
        session
            .execute_all(&format!(
                "CREATE SOURCE {source} (auction BIGINT, price BIGINT, {time} TIMESTAMPTZ,
                     WATERMARK FOR {time} AS {time} - INTERVAL '1 second')
                   WITH (connector = 'datagen', {options}, rate = '30000', events = '60000',
                         batch_size = '700', start_time = '2015-07-15T00:00:00Z');
                 CREATE MATERIALIZED VIEW {source}_a AS
                   SELECT auction % 10 AS k, count(*) AS n, sum(price) AS p FROM {source} GROUP BY auction % 10;"
            ))
            .await
            .expect("source");
        tokio::time::sleep(Duration::from_millis(700)).await;
        session
            .execute_all(&format!(
                "CREATE MATERIALIZED VIEW {source}_b AS
                   SELECT auction % 10 AS k, count(*) AS n, sum(price) AS p FROM {source} GROUP BY auction % 10;"
            ))
            .await
            .expect("late view");
        if source == "plain_bids" {
            // It caught up and shares the first view's reader before the generator ends.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while db.catalog().shared_sources.readers() > 1 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{source}: no shared reader"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        for view in ["a", "b"] {
            crate::harness::wait_first_row(
                &session,
                &format!("SELECT status FROM weir_views WHERE name = '{source}_{view}'"),
                "finished",
            )
            .await;
        }
        let a = query_rows(&session, &format!("SELECT * FROM {source}_a ORDER BY k")).await;
        let b = query_rows(&session, &format!("SELECT * FROM {source}_b ORDER BY k")).await;
        assert_eq!(a.len(), 10, "{source}: {a:?}");
        assert_eq!(a, b, "{source}");
    }
}
