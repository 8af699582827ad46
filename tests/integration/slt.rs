//! `.slt` files under `tests/slt/`, run twice: in-process against a `Session`, and over the
//! PostgreSQL wire protocol against the real binary (tokio-postgres, simple query protocol).
//! Records tagged `onlyif wire` check SQLSTATEs, which exist only at the wire.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use weir_sql::{Database, QueryResult, Session};

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

/// A wire error with the server's message and SQLSTATE.
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

/// In-process engine.
struct InProcess {
    session: Session,
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

/// Wire engine: simple query protocol, values as the server's text.
struct Wire {
    client: tokio_postgres::Client,
}

#[async_trait]
impl AsyncDB for Wire {
    type Error = WireError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
        let messages = self.client.simple_query(sql).await?;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut complete = None;
        for m in messages {
            match m {
                tokio_postgres::SimpleQueryMessage::RowDescription(d) => columns = Some(d.len()),
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    columns = Some(row.len());
                    rows.push(
                        (0..row.len())
                            .map(|i| match row.get(i) {
                                None => "NULL".to_string(),
                                Some("") => "(empty)".to_string(),
                                Some(v) => v.to_string(),
                            })
                            .collect(),
                    );
                }
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => complete = Some(n),
                _ => {}
            }
        }
        match columns {
            Some(n) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(complete.unwrap_or(0))),
        }
    }

    fn error_sql_state(err: &WireError) -> Option<String> {
        err.code.clone()
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "wire"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_in_process() {
    for file in slt_files() {
        let db: Arc<Database> = Database::new().expect("database");
        let mut runner = sqllogictest::Runner::new(move || {
            let session = db.session();
            async move { Ok(InProcess { session }) }
        });
        runner.add_label("in-process");
        runner.with_column_validator(|_, _| true);
        if let Err(e) = runner.run_file_async(&file).await {
            panic!("{}: {}", file.display(), e.display(true));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_over_the_wire() {
    for file in slt_files() {
        let server = Arc::new(Server::start(&["--no-demo"]));
        let s = Arc::clone(&server);
        let mut runner = sqllogictest::Runner::new(move || {
            let s = Arc::clone(&s);
            async move {
                Ok(Wire {
                    client: s.connect().await,
                })
            }
        });
        runner.add_label("wire");
        runner.with_column_validator(|_, _| true);
        if let Err(e) = runner.run_file_async(&file).await {
            panic!("{}: {}", file.display(), e.display(true));
        }
    }
}
