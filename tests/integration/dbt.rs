//! dbt against the real binary: `examples/dbt` (models materialized as Weir views) run with the
//! stock dbt-postgres adapter (dbt-core 1.10, dbt-postgres 1.9 in `.venv-dbt`, which the test
//! command installs): `dbt debug`, `seed`, `run` (create, then again over running views), `test`,
//! `docs generate`, and `run --full-refresh` replacing a changed model.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Server, client_rows};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies the example project to a scratch directory (dbt writes `target/` and `logs/` there).
fn copy_project(to: &Path) {
    let from = root().join("examples/dbt");
    for dir in ["", "models", "seeds"] {
        std::fs::create_dir_all(to.join(dir)).unwrap();
        for entry in std::fs::read_dir(from.join(dir)).unwrap().flatten() {
            if entry.path().is_file() {
                std::fs::copy(entry.path(), to.join(dir).join(entry.file_name())).unwrap();
            }
        }
    }
}

/// Runs `dbt <args>` in `project` against `server`; returns its output, failing on an error.
fn dbt(project: &Path, server: &Server, args: &[&str]) -> String {
    let out = Command::new(root().join(".venv-dbt/bin/dbt"))
        .args(args)
        .args(["--profiles-dir", "."])
        .current_dir(project)
        .env("WEIR_PORT", server.port.to_string())
        // No network here: no usage statistics, no version check.
        .env("DO_NOT_TRACK", "1")
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("DBT_VERSION_CHECK", "false")
        .output()
        .expect("dbt from .venv-dbt (the test command installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dbt {args:?} failed:\n{text}");
    text
}

async fn wait_for(client: &tokio_postgres::Client, sql: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = client_rows(client, sql).await;
        if rows == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {rows:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dbt_project_of_materialized_views_runs_tests_and_documents() {
    let server = Server::start(&["--no-demo"]);
    let project = tempfile::tempdir().unwrap();
    copy_project(project.path());
    let client = server.connect().await;
    let spend = "SELECT customer || ' ' || spent || ' ' || orders FROM spend ORDER BY customer";
    let big = "SELECT customer FROM big_spenders ORDER BY customer";

    let out = dbt(project.path(), &server, &["debug"]);
    assert!(out.contains("All checks passed"), "{out}");
    dbt(project.path(), &server, &["seed"]);
    let out = dbt(project.path(), &server, &["run"]);
    assert!(out.contains("PASS=2"), "{out}");
    wait_for(&client, spend, &["ann 15 2", "bob 20 1", "cy 3 1"]).await;
    wait_for(&client, big, &["ann", "bob"]).await;

    // The views follow new rows without another dbt run.
    client
        .execute("INSERT INTO orders VALUES (5, 'cy', 9)", &[])
        .await
        .unwrap();
    wait_for(&client, big, &["ann", "bob", "cy"]).await;

    // Run again over the running views: nothing is rebuilt, nothing fails.
    let out = dbt(project.path(), &server, &["run"]);
    assert!(out.contains("PASS=2") && out.contains("ERROR=0"), "{out}");
    wait_for(&client, spend, &["ann 15 2", "bob 20 1", "cy 12 2"]).await;

    let out = dbt(project.path(), &server, &["test"]);
    assert!(out.contains("PASS=5") && out.contains("ERROR=0"), "{out}");

    dbt(project.path(), &server, &["docs", "generate"]);
    let catalog: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join("target/catalog.json")).unwrap(),
    )
    .unwrap();
    let node = &catalog["nodes"]["model.weir_shop.spend"];
    assert_eq!(node["metadata"]["type"], "MATERIALIZED VIEW", "{node}");
    let columns = node["columns"].as_object().expect("columns");
    for column in ["customer", "spent", "orders"] {
        assert!(columns.contains_key(column), "{column} missing from {node}");
    }
    assert!(
        catalog["errors"].is_null(),
        "catalog errors: {}",
        catalog["errors"]
    );

    // A changed model replaces its view with --full-refresh.
    std::fs::write(
        project.path().join("models/big_spenders.sql"),
        "select customer, spent from {{ ref('spend') }} where spent > 16\n",
    )
    .unwrap();
    let out = dbt(project.path(), &server, &["run", "--full-refresh"]);
    assert!(out.contains("PASS=2"), "{out}");
    wait_for(&client, big, &["bob"]).await;
    wait_for(&client, spend, &["ann 15 2", "bob 20 1", "cy 12 2"]).await;

    // Seeds load again with --full-refresh (the table and the views over it are recreated).
    dbt(project.path(), &server, &["seed", "--full-refresh"]);
    dbt(project.path(), &server, &["run"]);
    wait_for(&client, spend, &["ann 15 2", "bob 20 1", "cy 3 1"]).await;
}
