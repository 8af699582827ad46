//! The HTTP listener (`--http`): `GET /metrics` for Prometheus and the JSON API under `/api`
//! ([`crate::http_api`]). Off unless asked for; it serves no data a client could not read over
//! SQL, but a port is best opened on purpose. The API honours `--auth`; `/metrics` is open to
//! whoever reaches the port (as scrapers expect).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
    api: crate::http_api::Api,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use crate::http_api::{console, listing, query};
    use crate::http_graph::graph;
    let api_routes = Router::new()
        .route("/", get(console))
        .route("/api/graph", get(graph))
        .route("/api/query", post(query))
        .route("/api/{listing}", get(listing))
        .with_state(api);
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Shared { db, wire })
        .merge(api_routes);
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
