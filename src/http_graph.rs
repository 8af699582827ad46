//! `GET /api/graph`: the running pipeline as nodes and edges — sources, views, tables and sinks,
//! each with its row of the system tables (`weir_sources`, `weir_views`, `weir_sinks`; a table its
//! name and status), views with
//! their readers' partitions (`weir_source_partitions`) and running operators (what `EXPLAIN
//! ANALYZE MATERIALIZED VIEW` shows), and an edge from everything a view or sink reads. The web
//! console draws it; rates are the differences between two reads.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use weir_engine::catalog::Relation;
use weir_engine::operator_metrics::OperatorFigures;
use weir_engine::pipeline::PipelineState;
use weir_sql::SqlError;

use crate::http_api::Api;

/// `GET /api/graph`.
pub async fn graph(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(denied) = api.authorize(&headers) {
        return denied;
    }
    match graph_json(&api).await {
        Ok(graph) => (StatusCode::OK, axum::Json(graph)).into_response(),
        Err(e) => crate::http_api::statement_error(&e),
    }
}

/// The graph as JSON.
async fn graph_json(api: &Api) -> Result<Value, SqlError> {
    let sources = api.rows("SELECT * FROM weir_sources ORDER BY name").await?;
    let views = api.rows("SELECT * FROM weir_views ORDER BY name").await?;
    let sinks = api.rows("SELECT * FROM weir_sinks ORDER BY name").await?;
    let partitions = api
        .rows("SELECT * FROM weir_source_partitions ORDER BY source_name, view_name, partition")
        .await?;
    let catalog = api.frontend.database().catalog();
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for source in sources {
        let name = text(&source, "name");
        nodes.push(json!({ "id": format!("source:{name}"), "kind": "source", "name": name, "figures": source }));
    }
    // Tables are not in weir_views: their rows are written, not computed.
    let tables = catalog
        .views()
        .into_iter()
        .filter(|v| v.is_table())
        .map(|t| {
            let (status, error) = match t.status.state() {
                PipelineState::Running => ("running", None),
                PipelineState::Finished => ("finished", None),
                PipelineState::Failed(why) => ("failed", Some(why)),
            };
            json!({ "name": t.name, "status": status, "error": error, "fed_by": t.fed_by })
        });
    for view in views.into_iter().chain(tables) {
        let name = text(&view, "name");
        let Some(entry) = catalog.view(&name) else {
            continue; // dropped since the listing was read
        };
        let readers: Vec<&Value> = partitions
            .iter()
            .filter(|p| text(p, "view_name") == name)
            .collect();
        let operators: Vec<Value> = entry.status.operators().iter().map(operator).collect();
        let kind = if entry.is_table() { "table" } else { "view" };
        for input in &entry.inputs {
            let from = match catalog.relation(input) {
                Some(Relation::Source(_)) => format!("source:{input}"),
                _ => format!("view:{input}"),
            };
            edges.push(json!({ "from": from, "to": format!("view:{name}") }));
        }
        nodes.push(json!({
            "id": format!("view:{name}"),
            "kind": kind,
            "name": name,
            "figures": view,
            "readers": readers,
            "operators": operators,
        }));
    }
    for sink in sinks {
        let name = text(&sink, "name");
        let view = text(&sink, "view");
        edges.push(json!({ "from": format!("view:{view}"), "to": format!("sink:{name}") }));
        nodes.push(
            json!({ "id": format!("sink:{name}"), "kind": "sink", "name": name, "figures": sink }),
        );
    }
    Ok(json!({ "nodes": nodes, "edges": edges }))
}

fn text(row: &Value, column: &str) -> String {
    row.get(column)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn operator(figures: &OperatorFigures) -> Value {
    json!({
        "stage": figures.stage,
        "operator": figures.name,
        "shard": figures.shard_label(),
        "rows_in": figures.rows_in,
        "rows_out": figures.rows_out,
        "batches_in": figures.batches_in,
        "batches_out": figures.batches_out,
        "busy_ms": figures.busy_ms(),
        "state_bytes": figures.state_bytes,
        "watermark_ns": figures.watermark,
    })
}
