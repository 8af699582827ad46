//! Real clients against the real binary: psql 15's meta-commands, asyncpg, psycopg 3, psycopg2,
//! SQLAlchemy 2, pgcli, node-postgres and pgjdbc (`tests/clients/`), and password
//! authentication over TLS (Grafana is in `grafana.rs`). The test
//! command installs every client; a missing one fails here rather than being skipped.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Server, psql_command};

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn run(what: &str, command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what} could not start ({e}); the test command installs it"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    eprintln!("{text}");
}

fn psql(server: &Server, command: &str) -> String {
    let out = psql_command(server)
        .args(["-v", "ON_ERROR_STOP=1", "-c", command])
        .output()
        .expect("psql");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "psql {command} failed:\n{text}");
    text
}

/// A demo server whose views have started.
fn demo_server() -> Server {
    let server = Server::start(&[]);
    for _ in 0..100 {
        let out = psql(&server, "SELECT count(*) FROM weir_views WHERE rows_in > 0");
        if !out.contains(" 0\n") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

#[test]
fn psql_meta_commands() {
    let server = demo_server();
    let all = psql(&server, "\\d");
    for (name, kind) in [
        ("sensor_stats_10s", "| materialized view"),
        ("readings", "| table"),
        ("weir_views", "| view"),
    ] {
        assert!(
            all.lines().any(|l| l.contains(name) && l.contains(kind)),
            "\\d lacks {name} {kind}:\n{all}"
        );
    }
    assert!(psql(&server, "\\dt").contains("readings | table"));
    // A join whose state grows without bound says so when it is created (a NOTICE, as psql
    // shows them); no reading passes its filter, so it holds nothing meanwhile.
    let created = psql(
        &server,
        "CREATE MATERIALIZED VIEW pairs AS SELECT a.sensor_id FROM readings AS a \
         JOIN readings AS b ON a.sensor_id = b.sensor_id WHERE a.temperature > 1e9",
    );
    assert!(
        created.contains("NOTICE:  materialized view \"pairs\": the join on a.sensor_id = b.sensor_id keeps every row")
            && created.contains("CREATE MATERIALIZED VIEW"),
        "{created}"
    );
    psql(&server, "DROP MATERIALIZED VIEW pairs");
    let matviews = psql(&server, "\\dm");
    assert!(
        matviews.contains("equipment_1m") && !matviews.contains(" readings "),
        "{matviews}"
    );
    assert!(psql(&server, "\\dv").contains("weir_views"));
    assert!(psql(&server, "\\l").contains("UTF8"));
    assert!(psql(&server, "\\dn").contains("public"));
    assert!(psql(&server, "\\du").contains("Superuser"));
    let view = psql(&server, "\\d+ weir_views");
    assert!(
        view.contains("View \"public.weir_views\"") && view.contains("rows_in"),
        "{view}"
    );
    assert!(psql(&server, "\\dt+").contains("source (datagen connector)"));
    // \d+ on a materialized view: its columns, types and definition (psql's policy and
    // publication queries are correlated in ways only `apply` runs).
    let matview = psql(&server, "\\d+ sensor_stats_10s");
    for expected in [
        "Materialized view \"public.sensor_stats_10s\"",
        "window_start  | timestamp with time zone",
        "avg_temp      | double precision",
        "View definition:",
        "FROM TUMBLE(readings, ts, INTERVAL '10 seconds')",
        // The view's key, as a unique index.
        "Indexes:",
        "\"sensor_stats_10s_key\" UNIQUE, btree (sensor_id, window_start, window_end)",
    ] {
        assert!(
            matview.contains(expected),
            "\\d+ sensor_stats_10s lacks {expected:?}:\n{matview}"
        );
    }
    let indexes = psql(&server, "\\di");
    assert!(
        indexes.contains("sensor_stats_10s_key | index | weir  | sensor_stats_10s"),
        "{indexes}"
    );
    let index = psql(&server, "\\d sensor_stats_10s_key");
    assert!(
        index.contains("unique, btree, for table \"public.sensor_stats_10s\""),
        "{index}"
    );
    let source = psql(&server, "\\d readings");
    assert!(
        source.contains("Table \"public.readings\"")
            && source.contains("temperature  | double precision"),
        "{source}"
    );
}

#[test]
fn python_drivers() {
    let server = demo_server();
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    run(
        "python clients (asyncpg, psycopg, psycopg2, SQLAlchemy)",
        Command::new(python)
            .arg(clients_dir().join("python_clients.py"))
            .arg(server.port.to_string()),
    );
}

#[test]
fn pgcli_start_up() {
    let server = demo_server();
    let home = tempfile::tempdir().expect("tempdir");
    let out = Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/pgcli"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port.to_string(),
            "-U",
            "weir",
            "-d",
            "weir",
            "-w",
        ])
        .args([
            "-c",
            "SELECT count(*) AS views FROM weir_views",
            "-c",
            "\\dt",
            "-c",
            "\\d sensor_stats_10s",
        ])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .output()
        .expect("pgcli (the test command installs it into .venv)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgcli failed:\n{text}");
    for expected in [
        "| views |",
        "| readings | table |",
        "| window_start  | timestamp with time zone |",
    ] {
        assert!(
            text.contains(expected),
            "pgcli output lacks {expected:?}:\n{text}"
        );
    }
}

#[test]
fn node_postgres() {
    let server = demo_server();
    run(
        "node-postgres",
        Command::new("node")
            .arg(clients_dir().join("node_pg.js"))
            .arg(server.port.to_string()),
    );
}

#[test]
fn pgjdbc() {
    let server = demo_server();
    run(
        "pgjdbc",
        Command::new("java")
            .args(["-cp", "/usr/share/java/postgresql.jar"])
            .arg(clients_dir().join("Jdbc.java"))
            .arg(server.port.to_string()),
    );
}

/// psql with a password in the environment; returns (success, output).
fn psql_as(port: u16, conninfo: &str, password: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .arg(format!("host=127.0.0.1 port={port} dbname=weir {conninfo}"))
        .args(["-X", "-w", "-A", "-t", "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("psql");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn password_auth_and_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, users) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("users"),
    );
    run(
        "openssl (self-signed certificate)",
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    std::fs::write(&users, "# test users\nalice:wonder land\nbob:builder\n").expect("users file");
    let (cert, key, users) = (
        cert.to_string_lossy(),
        key.to_string_lossy(),
        users.to_string_lossy(),
    );
    let server = Server::start(&[
        "--no-demo",
        "--auth",
        "password",
        "--users-file",
        &users,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    // SCRAM-SHA-256-PLUS (channel binding) over TLS, plain SCRAM-SHA-256 without it.
    let (ok, out) = psql_as(
        server.port,
        "user=alice sslmode=require",
        "wonder land",
        "SELECT current_user",
    );
    assert!(ok && out.trim() == "alice", "{out}");
    let (ok, out) = psql_as(
        server.port,
        "user=bob sslmode=disable",
        "builder",
        "SHOW server_version",
    );
    assert!(ok && out.trim() == "15.8", "{out}");
    for (user, password) in [("alice", "wrong"), ("mallory", "builder")] {
        let (ok, out) = psql_as(
            server.port,
            &format!("user={user} sslmode=disable"),
            password,
            "SELECT 1",
        );
        assert!(
            !ok && out.contains("assword authentication failed"),
            "{user}/{password} got in:\n{out}"
        );
    }
    let (ok, out) = psql_as(server.port, "user=alice sslmode=require", "", "SELECT 1");
    assert!(!ok, "no password got in:\n{out}");
}

#[test]
fn unauthenticated_network_listening_is_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--listen", "0.0.0.0:0", "--no-demo", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("weir");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("refusing to accept unauthenticated clients"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--auth",
            "password",
            "--no-demo",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .expect("weir");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--users-file"));
}
