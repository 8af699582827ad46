//! The JSON API on the HTTP listener (`--http`), for scripts and the web console (`GET /`,
//! `console.html`: the pipeline graph, a SQL box with results and a chart, source errors and
//! late rows):
//!
//! - `GET /api/sources`, `/api/views`, `/api/sinks`, `/api/checkpoints`, `/api/partitions`,
//!   `/api/source_errors`, `/api/late_rows`: the system tables' rows as JSON objects;
//! - `GET /api/graph`: sources, views, tables and sinks with what each reads, and per view its
//!   running operators' figures (what `EXPLAIN ANALYZE MATERIALIZED VIEW` shows);
//! - `POST /api/query` with the SQL as the body: each statement's result, rows as JSON objects
//!   (at most `?max_rows=`, default [`DEFAULT_MAX_ROWS`]; `truncated` says when more were left).
//!
//! Every `/api` route honours the server's authentication: with `--auth password` a request
//! carries HTTP Basic credentials of a user in the users file (checked against the same salted
//! passwords SCRAM uses), or gets 401. Errors are `{"error", "sqlstate"}` with status 400 (the
//! statement's fault) or 500.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use datafusion::arrow::array::RecordBatch;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use weir_pg::PgFrontend;
use weir_pg::auth::Users;
use weir_sql::parser::{WeirStatement, parse_statements};
use weir_sql::{QueryResult, SqlError, SqlErrorKind};

/// Rows a query answer holds unless the request asks for another bound.
pub const DEFAULT_MAX_ROWS: usize = 10_000;

/// What the API handlers read.
#[derive(Clone)]
pub struct Api {
    /// The database, with the PostgreSQL front end (queries plan as over the wire).
    pub frontend: Arc<PgFrontend>,
    /// Users who may call the API (None: anyone who reaches the port).
    pub users: Option<Arc<Users>>,
}

/// The system table behind each listing route.
fn system_table(listing: &str) -> Option<&'static str> {
    Some(match listing {
        "sources" => "weir_sources",
        "views" => "weir_views",
        "sinks" => "weir_sinks",
        "checkpoints" => "weir_checkpoints",
        "partitions" => "weir_source_partitions",
        "source_errors" => "weir_source_errors",
        "late_rows" => "weir_late_rows",
        _ => return None,
    })
}

/// `GET /api/{listing}`.
pub async fn listing(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(listing): Path<String>,
) -> Response {
    if let Some(denied) = api.authorize(&headers) {
        return denied;
    }
    let Some(table) = system_table(&listing) else {
        return error(
            StatusCode::NOT_FOUND,
            &SqlError::new(
                SqlErrorKind::UndefinedTable,
                format!("no listing /api/{listing}"),
            ),
        );
    };
    match api.rows(&format!("SELECT * FROM {table}")).await {
        Ok(rows) => (StatusCode::OK, axum::Json(Value::Array(rows))).into_response(),
        Err(e) => statement_error(&e),
    }
}

/// `POST /api/query` parameters.
#[derive(Debug, Deserialize)]
pub struct QueryParams {
    max_rows: Option<usize>,
}

/// `POST /api/query`: the body is the SQL.
pub async fn query(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(params): Query<QueryParams>,
    sql: String,
) -> Response {
    if let Some(denied) = api.authorize(&headers) {
        return denied;
    }
    let max_rows = params.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
    match api.run(&sql, max_rows).await {
        Ok(results) => (StatusCode::OK, axum::Json(json!({ "results": results }))).into_response(),
        Err(e) => statement_error(&e),
    }
}

/// The web console: one page, embedded in the binary, drawing what `/api` returns.
const CONSOLE: &str = include_str!("console.html");

/// `GET /`: the web console (behind the same authentication as the API, so the browser asks
/// once and sends the credentials with the page's API calls).
pub async fn console(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(denied) = api.authorize(&headers) {
        return denied;
    }
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        CONSOLE,
    )
        .into_response()
}

impl Api {
    /// Checks the request's credentials: None when they are good (or none are needed), else
    /// the response refusing it.
    pub(crate) fn authorize(&self, headers: &HeaderMap) -> Option<Response> {
        let users = self.users.as_ref()?;
        let credentials = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b64| BASE64.decode(b64.trim()).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let allowed = credentials
            .as_deref()
            .and_then(|c| c.split_once(':'))
            .is_some_and(|(user, password)| users.verify(user, password));
        if allowed {
            return None;
        }
        tracing::warn!("HTTP API request refused: missing or wrong credentials");
        Some((
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"weir\"")],
            axum::Json(json!({
                "error": "password authentication failed: send HTTP Basic credentials of a user in the users file",
                "sqlstate": "28P01",
            })),
        )
            .into_response())
    }

    /// The rows of one query, as JSON objects.
    pub async fn rows(&self, sql: &str) -> Result<Vec<Value>, SqlError> {
        let mut results = self.run(sql, usize::MAX).await?;
        Ok(match results.pop() {
            Some(Value::Object(mut result)) => match result.remove("rows") {
                Some(Value::Array(rows)) => rows,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        })
    }

    /// Runs every statement of `sql` in a new session; each result as JSON.
    async fn run(&self, sql: &str, max_rows: usize) -> Result<Vec<Value>, SqlError> {
        let session = self.frontend.session();
        let mut out = Vec::new();
        for statement in parse_statements(sql)? {
            if matches!(
                statement,
                WeirStatement::Subscribe(_)
                    | WeirStatement::CopySubscribe(_)
                    | WeirStatement::DeclareCursor(_)
                    | WeirStatement::Fetch(_)
            ) {
                return Err(SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    "SUBSCRIBE and cursors need a session: use the PostgreSQL protocol",
                ));
            }
            let result = session.execute(&statement).await?;
            out.push(result_json(result, max_rows).await?);
        }
        Ok(out)
    }
}

/// One statement's result: `{"columns", "rows", "truncated"}` or `{"command", "rows"}`.
async fn result_json(result: QueryResult, max_rows: usize) -> Result<Value, SqlError> {
    match result {
        QueryResult::Rows { schema, mut stream } => {
            let columns: Vec<Value> = schema
                .fields()
                .iter()
                .map(|f| json!({ "name": f.name(), "type": f.data_type().to_string() }))
                .collect();
            let mut rows = Vec::new();
            let mut truncated = false;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let room = max_rows - rows.len();
                if batch.num_rows() > room {
                    rows.extend(batch_json(&batch.slice(0, room))?);
                    truncated = true;
                    break;
                }
                rows.extend(batch_json(&batch)?);
            }
            Ok(json!({ "columns": columns, "rows": rows, "truncated": truncated }))
        }
        QueryResult::Command { tag, rows } => Ok(json!({ "command": tag, "rows": rows })),
        QueryResult::CopyIn { .. } => Err(SqlError::new(
            SqlErrorKind::FeatureNotSupported,
            "COPY FROM STDIN needs the PostgreSQL protocol",
        )),
    }
}

/// Rows of `batch` as JSON objects (NULLs kept as null).
fn batch_json(batch: &RecordBatch) -> Result<Vec<Value>, SqlError> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow_json::writer::JsonArray>(&mut buffer);
        writer.write(batch)?;
        writer.finish()?;
    }
    if buffer.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice::<Vec<Value>>(&buffer)
        .map_err(|e| SqlError::new(SqlErrorKind::Internal, format!("rows as JSON: {e}")))
}

pub(crate) fn statement_error(e: &SqlError) -> Response {
    let status = match e.kind() {
        SqlErrorKind::Internal
        | SqlErrorKind::External
        | SqlErrorKind::Storage
        | SqlErrorKind::DiskFull => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, e)
}

fn error(status: StatusCode, e: &SqlError) -> Response {
    (
        status,
        axum::Json(json!({
            "error": e.message(),
            "sqlstate": weir_pg::wire::sqlstate(e.kind()),
        })),
    )
        .into_response()
}
