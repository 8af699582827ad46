//! Sinks against a real broker (tansu): what a PLAIN and an UPSERT Kafka sink put in their
//! topics equals the view, in-process and across a SIGKILL of the real binary; bad sink
//! definitions fail clearly; dependencies are kept by DROP.
//!
//! tansu writes transaction markers but sends no aborted-transaction list, so librdkafka's
//! `read_committed` consumer (used here) shows aborted records too; these tests kill the server
//! when no transaction is open. Kills at random points are in `crash.rs`, which reads the
//! exactly-once topic through `committed_reader` (the markers applied as Kafka would).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use weir_sql::Session;

use crate::broker::{Broker, Record, read_topic};
use crate::harness::{Server, client_rows, query_rows};

/// 2024-01-01T00:00:00Z in milliseconds.
const T0: i64 = 1_704_067_200_000;

fn source_sql(broker: &str) -> String {
    format!(
        "CREATE SOURCE readings (id BIGINT, v BIGINT, ts TIMESTAMP(3) WITH TIME ZONE, \
           WATERMARK FOR ts AS ts - INTERVAL '1 second') \
         WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{broker}', \
               source.idle_timeout = '1h') FORMAT PLAIN ENCODE JSON"
    )
}

const VIEW_SQL: &str = "CREATE MATERIALIZED VIEW per_window AS \
     SELECT id % 3 AS k, window_start, count(*) AS n, sum(v) AS total \
     FROM TUMBLE(readings, ts, INTERVAL '10 seconds') GROUP BY id % 3, window_start";

/// `count` readings from `first` on, one per second of event time.
fn readings(first: i64, count: i64) -> Vec<Record> {
    (first..first + count)
        .map(|i| {
            Record::new(
                0,
                format!(
                    r#"{{"id": {i}, "v": {}, "ts": {}}}"#,
                    i * 7 % 11,
                    T0 + i * 1000
                ),
            )
        })
        .collect()
}

/// A sink row as `k | window start (epoch s) | n | total`.
fn sink_row(payload: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(payload).expect("JSON payload");
    let start =
        chrono::DateTime::parse_from_rfc3339(v["window_start"].as_str().expect("window_start"))
            .expect("RFC 3339 window_start")
            .timestamp();
    format!("{} | {start} | {} | {}", v["k"], v["n"], v["total"])
}

const VIEW_ROWS: &str = "SELECT k, to_unixtime(window_start)::BIGINT, n, total FROM per_window";

/// The view's rows (final, or all) in `sink_row`'s form, sorted.
async fn view_rows(session: &Session, only_final: bool, watermark_s: i64) -> Vec<String> {
    let filter = if only_final {
        format!(" WHERE to_unixtime(window_start)::BIGINT + 10 <= {watermark_s}")
    } else {
        String::new()
    };
    let mut rows = query_rows(session, &format!("{VIEW_ROWS}{filter}")).await;
    rows.sort();
    rows
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_upsert_kafka_sinks_equal_the_view() {
    let broker = Broker::start();
    for topic in ["readings", "plain_out", "upsert_out", "debezium_out"] {
        broker.create_topic(topic, 1);
    }
    let session = weir::database().build().expect("database").session();
    session
        .execute_all(&format!("{}; {VIEW_SQL};", source_sql(&broker.address)))
        .await
        .expect("source and view");
    broker.producer().send("readings", &readings(0, 60)).await;
    let sinks = format!(
        "CREATE SINK plain_sink FROM per_window WITH (connector = 'kafka', topic = 'plain_out', \
           properties.bootstrap.server = '{b}') FORMAT PLAIN ENCODE JSON;
         CREATE SINK upsert_sink FROM per_window WITH (connector = 'kafka', topic = 'upsert_out', \
           properties.bootstrap.server = '{b}', primary_key = 'k, window_start', \
           sink.delivery = 'at_least_once') FORMAT UPSERT ENCODE JSON;
         CREATE SINK debezium_sink FROM per_window WITH (connector = 'kafka', \
           topic = 'debezium_out', properties.bootstrap.server = '{b}') FORMAT DEBEZIUM ENCODE JSON;",
        b = broker.address
    );
    session.execute_all(&sinks).await.expect("sinks");
    // Rows after the sinks exist too; the last reading's watermark (69 s) closes windows < 60 s.
    // In two steps, so the open window's rows are created, then updated.
    broker.producer().send("readings", &readings(60, 5)).await;
    wait_until("the first half", Duration::from_secs(60), async || {
        query_rows(&session, "SELECT sum(n) FROM per_window").await == ["65"]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.producer().send("readings", &readings(65, 5)).await;
    wait_until(
        "the sinks to publish",
        Duration::from_secs(60),
        async || {
            let rows = query_rows(
                &session,
                "SELECT sum(rows_pending), count(*) FROM weir_sinks WHERE rows_written > 0",
            )
            .await;
            let view = query_rows(&session, "SELECT sum(n) FROM per_window").await;
            rows == ["0 | 3"] && view == ["70"]
        },
    )
    .await;

    // PLAIN: each final row once, nothing of the open window.
    let mut plain: Vec<String> = read_topic(&broker.address, "plain_out")
        .iter()
        .map(|r| sink_row(r.payload.as_deref().expect("payload")))
        .collect();
    plain.sort();
    let finals = view_rows(&session, true, T0 / 1000 + 68).await;
    assert_eq!(finals.len(), 18, "6 closed windows × 3 keys");
    assert_eq!(plain, finals);

    // UPSERT: the latest value per key is every current row, the open window's included.
    let mut latest: BTreeMap<String, Option<String>> = BTreeMap::new();
    for r in read_topic(&broker.address, "upsert_out") {
        latest.insert(r.key.expect("key"), r.payload.as_deref().map(sink_row));
    }
    let mut current: Vec<String> = latest.into_values().flatten().collect();
    current.sort();
    assert_eq!(current, view_rows(&session, false, 0).await);

    // DEBEZIUM: replaying the envelopes (create, update with its before, delete) gives every
    // current row; an update's before is the version the key had.
    let mut state: BTreeMap<String, String> = BTreeMap::new();
    let mut updates = 0;
    for r in read_topic(&broker.address, "debezium_out") {
        let key = r.key.expect("key");
        let Some(payload) = r.payload.as_deref() else {
            assert!(!state.contains_key(&key), "a tombstone follows the delete");
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(payload).expect("envelope");
        match v["op"].as_str() {
            Some("c") => {
                assert!(v["before"].is_null());
                let fresh = state.insert(key, sink_row(&v["after"].to_string()));
                assert!(fresh.is_none(), "a create of a live key");
            }
            Some("u") => {
                updates += 1;
                let before = sink_row(&v["before"].to_string());
                let previous = state.insert(key, sink_row(&v["after"].to_string()));
                assert_eq!(previous, Some(before), "an update's before is the live row");
            }
            Some("d") => {
                let previous = state.remove(&key);
                assert_eq!(previous, Some(sink_row(&v["before"].to_string())));
            }
            other => panic!("unexpected Debezium op {other:?}"),
        }
    }
    assert!(updates > 0, "open windows update as readings arrive");
    let mut current: Vec<String> = state.into_values().collect();
    current.sort();
    assert_eq!(current, view_rows(&session, false, 0).await);

    let shown = query_rows(&session, "SHOW SINKS").await;
    assert_eq!(shown.len(), 3, "{shown:?}");
    let err = session
        .execute_all("DROP MATERIALIZED VIEW per_window")
        .await
        .expect_err("a sink reads the view");
    assert!(err.to_string().contains("plain_sink"), "{err}");
    session
        .execute_all(
            "DROP SINK plain_sink; DROP SINK upsert_sink; DROP SINK debezium_sink; DROP MATERIALIZED VIEW per_window",
        )
        .await
        .expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sink_definitions_fail_clearly() {
    let broker = Broker::start();
    broker.create_topic("readings", 1);
    let session = weir::database().build().expect("database").session();
    session
        .execute_all(&format!("{}; {VIEW_SQL};", source_sql(&broker.address)))
        .await
        .expect("source and view");
    let b = &broker.address;
    for (sql, expected) in [
        (
            format!(
                "CREATE SINK s FROM nope WITH (connector = 'kafka', topic = 'x', properties.bootstrap.server = '{b}')"
            ),
            "materialized view \"nope\" does not exist",
        ),
        (
            format!(
                "CREATE SINK s FROM readings WITH (connector = 'kafka', topic = 'x', properties.bootstrap.server = '{b}')"
            ),
            "is a source",
        ),
        (
            format!(
                "CREATE SINK s FROM per_window WITH (connector = 'kafka', topic = 'missing', properties.bootstrap.server = '{b}')"
            ),
            "Kafka topic \"missing\" does not exist",
        ),
        (
            "CREATE SINK s FROM per_window WITH (connector = 'kafkaa')".to_string(),
            "unknown sink connector 'kafkaa'",
        ),
        (
            format!(
                "CREATE SINK s FROM per_window WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{b}', primary_key = 'k') FORMAT UPSERT ENCODE JSON"
            ),
            "primary_key (k) does not include window_start",
        ),
        (
            format!(
                "CREATE SINK s FROM per_window WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{b}', sink.delivery = 'twice')"
            ),
            "sink.delivery must be",
        ),
        (
            format!(
                "CREATE SINK s FROM per_window WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{b}') FORMAT UPSERT ENCODE JSON"
            ),
            "FORMAT UPSERT needs primary_key",
        ),
        (
            format!(
                "CREATE SINK s FROM per_window WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{b}', primary_key = 'nope') FORMAT UPSERT ENCODE JSON"
            ),
            "\"nope\"",
        ),
        (
            format!(
                "CREATE SINK s FROM per_window WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{b}', colour = 'red')"
            ),
            "unknown option \"colour\"",
        ),
        (
            "CREATE SINK s AS SELECT * FROM readings".to_string(),
            "connector",
        ),
        (
            "CREATE SINK s AS SELECT nope FROM readings WITH (connector = 'parquet', path = '/tmp/x')"
                .to_string(),
            "nope",
        ),
    ] {
        let err = session.execute_all(&sql).await.expect_err(&sql);
        assert!(err.to_string().contains(expected), "{sql}: {err}");
    }
    assert!(
        query_rows(&session, "SELECT * FROM weir_sinks")
            .await
            .is_empty()
    );
    assert_eq!(
        query_rows(&session, "SELECT name FROM weir_views").await,
        ["per_window"],
        "no query view left behind by a sink that failed"
    );
}

/// A PLAIN exactly-once sink and an at-least-once one on the real binary, killed with SIGKILL
/// once everything before the kill was committed: after the restart both topics hold every final
/// row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sinks_resume_after_sigkill() {
    let broker = Broker::start();
    for topic in ["readings", "eo_out", "alo_out"] {
        broker.create_topic(topic, 1);
    }
    let data = tempfile::tempdir().expect("tempdir");
    let args = ["--no-demo", "--checkpoint-interval", "200ms"];
    let server = Server::start_in(data.path(), &args);
    let client = server.connect().await;
    let b = &broker.address;
    for sql in [
        source_sql(b),
        VIEW_SQL.to_string(),
        format!(
            "CREATE SINK eo FROM per_window WITH (connector = 'kafka', topic = 'eo_out', properties.bootstrap.server = '{b}')"
        ),
        format!(
            "CREATE SINK alo FROM per_window WITH (connector = 'kafka', topic = 'alo_out', properties.bootstrap.server = '{b}', sink.delivery = 'at_least_once')"
        ),
    ] {
        client
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    broker.producer().send("readings", &readings(0, 100)).await;
    // Every final row so far published, and a checkpoint after it: nothing in flight.
    let published = "SELECT sum(rows_written) FROM weir_sinks";
    wait_until(
        "the first rows to be published",
        Duration::from_secs(60),
        async || first_number(&client, published).await == 2 * 27,
    )
    .await;
    client.simple_query("CHECKPOINT").await.expect("checkpoint");
    drop(client);
    server.kill();

    let server = Server::start_in(data.path(), &args);
    let client = server.connect().await;
    broker
        .producer()
        .send("readings", &readings(100, 100))
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while first_number(&client, published).await != 2 * 57 {
        if Instant::now() > deadline {
            let sinks = first_text(
                &client,
                "SELECT string_agg(name || ' ' || status || ' ' || rows_written || ' ' || rows_pending || ' ' || coalesce(last_error, ''), '; ') FROM weir_sinks",
            )
            .await;
            let view = first_text(&client, "SELECT sum(n) FROM per_window").await;
            panic!("not every final row was published: {sinks}; view rows {view}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = first_text(&client, "SELECT string_agg(status, ',') FROM weir_sinks").await;
    assert_eq!(status, "running,running");

    let mut want = Vec::new();
    for m in client
        .simple_query(&format!(
            "{VIEW_ROWS} WHERE to_unixtime(window_start)::BIGINT + 10 <= {}",
            T0 / 1000 + 198
        ))
        .await
        .expect("view")
    {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            want.push(
                (0..4)
                    .map(|i| r.get(i).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(" | "),
            );
        }
    }
    want.sort();
    assert_eq!(want.len(), 57, "19 closed windows × 3 keys");
    for topic in ["eo_out", "alo_out"] {
        let mut got: Vec<String> = read_topic(b, topic)
            .iter()
            .map(|r| sink_row(r.payload.as_deref().expect("payload")))
            .collect();
        got.sort();
        let distinct: BTreeSet<&String> = got.iter().collect();
        assert_eq!(distinct.len(), got.len(), "{topic} repeats rows");
        assert_eq!(got, want, "{topic}");
    }
}

async fn first_text(client: &tokio_postgres::Client, sql: &str) -> String {
    for m in client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            return r.get(0).unwrap_or("").to_string();
        }
    }
    String::new()
}

async fn first_number(client: &tokio_postgres::Client, sql: &str) -> i64 {
    first_text(client, sql).await.parse().unwrap_or(0)
}

/// The broker stopped (SIGSTOP) for 10 s while a generator feeds the view: the sink waits,
/// `weir_sinks` shows the delay, and when the broker is back every row arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_away_for_10s_delays_the_sink_and_loses_nothing() {
    let broker = Broker::start();
    broker.create_topic("counts_out", 1);
    let session = weir::database().build().expect("database").session();
    session
        .execute_all(&format!(
            "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3), \
               WATERMARK FOR ts AS ts - INTERVAL '1 second') \
             WITH (connector = 'datagen', generator = 'bids', rate = '2000', event_rate = '2000', events = '40000');
             CREATE MATERIALIZED VIEW counts AS SELECT window_start, count(*) AS n, sum(price) AS p \
               FROM TUMBLE(bids, ts, INTERVAL '1 second') GROUP BY window_start EMIT ON WINDOW CLOSE;
             CREATE SINK counts_sink FROM counts WITH (connector = 'kafka', topic = 'counts_out', \
               properties.bootstrap.server = '{}');",
            broker.address
        ))
        .await
        .expect("statements");
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.signal("-STOP");
    let mut most_lag = 0i64;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lag = query_rows(&session, "SELECT lag_ms FROM weir_sinks").await;
        most_lag = most_lag.max(lag.first().and_then(|l| l.parse().ok()).unwrap_or(0));
    }
    broker.signal("-CONT");
    assert!(
        most_lag >= 5000,
        "weir_sinks showed a lag of {most_lag} ms while the broker was away"
    );
    wait_until("the sink to finish", Duration::from_secs(90), async || {
        query_rows(&session, "SELECT status FROM weir_sinks").await == ["finished"]
    })
    .await;
    let mut want = query_rows(
        &session,
        "SELECT to_unixtime(window_start)::BIGINT, n, p FROM counts",
    )
    .await;
    want.sort();
    let mut got: Vec<String> = read_topic(&broker.address, "counts_out")
        .iter()
        .map(|r| {
            let v: serde_json::Value =
                serde_json::from_str(r.payload.as_deref().unwrap_or("null")).expect("JSON");
            let start = chrono::NaiveDateTime::parse_from_str(
                v["window_start"].as_str().unwrap_or(""),
                "%Y-%m-%dT%H:%M:%S%.f",
            )
            .expect("window_start")
            .and_utc()
            .timestamp();
            format!("{start} | {} | {}", v["n"], v["p"])
        })
        .collect();
    got.sort();
    assert!((20..=21).contains(&want.len()), "{want:?}");
    assert_eq!(got, want);
}

/// A Parquet sink of a bounded generator's view: one directory per partition value, no pending
/// files left, every final row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_sink_writes_partitioned_files_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = weir::database().build().expect("database").session();
    session
        .execute_all(&format!(
            "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3), \
               WATERMARK FOR ts AS ts - INTERVAL '1 second') \
             WITH (connector = 'datagen', generator = 'bids', events = '300000');
             CREATE MATERIALIZED VIEW per_auction AS SELECT auction % 4 AS bucket, window_start, \
               count(*) AS n, sum(price) AS p \
               FROM TUMBLE(bids, ts, INTERVAL '1 second') GROUP BY auction % 4, window_start;
             CREATE SINK files FROM per_auction WITH (connector = 'parquet', path = '{}', \
               partition_by = 'bucket', file.max_bytes = '1024');",
            dir.path().display()
        ))
        .await
        .expect("statements");
    wait_until("the sink to finish", Duration::from_secs(60), async || {
        query_rows(&session, "SELECT status FROM weir_sinks").await == ["finished"]
    })
    .await;
    let mut partitions: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    partitions.sort();
    assert_eq!(
        partitions,
        ["_pending", "bucket=0", "bucket=1", "bucket=2", "bucket=3"]
    );
    let pending = walk(&dir.path().join("_pending"));
    assert!(pending.is_empty(), "pending files left: {pending:?}");
    let ctx = datafusion::prelude::SessionContext::new();
    let files = ctx
        .read_parquet(
            dir.path().to_string_lossy().as_ref(),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .expect("files");
    let batches = files
        .sort(vec![
            datafusion::prelude::col("bucket").sort(true, true),
            datafusion::prelude::col("window_start").sort(true, true),
        ])
        .expect("sort")
        .collect()
        .await
        .expect("rows");
    let got = crate::harness::render(&batches);
    let want = query_rows(
        &session,
        "SELECT * FROM per_auction ORDER BY bucket, window_start",
    )
    .await;
    assert!(want.len() > 8, "{want:?}");
    assert_eq!(got, want);
    assert!(
        walk(dir.path()).len() > 4,
        "rolled by size into several files"
    );
}

/// `CREATE SINK … AS SELECT` on the real binary: the query becomes the sink's own view
/// (`<sink>_query`), listed and queryable; the files equal it; the view cannot be dropped from
/// under its sink; DROP SINK takes the view along; a sink that fails to start leaves no view
/// behind. And a finished sink is durably finished: with no periodic checkpoint due (1 h), a
/// SIGKILL right after `finished` and a restart write nothing twice (the sink's end goes into
/// a checkpoint it asks for, and is published only once that checkpoint is durable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_as_select_owns_its_query_view() {
    let data = tempfile::tempdir().expect("tempdir");
    let lake = tempfile::tempdir().expect("tempdir");
    let args = ["--no-demo", "--checkpoint-interval", "1h"];
    let server = Server::start_in(data.path(), &args);
    let client = server.connect().await;
    let create = format!(
        "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3), \
           WATERMARK FOR ts AS ts - INTERVAL '1 second') \
         WITH (connector = 'datagen', generator = 'bids', events = '200000');
         CREATE SINK hist AS SELECT auction % 4 AS bucket, window_start, count(*) AS n \
           FROM TUMBLE(bids, ts, INTERVAL '1 second') GROUP BY auction % 4, window_start \
         WITH (connector = 'parquet', path = '{}', partition_by = 'bucket') FORMAT PLAIN",
        lake.path().display()
    );
    client.batch_execute(&create).await.expect("statements");
    assert_eq!(
        first_text(&client, "SELECT name || ' ' || view FROM weir_sinks").await,
        "hist hist_query"
    );
    wait_until("the sink to finish", Duration::from_secs(60), async || {
        first_text(&client, "SELECT status FROM weir_sinks").await == "finished"
    })
    .await;
    let view_rows = "SELECT bucket, to_unixtime(window_start)::BIGINT, n FROM hist_query \
                     ORDER BY 1, 2";
    let want = client_rows(&client, view_rows).await;
    assert!(want.len() > 8, "{want:?}");
    let files = || async {
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_parquet(
            "files",
            lake.path().to_string_lossy().as_ref(),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .expect("files");
        let batches = ctx
            .sql(
                "SELECT bucket, CAST(to_unixtime(window_start) AS BIGINT), n FROM files \
                 ORDER BY 1, 2",
            )
            .await
            .expect("query")
            .collect()
            .await
            .expect("rows");
        crate::harness::render(&batches)
    };
    assert_eq!(files().await, want);

    let refused = client
        .simple_query("DROP MATERIALIZED VIEW hist_query")
        .await
        .expect_err("the sink reads it");
    assert!(format!("{refused:?}").contains("hist"), "{refused:?}");

    drop(client);
    server.kill();
    let server = Server::start_in(data.path(), &args);
    let client = server.connect().await;
    assert_eq!(
        first_text(&client, "SELECT name || ' ' || view FROM weir_sinks").await,
        "hist hist_query"
    );
    assert_eq!(client_rows(&client, view_rows).await, want);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        files().await,
        want,
        "nothing written twice after the restart"
    );

    client.simple_query("DROP SINK hist").await.expect("drop");
    let views = first_text(&client, "SELECT count(*) FROM weir_views").await;
    assert_eq!(views, "0", "the query view went with its sink");

    let failed = client
        .simple_query("CREATE SINK bad AS SELECT * FROM bids WITH (connector = 'nope')")
        .await
        .expect_err("unknown connector");
    assert!(
        format!("{failed:?}").contains("unknown sink connector"),
        "{failed:?}"
    );
    assert_eq!(
        first_text(&client, "SELECT count(*) FROM weir_views").await,
        "0",
        "no view left by a sink that failed"
    );
}

/// A Parquet sink counts rows still in its open buffers (no file rolled yet) as pending, not
/// written; they count as written once their file is published (here at the end of input).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_buffered_rows_are_pending_until_published() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = weir::database().build().expect("database").session();
    session
        .execute_all(&format!(
            "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3), \
               WATERMARK FOR ts AS ts - INTERVAL '1 second') \
             WITH (connector = 'datagen', generator = 'bids', events = '60000', rate = '10000');
             CREATE MATERIALIZED VIEW all_bids AS SELECT auction, price, ts FROM bids;
             CREATE SINK files FROM all_bids WITH (connector = 'parquet', path = '{}', \
               file.max_age = '1h');",
            dir.path().display()
        ))
        .await
        .expect("statements");
    let figures = "SELECT rows_written, rows_pending, status FROM weir_sinks";
    wait_until("buffered rows", Duration::from_secs(30), async || {
        let row = query_rows(&session, figures).await;
        row.first()
            .is_some_and(|r| !r.starts_with("0 | 0 ") && r.ends_with("running"))
    })
    .await;
    // Give the sink's once-a-second commit a chance to run: it must not count buffered rows.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let row = query_rows(&session, figures).await;
    let published = walk(dir.path())
        .iter()
        .filter(|p| !p.to_string_lossy().contains("_pending"))
        .count();
    // The input runs for 6 s; this is well inside it.
    let [written, pending, status] = row[0].split(" | ").collect::<Vec<_>>()[..] else {
        panic!("{row:?}")
    };
    assert_eq!(status, "running", "{row:?}");
    assert_eq!(written, "0", "buffered rows are not written: {row:?}");
    assert!(pending.parse::<u64>().is_ok_and(|n| n > 0), "{row:?}");
    assert_eq!(
        published, 0,
        "no file is published before max_age or the end"
    );
    wait_until("the sink to finish", Duration::from_secs(60), async || {
        query_rows(&session, figures).await == ["60000 | 0 | finished"]
    })
    .await;
    assert!(
        walk(dir.path())
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "parquet")
                && !p.to_string_lossy().contains("_pending")),
        "the buffered rows' file is published at the end"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `examples/alerts_to_kafka.sql` after `examples/anomaly_alerts.sql`, against the real binary:
/// both sinks start and the verdicts reach the Parquet sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_to_kafka_example_runs() {
    let broker = Broker::start();
    broker.create_topic("alerts", 1);
    let server = Server::start(&["--no-demo"]);
    let client = server.connect().await;
    let examples = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let lake = tempfile::tempdir().expect("tempdir");
    let alerts = std::fs::read_to_string(examples.join("anomaly_alerts.sql")).expect("example");
    let sinks = std::fs::read_to_string(examples.join("alerts_to_kafka.sql"))
        .expect("example")
        .replace("127.0.0.1:9092", &broker.address)
        .replace(
            "weir-data/lake/sensor_verdicts",
            &lake.path().to_string_lossy(),
        );
    for script in [alerts, sinks] {
        client
            .batch_execute(&script)
            .await
            .unwrap_or_else(|e| panic!("{script}: {e:?}"));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sinks = first_text(
            &client,
            "SELECT string_agg(name || ':' || status || ':' || (rows_written + rows_pending) || ':' || coalesce(last_error, ''), ', ' ORDER BY name) FROM weir_sinks",
        )
        .await;
        let verdicts = first_number(
            &client,
            "SELECT rows_written + rows_pending FROM weir_sinks WHERE name = 'verdicts_history'",
        )
        .await;
        if sinks.starts_with("alerts_out:running:")
            && sinks.contains("verdicts_history:running:")
            && verdicts > 0
        {
            assert!(!sinks.contains("Kafka"), "a sink reports an error: {sinks}");
            break;
        }
        assert!(Instant::now() < deadline, "sinks of the example: {sinks}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An UPSERT PostgreSQL sink of an updating windowed view, with the server stopped for 10 s in
/// the middle: `weir_sinks` shows the sink retrying, and at the end the table is the view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sink_upserts_the_view_through_a_10s_outage() {
    let postgres = crate::postgres_server::PgServer::start();
    let session = weir::database().build().expect("database").session();
    session
        .execute_all(&format!(
            "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3), \
               WATERMARK FOR ts AS ts - INTERVAL '1 second') \
             WITH (connector = 'datagen', generator = 'bids', rate = '4000', event_rate = '4000', \
                   events = '80000');
             CREATE MATERIALIZED VIEW per_bucket AS SELECT auction % 5 AS bucket, window_start, \
               count(*) AS n, max(price) AS top, avg(price) AS mean \
               FROM TUMBLE(bids, ts, INTERVAL '2 seconds') GROUP BY auction % 5, window_start;
             CREATE SINK to_pg FROM per_bucket WITH (connector = 'postgres', \
               connection = '{}', table = 'public.per_bucket', primary_key = 'bucket, window_start') \
             FORMAT UPSERT;",
            postgres.conninfo()
        ))
        .await
        .expect("statements");
    tokio::time::sleep(Duration::from_secs(3)).await;
    postgres.stop();
    let mut seen_retrying = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let row = query_rows(&session, "SELECT status, last_error FROM weir_sinks").await;
        if row.first().is_some_and(|r| r.starts_with("retrying")) {
            seen_retrying = row[0].clone();
        }
    }
    postgres.start_again();
    assert!(
        !seen_retrying.is_empty(),
        "weir_sinks never showed the outage"
    );
    wait_until("the sink to finish", Duration::from_secs(90), async || {
        query_rows(&session, "SELECT status FROM weir_sinks").await == ["finished"]
    })
    .await;
    let want = query_rows(
        &session,
        "SELECT bucket, to_unixtime(window_start)::BIGINT, n, top FROM per_bucket ORDER BY 1, 2",
    )
    .await;
    // 20 s of event time in 2 s windows: 10 or 11 per bucket, as the start is not aligned.
    assert!((50..=55).contains(&want.len()), "{want:?}");
    let pg = postgres.connect().await;
    let got: Vec<String> = pg
        .simple_query(
            "SELECT bucket, extract(epoch from window_start)::bigint, n, top FROM per_bucket ORDER BY 1, 2",
        )
        .await
        .expect("table")
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..4).map(|i| r.get(i).unwrap_or("NULL")).collect::<Vec<_>>().join(" | "),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(got, want);
    let err = session
        .execute_all(&format!(
            "CREATE SINK bad FROM per_bucket WITH (connector = 'postgres', connection = '{}', table = 't')",
            postgres.conninfo()
        ))
        .await
        .expect_err("no key");
    assert!(err.to_string().contains("primary_key"), "{err}");
}
