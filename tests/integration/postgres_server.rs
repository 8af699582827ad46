//! A throwaway PostgreSQL server (Debian's `postgresql` package, installed by the test command)
//! on a free loopback port, for the PostgreSQL sink. As root (CI) it runs as the `postgres`
//! user, since PostgreSQL refuses to run as root.

//!
//! Also compiled into the sinks bench (`benches/common/mod.rs`), so it stands alone.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; stopped and removed on drop.
pub struct PgServer {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

fn bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL server binaries in /usr/lib/postgresql (the test command installs them)",
        )
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join(name).is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|p| p.join(name))
        .unwrap_or_else(|| panic!("no {name} under /usr/lib/postgresql"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args…`, as the `postgres` user when running as root.
fn run_as_postgres(program: PathBuf, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

impl PgServer {
    /// Initialises a cluster in a temporary directory and starts it.
    pub fn start() -> PgServer {
        let dir = tempfile::tempdir().expect("tempdir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let data = dir.path().join("data");
        let data_s = data.to_string_lossy().into_owned();
        let out = run_as_postgres(
            bin("initdb"),
            &["-D", &data_s, "-A", "trust", "-U", "postgres"],
        )
        .output()
        .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let server = PgServer { dir, port };
        server.start_again();
        server
    }

    /// Starts the (stopped) server on its port and waits until it answers.
    pub fn start_again(&self) {
        let data = self.dir.path().join("data").to_string_lossy().into_owned();
        let socket_dir = self.dir.path().to_string_lossy().into_owned();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {socket_dir} -c fsync=off",
            self.port
        );
        let log = self.dir.path().join("log").to_string_lossy().into_owned();
        let status = run_as_postgres(
            bin("pg_ctl"),
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        )
        .stdout(Stdio::null())
        .status()
        .expect("pg_ctl start");
        assert!(status.success(), "PostgreSQL did not start (log in {log})");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&self) {
        let data = self.dir.path().join("data").to_string_lossy().into_owned();
        let _ = run_as_postgres(bin("pg_ctl"), &["-D", &data, "-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status();
    }

    /// libpq connection settings for the `postgres` database.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// Connects with tokio-postgres.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.conninfo(), tokio_postgres::NoTls)
            .await
            .expect("connect to PostgreSQL");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").to_string_lossy().into_owned();
        let _ = run_as_postgres(
            bin("pg_ctl"),
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    }
}
