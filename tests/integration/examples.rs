//! The examples in `examples/` as shipped (their paced generators made bounded and fast), run
//! in-process, their views checked against batch queries over the rows they read.

use std::time::{Duration, Instant};

use crate::harness::query_rows;

/// Runs `examples/<file>` with its generator's `rate = '500'` replaced by a bounded run of
/// `events` events, and waits until `views` are finished.
async fn run_example(file: &str, events: u64, views: &[&str]) -> weir_sql::Session {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("examples").join(file)).expect("example");
    let bounded = example.replace(
        "rate = '500'",
        &format!(
            "rate = 'unbounded', events = '{events}', seed = '11', start_time = '2024-01-01T00:00:00Z'"
        ),
    );
    assert_ne!(bounded, example, "{file}: the generator options changed");
    let session = weir::database().build().expect("database").session();
    session.execute_all(&bounded).await.expect("example");
    let list = views
        .iter()
        .map(|v| format!("'{v}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = query_rows(
            &session,
            &format!(
                "SELECT string_agg(DISTINCT status, ',') FROM weir_views WHERE name IN ({list})"
            ),
        )
        .await;
        if status.first().map(String::as_str) == Some("finished") {
            return session;
        }
        assert!(
            Instant::now() < deadline,
            "{file}: views did not finish: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows in one query's result and not the other's, both ways (as multisets).
async fn difference(session: &weir_sql::Session, view: &str, expected: &str) -> Vec<String> {
    query_rows(
        session,
        &format!(
            "WITH expected AS ({expected}) \
             SELECT count(*) FROM ((SELECT * FROM {view} EXCEPT ALL SELECT * FROM expected) \
             UNION ALL (SELECT * FROM expected EXCEPT ALL SELECT * FROM {view}))"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_correlated_alerts_example_pairs_alerts_in_time_and_space() {
    let session = run_example(
        "correlated_alerts.sql",
        200_000,
        &["fab_alerts", "repeat_alerts", "neighbour_alerts"],
    )
    .await;
    let repeats = "SELECT a.equipment_id, a.sensor_id, a.ts, b.sensor_id, b.ts \
                   FROM fab_alerts a JOIN fab_alerts b ON a.equipment_id = b.equipment_id \
                   AND b.ts > a.ts AND b.ts <= a.ts + INTERVAL '10 minutes'";
    assert_eq!(
        difference(&session, "repeat_alerts", repeats).await,
        vec!["0"]
    );
    let neighbours = "SELECT a.line, a.equipment_id, a.ts, b.equipment_id, b.ts \
                      FROM fab_alerts a JOIN fab_alerts b ON a.line = b.line \
                      AND b.ts > a.ts AND b.ts <= a.ts + INTERVAL '10 minutes' \
                      AND abs(a.position - b.position) = 1";
    assert_eq!(
        difference(&session, "neighbour_alerts", neighbours).await,
        vec!["0"]
    );
    // The alerts are placed on their lines, and most flag readings the simulator made anomalous.
    let counts = query_rows(
        &session,
        "SELECT (SELECT count(*) FROM fab_alerts) AS alerts, (SELECT count(*) FROM repeat_alerts) AS repeats, \
                (SELECT count(*) FROM neighbour_alerts) AS neighbours, \
                (SELECT count(*) FROM fab_alerts WHERE line IS NULL OR position IS NULL) AS unplaced",
    )
    .await;
    let numbers: Vec<u64> = counts[0]
        .split(" | ")
        .map(|n| n.parse().expect("count"))
        .collect();
    println!("correlated alerts: alerts, repeats, neighbours, unplaced = {numbers:?}");
    assert!(numbers[0] > 50, "{numbers:?}");
    assert!(numbers[1] > 0 && numbers[2] > 0, "{numbers:?}");
    assert_eq!(numbers[3], 0, "{numbers:?}");
}
