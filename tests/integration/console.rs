//! The web console in a real browser (Playwright driving Debian's headless Chromium, both
//! installed by the test command): the demo server with `--http`, and
//! `tests/clients/console.py` checking that the page loads, draws the demo pipeline with live
//! throughput, runs a query into a table, charts a view's time series, shows errors with their
//! SQLSTATE, and opens the source-errors and late-rows pages.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Server, free_port};

#[test]
fn the_console_shows_the_pipeline_and_runs_queries_in_chromium() {
    let http = free_port();
    let address = format!("127.0.0.1:{http}");
    let _server = Server::start(&["--http", &address]);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().expect("tempdir");
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/clients/console.py"))
        .arg(http.to_string())
        .arg("/usr/bin/chromium")
        .current_dir(scratch.path())
        .output()
        .expect("python from .venv with playwright (the test command installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "console.py failed:\n{text}");
}
