//! End to end: the real `weir` binary, driven by psql (the README walkthrough, verbatim) and by
//! tokio-postgres over the simple and extended protocols; bad input and vanishing clients leave
//! the server serving.

use std::time::Duration;

use crate::harness::{Server, psql_command};

/// The SQL statements of the README walkthrough (the block between the walkthrough markers).
fn walkthrough_statements() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("<!-- walkthrough:start -->")
        .expect("walkthrough start marker");
    let end = readme
        .find("<!-- walkthrough:end -->")
        .expect("walkthrough end marker");
    let block = &readme[start..end];
    let sql_start = block.find("```sql").expect("sql block") + "```sql".len();
    let sql_end = block[sql_start..].find("```").expect("end of sql block") + sql_start;
    block[sql_start..sql_end]
        .split(";\n")
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .map(|s| s.trim().trim_end_matches(';').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn psql(server: &Server, sql: &str) -> (bool, String) {
    let out = psql_command(server)
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql must be installed (the test command installs postgresql-client)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_works_in_psql() {
    let server = Server::start(&[]);
    let statements = walkthrough_statements();
    assert!(
        statements.len() >= 4,
        "walkthrough too short: {statements:?}"
    );
    for sql in &statements {
        // Views fill as data arrives: give each statement a few tries before calling it broken.
        let mut last = String::new();
        let mut ok = false;
        for _ in 0..50 {
            let (success, text) = psql(&server, sql);
            last = text;
            if success && !last.contains("(0 rows)") {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(ok, "walkthrough statement failed in psql:\n{sql}\n{last}");
    }
    let (_, views) = psql(&server, "SHOW MATERIALIZED VIEWS");
    for v in [
        "sensor_stats_10s",
        "equipment_1m",
        "hot_readings",
        "my_counts",
    ] {
        assert!(
            views.contains(v),
            "{v} missing from SHOW MATERIALIZED VIEWS:\n{views}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_and_extended_protocols() {
    let server = Server::start(&["--no-demo"]);
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE SOURCE s (sensor_id TEXT, temperature DOUBLE PRECISION, ts TIMESTAMPTZ, \
               WATERMARK FOR ts AS ts - INTERVAL '1 second') \
             WITH (connector = 'datagen', sensors = '5', rate = 'unbounded', events = '5000', \
                   start_time = '2024-01-01T00:00:00Z'); \
             CREATE MATERIALIZED VIEW w AS SELECT sensor_id, window_start, count(*) AS n, avg(temperature) AS t \
               FROM TUMBLE(s, ts, INTERVAL '10 seconds') GROUP BY sensor_id, window_start",
        )
        .await
        .expect("ddl over the simple protocol");
    let mut finished = false;
    for _ in 0..100 {
        let rows = client
            .simple_query("SELECT status FROM weir_views WHERE name = 'w'")
            .await
            .expect("status");
        if rows.iter().any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("finished"))) {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(finished, "view did not finish");
    // Extended protocol: Parse/Describe/Bind with a typed parameter, binary results.
    let statement = client.prepare("SELECT sensor_id, window_start, n, t FROM w WHERE n >= $1 ORDER BY sensor_id, window_start").await.expect("prepare");
    assert_eq!(statement.params(), &[tokio_postgres::types::Type::INT8]);
    let rows = client.query(&statement, &[&10i64]).await.expect("query");
    // 5 sensors, one reading each per second of event time: 1000 s = 100 windows per sensor.
    assert_eq!(rows.len(), 500);
    let first_sensor: String = rows[0].get(0);
    let n: i64 = rows[0].get(2);
    let t: f64 = rows[0].get(3);
    assert_eq!(first_sensor, "sensor-0000");
    assert_eq!(n, 10);
    assert!(t.is_finite());
    let none = client.query(&statement, &[&11i64]).await.expect("query");
    assert!(none.is_empty());
    // Several statements in one simple query.
    let messages = client
        .simple_query("SELECT 1; SELECT 'two'")
        .await
        .expect("two statements");
    let values: Vec<String> = messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(values, vec!["1".to_string(), "two".to_string()]);
    // Empty and comment-only queries.
    client.simple_query("").await.expect("empty query");
    client
        .simple_query("-- ping")
        .await
        .expect("comment-only query");
}

async fn read_windows(client: &tokio_postgres::Client) -> Vec<(String, i64)> {
    client
        .query(
            "SELECT window_start::text AS ws, n FROM per_second ORDER BY window_start",
            &[],
        )
        .await
        .expect("read")
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_windows_update_and_closed_windows_are_final() {
    let server = Server::start(&["--no-demo"]);
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE SOURCE live (sensor_id TEXT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '100 milliseconds') \
             WITH (connector = 'datagen', sensors = '2', rate = '2000'); \
             CREATE MATERIALIZED VIEW per_second AS SELECT window_start, count(*) AS n \
               FROM TUMBLE(live, ts, INTERVAL '1 second') GROUP BY window_start",
        )
        .await
        .expect("ddl");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let first = read_windows(&client).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = read_windows(&client).await;
    assert!(
        first.len() >= 2,
        "expected closed and open windows, got {first:?}"
    );
    let total = |rows: &[(String, i64)]| rows.iter().map(|r| r.1).sum::<i64>();
    assert!(
        total(&second) > total(&first),
        "open windows did not update: {first:?} then {second:?}"
    );
    // All but the newest window in the first read are closed: exactly 2000 rows, unchanged later.
    for closed in &first[..first.len() - 1] {
        assert_eq!(closed.1, 2000, "closed window not final: {first:?}");
        assert!(
            second.contains(closed),
            "closed window changed: {closed:?} not in {second:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_vanishing_clients_leave_the_server_serving() {
    let mut server = Server::start(&["--no-demo"]);
    let client = server.connect().await;
    let code =
        |e: tokio_postgres::Error| e.code().map(|c| c.code().to_string()).unwrap_or_default();
    let err = client
        .simple_query("SELEC 1")
        .await
        .expect_err("syntax error");
    assert_eq!(code(err), "42601");
    let err = client
        .simple_query("SELECT * FROM nowhere")
        .await
        .expect_err("undefined table");
    assert_eq!(code(err), "42P01");
    let err = client
        .simple_query("CREATE SOURCE bad WITH (connector = 'datagen', no_such_option = '1')")
        .await
        .expect_err("unknown option");
    assert_eq!(code(err), "22023");
    client
        .batch_execute("CREATE SOURCE s WITH (connector = 'datagen', rate = '10')")
        .await
        .expect("source");
    let err = client
        .simple_query(
            "CREATE MATERIALIZED VIEW j AS SELECT a.sensor_id FROM s a JOIN s b ON a.sensor_id = b.sensor_id JOIN s c ON b.sensor_id = c.sensor_id",
        )
        .await
        .expect_err("unsupported");
    assert_eq!(code(err), "0A000");
    // The same connection still works after every error.
    assert_eq!(
        client
            .query_one("SELECT 40 + 2", &[])
            .await
            .expect("still serving")
            .get::<_, i64>(0),
        42
    );

    // Clients that disconnect mid-query.
    for _ in 0..5 {
        let c = server.connect().await;
        let query = tokio::spawn(async move {
            c.simple_query("SELECT count(*) FROM generate_series(1, 300000000)")
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        query.abort();
    }
    // Cancel requests stop a running query with 57014 and the connection goes on.
    let c = server.connect().await;
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let err = c
        .simple_query("SELECT count(*) FROM generate_series(1, 20000000000)")
        .await
        .expect_err("the query should be cancelled");
    assert_eq!(code(err), "57014");
    canceller.await.expect("join").expect("cancel request");
    assert_eq!(
        c.query_one("SELECT 7::BIGINT", &[])
            .await
            .expect("after cancel")
            .get::<_, i64>(0),
        7
    );

    // Clients that send garbage instead of the protocol.
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0u8, 0, 0, 3][..],
        &[0xffu8; 64][..],
    ] {
        use tokio::io::AsyncWriteExt;
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("tcp");
        let _ = sock.write_all(garbage).await;
        drop(sock);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.alive(), "server died");
    let fresh = server.connect().await;
    assert_eq!(
        fresh
            .query_one("SELECT 1::BIGINT", &[])
            .await
            .expect("new connection")
            .get::<_, i64>(0),
        1
    );
    // Many concurrent connections.
    let mut tasks = Vec::new();
    for i in 0..20i64 {
        let c = server.connect().await;
        tasks.push(tokio::spawn(async move {
            c.query_one("SELECT $1::BIGINT * 2", &[&i])
                .await
                .map(|r| r.get::<_, i64>(0))
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.expect("join").expect("query"), 2 * i as i64);
    }
    drop(fresh);
    drop(client);
    let status = server.terminate();
    assert!(
        status.success(),
        "SIGTERM should stop weir cleanly, got {status}"
    );
}
