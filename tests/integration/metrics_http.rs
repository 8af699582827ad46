//! `--http`: `GET /metrics` from the real binary, as Prometheus scrapes it: sources, views,
//! sinks, checkpoints and the PostgreSQL front end, in the OpenMetrics text format.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::harness::{Server, free_port};

/// A plain HTTP/1.1 GET; the whole response (head and body).
fn get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_sources_views_sinks_checkpoints_and_clients() {
    let http = free_port();
    let data = tempfile::tempdir().expect("tempdir");
    let address = format!("127.0.0.1:{http}");
    let server = Server::start_in(
        data.path(),
        &[
            "--no-demo",
            "--http",
            &address,
            "--checkpoint-interval",
            "200ms",
        ],
    );
    let client = server.connect().await;
    let out = data.path().join("files");
    for statement in [
        "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '1 second')
         WITH (connector = 'datagen', generator = 'bids', rate = '20000', events = '20000')"
            .to_string(),
        "CREATE MATERIALIZED VIEW counts AS SELECT window_start, count(*) AS n
         FROM TUMBLE(bids, ts, INTERVAL '1 second') GROUP BY window_start EMIT ON WINDOW CLOSE"
            .to_string(),
        format!(
            "CREATE SINK files FROM counts WITH (connector = 'parquet', path = '{}')",
            out.display()
        ),
    ] {
        client
            .simple_query(&statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    assert!(client.simple_query("SELECT nope").await.is_err());
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let response = get(http, "/metrics");
        if response.contains(
            "weir_source_records_total{source=\"bids\",view=\"counts\",partition=\"0\"} 20000",
        ) && response.contains("weir_checkpoint_epoch ")
        {
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed every row: {response}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("content-type: application/openmetrics-text"),
        "{body}"
    );
    for expected in [
        "# TYPE weir_view_rows_in counter",
        "weir_view_rows_in_total{view=\"counts\"} 20000",
        "weir_view_watermark_delay_seconds{view=\"counts\"}",
        "weir_view_state_bytes{view=\"counts\"}",
        "weir_sink_rows_pending{sink=\"files\",view=\"counts\",connector=\"parquet\"}",
        "weir_checkpoint_duration_seconds ",
        "weir_pgwire_open_connections 1",
        "weir_pgwire_statement_errors_total 1",
        "# EOF",
    ] {
        assert!(body.contains(expected), "no {expected} in {body}");
    }
    assert!(get(http, "/nothing").starts_with("HTTP/1.1 404"));

    // The Grafana dashboard of Weir's own metrics names only metrics Weir serves.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/grafana/dashboards/weir-metrics.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    let mut named = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("weir_"))
            {
                let family = name.strip_suffix("_total").unwrap_or(name);
                assert!(
                    body.contains(&format!("# TYPE {family} ")),
                    "{}: {name} is not served",
                    panel["title"]
                );
                named += 1;
            }
        }
    }
    assert!(named >= 15, "{named} metrics named");
}
