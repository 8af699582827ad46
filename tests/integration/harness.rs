//! Shared test plumbing: a running `weir` binary on a free loopback port, and value formatting
//! that matches the server's text encoding.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// A `weir` server process, killed on drop.
pub struct Server {
    child: Child,
    /// Port it listens on (127.0.0.1).
    pub port: u16,
}

impl Server {
    /// Starts the binary with `args` and a fresh data directory, and waits until it accepts
    /// connections.
    pub fn start(args: &[&str]) -> Server {
        let data = tempfile::tempdir().expect("tempdir");
        let server = Self::start_in(data.path(), args);
        std::mem::forget(data);
        server
    }

    /// Starts the binary on the data directory `data` (restoring what it holds).
    pub fn start_in(data: &std::path::Path, args: &[&str]) -> Server {
        Self::start_with_env(data, args, &[])
    }

    /// [`Server::start_in`] with extra environment variables.
    pub fn start_with_env(data: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
        cmd.envs(env.iter().copied());
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .env("WEIR_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("start weir");
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "weir did not start listening on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// A tokio-postgres connection string.
    pub fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=weir dbname=weir", self.port)
    }

    /// Connects with tokio-postgres (no TLS).
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.conninfo(), tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Is the process still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process with SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "weir did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// psql connecting to `server` as weir, without a psqlrc; the caller adds the rest.
pub fn psql_command(server: &Server) -> Command {
    let mut command = Command::new("psql");
    command.args([
        "-h",
        "127.0.0.1",
        "-p",
        &server.port.to_string(),
        "-U",
        "weir",
        "-d",
        "weir",
        "-X",
    ]);
    command
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Rows as `a | b | …` lines through the simple-query protocol.
pub async fn client_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join(" | "),
            ),
            _ => None,
        })
        .collect()
}

/// Formats one value the way the server's text protocol does.
pub fn format_value(array: &ArrayRef, row: usize) -> String {
    if array.is_null(row) {
        return "NULL".into();
    }
    match array.data_type() {
        DataType::Boolean => if array.as_boolean().value(row) {
            "t"
        } else {
            "f"
        }
        .into(),
        DataType::Float64 => format_float(
            array
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .value(row),
        ),
        DataType::Timestamp(unit, tz) => {
            let v = datafusion::arrow::compute::cast(
                array,
                &DataType::Timestamp(TimeUnit::Nanosecond, tz.clone()),
            )
            .expect("cast");
            let nanos = v
                .as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>()
                .value(row);
            let _ = unit;
            let t = chrono::DateTime::from_timestamp_nanos(nanos);
            if tz.is_some() {
                t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
            } else {
                t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
            }
        }
        _ => {
            let options = FormatOptions::default();
            let f = ArrayFormatter::try_new(array.as_ref(), &options).expect("formatter");
            let s = f.value(row).to_string();
            if s.is_empty() { "(empty)".into() } else { s }
        }
    }
}

/// Shortest round-trip form, as PostgreSQL prints float8.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        format!("{v}")
    }
}

/// Runs `sql` in-process and renders its rows as `a | b | …` lines.
pub async fn query_rows(session: &weir_sql::Session, sql: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let mut results = session
        .execute_all(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let Some(weir_sql::QueryResult::Rows { stream, .. }) = results.pop() else {
        panic!("{sql}: no rows")
    };
    let batches: Vec<datafusion::arrow::record_batch::RecordBatch> =
        stream.try_collect().await.expect("rows");
    render(&batches)
}

/// Polls `sql` in-process until its first row is `want`; fails after 60 s with the last rows.
pub async fn wait_first_row(session: &weir_sql::Session, sql: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = query_rows(session, sql).await;
        if rows.first().map(String::as_str) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {sql} = {want}; last {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Renders batches as `a | b | …` lines.
pub fn render(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| format_value(c, r))
                    .collect::<Vec<_>>()
                    .join(" | "),
            );
        }
    }
    out
}

/// `sql`'s rows in a DataFusion context (a batch oracle), rendered as [`render`] does.
pub async fn batch_rows(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<String> {
    let batches = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("oracle {sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("oracle {sql}: {e}"));
    render(&batches)
}
