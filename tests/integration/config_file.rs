//! `weir --config weir.toml`: the file sets the server up, flags and WEIR_… variables override
//! it, a key the server does not know stops it with the key's name, and the documented sample
//! (`examples/weir.toml`) is a valid file.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Server, client_rows, free_port};

/// Waits for a server started by hand to accept connections on `port`.
fn wait_listening(child: &mut std::process::Child, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "weir exited instead of listening on {port}"
        );
        assert!(Instant::now() < deadline, "weir did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_sets_the_server_up_and_flags_override_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (in_file, on_flag) = (free_port(), free_port());
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{in_file}\"\ndata-dir = \"state\"\nno-demo = false\n\
             checkpoint-interval = \"250ms\"\nworkers = 2\nlog-level = \"warn\"\n"
        ),
    )
    .expect("config");
    // The flag moves the port; the environment turns the demo off; the rest is the file's.
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{on_flag}"))
        .env("WEIR_NO_DEMO", "true")
        .env_remove("WEIR_LOG_LEVEL")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start weir");
    wait_listening(&mut child, on_flag);
    assert!(std::net::TcpStream::connect(("127.0.0.1", in_file)).is_err());
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={on_flag} user=weir dbname=weir"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    assert_eq!(
        client_rows(&client, "SELECT count(*) FROM weir_views").await,
        vec!["0"],
        "WEIR_NO_DEMO overrides no-demo = false"
    );
    // data-dir is relative to the file: the catalog lands beside it.
    assert!(
        dir.path().join("state").is_dir(),
        "data directory beside the file"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn an_unknown_key_stops_the_server_with_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, "lisen = \"127.0.0.1:5488\"\n").expect("config");
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run weir");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("lisen"), "{stderr}");
    // A value of the wrong kind names its key too.
    std::fs::write(&config, "workers = \"many\"\n").expect("config");
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run weir");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("workers"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_sample_is_a_valid_file() {
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/weir.toml");
    let data = tempfile::tempdir().expect("tempdir");
    // The harness's --listen and --data-dir win over the sample's; the rest is the sample's.
    let server = Server::start_in(
        data.path(),
        &["--config", sample.to_str().expect("path"), "--no-demo"],
    );
    let client = server.connect().await;
    assert_eq!(client_rows(&client, "SELECT 1").await, vec!["1"]);
}
