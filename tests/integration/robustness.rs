//! Regression tests for bugs that lost rows or took the server down, run against the real `weir`
//! binary: malformed records through a real broker, OVER without PARTITION BY, a failed view,
//! statements too deep to plan, and malformed protocol frames.

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::broker::{Broker, Record};
use crate::harness::{Server, client_rows};

/// Polls `sql` until its rows satisfy `done`; fails after `timeout` showing the last rows.
async fn wait_for(
    client: &tokio_postgres::Client,
    sql: &str,
    timeout: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = client_rows(client, sql).await;
        if done(&rows) {
            return rows;
        }
        if Instant::now() >= deadline {
            let views = client_rows(client, "SELECT name, status, rows_in FROM weir_views").await;
            panic!("timed out waiting for {sql}; last rows: {rows:?}; views: {views:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

/// Malformed JSON records of every kind the decoder has to survive.
fn garbage(rng: &mut ChaCha8Rng, id: i64) -> Vec<u8> {
    let valid = format!(r#"{{"id": {id}, "v": 1.5, "ts": 1704067200000}}"#);
    match rng.random_range(0..10) {
        // Truncated anywhere: the next record must not pay for it.
        0..=3 => {
            let cut = rng.random_range(1..valid.len() - 1);
            valid.as_bytes()[..cut].to_vec()
        }
        4 => br#"{"id": "not a number", "v": 1, "ts": 0}"#.to_vec(),
        5 => b"\xff\xfe{\"id\": 1, \"v\": \xc3\x28}".to_vec(),
        6 => format!(r#"{{"id": 1{}, "ts": 0}}"#, "9".repeat(400)).into_bytes(),
        7 => br#"{"id": 1}{"id": 2}"#.to_vec(),
        8 => b"[1, 2, 3".to_vec(),
        _ => b"plain text, not JSON".to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_cost_only_themselves_and_are_counted_once() {
    const VALID: i64 = 3_000;
    const BAD: usize = 6_000;
    let broker = Broker::start();
    broker.create_topic("dirty", 2);
    broker.create_topic("dirty_csv", 1);
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    // Valid and malformed records interleaved at random over two partitions; a truncated record
    // is right before a valid one hundreds of times.
    let mut payloads: Vec<Vec<u8>> = (0..VALID)
        .map(|id| format!(r#"{{"id": {id}, "v": 1.5, "ts": 1704067200000}}"#).into_bytes())
        .collect();
    payloads.extend((0..BAD).map(|i| garbage(&mut rng, i as i64)));
    payloads.shuffle(&mut rng);
    let records: Vec<Record> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| Record::new((i % 2) as i32, p.clone()))
        .collect();
    broker.producer().send("dirty", &records).await;
    // CSV: unterminated quotes, wrong types, wrong field counts, blank records.
    let mut csv = Vec::new();
    let mut csv_valid = 0;
    for i in 0..600 {
        let line = match i % 6 {
            0 => format!("{i},\"open quote,2024-01-01T00:00:00Z"),
            1 => format!("{i},oops,2024-01-01T00:00:00Z"),
            2 => format!("{i},1.5"),
            3 => String::new(),
            _ => {
                csv_valid += 1;
                format!("{i},\"{i}.5\",2024-01-01T00:00:00Z")
            }
        };
        csv.push(Record::new(0, line.into_bytes()));
    }
    broker.producer().send("dirty_csv", &csv).await;

    let server = Server::start(&["--no-demo"]);
    let client = server.connect().await;
    let source = |name: &str, topic: &str, extra: &str, encode: &str| {
        format!(
            "CREATE SOURCE {name} (id BIGINT, v DOUBLE, ts TIMESTAMP(3) WITH TIME ZONE) \
             WITH (connector = 'kafka', topic = '{topic}', properties.bootstrap.server = '{}'{extra}) \
             FORMAT PLAIN ENCODE {encode}",
            broker.address
        )
    };
    client
        .batch_execute(&format!(
            "{};
             CREATE MATERIALIZED VIEW ids AS SELECT id FROM dirty;
             CREATE MATERIALIZED VIEW per_partition AS SELECT id % 2 AS half, count(*) AS n FROM dirty GROUP BY id % 2;
             {};
             CREATE MATERIALIZED VIEW csv_ids AS SELECT id, v FROM dirty_csv;",
            source("dirty", "dirty", "", "JSON"),
            source("dirty_csv", "dirty_csv", "", "CSV"),
        ))
        .await
        .expect("create");
    let want = VALID.to_string();
    wait_for(
        &client,
        "SELECT count(*) FROM ids",
        Duration::from_secs(120),
        |r| r == [want.as_str()],
    )
    .await;
    wait_for(
        &client,
        "SELECT sum(n) FROM per_partition",
        Duration::from_secs(60),
        |r| r == [want.as_str()],
    )
    .await;
    assert_eq!(
        client_rows(
            &client,
            "SELECT count(DISTINCT id), min(id), max(id) FROM ids"
        )
        .await,
        vec![format!("{VALID} | 0 | {}", VALID - 1)]
    );
    // Each bad record once, however many views read the source.
    let bad = BAD.to_string();
    wait_for(
        &client,
        "SELECT bad_records FROM weir_sources WHERE name = 'dirty'",
        Duration::from_secs(30),
        |r| r == [bad.as_str()],
    )
    .await;
    assert_eq!(
        client_rows(
            &client,
            "SELECT count(*), count(DISTINCT (\"partition\", \"offset\")) FROM weir_source_errors WHERE source_name = 'dirty'"
        )
        .await,
        vec![format!("{BAD} | {BAD}")]
    );
    let blamed_valid = client_rows(
        &client,
        "SELECT count(*) FROM weir_source_errors WHERE source_name = 'dirty' AND raw LIKE '{\"id\": %, \"v\": 1.5, \"ts\": 1704067200000}'",
    )
    .await;
    assert_eq!(blamed_valid, vec!["0"], "a valid record was blamed");

    let csv_want = csv_valid.to_string();
    wait_for(
        &client,
        "SELECT count(*) FROM csv_ids",
        Duration::from_secs(60),
        |r| r == [csv_want.as_str()],
    )
    .await;
    assert_eq!(
        client_rows(&client, "SELECT count(*) FROM csv_ids WHERE v <> id + 0.5").await,
        vec!["0"]
    );
    wait_for(
        &client,
        "SELECT bad_records FROM weir_sources WHERE name = 'dirty_csv'",
        Duration::from_secs(30),
        |r| r == [(600 - csv_valid).to_string().as_str()],
    )
    .await;

    // A CREATE that waits for the topic's history fails with the reason (here: bad_records =
    // 'fail') and leaves no view behind.
    let err = client
        .batch_execute(&format!(
            "{}; CREATE MATERIALIZED VIEW strict_first AS SELECT id FROM strict",
            source("strict", "dirty", ", bad_records = 'fail'", "JSON")
        ))
        .await
        .expect_err("the history has a bad record");
    assert_eq!(sqlstate(&err), "55000", "{err:?}");
    assert!(format!("{err:?}").contains("bad record"), "{err:?}");
    wait_for(
        &client,
        "SELECT count(*) FROM weir_views WHERE name = 'strict_first'",
        Duration::from_secs(10),
        |r| r == ["0"],
    )
    .await;
    // A view that fails while running (created in the background) says so in weir_views and to
    // queries on it; the other views keep running.
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW strict_ids WITH (background = true) AS SELECT id FROM strict",
        )
        .await
        .expect("strict");
    wait_for(
        &client,
        "SELECT status FROM weir_views WHERE name = 'strict_ids'",
        Duration::from_secs(60),
        |r| r.first().is_some_and(|s| s.starts_with("failed")),
    )
    .await;
    let err = client
        .simple_query("SELECT count(*) FROM strict_ids")
        .await
        .expect_err("a failed view answers with its failure");
    assert_eq!(sqlstate(&err), "55000", "{err:?}");
    let message = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(
        message.contains("strict_ids") && message.contains("bad record"),
        "{message}"
    );
    assert_eq!(
        client_rows(&client, "SELECT count(*) FROM ids").await,
        vec![want]
    );
    assert_eq!(
        client_rows(&client, "SELECT status FROM weir_views WHERE name = 'ids'").await,
        vec!["running"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_without_partition_by_runs() {
    let server = Server::start(&["--no-demo"]);
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE SOURCE s (sensor_id TEXT, temperature DOUBLE PRECISION, ts TIMESTAMPTZ, \
               WATERMARK FOR ts AS ts - INTERVAL '1 second') \
             WITH (connector = 'datagen', sensors = '3', rate = '200');
             CREATE MATERIALIZED VIEW lagged AS \
               SELECT sensor_id, ts, lag(temperature) OVER (ORDER BY ts) AS prev FROM s;
             CREATE MATERIALIZED VIEW scored AS \
               SELECT ts, anomaly_zscore(temperature) OVER (ORDER BY ts) AS r FROM s;
             CREATE MATERIALIZED VIEW constant_key AS \
               SELECT ts, anomaly_zscore(temperature) OVER (PARTITION BY 'x' ORDER BY ts) AS r FROM s;",
        )
        .await
        .expect("create");
    for view in ["lagged", "scored", "constant_key"] {
        wait_for(
            &client,
            &format!("SELECT count(*) > 100 FROM {view}"),
            Duration::from_secs(60),
            |r| r == ["t"],
        )
        .await;
    }
    // One stream, in event-time order: each row's lag is the row before it.
    let rows = client_rows(
        &client,
        "SELECT count(*) FILTER (WHERE prev IS NULL) FROM lagged",
    )
    .await;
    assert_eq!(rows, vec!["1"], "only the first row has no predecessor");
    assert_eq!(
        client_rows(&client, "SELECT DISTINCT status FROM weir_views").await,
        vec!["running"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_too_deep_to_plan_are_refused_not_fatal() {
    let mut server = Server::start(&["--no-demo"]);
    let client = server.connect().await;
    let chain = |term: &str, op: &str, n: usize| format!("SELECT {}", vec![term; n].join(op));
    // Long but allowed: answered.
    // 2,000 terms used to overflow a worker's stack and abort the process.
    let sum = client_rows(&client, &chain("1", "+", 2_000)).await;
    assert_eq!(sum, vec!["2000"]);
    let all = client_rows(&client, &chain("true", " AND ", 1_000)).await;
    assert_eq!(all, vec!["t"]);
    // Too long: 54001, over both protocols, and the server keeps serving.
    for sql in [
        chain("1", "+", 2_100),
        chain("true", " AND ", 100_000),
        format!("SELECT 1{}", "::int".repeat(20_000)),
        format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000)),
    ] {
        let err = client.simple_query(&sql).await.expect_err("too complex");
        assert_eq!(sqlstate(&err), "54001", "{err:?}");
        let err = client.query(&sql, &[]).await.expect_err("too complex");
        assert_eq!(sqlstate(&err), "54001", "{err:?}");
    }
    assert!(server.alive(), "the server died");
    assert_eq!(client_rows(&client, "SELECT 41 + 1").await, vec!["42"]);
}

/// A client speaking the protocol by hand: start-up, then raw bytes.
async fn raw_client(port: u16) -> TcpStream {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0weir\0database\0weir\0\0");
    let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    startup.extend_from_slice(&body);
    sock.write_all(&startup).await.expect("startup");
    let mut seen = Vec::new();
    while !seen.windows(6).any(|w| w == b"Z\0\0\0\x05I") {
        let mut buf = [0u8; 4096];
        let n = sock.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed during start-up");
        seen.extend_from_slice(&buf[..n]);
    }
    sock
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Everything the server sends until it closes the connection (or goes quiet for 5 s): the
/// message types, and the SQLSTATE of each ErrorResponse.
async fn replies(sock: &mut TcpStream) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let closed = loop {
        let mut buf = [0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let mut messages = Vec::new();
    let mut i = 0;
    while i + 5 <= out.len() {
        let kind = out[i];
        let len = i32::from_be_bytes([out[i + 1], out[i + 2], out[i + 3], out[i + 4]]) as usize;
        let body = &out[i + 5..(i + 1 + len).min(out.len())];
        if kind == b'E' {
            let code = body
                .split(|b| *b == 0)
                .find(|f| f.first() == Some(&b'C'))
                .map(|f| String::from_utf8_lossy(&f[1..]).to_string())
                .unwrap_or_default();
            messages.push(format!("E{code}"));
        } else {
            messages.push((kind as char).to_string());
        }
        i += 1 + len;
    }
    (messages, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protocol_frames_get_an_error_and_a_clean_close() {
    let mut server = Server::start(&["--no-demo"]);
    let bind = |params: &[u8]| {
        let mut b = b"\0\0".to_vec();
        b.extend_from_slice(params);
        frame(b'B', &b)
    };
    let mut huge_parameter = 0i16.to_be_bytes().to_vec();
    huge_parameter.extend_from_slice(&1i16.to_be_bytes());
    huge_parameter.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
    huge_parameter.extend_from_slice(&0i16.to_be_bytes());
    let mut parse_without_types = b"\0SELECT $1\0".to_vec();
    parse_without_types.extend_from_slice(&32_767i16.to_be_bytes());
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    for (kind, length) in [(b'Q', 0i32), (b'P', 3), (b'S', 1), (b'E', 2)] {
        let mut f = vec![kind];
        f.extend_from_slice(&length.to_be_bytes());
        cases.push(("a length below 4", f));
    }
    cases.push(("a parameter longer than the message", bind(&huge_parameter)));
    cases.push(("a negative parameter count", bind(&(-1i16).to_be_bytes())));
    cases.push((
        "announced parameter types never sent",
        frame(b'P', &parse_without_types),
    ));
    cases.push(("a query without its terminator", frame(b'Q', b"SELECT 1")));
    for (what, bytes) in cases {
        let mut sock = raw_client(server.port).await;
        sock.write_all(&bytes).await.expect("send");
        let (messages, closed) = replies(&mut sock).await;
        assert_eq!(messages, vec!["E08P01"], "{what}");
        assert!(closed, "{what}: the connection stays open");
    }

    // Execute with max_rows = -1 means every row, as in PostgreSQL.
    let mut sock = raw_client(server.port).await;
    let mut parse = b"\0SELECT 7\0".to_vec();
    parse.extend_from_slice(&0i16.to_be_bytes());
    let mut bytes = frame(b'P', &parse);
    bytes.extend(bind(&[0, 0, 0, 0, 0, 0]));
    let mut execute = b"\0".to_vec();
    execute.extend_from_slice(&(-1i32).to_be_bytes());
    bytes.extend(frame(b'E', &execute));
    bytes.extend(frame(b'S', b""));
    sock.write_all(&bytes).await.expect("send");
    let (messages, closed) = replies(&mut sock).await;
    assert_eq!(messages, vec!["1", "2", "D", "C", "Z"]);
    assert!(!closed);

    assert!(server.alive(), "the server died");
    let client = server.connect().await;
    assert_eq!(client_rows(&client, "SELECT 1").await, vec!["1"]);
}
