//! `.slt` files under `tests/slt/`, run three times: in-process against a `PgSession` (the PostgreSQL front end without the wire), and over the
//! PostgreSQL wire protocol against the real binary with sqllogictest-rs's own `postgres`
//! (simple query protocol) and `postgres-extended` (Parse/Bind/Execute, binary results) engines.
//! Records tagged `onlyif wire` check SQLSTATEs, which exist only at the wire; `onlyif simple` /
//! `skipif extended` tag what one protocol renders differently.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use weir_pg::{PgFrontend, PgSession};
use weir_sql::QueryResult;

use crate::harness::{Server, format_value};

/// Every `.slt` file, or those whose name contains `$WEIR_SLT` when set (to iterate on one).
fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let only = std::env::var("WEIR_SLT").unwrap_or_default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(&only))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SltError(String);

/// In-process engine.
struct InProcess {
    session: PgSession,
}

#[async_trait]
impl AsyncDB for InProcess {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let results = self
            .session
            .execute_all(sql)
            .await
            .map_err(|e| SltError(e.to_string()))?;
        let Some(last) = results.into_iter().last() else {
            return Ok(DBOutput::StatementComplete(0));
        };
        match last {
            QueryResult::Command { rows, .. } => {
                Ok(DBOutput::StatementComplete(rows.unwrap_or(0) as u64))
            }
            QueryResult::CopyIn { .. } => Err(SltError(
                "COPY FROM STDIN needs a client that sends the data (tested over the wire)".into(),
            )),
            QueryResult::Rows { schema, stream } => {
                let batches: Vec<_> = stream
                    .try_collect()
                    .await
                    .map_err(|e| SltError(e.to_string()))?;
                let mut rows = Vec::new();
                for b in &batches {
                    for r in 0..b.num_rows() {
                        rows.push(b.columns().iter().map(|c| format_value(c, r)).collect());
                    }
                }
                Ok(DBOutput::Rows {
                    types: vec![DefaultColumnType::Any; schema.fields().len()],
                    rows,
                })
            }
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "in-process"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_in_process() {
    for file in slt_files() {
        let frontend: Arc<PgFrontend> = PgFrontend::build(weir::database()).expect("database");
        let mut runner = sqllogictest::Runner::new(move || {
            let session = frontend.session();
            async move { Ok(InProcess { session }) }
        });
        runner.add_label("in-process");
        runner.with_column_validator(|_, _| true);
        if let Err(e) = runner.run_file_async(&file).await {
            panic!("{}: {}", file.display(), e.display(true));
        }
    }
}

/// A server error as the `.slt` files match it: the server's message and SQLSTATE.
/// (tokio-postgres shows every server error as just "db error".)
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct WireError {
    message: String,
    code: Option<String>,
}

impl From<tokio_postgres::Error> for WireError {
    fn from(e: tokio_postgres::Error) -> Self {
        let message = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        };
        Self {
            message,
            code: e.code().map(|c| c.code().to_string()),
        }
    }
}

/// One of sqllogictest-rs's PostgreSQL engines, unchanged but for how errors read.
struct Engine<P>(sqllogictest_engines::postgres::Postgres<P>);

#[async_trait]
impl<P: Send + Sync + 'static> AsyncDB for Engine<P>
where
    sqllogictest_engines::postgres::Postgres<P>:
        AsyncDB<Error = tokio_postgres::Error, ColumnType = DefaultColumnType>,
{
    type Error = WireError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
        Ok(self.0.run(sql).await?)
    }

    fn error_sql_state(err: &WireError) -> Option<String> {
        err.code.clone()
    }

    async fn shutdown(&mut self) {
        self.0.shutdown().await
    }

    fn engine_name(&self) -> &str {
        self.0.engine_name()
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await
    }
}

/// Runs every file against a fresh server with one of sqllogictest-rs's own PostgreSQL engines.
async fn over_the_wire<P>(engine: &'static str, label: &'static str)
where
    sqllogictest_engines::postgres::Postgres<P>:
        AsyncDB<Error = tokio_postgres::Error, ColumnType = DefaultColumnType>,
    P: Send + Sync + 'static,
{
    for file in slt_files() {
        let server = Arc::new(Server::start(&["--no-demo"]));
        let s = Arc::clone(&server);
        let mut runner = sqllogictest::Runner::new(move || {
            let mut config = sqllogictest_engines::postgres::PostgresConfig::new();
            config
                .host("127.0.0.1")
                .port(s.port)
                .user("weir")
                .dbname("weir");
            async move {
                let engine = sqllogictest_engines::postgres::Postgres::<P>::connect(config).await?;
                Ok::<_, WireError>(Engine(engine))
            }
        });
        runner.add_label("wire");
        runner.add_label(label);
        runner.with_column_validator(|_, _| true);
        if let Err(e) = runner.run_file_async(&file).await {
            panic!("{} ({engine}): {}", file.display(), e.display(true));
        }
    }
}

/// sqllogictest-rs's `postgres` engine: the simple query protocol, values as the server's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_over_the_wire() {
    over_the_wire::<sqllogictest_engines::postgres::Simple>("postgres", "simple").await;
}

/// sqllogictest-rs's `postgres-extended` engine: Parse/Describe/Bind/Execute, binary results
/// decoded by their type OIDs (timestamptz and interval re-rendered by the server from a bound
/// parameter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_over_the_wire_extended() {
    over_the_wire::<sqllogictest_engines::postgres::Extended>("postgres-extended", "extended")
        .await;
}
