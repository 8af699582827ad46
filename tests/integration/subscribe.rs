//! `SUBSCRIBE` against the real binary: from psycopg 3 (cursor + FETCH, `stream()` with
//! `cancel()`, COPY; `tests/clients/subscribe_clients.py`), from psql (cursors in one query
//! string; `COPY (SUBSCRIBE …) TO STDOUT` printing each change as it is made, stopped by the
//! Ctrl-C psql turns into a cancel request), and from tokio-postgres (a client that stops
//! reading does not hold back the view or other subscribers).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Server, client_rows, psql_command};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn psycopg_follows_a_view_by_cursor_stream_and_copy() {
    let server = Server::start(&["--no-demo"]);
    let out = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/clients/subscribe_clients.py"))
        .arg(server.port.to_string())
        .output()
        .expect("python from .venv (the test command installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "subscribe_clients.py failed:\n{text}");
}

/// Unaligned, tuples only.
fn psql(server: &Server) -> Command {
    let mut command = psql_command(server);
    command.args(["-A", "-t"]);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_prints_changes_as_they_come_and_ctrl_c_stops_it() {
    let server = Server::start(&["--no-demo"]);
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE ticks (id BIGINT PRIMARY KEY, label TEXT);
             INSERT INTO ticks VALUES (1, 'first');",
        )
        .await
        .unwrap();

    // Cursors from psql: one query string, as `psql -c` sends it.
    let out = psql(&server)
        .args([
            "-c",
            "BEGIN; DECLARE c CURSOR FOR SUBSCRIBE TO ticks; FETCH ALL c WITH (timeout = '5s'); \
             COMMIT",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("insert||1|first"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // COPY (SUBSCRIBE …): psql prints each line when it comes. Its stdout is line-buffered as
    // on a terminal (a pipe would make stdio hold lines until exit).
    let mut follower = Command::new("stdbuf");
    follower
        .arg("-oL")
        .arg("psql")
        .args(psql(&server).get_args());
    let mut follower = follower
        .args([
            "-c",
            "COPY (SUBSCRIBE TO ticks WITH (snapshot = false)) TO STDOUT",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The subscription starts after psql connects: insert until the first change is printed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut next_id: i64 = 2;
    let line = loop {
        client
            .execute("INSERT INTO ticks VALUES ($1, 'later')", &[&next_id])
            .await
            .unwrap();
        next_id += 1;
        if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(500)) {
            break line;
        }
        assert!(Instant::now() < deadline, "psql printed no change");
    };
    assert!(
        line.starts_with("insert\t\\N\t") && line.ends_with("\tlater"),
        "{line:?}"
    );

    // Ctrl-C: psql sends a cancel request; the statement ends with 57014 and psql exits.
    let status = Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = follower.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
    // The server goes on serving the table, with every row.
    let rows = client_rows(&client, "SELECT count(*) FROM ticks").await;
    assert_eq!(rows, vec![(next_id - 1).to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_does_not_hold_back_the_view() {
    let server = Server::start(&["--no-demo"]);
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE big (id BIGINT PRIMARY KEY, payload TEXT);
             CREATE MATERIALIZED VIEW big_copy AS SELECT id, payload FROM big;",
        )
        .await
        .unwrap();
    // A raw socket that asks for the subscription and then never reads: the server's writes
    // fill the socket buffers and block that subscription's sender only.
    let stalled = stalled_subscriber(server.port, "SUBSCRIBE TO big_copy");
    let payload = "x".repeat(1000);
    for chunk in 0..20i64 {
        let values: Vec<String> = (0..500)
            .map(|i| format!("({}, '{payload}')", chunk * 500 + i))
            .collect();
        client
            .batch_execute(&format!("INSERT INTO big VALUES {}", values.join(", ")))
            .await
            .unwrap();
    }
    // 10 MB of changes later the view has every row, and a second subscriber gets its snapshot.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = client_rows(&client, "SELECT count(*) FROM big_copy").await;
        if rows == vec!["10000".to_string()] {
            break;
        }
        assert!(Instant::now() < deadline, "the view is held back: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = server.connect().await;
    other
        .batch_execute("BEGIN; DECLARE c CURSOR FOR SUBSCRIBE TO big_copy")
        .await
        .unwrap();
    let fetched = other
        .simple_query("FETCH ALL c WITH (timeout = '5s')")
        .await
        .unwrap();
    let rows = fetched
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert!(rows > 0, "the second subscriber got nothing");
    drop(stalled);
}

/// Connects, starts `query` with the simple protocol, and returns the socket unread.
fn stalled_subscriber(port: u16, query: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // StartupMessage: protocol 3.0, user weir, database weir.
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for (k, v) in [("user", "weir"), ("database", "weir")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    startup.extend_from_slice(&body);
    socket.write_all(&startup).unwrap();
    let mut message = vec![b'Q'];
    message.extend_from_slice(&((query.len() + 5) as i32).to_be_bytes());
    message.extend_from_slice(query.as_bytes());
    message.push(0);
    socket.write_all(&message).unwrap();
    socket
}
