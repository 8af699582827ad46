//! The JSON API on `--http` against the real binary: queries (several statements, row bounds,
//! errors with SQLSTATEs, what needs a session refused), the system-table listings, the pipeline
//! graph, and authentication (HTTP Basic against the users file; an open API on a network
//! address refused at start).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Server, free_port};

/// One HTTP/1.1 request; the status and the body as JSON (Null when it is not JSON).
fn request(port: u16, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let auth = auth
        .map(|a| format!("Authorization: Basic {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn query(port: u16, sql: &str) -> (u16, Value) {
    request(port, "POST", "/api/query", None, sql)
}

#[test]
fn queries_listings_and_the_graph_as_json() {
    let http = free_port();
    let address = format!("127.0.0.1:{http}");
    let _server = Server::start(&["--no-demo", "--http", &address]);

    let (status, body) = query(
        http,
        "CREATE TABLE t (k TEXT PRIMARY KEY, v BIGINT); \
         INSERT INTO t VALUES ('a', 1), ('b', NULL); \
         CREATE MATERIALIZED VIEW per_k AS SELECT k, count(*) AS n FROM t GROUP BY k; \
         SELECT k, v FROM t ORDER BY k",
    );
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results[0]["command"], "CREATE TABLE", "{body}");
    assert_eq!(results[1]["rows"], 2, "{body}");
    assert_eq!(
        results[3]["rows"],
        serde_json::json!([{"k": "a", "v": 1}, {"k": "b", "v": null}]),
        "{body}"
    );
    assert_eq!(results[3]["columns"][0]["name"], "k", "{body}");
    assert_eq!(results[3]["truncated"], false, "{body}");

    let (_, body) = request(
        http,
        "POST",
        "/api/query?max_rows=1",
        None,
        "SELECT * FROM t",
    );
    assert_eq!(body["results"][0]["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["results"][0]["truncated"], true, "{body}");

    for (sql, sqlstate) in [
        ("SELEC 1", "42601"),
        ("SELECT * FROM nope", "42P01"),
        ("SUBSCRIBE TO per_k", "0A000"),
    ] {
        let (status, body) = query(http, sql);
        assert_eq!(status, 400, "{sql}: {body}");
        assert_eq!(body["sqlstate"], sqlstate, "{sql}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }

    let (status, views) = request(http, "GET", "/api/views", None, "");
    assert_eq!(status, 200);
    let names: Vec<&str> = views
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["per_k"], "{views}");
    assert_eq!(request(http, "GET", "/api/nope", None, "").0, 404);

    // The graph: the table feeds the view, whose operators have run.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, graph) = request(http, "GET", "/api/graph", None, "");
        assert_eq!(status, 200, "{graph}");
        let edge = graph["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .any(|e| e["from"] == "view:t" && e["to"] == "view:per_k");
        assert!(edge, "{graph}");
        let node = graph["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["id"] == "view:per_k")
            .cloned()
            .expect("per_k node");
        let table = graph["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["id"] == "view:t")
            .cloned()
            .expect("t node");
        assert_eq!(table["kind"], "table", "{table}");
        let rows_in: u64 = node["operators"]
            .as_array()
            .expect("operators")
            .iter()
            .filter_map(|o| o["rows_in"].as_u64())
            .max()
            .unwrap_or(0);
        if rows_in >= 2 {
            assert_eq!(node["figures"]["status"], "running", "{node}");
            break;
        }
        assert!(Instant::now() < deadline, "operators never ran: {node}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_api_asks_for_the_users_passwords_and_metrics_stay_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:s3cret\n").expect("users file");
    let http = free_port();
    let address = format!("127.0.0.1:{http}");
    let _server = Server::start(&[
        "--no-demo",
        "--auth",
        "password",
        "--users-file",
        users.to_str().expect("path"),
        "--http",
        &address,
    ]);
    // alice:s3cret, alice:wrong
    let (right, wrong) = ("YWxpY2U6czNjcmV0", "YWxpY2U6d3Jvbmc=");
    let (status, body) = request(http, "GET", "/api/views", None, "");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["sqlstate"], "28P01", "{body}");
    assert_eq!(request(http, "GET", "/api/views", Some(wrong), "").0, 401);
    assert_eq!(
        request(http, "POST", "/api/query", Some(wrong), "SELECT 1").0,
        401
    );
    let (status, body) = request(http, "POST", "/api/query", Some(right), "SELECT 1 AS one");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["rows"][0]["one"], 1, "{body}");
    assert_eq!(request(http, "GET", "/api/graph", Some(right), "").0, 200);
    // The console page asks for the same credentials (the browser then sends them with its
    // API calls).
    assert_eq!(request(http, "GET", "/", None, "").0, 401);
    assert_eq!(request(http, "GET", "/", Some(right), "").0, 200);

    let mut stream = std::net::TcpStream::connect(("127.0.0.1", http)).expect("connect");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("get");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn an_open_api_on_a_network_address_is_refused_at_start() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--no-demo", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(data.path())
        .arg("--http")
        .arg(format!("0.0.0.0:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weir started with an unauthenticated API on 0.0.0.0");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(!status.success());
    assert!(
        stderr.contains("refusing to accept unauthenticated clients"),
        "{stderr}"
    );
}
