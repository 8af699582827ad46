//! Crash recovery: Kafka-fed views using every stateful operator (tumbling windows emitted on
//! close and on update, hopping windows, sessions, an interval join, retention, an updating
//! GROUP BY, and a view reading a view) while
//! the real `weir` binary is killed with SIGKILL at random moments and restarted on the same data
//! directory. After the final watermark every view must equal a DataFusion batch query over the
//! produced rows: no missing rows, no duplicates.
//!
//! `WEIR_CRASH_KILLS` sets the number of kills (20 by default; more for a nightly-style run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::broker::{Broker, Record};
use crate::crash_views::views;
use crate::harness::{Server, batch_rows, client_rows};

/// 2024-01-01T00:00:00Z in milliseconds.
const T0: i64 = 1_704_067_200_000;
const PARTITIONS: i32 = 3;
const ROWS_PER_PARTITION: i64 = 4000;

/// Rows per partition, in event-time order up to 2 s of jitter (less than the 5 s watermark
/// delay: no row is late however batches are cut), interleaved across partitions at random.
fn produced_rows(rng: &mut ChaCha8Rng) -> (Vec<Record>, RecordBatch) {
    let mut per_partition: Vec<Vec<(i64, i64, i64, i64)>> = vec![Vec::new(); PARTITIONS as usize];
    let mut id = 0;
    for rows in per_partition.iter_mut() {
        for i in 0..ROWS_PER_PARTITION {
            let ts = T0 + 10_000 + i * 50 - rng.random_range(0..2000);
            rows.push((id, rng.random_range(0..7), rng.random_range(0..1000), ts));
            id += 1;
        }
    }
    let mut records = Vec::new();
    let mut cursors = vec![0usize; PARTITIONS as usize];
    while cursors
        .iter()
        .enumerate()
        .any(|(p, c)| *c < per_partition[p].len())
    {
        let p = rng.random_range(0..PARTITIONS as usize);
        if let Some(&(id, k, v, ts)) = per_partition[p].get(cursors[p]) {
            records.push(Record::new(
                p as i32,
                format!(r#"{{"id": {id}, "k": {k}, "v": {v}, "ts": {ts}}}"#),
            ));
            cursors[p] += 1;
        }
    }
    let all: Vec<&(i64, i64, i64, i64)> = per_partition.iter().flatten().collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            false,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(all.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(all.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(all.iter().map(|r| r.2))),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(all.iter().map(|r| r.3))
                    .with_timezone("+00:00"),
            ),
        ],
    )
    .expect("oracle batch");
    (records, batch)
}

async fn oracle(batch: RecordBatch, sql: &str) -> Vec<String> {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).expect("mem table");
    ctx.register_table("readings", Arc::new(table))
        .expect("register");
    batch_rows(&ctx, sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_survive_sigkill_exactly_once() {
    let kills: usize = std::env::var("WEIR_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let broker = Broker::start();
    broker.create_topic("readings", PARTITIONS as u32);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (records, batch) = produced_rows(&mut rng);
    let producer = broker.producer();
    let data = tempfile::tempdir().expect("tempdir");
    let args = ["--no-demo", "--checkpoint-interval", "150ms"];

    let server = Server::start_in(data.path(), &args);
    let client = server.connect().await;
    let mut ddl = vec![format!(
        "CREATE SOURCE readings (id BIGINT, k BIGINT, v BIGINT, ts TIMESTAMP(3) WITH TIME ZONE, \
           WATERMARK FOR ts AS ts - INTERVAL '5 seconds') \
         WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{}', \
               source.idle_timeout = '1h') FORMAT PLAIN ENCODE JSON",
        broker.address
    )];
    ddl.extend(views().iter().map(|v| v.0.to_string()));
    // Sinks of the first view, killed with it: every row must reach the topics, and the Parquet
    // files must hold every row exactly once.
    let postgres = crate::postgres_server::PgServer::start();
    ddl.push(format!(
        "CREATE SINK per_window_pg FROM per_window WITH (connector = 'postgres', \
           connection = '{}', table = 'per_window', primary_key = 'window_start, k')",
        postgres.conninfo()
    ));
    let parquet_dir = data.path().join("parquet_out");
    ddl.push(format!(
        "CREATE SINK per_window_files FROM per_window WITH (connector = 'parquet', path = '{}', \
           partition_by = 'k', file.max_age = '0s')",
        parquet_dir.display()
    ));
    for (sink, topic, delivery) in [
        ("per_window_eo", "per_window_eo", "exactly_once"),
        ("per_window_alo", "per_window_alo", "at_least_once"),
    ] {
        broker.create_topic(topic, 1);
        ddl.push(format!(
            "CREATE SINK {sink} FROM per_window WITH (connector = 'kafka', topic = '{topic}', \
               properties.bootstrap.server = '{}', sink.delivery = '{delivery}')",
            broker.address
        ));
    }
    // Every change by key of an updating view (open windows included), exactly once: the
    // latest committed record per key must be the view's row, so a recovery neither lost nor
    // invented a change.
    broker.create_topic("live_upsert", 1);
    ddl.push(format!(
        "CREATE SINK live_upsert FROM live_windows WITH (connector = 'kafka', \
           topic = 'live_upsert', properties.bootstrap.server = '{}', \
           primary_key = 'window_start') FORMAT UPSERT ENCODE JSON",
        broker.address
    ));
    for statement in &ddl {
        client
            .simple_query(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    drop(client);

    // Produce in chunks; after each, let the server run a random while and kill it.
    let chunk = records.len().div_ceil(kills);
    let mut server = Some(server);
    let mut recovered = 0;
    for (i, part) in records.chunks(chunk).enumerate() {
        producer.send("readings", part).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..900))).await;
        if let Some(s) = server.take() {
            // No pipeline may have stopped on an error before the kill (a restart would hide it).
            let failed = client_rows(
                &s.connect().await,
                "SELECT name || ': ' || status FROM weir_views WHERE status LIKE 'failed%'",
            )
            .await;
            assert!(
                failed.is_empty(),
                "views failed before kill {i}: {failed:?}"
            );
            s.kill();
        }
        let restarted = Server::start_in(data.path(), &args);
        let client = restarted.connect().await;
        let from_checkpoint = client_rows(
            &client,
            "SELECT count(*) FROM weir_checkpoints WHERE status = 'recovered'",
        )
        .await;
        if from_checkpoint.first().map(String::as_str) == Some("1") {
            recovered += 1;
        }
        // Sometimes kill again straight away, while it is restoring and catching up.
        if i % 4 == 3 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
            restarted.kill();
            server = Some(Server::start_in(data.path(), &args));
        } else {
            server = Some(restarted);
        }
    }
    assert!(
        recovered >= kills / 2,
        "only {recovered} of {kills} restarts recovered from a checkpoint"
    );

    // The end of the data: a row ahead on every partition closes every window (rows end near
    // T0 + 210 s; the longest window is 20 s, the watermark 5 s behind).
    let end = T0 + 300_000;
    let markers: Vec<Record> = (0..PARTITIONS)
        .map(|p| Record::new(p, format!(r#"{{"id": -1, "k": -1, "v": 0, "ts": {end}}}"#)))
        .collect();
    producer.send("readings", &markers).await;
    let server = server.expect("server");
    let client = server.connect().await;
    let total = (PARTITIONS as i64 * ROWS_PER_PARTITION).to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = client_rows(&client, "SELECT sum(n) FROM per_window").await;
        let counted: i64 = n.first().and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(
            counted <= PARTITIONS as i64 * ROWS_PER_PARTITION,
            "rows counted twice: sum(n) = {counted}"
        );
        let hop = client_rows(&client, "SELECT count(*) FROM hopping").await;
        if n.first() == Some(&total) && hop.first().is_some_and(|h| h != "0") {
            // Let the last windows of the other views land too.
            tokio::time::sleep(Duration::from_millis(500)).await;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "views did not catch up: sum(n) = {n:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No row is late (a recovery that put time ahead would make some): checked first, as late
    // rows also make the views below differ from their oracles.
    let late = client_rows(
        &client,
        "SELECT name || ': ' || late_rows FROM weir_views WHERE late_rows > 0",
    )
    .await;
    assert!(late.is_empty(), "late rows: {late:?}");
    // Views catch up at their own pace (a join is the slowest in a debug build): each gets a
    // while to reach its oracle; what it holds then must equal it.
    for (create, query, want_sql) in views() {
        let want = oracle(batch.clone(), want_sql).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = client_rows(&client, query).await;
        while got != want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            got = client_rows(&client, query).await;
        }
        assert_eq!(got.len(), want.len(), "rows of {create}");
        assert_eq!(got, want, "{create}");
    }

    let late = client_rows(&client, "SELECT sum(late_rows) FROM weir_views").await;
    assert_eq!(late, vec!["0".to_string()]);

    // The sinks: every row of per_window, and nothing else. The exactly-once topic is read with
    // read_committed visibility (applied from the log's own transaction markers, see
    // `committed_reader`) and must hold each row once; the at-least-once topic may repeat rows.
    let (_, query, _) = views()[0];
    let want: std::collections::BTreeSet<String> =
        client_rows(&client, query).await.into_iter().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = client_rows(&client, "SELECT sum(rows_pending) FROM weir_sinks").await;
        if pending.first().map(String::as_str) == Some("0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sinks did not catch up: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ctx = SessionContext::new();
    let files = ctx
        .read_parquet(
            parquet_dir.to_string_lossy().as_ref(),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .expect("parquet files");
    ctx.register_table("files", files.into_view())
        .expect("register");
    let mut in_files = batch_rows(
        &ctx,
        "SELECT CAST(to_unixtime(window_start) AS BIGINT), k, n, s FROM files ORDER BY 1, 2",
    )
    .await;
    in_files.sort();
    let mut want_sorted: Vec<String> = want.iter().cloned().collect();
    want_sorted.sort();
    assert_eq!(in_files, want_sorted, "Parquet sink files");
    let pg = postgres.connect().await;
    let mut in_table: Vec<String> = pg
        .simple_query("SELECT extract(epoch from window_start)::bigint, k, n, s FROM per_window")
        .await
        .expect("PostgreSQL table")
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..4)
                    .map(|i| r.get(i).unwrap_or("NULL"))
                    .collect::<Vec<_>>()
                    .join(" | "),
            ),
            _ => None,
        })
        .collect();
    in_table.sort();
    assert_eq!(in_table, want_sorted, "PostgreSQL sink table");
    let row_of = |payload: &str| {
        let v: serde_json::Value = serde_json::from_str(payload).expect("JSON");
        let start = chrono::DateTime::parse_from_rfc3339(v["window_start"].as_str().unwrap_or(""))
            .expect("window_start")
            .timestamp();
        format!("{start} | {} | {} | {}", v["k"], v["n"], v["s"])
    };
    for (topic, exactly_once) in [("per_window_eo", true), ("per_window_alo", false)] {
        let read = crate::committed_reader::read_committed(&broker.address, topic, 1);
        let got: Vec<String> = read
            .records
            .iter()
            .map(|r| row_of(r.payload.as_deref().unwrap_or("null")))
            .collect();
        let distinct: std::collections::BTreeSet<String> = got.iter().cloned().collect();
        let missing: Vec<&String> = want.difference(&distinct).take(5).collect();
        let extra: Vec<&String> = distinct.difference(&want).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{topic}: missing {missing:?}, extra {extra:?}"
        );
        eprintln!(
            "{topic}: {} rows, {} repeated, {} in aborted transactions, {} in open ones, \
             after {kills} kills",
            want.len(),
            got.len() - distinct.len(),
            read.aborted,
            read.open
        );
        if exactly_once {
            assert_eq!(got.len(), distinct.len(), "{topic} repeats committed rows");
            assert_eq!(read.open, 0, "{topic} has a transaction left open");
        }
    }
    let read = crate::committed_reader::read_committed(&broker.address, "live_upsert", 1);
    let mut latest = std::collections::BTreeMap::new();
    for r in &read.records {
        let key = r.key.clone().expect("UPSERT records have keys");
        match &r.payload {
            Some(p) => {
                let v: serde_json::Value = serde_json::from_str(p).expect("JSON");
                let start =
                    chrono::DateTime::parse_from_rfc3339(v["window_start"].as_str().unwrap_or(""))
                        .expect("window_start")
                        .timestamp();
                latest.insert(
                    key,
                    format!("{start} | {} | {} | {}", v["n"], v["top"], v["first_id"]),
                )
            }
            None => latest.remove(&key),
        };
    }
    let mut upserted: Vec<String> = latest.into_values().collect();
    upserted.sort();
    let (_, live_query, _) = views()[1];
    let mut live_rows = client_rows(&client, live_query).await;
    live_rows.sort();
    eprintln!(
        "live_upsert: {} records for {} rows, {} in aborted transactions",
        read.records.len(),
        upserted.len(),
        read.aborted
    );
    assert_eq!(read.open, 0, "live_upsert has a transaction left open");
    assert_eq!(
        upserted, live_rows,
        "live_upsert: the latest record per key"
    );
}

/// The same statements on an in-memory database that never stops: the crash-free run.
async fn crash_free(statements: &str, query: &str, total: &str) -> Vec<String> {
    let session = weir::database().build().expect("database").session();
    session.execute_all(statements).await.expect("statements");
    crate::harness::wait_first_row(&session, "SELECT sum(n) FROM counts", total).await;
    crate::harness::query_rows(&session, query).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagen_view_resumes_mid_stream_like_a_run_that_never_stopped() {
    // A paced generator with no start_time: the catalog pins the one chosen at creation, so the
    // regenerated rows after the checkpoint are the same rows.
    let statements = "
        CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
            WATERMARK FOR ts AS ts - INTERVAL '1 second')
          WITH (connector = 'datagen', generator = 'bids', rate = '40000', events = '60000');
        CREATE MATERIALIZED VIEW counts AS
          SELECT window_start, count(*) AS n, sum(price) AS p, max(auction) AS a
          FROM TUMBLE(bids, ts, INTERVAL '1 second') GROUP BY window_start;
        CREATE MATERIALIZED VIEW doomed AS SELECT auction % 3 AS k, count(*) AS n FROM bids GROUP BY auction % 3;";
    let query = "SELECT to_unixtime(window_start) - (SELECT min(to_unixtime(window_start)) FROM counts), n, p, a \
                 FROM counts ORDER BY 1";
    let data = tempfile::tempdir().expect("tempdir");
    let (db, persisted) = weir::database()
        .open(weir_sql::DatabaseOptions::new(data.path()))
        .await
        .expect("open");
    assert_eq!(persisted, 0);
    let session = db.session();
    session.execute_all(statements).await.expect("statements");
    // Part-way through: checkpoint, then drop a view and create another under the same name.
    tokio::time::sleep(Duration::from_millis(600)).await;
    session.execute_all("CHECKPOINT").await.expect("checkpoint");
    let before = crate::harness::query_rows(
        &session,
        "SELECT rows_in FROM weir_views WHERE name = 'counts'",
    )
    .await;
    session
        .execute_all("DROP MATERIALIZED VIEW doomed; CREATE MATERIALIZED VIEW doomed AS SELECT count(*) AS n FROM bids;")
        .await
        .expect("re-create");
    drop(session);
    drop(db);

    let (db, persisted) = weir::database()
        .open(weir_sql::DatabaseOptions::new(data.path()))
        .await
        .expect("reopen");
    assert_eq!(persisted, 3);
    let session = db.session();
    let recovered = crate::harness::query_rows(
        &session,
        "SELECT status FROM weir_checkpoints WHERE status = 'recovered'",
    )
    .await;
    assert_eq!(recovered, vec!["recovered".to_string()]);
    let resumed = crate::harness::query_rows(
        &session,
        "SELECT rows_in FROM weir_views WHERE name = 'counts'",
    )
    .await;
    assert!(
        resumed.first().and_then(|r| r.parse::<u64>().ok()) > Some(0),
        "restored rows_in {resumed:?} (had {before:?})"
    );
    crate::harness::wait_first_row(&session, "SELECT sum(n) FROM counts", "60000").await;
    let got = crate::harness::query_rows(&session, query).await;
    // The re-created `doomed` started over from the source's beginning, not from the old state.
    crate::harness::wait_first_row(&session, "SELECT n FROM doomed", "60000").await;
    let want = crash_free(statements, query, "60000").await;
    assert_eq!(got, want);
    // Once a checkpoint has the final rows in segments they leave memory; queries read the files.
    session.execute_all("CHECKPOINT").await.expect("checkpoint");
    let table = Arc::clone(&db.catalog().view("counts").expect("view").table);
    assert_eq!(table.memory_rows(), 0);
    assert!(table.appended_rows() > 0);
    assert_eq!(crate::harness::query_rows(&session, query).await, want);
}

/// moto's S3 server from the repository's `.venv` (installed by `scripts/test.sh`), on a free
/// loopback port, with one bucket; killed on drop.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
}

impl S3Server {
    fn start(bucket: &str) -> S3Server {
        let binary =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
        assert!(
            binary.is_file(),
            "no {}: run ./scripts/test.sh, which installs moto[server]",
            binary.display()
        );
        let port = crate::harness::free_port();
        let child = std::process::Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // CreateBucket is a bare PUT on the bucket's path (moto accepts it unsigned).
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let request = format!(
                    "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let mut response = String::new();
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut response).is_ok()
                {
                    assert!(
                        response.starts_with("HTTP/1.1 200")
                            || response.starts_with("HTTP/1.0 200"),
                        "{response}"
                    );
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_in_an_s3_compatible_store_survive_sigkill() {
    let s3 = S3Server::start("weir");
    let env = [
        ("AWS_ENDPOINT", s3.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let unused = tempfile::tempdir().expect("tempdir");
    let args = [
        "--no-demo",
        "--checkpoint-url",
        "s3://weir/prod/weir",
        "--checkpoint-interval",
        "200ms",
    ];
    let server = Server::start_with_env(unused.path(), &args, &env);
    let client = server.connect().await;
    for statement in [
        "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1 second')
           WITH (connector = 'datagen', generator = 'bids', rate = '50000', events = '100000')",
        "CREATE MATERIALIZED VIEW counts AS SELECT window_start, count(*) AS n, sum(price) AS p
           FROM TUMBLE(bids, ts, INTERVAL '1 second') GROUP BY window_start",
    ] {
        client.simple_query(statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    client.simple_query("CHECKPOINT").await.expect("checkpoint");
    server.kill();

    let server = Server::start_with_env(unused.path(), &args, &env);
    let client = server.connect().await;
    assert_eq!(
        client_rows(
            &client,
            "SELECT status FROM weir_checkpoints WHERE status = 'recovered'"
        )
        .await,
        vec!["recovered"]
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while client_rows(&client, "SELECT sum(n) FROM counts").await != vec!["100000"] {
        assert!(
            Instant::now() < deadline,
            "counts did not reach 100000 rows"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        client_rows(&client, "SELECT count(*) FROM counts").await,
        vec!["10"]
    );
    // Nothing was written to the local data directory.
    assert_eq!(std::fs::read_dir(unused.path()).expect("dir").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomaly_detector_state_resumes_from_a_checkpoint_like_a_run_that_never_stopped() {
    // Per-key detector state (sliding MAD windows, EWMA, CUSUM sums, alert phases) and rows
    // still waiting for the watermark are checkpointed mid-stream and restored.
    let statements = "
        CREATE SOURCE plant (sensor_id TEXT, temperature DOUBLE PRECISION, ts TIMESTAMPTZ,
            WATERMARK FOR ts AS ts - INTERVAL '2 seconds')
          WITH (connector = 'datagen', sensors = '8', rate = '20000', events = '40000', seed = '3',
                anomaly_rate = '0.01', start_time = '2024-01-01T00:00:00Z');
        CREATE MATERIALIZED VIEW scored AS
          SELECT sensor_id, ts,
                 anomaly_mad(temperature, window => 100) OVER w AS mad,
                 anomaly_zscore(temperature, method => 'ewma') OVER w AS z,
                 changepoint_cusum(temperature) OVER w AS shift
          FROM plant WINDOW w AS (PARTITION BY sensor_id ORDER BY ts);
        CREATE MATERIALIZED VIEW alerts AS
          SELECT sensor_id, ts, a['event'] AS event FROM (
            SELECT sensor_id, ts, anomaly_alert(mad, cooldown => 5) OVER (PARTITION BY sensor_id ORDER BY ts) AS a FROM scored)
          WHERE a IS NOT NULL;
        CREATE MATERIALIZED VIEW counts AS SELECT count(*) AS n FROM scored;";
    let query = "SELECT sensor_id, arrow_cast(ts, 'Int64') - (SELECT min(arrow_cast(ts, 'Int64')) FROM scored), \
                 mad['score'], mad['severity'], z['score'], shift['severity'] FROM scored ORDER BY 1, 2";
    let alerts = "SELECT sensor_id, arrow_cast(ts, 'Int64') - (SELECT min(arrow_cast(ts, 'Int64')) FROM scored), event \
                  FROM alerts ORDER BY 1, 2";
    let data = tempfile::tempdir().expect("tempdir");
    let (db, _) = weir::database()
        .open(weir_sql::DatabaseOptions::new(data.path()))
        .await
        .expect("open");
    let session = db.session();
    session.execute_all(statements).await.expect("statements");
    tokio::time::sleep(Duration::from_millis(700)).await;
    session.execute_all("CHECKPOINT").await.expect("checkpoint");
    let state = crate::harness::query_rows(
        &session,
        "SELECT sum(rows) FROM weir_checkpoint_state WHERE view = 'scored' AND operator = 'over window'",
    )
    .await;
    assert!(
        state.first().and_then(|r| r.parse::<u64>().ok()) > Some(0),
        "over-window state in the checkpoint: {state:?}"
    );
    drop(session);
    drop(db);

    let (db, persisted) = weir::database()
        .open(weir_sql::DatabaseOptions::new(data.path()))
        .await
        .expect("reopen");
    assert_eq!(persisted, 4);
    let session = db.session();
    crate::harness::wait_first_row(&session, "SELECT n FROM counts", "40000").await;
    let got = crate::harness::query_rows(&session, query).await;
    let got_alerts = crate::harness::query_rows(&session, alerts).await;
    assert_eq!(got.len(), 40000);

    let fresh = weir::database().build().expect("database").session();
    fresh.execute_all(statements).await.expect("statements");
    crate::harness::wait_first_row(&fresh, "SELECT n FROM counts", "40000").await;
    let want = crate::harness::query_rows(&fresh, query).await;
    let first_difference = got.iter().zip(&want).position(|(a, b)| a != b);
    assert_eq!(
        first_difference,
        None,
        "restored {:?} vs uninterrupted {:?}",
        first_difference.map(|i| &got[i]),
        first_difference.map(|i| &want[i])
    );
    assert_eq!(got_alerts, crate::harness::query_rows(&fresh, alerts).await);
    assert!(got_alerts.len() >= 2, "alerts {got_alerts:?}");
}
