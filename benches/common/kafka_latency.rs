//! Produce → visible latency through a real broker: records produced at a steady rate (each
//! carrying its send time in microseconds), read by a bare librdkafka consumer (what any reader
//! pays: the producer's linger, the broker, the fetch) and by Weir (the same, plus decoding and a
//! pass-through view: the row counts once the view's changes carry it). Same broker, same
//! settings (producer linger 5 ms, consumer fetch wait 10 ms), one after the other on fresh
//! topics.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weir_engine::message::Message;

/// Records per second.
pub const RATE: u64 = 100_000;
/// Seconds of records per run.
pub const SECONDS: u64 = 5;
/// The first second is the consumers' warm-up (connections, first fetch): not counted.
const WARM_UP: u64 = RATE;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Produces `RATE` records per second for `SECONDS` to `topic`, in 1 ms steps.
pub fn produce_paced(bootstrap: &str, topic: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let per_ms = RATE / 1000;
    let start = Instant::now();
    let mut payload = String::with_capacity(64);
    for step in 0..SECONDS * 1000 {
        let due = start + Duration::from_millis(step);
        while Instant::now() < due {
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_micros(200));
        }
        for k in 0..per_ms {
            use std::fmt::Write as _;
            payload.clear();
            let _ = write!(
                payload,
                r#"{{"seq":{},"sent_us":{}}}"#,
                step * per_ms + k,
                now_micros()
            );
            while producer
                .send(
                    BaseRecord::<(), str>::to(topic)
                        .payload(payload.as_str())
                        .partition(0),
                )
                .is_err()
            {
                producer.poll(Duration::from_millis(1));
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// A bare consumer's latencies (ms) over the records of `topic`.
pub fn bare(bootstrap: &str, topic: &str) -> Vec<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-latency")
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&list).expect("assign");
    let total = RATE * SECONDS;
    let mut latencies = Vec::with_capacity(total as usize);
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(SECONDS + 60);
    while seen < total && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let now = now_micros();
            seen += 1;
            if seen > WARM_UP
                && let Some(sent) = m.payload().and_then(sent_micros)
            {
                latencies.push((now - sent) as f64 / 1000.0);
            }
        }
    }
    latencies
}

/// The `sent_us` of a payload.
fn sent_micros(payload: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(payload).ok()?;
    let at = text.find("\"sent_us\":")? + "\"sent_us\":".len();
    text[at..].trim_end_matches('}').parse().ok()
}

/// Weir's latencies (ms): rows of a pass-through view over `topic`, timed as the view's changes
/// carry them.
pub async fn weir(bootstrap: &str, topic: &str) -> Vec<f64> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    let db = weir::database().build().expect("database");
    let session = db.session();
    session
        .execute_all(&format!(
            "CREATE SOURCE lat (seq BIGINT, sent_us BIGINT)
             WITH (connector = 'kafka', topic = '{topic}', properties.bootstrap.server = '{bootstrap}',
                   properties.fetch.wait.max.ms = '10') FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW v AS SELECT seq, sent_us FROM lat;"
        ))
        .await
        .expect("view");
    let entry = db.catalog().view("v").expect("view");
    let (_, mut live) = entry.fanout.subscribe().await.expect("subscribe");
    let total = (RATE * SECONDS) as usize;
    let mut latencies = Vec::with_capacity(total);
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SECONDS + 60);
    while seen < total {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, live.recv()).await else {
            break;
        };
        if let Message::Changes(changes) = message {
            let now = now_micros();
            let sent = changes.rows().column(1).as_primitive::<Int64Type>();
            for &s in sent.values() {
                seen += 1;
                if seen as u64 > WARM_UP {
                    latencies.push((now - s) as f64 / 1000.0);
                }
            }
        }
    }
    latencies
}

/// `(p50, p99, max)` of `latencies`.
pub fn percentiles(latencies: &mut [f64]) -> (f64, f64, f64) {
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.99), at(1.0))
}
