//! The HTTP listener (`--http`): `GET /metrics` for Prometheus. Off unless asked for; it serves
//! no data a client could not read over SQL, but a scrape port is best opened on purpose.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use weir_pg::wire::WireStats;
use weir_sql::Database;

/// What the handlers read.
#[derive(Clone)]
struct Shared {
    db: Arc<Database>,
    wire: Arc<WireStats>,
}

/// Serves the HTTP endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    db: Arc<Database>,
    wire: Arc<WireStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Shared { db, wire });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(shared): State<Shared>) -> Response {
    match crate::metrics::render(&shared.db, &shared.wire).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics scrape failed");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("metrics: {e}\n")).into_response()
        }
    }
}
