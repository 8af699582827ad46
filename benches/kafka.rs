//! Kafka JSON → tumbling view throughput, with librdkafka's own consume rate as the ceiling.
//!
//! `cargo bench --bench kafka [-- <records>]` (default 1,000,000). Starts tansu (from the
//! `.venv` that `scripts/test.sh` creates, or `WEIR_TANSU`) on a free loopback port, produces
//! the records once, then in the same process and run:
//!
//! 1. **ceiling**: a bare librdkafka consumer (`assign` + `poll`) reads every record and touches
//!    its payload: what any Kafka reader on this machine pays before decoding anything;
//! 2. **weir**: `CREATE SOURCE … FORMAT PLAIN ENCODE JSON` and a 10-second tumbling
//!    `count`/`avg`/`max` per sensor over 10,000 sensors, until the source has delivered every
//!    record and the final watermark has closed every window;
//! 3. the same readings and view with `ENCODE AVRO` (bare datums, inline schema) and
//!    `ENCODE PROTOBUF` (inline `.proto`, the time a `google.protobuf.Timestamp`), each from its
//!    own topic.
//!
//! Each prints wall time, records per second and records per CPU-second (process CPU time, all
//! threads: librdkafka's included), and the figures go to BENCHMARKS.md with machine and commit.
//!
//! `cargo bench --bench kafka -- scaling`: the JSON run from a topic of two partitions on one
//! worker and on two, the speed-up in BENCHMARKS.md's `kafka_scaling` section.
//!
//! `cargo bench --bench kafka -- views`: the JSON readings read by one view (the tumbling view)
//! and by ten (the same view and nine alert filters), which share one reader of the topic; the
//! cost ratio is in BENCHMARKS.md's `kafka_views` section.
//!
//! `cargo bench --bench kafka -- latency`: produce → visible latency at 100,000 records/s, a bare
//! consumer beside Weir ([`common::kafka_latency`]), in BENCHMARKS.md's `kafka_latency` section.

// A bench program: it prints its figures, and a failed expectation aborts the run.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

mod common;
use common::broker::Broker;
use common::{Figures, commit, cpu_seconds, machine, peak_rss_mb, scalar, today, write_section};

const SENSORS: u64 = 10_000;
/// Event time advances 1 ms per 10 records: 100,000 records per 10-second window, 10 per sensor.
const T0_MS: i64 = 1_704_067_200_000;
const RECORDS_PER_MS: u64 = 10;

/// The payload of reading `i` in one of the benchmarked encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Avro,
    Protobuf,
}

const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "reading", "fields": [
  {"name": "sensor_id", "type": "string"}, {"name": "temperature", "type": "double"},
  {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#;

const PROTO_SCHEMA: &str = r#"syntax = "proto3";
import "google/protobuf/timestamp.proto";
message Reading { string sensor_id = 1; double temperature = 2; google.protobuf.Timestamp ts = 3; }"#;

impl Encoding {
    fn topic(self) -> &'static str {
        match self {
            Encoding::Json => "bench",
            Encoding::Avro => "bench_avro",
            Encoding::Protobuf => "bench_pb",
        }
    }

    fn clause(self) -> String {
        match self {
            Encoding::Json => "ENCODE JSON".into(),
            Encoding::Avro => format!("ENCODE AVRO (schema = '{AVRO_SCHEMA}')"),
            Encoding::Protobuf => format!("ENCODE PROTOBUF (schema = '{PROTO_SCHEMA}')"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Encoding::Json => "JSON",
            Encoding::Avro => "Avro",
            Encoding::Protobuf => "Protobuf",
        }
    }

    /// Writes reading (`sensor`, `temperature`, `ts_ms`) into `out`.
    fn encode(self, out: &mut Vec<u8>, sensor: &str, temperature: f64, ts_ms: i64) {
        use std::io::Write as _;
        out.clear();
        match self {
            Encoding::Json => {
                let _ = write!(
                    out,
                    r#"{{"sensor_id":"{sensor}","temperature":{temperature},"ts":{ts_ms}}}"#
                );
            }
            Encoding::Avro => {
                zigzag(out, sensor.len() as i64);
                out.extend_from_slice(sensor.as_bytes());
                out.extend_from_slice(&temperature.to_le_bytes());
                zigzag(out, ts_ms);
            }
            Encoding::Protobuf => {
                out.push(0x0a);
                varint(out, sensor.len() as u64);
                out.extend_from_slice(sensor.as_bytes());
                out.push(0x11);
                out.extend_from_slice(&temperature.to_le_bytes());
                let mut ts = Vec::with_capacity(12);
                ts.push(0x08);
                varint(&mut ts, (ts_ms / 1000) as u64);
                ts.push(0x10);
                varint(&mut ts, ((ts_ms % 1000) * 1_000_000) as u64);
                out.push(0x1a);
                varint(out, ts.len() as u64);
                out.extend_from_slice(&ts);
            }
        }
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(out: &mut Vec<u8>, v: i64) {
    varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Produces `records` readings in `encoding` to `topic`, dealt round-robin over its
/// `partitions`, then one far-ahead record per partition that closes every window.
fn produce(bootstrap: &str, records: u64, encoding: Encoding, topic: &str, partitions: i32) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let mut payload = Vec::with_capacity(128);
    let mut sensor = String::with_capacity(16);
    for i in 0..records {
        use std::fmt::Write as _;
        sensor.clear();
        let _ = write!(sensor, "sensor-{}", i * 7919 % SENSORS);
        let temperature = (15 + i % 20) as f64 + (i % 10) as f64 / 10.0;
        encoding.encode(
            &mut payload,
            &sensor,
            temperature,
            T0_MS + (i / RECORDS_PER_MS) as i64,
        );
        loop {
            match producer.send(
                BaseRecord::<(), [u8]>::to(topic)
                    .payload(payload.as_slice())
                    .partition((i % partitions as u64) as i32),
            ) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
    // One record far ahead in each partition closes every window.
    encoding.encode(
        &mut payload,
        "end",
        0.0,
        T0_MS + (records / RECORDS_PER_MS) as i64 + 3_600_000,
    );
    for partition in 0..partitions {
        producer
            .send(
                BaseRecord::<(), [u8]>::to(topic)
                    .payload(payload.as_slice())
                    .partition(partition),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
}

fn ceiling(bootstrap: &str, records: u64) -> Figures {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-ceiling")
        .set("enable.auto.commit", "false")
        .set("queued.max.messages.kbytes", "16384")
        // The same fetch settings as Weir's reader, so the ceiling is not held back by
        // librdkafka's default 1 s fetch backoff.
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset("bench", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let (t, c) = (Instant::now(), cpu_seconds());
    let (mut seen, mut bytes) = (0u64, 0usize);
    while seen < records {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            bytes += m.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    std::hint::black_box(bytes);
    Figures {
        name: "librdkafka consume (ceiling)".into(),
        wall: t.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c,
        items: records,
    }
}

/// The source over `topic` in encoding `clause` and the benchmarked view: a 10 s tumbling
/// count/avg/max per sensor, emitted when windows close.
fn source_and_stats(bootstrap: &str, topic: &str, clause: &str) -> String {
    format!(
        "CREATE SOURCE readings (sensor_id VARCHAR, temperature DOUBLE, ts TIMESTAMP(3) WITH TIME ZONE,
                                 WATERMARK FOR ts AS ts - INTERVAL '2 seconds')
         WITH (connector = 'kafka', topic = '{topic}', properties.bootstrap.server = '{bootstrap}')
         FORMAT PLAIN {clause};
         CREATE MATERIALIZED VIEW stats AS
           SELECT sensor_id, window_start, count(*) AS n, avg(temperature) AS avg_t, max(temperature) AS max_t
           FROM TUMBLE(readings, ts, INTERVAL '10 seconds') GROUP BY sensor_id, window_start
           EMIT ON WINDOW CLOSE;"
    )
}

/// Where a Weir run reads: the topic, its partitions, and the workers (None: one per core).
#[derive(Debug, Clone, Copy)]
struct Run<'a> {
    topic: &'a str,
    partitions: u64,
    workers: Option<usize>,
}

async fn weir(bootstrap: &str, records: u64, encoding: Encoding, run: Run<'_>) -> Figures {
    let mut builder = weir::database();
    if let Some(workers) = run.workers {
        builder = builder.workers(workers);
    }
    let db = builder.build().expect("database");
    let s = db.session();
    let (t, c) = (Instant::now(), cpu_seconds());
    let (topic, clause) = (run.topic, encoding.clause());
    s.execute_all(&source_and_stats(bootstrap, topic, &clause))
        .await
        .expect("create");
    let total = records + run.partitions;
    // Every sensor appears in every window, so all windows are final at this many rows. The
    // progress queries read system tables only, so polling costs next to nothing.
    let final_rows = records.div_ceil(10_000 * RECORDS_PER_MS) * SENSORS;
    loop {
        let delivered: u64 = scalar(&s, "SELECT sum(records) FROM weir_source_partitions")
            .await
            .parse()
            .unwrap_or(0);
        let closed: u64 = scalar(&s, "SELECT final_rows FROM weir_views WHERE name = 'stats'")
            .await
            .parse()
            .unwrap_or(0);
        if delivered >= total && closed >= final_rows {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let figures = Figures {
        name: format!("weir: Kafka {} → 10 s tumbling view", encoding.label()),
        wall: t.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c,
        items: records,
    };
    let rows = scalar(&s, "SELECT sum(n) FROM stats").await;
    assert_eq!(rows, records.to_string(), "every record counted once");
    figures
}

fn write_report(records: u64, figures: &[Figures], rss: f64) {
    let mut section = format!(
        "## Kafka JSON → tumbling view\n\n`cargo bench --bench kafka -- {records}` · commit {} · {} · {}\n\n\
         {records} JSON records (~70 bytes, 10 per millisecond of event time) in one partition of a tansu broker \
         on loopback, and the same readings as bare Avro datums and as Protobuf messages (each in a topic of its \
         own, read by a fresh database); the view is a 10 s tumbling count/avg/max per sensor over 10,000 sensors (10 records per \
         sensor and window). Process CPU time includes librdkafka's threads; the broker runs on the same 2 cores \
         and is not counted.\n\n\
         | run | wall s | records/s | records per CPU-second |\n|---|---:|---:|---:|\n",
        commit(),
        today(),
        machine()
    );
    for f in figures {
        section.push_str(&format!(
            "| {} | {:.2} | {:.0} | {:.0} |\n",
            f.name,
            f.wall,
            f.per_second(),
            f.per_cpu_second()
        ));
    }
    if let [ceiling, json, others @ ..] = figures {
        section.push_str(&format!(
            "\nWeir (JSON) / ceiling, per CPU-second: **{:.2}**. Peak RSS of the bench process: {rss:.0} MB.\n",
            json.per_cpu_second() / ceiling.per_cpu_second()
        ));
        for other in others {
            section.push_str(&format!(
                "- {}: **{:.2}** of JSON per CPU-second, {:.2} of the ceiling.\n",
                other.name,
                other.per_cpu_second() / json.per_cpu_second(),
                other.per_cpu_second() / ceiling.per_cpu_second()
            ));
        }
        if !others.is_empty() {
            section.push_str(
                "\nAvro and Protobuf records are smaller (~30 bytes against ~70), so the ceiling, \
                 measured on the JSON topic, overstates what reading them costs librdkafka.\n",
            );
        }
    }
    write_section("kafka", &section);
}

/// Rounds per worker count in the scaling runs (medians are reported).
const SCALING_ROUNDS: usize = 3;

/// `-- scaling`: the JSON readings from a topic of two partitions on one worker (one runtime
/// thread, one reader, one shard) and on two (two threads, a reader per partition, two shards),
/// alternately; the BENCHMARKS.md section `kafka_scaling`.
fn scaling(records: u64) {
    let broker = Broker::start();
    let topic = "bench_scaling";
    broker.create_topic(topic, 2);
    produce(&broker.address, records, Encoding::Json, topic, 2);
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut cpus: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..SCALING_ROUNDS {
        for (slot, workers) in [1usize, 2].into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .expect("runtime");
            let run = Run {
                topic,
                partitions: 2,
                workers: Some(workers),
            };
            let f = runtime.block_on(weir(&broker.address, records, Encoding::Json, run));
            println!(
                "round {round}: {workers} worker(s) {:.2} s wall, {:.0} records/s, {:.2} CPU-s",
                f.wall,
                f.per_second(),
                f.cpu
            );
            rates[slot].push(f.per_second());
            cpus[slot].push(f.cpu);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [r1, r2] = rates.map(median);
    let [c1, c2] = cpus.map(median);
    let section = format!(
        "## Kafka JSON, 1 → 2 workers\n\n`cargo bench --bench kafka -- scaling {records}` · commit {commit} · {today} · {machine}\n\n\
         {records} JSON readings in a topic of two partitions (tansu on loopback, on the same 2 cores), the \
         10 s tumbling view of the Kafka section; one worker (one runtime thread, one reader, one shard) and two \
         (two threads, a reader per partition, two shards), alternately, {SCALING_ROUNDS} rounds each, medians.\n\n\
         | workers | records/s | CPU-s |\n|---|---:|---:|\n| 1 | {r1:.0} | {c1:.2} |\n| 2 | {r2:.0} | {c2:.2} |\n\n\
         Speed-up: **{speedup:.2}×** (goal ≥ 1.7×).\n",
        speedup = r2 / r1,
        commit = commit(),
        today = today(),
        machine = machine()
    );
    println!("{section}");
    write_section("kafka_scaling", &section);
}

/// One database with the tumbling view and `views - 1` alert filters over the JSON topic `topic`,
/// until every view has taken in every record and every window has closed.
async fn views_run(bootstrap: &str, records: u64, topic: &str, views: usize) -> Figures {
    let db = weir::database().build().expect("database");
    let s = db.session();
    let (t, c) = (Instant::now(), cpu_seconds());
    let mut statements = source_and_stats(bootstrap, topic, "ENCODE JSON");
    for i in 1..views {
        statements.push_str(&format!(
            "CREATE MATERIALIZED VIEW alerts_{i} AS SELECT sensor_id, temperature, ts FROM readings
               WHERE temperature > {:.1};",
            34.0 + i as f64 / 10.0
        ));
    }
    s.execute_all(&statements).await.expect("create");
    let total = records + 1;
    let final_rows = records.div_ceil(10_000 * RECORDS_PER_MS) * SENSORS;
    loop {
        let taken: u64 = scalar(&s, "SELECT min(rows_in) FROM weir_views")
            .await
            .parse()
            .unwrap_or(0);
        let closed: u64 = scalar(&s, "SELECT final_rows FROM weir_views WHERE name = 'stats'")
            .await
            .parse()
            .unwrap_or(0);
        if taken >= total && closed >= final_rows {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let figures = Figures {
        name: format!("{views} view(s)"),
        wall: t.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c,
        items: records,
    };
    assert_eq!(
        scalar(&s, "SELECT sum(n) FROM stats").await,
        records.to_string(),
        "every record counted once"
    );
    let readers = db.catalog().shared_sources.readers();
    println!("{views} view(s): {readers} reader(s) at the end");
    figures
}

/// `-- views`: one view, then ten, over the same topic, alternately; the BENCHMARKS.md section
/// `kafka_views`.
fn views(records: u64) {
    let broker = Broker::start();
    let topic = "bench_views";
    broker.create_topic(topic, 1);
    produce(&broker.address, records, Encoding::Json, topic, 1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut cpus: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut walls: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..SCALING_ROUNDS {
        for (slot, n) in [1usize, 10].into_iter().enumerate() {
            let f = runtime.block_on(views_run(&broker.address, records, topic, n));
            println!(
                "round {round}: {n} view(s) {:.2} s wall, {:.2} CPU-s",
                f.wall, f.cpu
            );
            cpus[slot].push(f.cpu);
            walls[slot].push(f.wall);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [c1, c10] = cpus.map(median);
    let [w1, w10] = walls.map(median);
    let section = format!(
        "## Ten views over one Kafka topic\n\n`cargo bench --bench kafka -- views {records}` · commit {commit} · {today} · {machine}\n\n\
         {records} JSON readings in one partition (tansu on loopback, on the same 2 cores). One view: the 10 s \
         tumbling view of the Kafka section. Ten views: that view and nine alert filters \
         (`WHERE temperature > 34.1 … 34.9`), created together; they share one reader of the topic, so each \
         record is fetched and decoded once. Alternately, {SCALING_ROUNDS} rounds each, medians; CPU is the \
         process's, librdkafka's threads included.\n\n\
         | views | wall s | CPU-s |\n|---|---:|---:|\n| 1 | {w1:.2} | {c1:.2} |\n| 10 | {w10:.2} | {c10:.2} |\n\n\
         Ten views cost **{ratio:.2}×** one in CPU (goal < 2×).\n",
        ratio = c10 / c1,
        commit = commit(),
        today = today(),
        machine = machine()
    );
    println!("{section}");
    write_section("kafka_views", &section);
}

/// The latency runs and their section.
fn latency(broker: &Broker) {
    use common::kafka_latency::{RATE, SECONDS, bare, percentiles, produce_paced, weir};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    for (name, topic) in [
        ("bare librdkafka consumer", "lat-bare"),
        ("weir: pass-through view", "lat-weir"),
    ] {
        broker.create_topic(topic, 1);
        let address = broker.address.clone();
        let producer = std::thread::spawn({
            let topic = topic.to_string();
            move || produce_paced(&address, &topic)
        });
        let mut latencies = if topic == "lat-bare" {
            bare(&broker.address, topic)
        } else {
            runtime.block_on(weir(&broker.address, topic))
        };
        producer.join().expect("producer");
        let (p50, p99, max) = percentiles(&mut latencies);
        println!(
            "{name:<30} {} records  p50 {p50:.1} ms  p99 {p99:.1} ms  max {max:.1} ms",
            latencies.len()
        );
        rows.push((name, latencies.len(), p50, p99, max));
    }
    let mut section = format!(
        "## Kafka produce → visible latency\n\n`cargo bench --bench kafka -- latency` · commit {} · {} · {}\n\n\
         {RATE} records/s for {SECONDS} s into one partition of a tansu broker on loopback (producer \
         linger 5 ms), each carrying its send time; read by a bare librdkafka consumer and by Weir \
         (a Kafka source and a pass-through view; a row counts when the view's changes carry it), \
         both with fetch wait 10 ms, one after the other on fresh topics. The first second is \
         warm-up and not counted.\n\n\
         | reader | records | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n",
        commit(),
        today(),
        machine()
    );
    for (name, n, p50, p99, max) in &rows {
        section.push_str(&format!(
            "| {name} | {n} | {p50:.1} | {p99:.1} | {max:.1} |\n"
        ));
    }
    if let [(_, _, b50, b99, _), (_, _, w50, w99, _)] = rows.as_slice() {
        section.push_str(&format!(
            "\nWeir above the bare consumer: p50 +{:.1} ms, p99 +{:.1} ms (goal: p99 ≤ +20 ms).\n",
            w50 - b50,
            w99 - b99
        ));
    }
    write_section("kafka_latency", &section);
}

fn main() {
    if std::env::args().any(|a| a == "latency") {
        let broker = Broker::start();
        latency(&broker);
        return;
    }
    let records: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    if std::env::args().any(|a| a == "scaling") {
        scaling(records);
        return;
    }
    if std::env::args().any(|a| a == "views") {
        views(records);
        return;
    }
    let broker = Broker::start();
    let encodings = [Encoding::Json, Encoding::Avro, Encoding::Protobuf];
    for encoding in encodings {
        broker.create_topic(encoding.topic(), 1);
        let t = Instant::now();
        produce(&broker.address, records, encoding, encoding.topic(), 1);
        println!(
            "produced {records} {} records in {:.1} s",
            encoding.label(),
            t.elapsed().as_secs_f64()
        );
    }
    let ceiling = ceiling(&broker.address, records + 1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut figures = vec![ceiling];
    for encoding in encodings {
        let run = Run {
            topic: encoding.topic(),
            partitions: 1,
            workers: None,
        };
        figures.push(runtime.block_on(weir(&broker.address, records, encoding, run)));
    }
    for f in &figures {
        println!(
            "{:<45} {:>7.2} s wall  {:>12.0} records/s  {:>12.0} records/CPU-s",
            f.name,
            f.wall,
            f.per_second(),
            f.per_cpu_second()
        );
    }
    let rss = peak_rss_mb();
    println!(
        "weir/ceiling per CPU-second: {:.2}; peak RSS {rss:.0} MB",
        figures[1].per_cpu_second() / figures[0].per_cpu_second()
    );
    write_report(records, &figures, rss);
    drop(broker);
}
