//! `EXPLAIN ANALYZE MATERIALIZED VIEW` on a running view: one row per operator with figures that
//! add up (the first operator saw every generated row; rows flow from one stage to the next),
//! the window aggregate's watermark and state, and busy time; over the wire from psql too.

use futures::TryStreamExt;

use crate::harness::{Server, psql_command, wait_first_row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_views_operators_show_rows_time_state_and_watermark() {
    let session = weir::database().build().expect("database").session();
    session
        .execute_all(
            "CREATE SOURCE r (sensor_id TEXT, temperature DOUBLE PRECISION, ts TIMESTAMPTZ, \
               WATERMARK FOR ts AS ts - INTERVAL '1 second') \
             WITH (connector = 'datagen', generator = 'sensors', sensors = '20', \
               rate = 'unbounded', events = '5000', seed = '3', \
               start_time = '2024-01-01T00:00:00Z');
             CREATE MATERIALIZED VIEW hot_minutes AS
               SELECT sensor_id, window_start, count(*) AS n, avg(temperature) AS t
               FROM TUMBLE(r, ts, INTERVAL '10 seconds')
               WHERE temperature > 0 GROUP BY sensor_id, window_start;",
        )
        .await
        .expect("source and view");
    wait_first_row(
        &session,
        "SELECT status FROM weir_views WHERE name = 'hot_minutes'",
        "finished",
    )
    .await;
    let mut results = session
        .execute_all("EXPLAIN ANALYZE MATERIALIZED VIEW hot_minutes")
        .await
        .expect("explain analyze");
    let Some(weir_sql::QueryResult::Rows { stream, .. }) = results.pop() else {
        panic!("no rows")
    };
    let batches: Vec<_> = stream.try_collect().await.expect("rows");
    let rows = crate::harness::render(&batches);
    assert!(rows.len() >= 2, "{rows:#?}");
    let cells: Vec<Vec<&str>> = rows.iter().map(|r| r.split(" | ").collect()).collect();
    // stage | operator | shard | rows_in | rows_out | batches_in | batches_out | busy_ms |
    // state_bytes | watermark
    let first = &cells[0];
    assert_eq!(
        first[3], "5000",
        "the first operator sees every row: {rows:#?}"
    );
    for pair in cells.windows(2) {
        if pair[0][2] == "NULL" && pair[1][2] == "NULL" {
            assert_eq!(
                pair[0][4], pair[1][3],
                "rows out of one stage go into the next: {rows:#?}"
            );
        }
    }
    let window = cells
        .iter()
        .find(|c| {
            c[1].to_lowercase().contains("window") || c[1].to_lowercase().contains("aggregate")
        })
        .unwrap_or_else(|| panic!("no aggregate operator: {rows:#?}"));
    assert_ne!(
        window[9], "NULL",
        "the aggregate forwarded a watermark: {rows:#?}"
    );
    let busy: f64 = cells
        .iter()
        .map(|c| c[7].parse::<f64>().unwrap_or(0.0))
        .sum();
    assert!(busy > 0.0, "time was spent: {rows:#?}");

    let error = session
        .execute_all("EXPLAIN ANALYZE MATERIALIZED VIEW nope")
        .await
        .expect_err("unknown view");
    assert!(error.to_string().contains("does not exist"), "{error}");
}

#[test]
fn explain_analyze_over_the_wire() {
    let server = Server::start(&[]);
    let out = psql_command(&server)
        .args(["-c", "EXPLAIN ANALYZE MATERIALIZED VIEW sensor_stats_10s"])
        .output()
        .expect("psql");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for column in [
        "operator",
        "rows_in",
        "rows_out",
        "busy_ms",
        "state_bytes",
        "watermark",
    ] {
        assert!(text.contains(column), "{column} missing:\n{text}");
    }
}
