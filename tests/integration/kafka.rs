//! Kafka sources against a real broker (tansu, see `broker.rs`), plus librdkafka's mock cluster
//! for the `timestamp` start mode, which tansu answers wrongly (offset 0 for every lookup).

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use weir_sql::Session;

use crate::broker::{Broker, Record, producer};
use crate::harness::query_rows;

fn session() -> Session {
    weir::database().build().expect("database").session()
}

async fn exec(session: &Session, sql: &str) {
    session
        .execute_all(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Polls `sql` until its rows satisfy `done`, or fails after `timeout` showing the last rows.
async fn wait_for(
    session: &Session,
    sql: &str,
    timeout: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = query_rows(session, sql).await;
        if done(&rows) {
            return rows;
        }
        if Instant::now() >= deadline {
            let partitions = query_rows(session, "SELECT * FROM weir_source_partitions").await;
            let views = query_rows(
                session,
                "SELECT name, status, rows_in, late_rows FROM weir_views",
            )
            .await;
            panic!(
                "timed out waiting for {sql}; last rows: {rows:?}\npartitions: {partitions:#?}\nviews: {views:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn one(rows: &[String]) -> &str {
    rows.first().map(String::as_str).unwrap_or("")
}

fn json(id: i64, value: f64, ts_ms: i64) -> Vec<u8> {
    format!(r#"{{"id": {id}, "v": {value}, "ts": {ts_ms}}}"#).into_bytes()
}

/// 2024-01-01T00:00:00Z in milliseconds: event times in these tests are in the past.
const T0: i64 = 1_704_067_200_000;

fn source_sql(name: &str, broker: &str, topic: &str, extra: &str) -> String {
    format!(
        "CREATE SOURCE {name} (id BIGINT, v DOUBLE, ts TIMESTAMP(3) WITH TIME ZONE, \
           WATERMARK FOR ts AS ts - INTERVAL '5 seconds') \
         INCLUDE partition AS p INCLUDE offset AS o \
         WITH (connector = 'kafka', topic = '{topic}', properties.bootstrap.server = '{broker}'{extra}) \
         FORMAT PLAIN ENCODE JSON"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_before_and_after_the_view_starts_land_exactly_once() {
    let broker = Broker::start();
    broker.create_topic("events", 2);
    let producer = broker.producer();
    let records = |from: i64, to: i64| -> Vec<Record> {
        (from..to)
            .map(|i| Record {
                key: Some(format!("k{i}")),
                timestamp_ms: Some(T0 + i),
                header: Some(("trace".into(), format!("t{i}"))),
                ..Record::new((i % 2) as i32, json(i, i as f64, T0 + i * 10))
            })
            .collect()
    };
    producer.send("events", &records(0, 500)).await;
    let s = session();
    exec(
        &s,
        &format!(
            "CREATE SOURCE events (id BIGINT, v DOUBLE, ts TIMESTAMPTZ) \
             INCLUDE partition AS p INCLUDE offset AS o INCLUDE key AS k INCLUDE timestamp AS kt \
             INCLUDE header 'trace' AS trace \
             WITH (connector = 'kafka', topic = 'events', bootstrap.servers = '{}') FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW all_events AS SELECT * FROM events;",
            broker.address
        ),
    )
    .await;
    producer.send("events", &records(500, 1000)).await;
    let sql = "SELECT count(*), count(DISTINCT id), count(DISTINCT (p, o)), min(id), max(id) FROM all_events";
    let rows = wait_for(&s, sql, Duration::from_secs(60), |r| {
        one(r).starts_with("1000 |")
    })
    .await;
    assert_eq!(one(&rows), "1000 | 1000 | 1000 | 0 | 999");
    // Metadata columns: partition, offset, key, broker timestamp, header.
    let rows = query_rows(&s, "SELECT p, o, k, kt, trace FROM all_events WHERE id = 7").await;
    assert_eq!(
        one(&rows),
        "1 | 3 | k7 | 2024-01-01 00:00:00.007000+00 | t7"
    );
    let rows = query_rows(
        &s,
        "SELECT partition, \"offset\", high_watermark, lag, records, errors, status FROM weir_source_partitions ORDER BY partition",
    )
    .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (p, row) in rows.iter().enumerate() {
        assert!(row.starts_with(&format!("{p} | 500 |")), "{row}");
        assert!(row.contains("| 500 | 0 |"), "records and errors: {row}");
    }
    // Nothing arrives twice after more time passes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = query_rows(&s, "SELECT count(*) FROM all_events").await;
    assert_eq!(one(&rows), "1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_modes_earliest_and_timestamp() {
    let broker = Broker::start();
    broker.create_topic("modes", 1);
    let producer = broker.producer();
    let batch = |ids: std::ops::Range<i64>| -> Vec<Record> {
        ids.map(|i| Record {
            timestamp_ms: Some(T0 + i * 1000),
            ..Record::new(0, json(i, 0.0, T0))
        })
        .collect()
    };
    producer.send("modes", &batch(0..10)).await;
    let s = session();
    for (name, extra) in [
        ("m_earliest", ", scan.startup.mode = 'earliest'".to_string()),
        // Records 5.. have broker timestamps at or after T0 + 5 s.
        (
            "m_ts",
            format!(
                ", scan.startup.mode = 'timestamp', scan.startup.timestamp.millis = '{}'",
                T0 + 5000
            ),
        ),
    ] {
        exec(&s, &source_sql(name, &broker.address, "modes", &extra)).await;
        exec(
            &s,
            &format!("CREATE MATERIALIZED VIEW {name}_v AS SELECT id FROM {name}"),
        )
        .await;
    }
    // Let every reader be assigned before the next records.
    wait_for(
        &s,
        "SELECT count(*) FROM weir_source_partitions WHERE status = 'running'",
        Duration::from_secs(30),
        |r| one(r) == "2",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    producer.send("modes", &batch(10..15)).await;
    // Records 5..9 are found by the timestamp even though tansu answers every timestamp lookup
    // with offset 0: the reader skips records older than the start time until the first newer one.
    let expect = [("m_earliest_v", "15 | 0 | 14"), ("m_ts_v", "10 | 5 | 14")];
    for (view, want) in expect {
        let sql = format!("SELECT count(*), min(id), max(id) FROM {view}");
        let rows = wait_for(&s, &sql, Duration::from_secs(30), |r| one(r) == want).await;
        assert_eq!(one(&rows), want, "{view}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_and_timestamp_modes_on_librdkafka_mock_cluster() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("mocked", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let producer = producer(&bootstrap);
    let old: Vec<Record> = (0..5)
        .map(|i| Record {
            timestamp_ms: Some(T0 + i),
            ..Record::new(0, json(i, 0.0, T0))
        })
        .collect();
    producer.send("mocked", &old).await;
    let s = session();
    // A start time after every stored record: the lookup finds none, so reading starts at the end.
    let extra = format!(
        ", scan.startup.mode = 'timestamp', scan.startup.timestamp.millis = '{}'",
        T0 + 60_000
    );
    exec(&s, &source_sql("mocked", &bootstrap, "mocked", &extra)).await;
    exec(
        &s,
        "CREATE MATERIALIZED VIEW mocked_v AS SELECT id FROM mocked",
    )
    .await;
    // `latest` is tested here because tansu answers ListOffsets(latest) with the last batch's
    // base offset + 1 rather than the end of the log.
    exec(
        &s,
        &source_sql(
            "mocked_latest",
            &bootstrap,
            "mocked",
            ", scan.startup.mode = 'latest'",
        ),
    )
    .await;
    exec(
        &s,
        "CREATE MATERIALIZED VIEW mocked_latest_v AS SELECT id FROM mocked_latest",
    )
    .await;
    wait_for(
        &s,
        "SELECT count(*) FROM weir_source_partitions WHERE status = 'running'",
        Duration::from_secs(30),
        |r| one(r) == "2",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new: Vec<Record> = (5..8)
        .map(|i| Record {
            timestamp_ms: Some(T0 + 120_000 + i),
            ..Record::new(0, json(i, 0.0, T0))
        })
        .collect();
    producer.send("mocked", &new).await;
    for view in ["mocked_v", "mocked_latest_v"] {
        let sql = format!("SELECT count(*), min(id) FROM {view}");
        let rows = wait_for(&s, &sql, Duration::from_secs(30), |r| {
            one(r).starts_with("3 |")
        })
        .await;
        assert_eq!(one(&rows), "3 | 5", "{view}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_partitions_out_of_order_match_the_batch_oracle() {
    let broker = Broker::start();
    broker.create_topic("skewed", 3);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // Partition p runs p × 40 s behind partition 0 in event time; inside a partition, rows are
    // out of order by up to 4 s (less than the 5 s watermark delay, so none is late).
    let mut per_partition: Vec<Vec<(i64, i64, i64)>> = vec![Vec::new(); 3];
    let mut id = 0;
    for p in 0..3i64 {
        for i in 0..1500i64 {
            let ts = T0 + 100_000 - p * 40_000 + i * 100 - rng.random_range(0..4000);
            per_partition[p as usize].push((id, rng.random_range(0..5), ts));
            id += 1;
        }
    }
    let mut records = Vec::new();
    let mut cursors = [0usize; 3];
    while cursors
        .iter()
        .enumerate()
        .any(|(p, c)| *c < per_partition[p].len())
    {
        let p = rng.random_range(0..3);
        if let Some(&(id, key, ts)) = per_partition[p].get(cursors[p]) {
            records.push(Record::new(
                p as i32,
                format!(r#"{{"id": {id}, "k": {key}, "ts": {ts}}}"#),
            ));
            cursors[p] += 1;
        }
    }
    // The end of the data: one row per partition far ahead closes every window.
    let end = T0 + 1_000_000;
    for p in 0..3 {
        records.push(Record::new(
            p,
            format!(r#"{{"id": -1, "k": -1, "ts": {end}}}"#),
        ));
    }
    let producer = broker.producer();
    producer.send("skewed", &records[..records.len() / 2]).await;
    let s = session();
    exec(
        &s,
        &format!(
            "CREATE SOURCE skewed (id BIGINT, k BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '5 seconds') \
             WITH (connector = 'kafka', topic = 'skewed', properties.bootstrap.server = '{}', source.idle_timeout = '60s') \
             FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW per_window AS
               SELECT window_start, k, count(*) AS n, sum(id) AS s FROM TUMBLE(skewed, ts, INTERVAL '10 seconds')
               WHERE k >= 0 GROUP BY window_start, k EMIT ON WINDOW CLOSE;",
            broker.address
        ),
    )
    .await;
    producer.send("skewed", &records[records.len() / 2..]).await;
    let total: usize = per_partition.iter().map(Vec::len).sum();
    wait_for(
        &s,
        "SELECT sum(n) FROM per_window",
        Duration::from_secs(60),
        |r| one(r) == total.to_string(),
    )
    .await;
    let got = query_rows(
        &s,
        "SELECT to_unixtime(window_start), k, n, s FROM per_window ORDER BY window_start, k",
    )
    .await;
    // The oracle: DataFusion's batch GROUP BY over every produced row.
    let ctx = datafusion::prelude::SessionContext::new();
    let values: Vec<String> = per_partition
        .iter()
        .flatten()
        .map(|(id, k, ts)| format!("({id}, {k}, to_timestamp_millis({ts}))"))
        .collect();
    let sql = format!(
        "SELECT to_unixtime(date_bin(INTERVAL '10 seconds', ts)) AS w, k, count(*) AS n, sum(id) AS s \
         FROM (VALUES {}) AS t(id, k, ts) GROUP BY w, k ORDER BY w, k",
        values.join(", ")
    );
    let batches = ctx
        .sql(&sql)
        .await
        .expect("oracle sql")
        .collect()
        .await
        .expect("oracle rows");
    let want = crate::harness::render(&batches);
    assert_eq!(got.len(), want.len(), "windows");
    assert_eq!(got, want);
    let late = query_rows(
        &s,
        "SELECT late_rows FROM weir_views WHERE name = 'per_window'",
    )
    .await;
    assert_eq!(one(&late), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_does_not_stall_windows() {
    let broker = Broker::start();
    broker.create_topic("lonely", 2);
    let s = session();
    exec(
        &s,
        &format!(
            "{};
             CREATE MATERIALIZED VIEW closed AS SELECT window_start, count(*) AS n
               FROM TUMBLE(lonely, ts, INTERVAL '1 second') GROUP BY window_start EMIT ON WINDOW CLOSE;",
            source_sql("lonely", &broker.address, "lonely", ", source.idle_timeout = '1s'")
        ),
    )
    .await;
    // Only partition 0 gets data; partition 1 never does.
    let records: Vec<Record> = (0..20)
        .map(|i| Record::new(0, json(i, 0.0, T0 + i * 1000)))
        .collect();
    broker.producer().send("lonely", &records).await;
    // Windows up to ts - 5 s close once partition 1 is declared idle.
    let rows = wait_for(
        &s,
        "SELECT count(*) FROM closed",
        Duration::from_secs(60),
        |r| one(r) == "14",
    )
    .await;
    assert_eq!(one(&rows), "14");
    let sql = "SELECT partition, idle FROM weir_source_partitions ORDER BY partition";
    wait_for(&s, sql, Duration::from_secs(10), |r| {
        r == ["0 | t", "1 | t"]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_logged_while_good_ones_flow() {
    let broker = Broker::start();
    broker.create_topic("dirty", 1);
    let future_ms = chrono::Utc::now().timestamp_millis() + 3 * 3600 * 1000;
    let payloads: Vec<Vec<u8>> = vec![
        json(1, 1.0, T0),
        b"{\"id\": 2, \"v\": 2.0, \"ts\": ".to_vec(), // truncated JSON
        json(3, 3.0, T0),
        b"{\"id\": \"three\", \"v\": 1, \"ts\": 0}".to_vec(), // wrong type
        format!(
            r#"{{"id": 5, "v": 1, "ts": 0, "pad": "{}"}}"#,
            "x".repeat(5000)
        )
        .into_bytes(), // too big
        json(6, 6.0, future_ms),                              // clock far ahead
        json(7, 7.0, T0),
        b"not json at all".to_vec(),
        b"{\"id\": \"8\", \"v\": \"8.5\", \"ts\": \"2024-01-01T00:00:08Z\"}".to_vec(), // coerced
    ];
    let records: Vec<Record> = payloads.into_iter().map(|p| Record::new(0, p)).collect();
    broker.producer().send("dirty", &records).await;
    let s = session();
    exec(
        &s,
        &source_sql(
            "dirty",
            &broker.address,
            "dirty",
            ", max_record_bytes = '1024'",
        ),
    )
    .await;
    exec(
        &s,
        "CREATE MATERIALIZED VIEW clean AS SELECT id, v FROM dirty",
    )
    .await;
    let rows = wait_for(
        &s,
        "SELECT id FROM clean ORDER BY id",
        Duration::from_secs(30),
        |r| r.len() == 4,
    )
    .await;
    assert_eq!(rows, vec!["1", "3", "7", "8"]);
    let errors = wait_for(
        &s,
        "SELECT \"offset\", error FROM weir_source_errors WHERE source_name = 'dirty' ORDER BY \"offset\"",
        Duration::from_secs(10),
        |r| r.len() == 5,
    )
    .await;
    let offsets: Vec<&str> = errors
        .iter()
        .map(|r| r.split(" | ").next().unwrap_or(""))
        .collect();
    assert_eq!(offsets, vec!["1", "3", "4", "5", "7"], "{errors:?}");
    assert!(errors[2].contains("max_record_bytes"), "{}", errors[2]);
    assert!(errors[3].contains("source.max_future"), "{}", errors[3]);
    let stats = query_rows(
        &s,
        "SELECT records, errors, \"offset\" FROM weir_source_partitions",
    )
    .await;
    assert_eq!(stats, vec!["4 | 5 | 9"]);
    let counted = query_rows(
        &s,
        "SELECT bad_records FROM weir_sources WHERE name = 'dirty'",
    )
    .await;
    assert_eq!(counted, vec!["5"]);

    // bad_records = 'fail' stops the view's source with a message naming the record.
    exec(
        &s,
        &source_sql("strict", &broker.address, "dirty", ", bad_records = 'fail'"),
    )
    .await;
    exec(
        &s,
        "CREATE MATERIALIZED VIEW strict_v AS SELECT id FROM strict",
    )
    .await;
    let status = wait_for(
        &s,
        "SELECT status FROM weir_views WHERE name = 'strict_v'",
        Duration::from_secs(30),
        |r| one(r).starts_with("failed"),
    )
    .await;
    assert!(one(&status).contains("partition 0, offset 1"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_records() {
    let broker = Broker::start();
    broker.create_topic("csv", 1);
    let lines = [
        "1,1.5,2024-01-01T00:00:00Z",
        "2,oops,2024-01-01T00:00:01Z",
        "3,3.5,2024-01-01T00:00:02Z",
    ];
    let records: Vec<Record> = lines.iter().map(|l| Record::new(0, l.as_bytes())).collect();
    broker.producer().send("csv", &records).await;
    let s = session();
    exec(
        &s,
        &format!(
            "CREATE SOURCE csv_src (id BIGINT, v DOUBLE, ts TIMESTAMPTZ) \
             WITH (connector = 'kafka', topic = 'csv', properties.bootstrap.server = '{}') FORMAT PLAIN ENCODE CSV;
             CREATE MATERIALIZED VIEW csv_v AS SELECT id, v FROM csv_src;",
            broker.address
        ),
    )
    .await;
    let rows = wait_for(
        &s,
        "SELECT id, v FROM csv_v ORDER BY id",
        Duration::from_secs(30),
        |r| r.len() == 2,
    )
    .await;
    assert_eq!(rows, vec!["1 | 1.5", "3 | 3.5"]);
    let errors = query_rows(&s, "SELECT \"offset\", raw FROM weir_source_errors").await;
    assert_eq!(errors, vec!["1 | 2,oops,2024-01-01T00:00:01Z"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_errors_for_bad_definitions() {
    let broker = Broker::start();
    broker.create_topic("exists", 1);
    let s = session();
    let cases = [
        ("topic = 'missing'", "does not exist"),
        (
            "topic = 'exists', scan.startup.mode = 'sometime'",
            "scan.startup.mode",
        ),
        (
            "topic = 'exists', scan.startup.mode = 'timestamp'",
            "scan.startup.timestamp.millis",
        ),
        (
            "topic = 'exists', properties.no.such.setting = '1'",
            "no.such.setting",
        ),
        ("topic = 'exists', bad_records = 'ignore'", "bad_records"),
    ];
    for (options, expected) in cases {
        let sql = format!(
            "CREATE SOURCE bad (id BIGINT) WITH (connector = 'kafka', properties.bootstrap.server = '{}', {options})",
            broker.address
        );
        let err = s
            .execute_all(&sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{options} was accepted"));
        assert!(err.to_string().contains(expected), "{options}: {err}");
    }
    let unreachable = format!(
        "CREATE SOURCE bad (id BIGINT) WITH (connector = 'kafka', topic = 'x', properties.bootstrap.server = '127.0.0.1:{}', properties.socket.timeout.ms = '2000')",
        crate::harness::free_port()
    );
    let Err(err) = s.execute_all(&unreachable).await else {
        panic!("unreachable broker accepted")
    };
    assert!(
        err.to_string().contains("cannot reach the Kafka broker"),
        "{err}"
    );
    let Err(err) = s
        .execute_all(
            "CREATE SOURCE g INCLUDE offset WITH (connector = 'datagen', generator = 'sensors')",
        )
        .await
    else {
        panic!("INCLUDE on datagen accepted")
    };
    assert!(err.to_string().contains("INCLUDE"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_paused_for_10s_loses_and_duplicates_nothing() {
    let broker = Broker::start();
    broker.create_topic("paused", 3);
    let s = session();
    exec(
        &s,
        &format!(
            "{};
             CREATE MATERIALIZED VIEW got AS SELECT id, p, o FROM paused;",
            source_sql(
                "paused",
                &broker.address,
                "paused",
                ", properties.socket.timeout.ms = '3000'"
            )
        ),
    )
    .await;
    let producer = broker.producer();
    let mut ids: Vec<i64> = (0..3000).collect();
    ids.shuffle(&mut ChaCha8Rng::seed_from_u64(1));
    let records: Vec<Record> = ids
        .iter()
        .map(|&i| Record::new((i % 3) as i32, json(i, 0.0, T0 + i)))
        .collect();
    producer.send("paused", &records[..1000]).await;
    wait_for(
        &s,
        "SELECT count(*) FROM got",
        Duration::from_secs(30),
        |r| one(r) == "1000",
    )
    .await;

    broker.signal("-STOP");
    // Records sent while the broker is stopped wait in the producer.
    let sending = tokio::spawn({
        let records = records[1000..].to_vec();
        async move { producer.send("paused", &records).await }
    });
    let paused_at = Instant::now();
    let mut saw_retrying = false;
    while paused_at.elapsed() < Duration::from_secs(10) {
        let status = query_rows(&s, "SELECT DISTINCT status FROM weir_source_partitions").await;
        saw_retrying |= status.iter().any(|st| st.starts_with("retrying"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    broker.signal("-CONT");
    sending.await.expect("producer task");
    let sql = "SELECT count(*), count(DISTINCT id), count(DISTINCT (p, o)) FROM got";
    let rows = wait_for(&s, sql, Duration::from_secs(120), |r| {
        one(r).starts_with("3000 |")
    })
    .await;
    assert_eq!(one(&rows), "3000 | 3000 | 3000");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(one(&query_rows(&s, sql).await), "3000 | 3000 | 3000");
    assert!(
        saw_retrying,
        "weir_source_partitions never showed the outage"
    );
    let status = query_rows(&s, "SELECT DISTINCT status FROM weir_source_partitions").await;
    assert_eq!(status, vec!["running"]);
}

/// The README's "Reading from Kafka" commands, run as written against a test broker and a
/// `weir` server (addresses, the binary and the example file substituted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_kafka_section_works() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let section = readme
        .split("<!-- kafka:start -->")
        .nth(1)
        .and_then(|s| s.split("<!-- kafka:end -->").next());
    let section = section.expect("kafka markers in README");
    // Commands are the lines inside ```sh fences; a trailing backslash continues a command.
    let mut commands: Vec<String> = Vec::new();
    let mut inside = false;
    let mut current = String::new();
    for line in section.lines() {
        if line.starts_with("```") {
            inside = !inside;
            continue;
        }
        if !inside {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if !line.ends_with('\\') {
            commands.push(std::mem::take(&mut current));
        }
    }
    assert_eq!(commands.len(), 5, "{commands:?}");
    let broker = Broker::start();
    broker.create_topic("sensors", 3);
    let server = crate::harness::Server::start(&["--no-demo"]);
    let example =
        std::fs::read_to_string(root.join("examples/kafka_sensors.sql")).expect("example");
    let dir = tempfile::tempdir().expect("tempdir");
    let example_path = dir.path().join("kafka_sensors.sql");
    std::fs::write(
        &example_path,
        example.replace("127.0.0.1:9092", &broker.address),
    )
    .expect("write example");
    let substitute = |command: &str| {
        command
            .replace("127.0.0.1:9092", &broker.address)
            .replace("cargo run --release --", env!("CARGO_BIN_EXE_weir"))
            .replace("-p 5488", &format!("-p {}", server.port))
            .replace(
                "examples/kafka_sensors.sql",
                &example_path.display().to_string(),
            )
    };
    let run = |command: &str| {
        let out = std::process::Command::new("bash")
            .args(["-c", &substitute(command)])
            .env("WEIR_LOG_LEVEL", "warn")
            .output()
            .expect("bash");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{command}\n{text}");
        text
    };
    run(&commands[0]);
    run(&commands[1]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = run(&commands[2]);
        let errors = run(&commands[3]);
        let partitions = run(&commands[4]);
        let done = stats.contains("(3 rows)")
            && stats.contains("2026-01-01 00:00:30")
            && errors.contains("\"hot\"")
            && partitions.contains("running");
        if done {
            let s1 = stats
                .lines()
                .find(|l| l.trim_start().starts_with("s1") && l.contains("00:00:00.000000+00"));
            assert!(
                s1.is_some_and(|l| l.contains("| 2 ") || l.contains("|        2 |")),
                "{stats}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "README Kafka section:\n{stats}\n{errors}\n{partitions}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `CREATE TABLE … FORMAT UPSERT ENCODE JSON`: the latest value per message key, a tombstone
/// deletes, keys as JSON objects or plain text; a view over the table retracts what changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_topic_is_a_table_of_the_latest_value_per_key() {
    let broker = Broker::start();
    broker.create_topic("prices", 2);
    let session = session();
    exec(
        &session,
        &format!(
            "CREATE TABLE prices (sym TEXT, price DOUBLE PRECISION, venue TEXT, PRIMARY KEY (sym)) \
             WITH (connector = 'kafka', topic = 'prices', properties.bootstrap.server = '{}') \
             FORMAT UPSERT ENCODE JSON",
            broker.address
        ),
    )
    .await;
    exec(
        &session,
        "CREATE MATERIALIZED VIEW price_stats AS SELECT venue, count(*) AS n, sum(price) AS total, \
           max(price) AS hi FROM prices GROUP BY venue",
    )
    .await;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut model: std::collections::BTreeMap<String, (i64, String)> = Default::default();
    let mut records = Vec::new();
    for _ in 0..3000 {
        let sym = format!("S{:02}", rng.random_range(0..40));
        // The same key always goes to the same partition, as a keyed producer would send it.
        let partition = (sym.as_bytes()[2] % 2) as i32;
        let key = if rng.random_bool(0.5) {
            format!(r#"{{"sym": "{sym}"}}"#)
        } else {
            sym.clone()
        };
        let mut record = Record::new(partition, Vec::new());
        record.key = Some(key);
        if rng.random_bool(0.2) {
            record.tombstone = true;
            model.remove(&sym);
        } else {
            let price = rng.random_range(1..1000);
            let venue = ["x", "y", "z"][rng.random_range(0..3)].to_string();
            // The value may repeat the key column or leave it to the message key.
            record.payload = if rng.random_bool(0.5) {
                format!(r#"{{"sym": "{sym}", "price": {price}, "venue": "{venue}"}}"#)
            } else {
                format!(r#"{{"price": {price}, "venue": "{venue}"}}"#)
            }
            .into_bytes();
            model.insert(sym, (price, venue));
        }
        records.push(record);
    }
    producer(&broker.address).send("prices", &records).await;
    let expected: Vec<String> = model
        .iter()
        .map(|(sym, (price, venue))| format!("{sym} | {price} | {venue}"))
        .collect();
    wait_for(
        &session,
        "SELECT sym, price, venue FROM prices ORDER BY sym",
        Duration::from_secs(60),
        |rows| rows == expected.as_slice(),
    )
    .await;
    let mut per_venue: std::collections::BTreeMap<&str, (i64, i64, i64)> = Default::default();
    for (price, venue) in model.values() {
        let e = per_venue.entry(venue.as_str()).or_insert((0, 0, 0));
        e.0 += 1;
        e.1 += price;
        e.2 = e.2.max(*price);
    }
    let stats: Vec<String> = per_venue
        .iter()
        .map(|(v, (n, total, hi))| format!("{v} | {n} | {total} | {hi}"))
        .collect();
    wait_for(
        &session,
        "SELECT venue, n, total, hi FROM price_stats ORDER BY venue",
        Duration::from_secs(30),
        |rows| rows == stats.as_slice(),
    )
    .await;
    let refused = session
        .execute_all("INSERT INTO prices VALUES ('S00', 1, 'x')")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        refused.contains("its rows come from its topic"),
        "{refused}"
    );
}

/// `CREATE TABLE … FORMAT DEBEZIUM ENCODE JSON`: snapshot reads, creates, updates and deletes
/// (with and without the schema envelope, deletes whose `before` holds only the key, tombstones
/// after deletes, events of no known op) make the table the source database's table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debezium_topic_is_a_table_of_the_source_rows() {
    let broker = Broker::start();
    broker.create_topic("cdc.accounts", 1);
    let session = session();
    exec(
        &session,
        &format!(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner TEXT, balance DOUBLE PRECISION) \
             WITH (connector = 'kafka', topic = 'cdc.accounts', properties.bootstrap.server = '{}') \
             FORMAT DEBEZIUM ENCODE JSON",
            broker.address
        ),
    )
    .await;
    exec(
        &session,
        "CREATE MATERIALIZED VIEW balances AS SELECT owner, count(*) AS accounts, sum(balance) AS total \
           FROM accounts GROUP BY owner",
    )
    .await;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut model: std::collections::BTreeMap<i64, (String, i64)> = Default::default();
    let mut records = Vec::new();
    let row = |id: i64, owner: &str, balance: i64| {
        format!(r#"{{"id": {id}, "owner": "{owner}", "balance": {balance}}}"#)
    };
    for i in 0..2000 {
        let id = rng.random_range(0..60);
        let owner = ["ann", "bob", "cy"][rng.random_range(0..3)];
        let balance = rng.random_range(0..10_000);
        let (before, after, op) = match model.get(&id).cloned() {
            Some((o, b)) if rng.random_bool(0.3) => {
                model.remove(&id);
                // Without REPLICA IDENTITY FULL, `before` holds only the key.
                let before = if rng.random_bool(0.5) {
                    row(id, &o, b)
                } else {
                    format!(r#"{{"id": {id}}}"#)
                };
                (before, "null".to_string(), "d")
            }
            Some((o, b)) => {
                model.insert(id, (owner.to_string(), balance));
                (row(id, &o, b), row(id, owner, balance), "u")
            }
            None => {
                model.insert(id, (owner.to_string(), balance));
                (
                    "null".to_string(),
                    row(id, owner, balance),
                    if i < 100 { "r" } else { "c" },
                )
            }
        };
        let event = format!(
            r#"{{"before": {before}, "after": {after}, "op": "{op}", "ts_ms": 1700000000000, "source": {{"table": "accounts"}}}}"#
        );
        let value = if rng.random_bool(0.5) {
            format!(r#"{{"schema": {{"type": "struct"}}, "payload": {event}}}"#)
        } else {
            event
        };
        let mut record = Record::new(0, value.into_bytes());
        record.key = Some(format!(r#"{{"id": {id}}}"#));
        records.push(record);
        if op == "d" {
            let mut tombstone = Record::new(0, Vec::new());
            tombstone.key = Some(format!(r#"{{"id": {id}}}"#));
            tombstone.tombstone = true;
            records.push(tombstone);
        }
        if rng.random_bool(0.02) {
            records.push(Record::new(
                0,
                r#"{"op": "t", "before": null, "after": null}"#,
            ));
        }
    }
    producer(&broker.address)
        .send("cdc.accounts", &records)
        .await;
    let expected: Vec<String> = model
        .iter()
        .map(|(id, (owner, balance))| format!("{id} | {owner} | {balance}"))
        .collect();
    wait_for(
        &session,
        "SELECT id, owner, balance FROM accounts ORDER BY id",
        Duration::from_secs(60),
        |rows| rows == expected.as_slice(),
    )
    .await;
    let mut per_owner: std::collections::BTreeMap<&str, (i64, i64)> = Default::default();
    for (owner, balance) in model.values() {
        let e = per_owner.entry(owner.as_str()).or_default();
        e.0 += 1;
        e.1 += balance;
    }
    let want: Vec<String> = per_owner
        .iter()
        .map(|(o, (n, t))| format!("{o} | {n} | {t}"))
        .collect();
    wait_for(
        &session,
        "SELECT owner, accounts, total FROM balances ORDER BY owner",
        Duration::from_secs(30),
        |rows| rows == want.as_slice(),
    )
    .await;
}
