//! Creating a view over a Kafka topic with history, against the real binary and broker: the
//! `CREATE` waits until the view has read what the topic held, with NOTICEs of its progress (from
//! psql); `weir_progress` shows the figures; `WITH (background = true)` returns at once; a
//! cancelled `CREATE` leaves no view behind.

use std::time::{Duration, Instant};

use crate::broker::{Broker, Record};
use crate::harness::{Server, client_rows, psql_command};

const HISTORY: i64 = 300_000;

async fn wait_rows(client: &tokio_postgres::Client, sql: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = client_rows(client, sql).await;
        if rows.first().map(String::as_str) == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {rows:?}, want {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_waits_for_the_history_reports_progress_and_cancels_cleanly() {
    let broker = Broker::start();
    broker.create_topic("history", 2);
    let records: Vec<Record> = (0..HISTORY)
        .map(|i| Record::new((i % 2) as i32, format!("{{\"id\": {i}}}")))
        .collect();
    broker.producer().send("history", &records).await;

    let server = Server::start(&["--no-demo"]);
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE h (id BIGINT) WITH (connector = 'kafka', topic = 'history', \
               properties.bootstrap.server = '{}', scan.startup.mode = 'earliest') \
             FORMAT PLAIN ENCODE JSON",
            broker.address
        ))
        .await
        .expect("source");

    // psql prints the NOTICEs; the CREATE returns once the history is read.
    let out = psql_command(&server)
        .args(["-c", "CREATE MATERIALIZED VIEW all_ids AS SELECT id FROM h"])
        .output()
        .expect("psql");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "\"all_ids\" has read the history of h ({HISTORY} rows)"
        )),
        "{stderr}"
    );
    let progress = client_rows(
        &client,
        "SELECT rows_done, rows_to_go, share_done, caught_up FROM weir_progress \
         WHERE view_name = 'all_ids'",
    )
    .await;
    assert_eq!(progress, vec![format!("{HISTORY} | 0 | 1.0 | t")]);
    wait_rows(
        &client,
        "SELECT count(*) FROM all_ids",
        &HISTORY.to_string(),
    )
    .await;

    // In the background: the CREATE returns before the view is through.
    let started = Instant::now();
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW later WITH (background = true) AS SELECT id FROM h \
             WHERE id % 3 = 0",
        )
        .await
        .expect("background create");
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_rows(
        &client,
        "SELECT caught_up FROM weir_progress WHERE view_name = 'later'",
        "t",
    )
    .await;

    // Cancelled mid-way: an error, and no view left.
    let cancel = client.cancel_token();
    let canceller = tokio::spawn(async move {
        // Well before its readers can have read the history (connecting alone takes longer).
        tokio::time::sleep(Duration::from_millis(150)).await;
        cancel.cancel_query(tokio_postgres::NoTls).await
    });
    let error = client
        .batch_execute("CREATE MATERIALIZED VIEW cancelled AS SELECT id FROM h WHERE id % 2 = 0")
        .await
        .expect_err("the CREATE is cancelled before the history is read");
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{error}"
    );
    canceller.await.expect("join").expect("cancel sent");
    wait_rows(
        &client,
        "SELECT count(*) FROM weir_views WHERE name = 'cancelled'",
        "0",
    )
    .await;
    // The others keep running.
    wait_rows(
        &client,
        "SELECT count(*) FROM all_ids",
        &HISTORY.to_string(),
    )
    .await;
}
