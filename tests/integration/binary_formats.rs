//! Avro and Protobuf sources against a real broker: bare records with an inline schema, and the
//! Confluent wire format with a schema registry. The registry here is a minimal one on loopback serving the
//! two endpoints readers use (`/subjects/{subject}/versions/latest`, `/schemas/ids/{id}`); the
//! records are encoded by hand from the Avro specification, independently of the decoder.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir_sql::Session;

use crate::broker::{Broker, Record};
use crate::harness::query_rows;

/// Subjects (name → (id, schema)) and schemas by id, each with its type.
#[derive(Default)]
struct Schemas {
    subjects: BTreeMap<String, (u32, String)>,
    ids: BTreeMap<u32, (String, &'static str)>,
}

/// A schema registry answering the two lookups Weir makes.
struct Registry {
    url: String,
    schemas: Arc<Mutex<Schemas>>,
    server: tokio::task::JoinHandle<()>,
}

impl Registry {
    async fn start() -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let schemas: Arc<Mutex<Schemas>> = Arc::default();
        let served = Arc::clone(&schemas);
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let schemas = Arc::clone(&served);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
                    let body = answer(&schemas.lock().unwrap(), &path);
                    let (status, body) = match body {
                        Some(body) => ("200 OK", body),
                        None => (
                            "404 Not Found",
                            r#"{"error_code": 40401, "message": "not found"}"#.to_string(),
                        ),
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Registry {
            url,
            schemas,
            server,
        }
    }

    /// Registers the Avro `schema` under `id`, as the newest version of `subject`.
    fn register(&self, subject: &str, id: u32, schema: &str) {
        self.register_typed(subject, id, schema, "AVRO");
    }

    fn register_typed(&self, subject: &str, id: u32, schema: &str, schema_type: &'static str) {
        let mut schemas = self.schemas.lock().unwrap();
        schemas
            .subjects
            .insert(subject.to_string(), (id, schema.to_string()));
        schemas.ids.insert(id, (schema.to_string(), schema_type));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn answer(schemas: &Schemas, path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/subjects/") {
        let subject = rest.strip_suffix("/versions/latest")?;
        let (id, schema) = schemas.subjects.get(subject)?;
        let (_, schema_type) = schemas.ids.get(id)?;
        return Some(
            serde_json::json!({"subject": subject, "version": 1, "id": id, "schema": schema,
                               "schemaType": schema_type})
            .to_string(),
        );
    }
    let id: u32 = path.strip_prefix("/schemas/ids/")?.parse().ok()?;
    let (schema, schema_type) = schemas.ids.get(&id)?;
    Some(serde_json::json!({ "schema": schema, "schemaType": schema_type }).to_string())
}

/// Avro's zig-zag varint encoding of a long (and an int).
fn long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

fn framed(id: u32, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(body);
    out
}

/// Version 1 of the readings schema: no `v`.
const V1: &str = r#"{"type": "record", "name": "reading", "fields": [
    {"name": "id", "type": "long"},
    {"name": "sensor", "type": "string"},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#;

/// Version 2 (the subject's newest at creation): `v` added with a default.
const V2: &str = r#"{"type": "record", "name": "reading", "fields": [
    {"name": "id", "type": "long"},
    {"name": "sensor", "type": "string"},
    {"name": "v", "type": ["null", "double"], "default": null},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#;

/// Version 3 (registered after creation): a new field `unit` in front.
const V3: &str = r#"{"type": "record", "name": "reading", "fields": [
    {"name": "unit", "type": "string", "default": ""},
    {"name": "id", "type": "long"},
    {"name": "sensor", "type": "string"},
    {"name": "v", "type": ["null", "double"], "default": null},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#;

/// 2024-01-01T00:00:00Z in milliseconds.
const T0: i64 = 1_704_067_200_000;

fn v1(id: i64, sensor: &str, ts: i64) -> Vec<u8> {
    let mut out = Vec::new();
    long(&mut out, id);
    string(&mut out, sensor);
    long(&mut out, ts);
    out
}

fn v2(id: i64, sensor: &str, v: f64, ts: i64) -> Vec<u8> {
    let mut out = Vec::new();
    long(&mut out, id);
    string(&mut out, sensor);
    long(&mut out, 1);
    out.extend_from_slice(&v.to_le_bytes());
    long(&mut out, ts);
    out
}

fn v3(unit: &str, id: i64, sensor: &str, v: f64, ts: i64) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, unit);
    out.extend(v2(id, sensor, v, ts));
    out
}

fn session() -> Session {
    weir::database().build().expect("database").session()
}

async fn exec(session: &Session, sql: &str) {
    session
        .execute_all(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn wait_rows(session: &Session, sql: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = query_rows(session, sql).await;
        if rows == want {
            return;
        }
        if Instant::now() >= deadline {
            let errors = query_rows(session, "SELECT * FROM weir_source_errors").await;
            let sources = query_rows(session, "SELECT * FROM weir_source_partitions").await;
            panic!(
                "{sql}: got {rows:#?}\nwant {want:#?}\nerrors: {errors:#?}\npartitions: {sources:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_framed_records_follow_schema_evolution() {
    let broker = Broker::start();
    broker.create_topic("readings", 2);
    let registry = Registry::start().await;
    registry.register("readings-value", 1, V1);
    registry.register("readings-value", 2, V2);
    let records = vec![
        Record::new(0, framed(1, v1(1, "press-1", T0))),
        Record::new(0, framed(2, v2(2, "press-2", 2.5, T0 + 1_000))),
        Record::new(1, framed(99, v2(3, "unknown id", 3.5, T0))),
        Record::new(1, v2(4, "no frame", 4.5, T0)),
        Record::new(1, framed(2, v2(5, "press-5", 5.5, T0 + 2_000))),
    ];
    broker.producer().send("readings", &records).await;
    let s = session();
    // No columns: they come from the subject's newest schema; the watermark names one of them.
    exec(
        &s,
        &format!(
            "CREATE SOURCE readings (WATERMARK FOR ts AS ts - INTERVAL '5 seconds') \
             INCLUDE partition AS p \
             WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{}') \
             FORMAT PLAIN ENCODE AVRO (schema.registry = '{}');
             CREATE MATERIALIZED VIEW r AS SELECT id, sensor, v, ts, p FROM readings;",
            broker.address, registry.url
        ),
    )
    .await;
    wait_rows(
        &s,
        "SELECT id, sensor, v, ts, p FROM r ORDER BY id",
        &[
            "1 | press-1 | NULL | 2024-01-01 00:00:00.000000+00 | 0",
            "2 | press-2 | 2.5 | 2024-01-01 00:00:01.000000+00 | 0",
            "5 | press-5 | 5.5 | 2024-01-01 00:00:02.000000+00 | 1",
        ],
    )
    .await;
    // The unknown id and the unframed record are bad records, with the reason.
    let errors = query_rows(
        &s,
        "SELECT \"offset\", error FROM weir_source_errors WHERE source_name = 'readings' ORDER BY \"offset\"",
    )
    .await;
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("schema id 99"), "{errors:#?}");
    assert!(errors[1].contains("magic byte"), "{errors:#?}");
    // Binary records are shown as PostgreSQL shows bytea, so they can be read back exactly.
    let raw = query_rows(
        &s,
        "SELECT raw FROM weir_source_errors WHERE source_name = 'readings' ORDER BY \"offset\" LIMIT 1",
    )
    .await;
    assert!(raw[0].starts_with("\\x0000000063"), "{raw:?}");
    // A source pinned to version 1 (what the catalog keeps for a restart, under the same option)
    // reads every version with version 1's columns.
    exec(
        &s,
        &format!(
            "CREATE SOURCE readings_v1 \
             WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{}') \
             FORMAT PLAIN ENCODE AVRO (schema.registry = '{}', schema.registry.schema_id = 1);
             CREATE MATERIALIZED VIEW r1 AS SELECT id, sensor FROM readings_v1;",
            broker.address, registry.url
        ),
    )
    .await;
    wait_rows(
        &s,
        "SELECT id, sensor FROM r1 ORDER BY id",
        &["1 | press-1", "2 | press-2", "5 | press-5"],
    )
    .await;
    let err = s
        .execute_all("CREATE MATERIALIZED VIEW no_v AS SELECT v FROM readings_v1")
        .await
        .expect_err("v is not in version 1")
        .to_string();
    assert!(err.contains('v'), "{err}");
    // A producer moves to a version registered after the source was created: the reader
    // fetches it by id and resolves it against the source's schema (the new field is not a
    // column).
    registry.register("readings-value", 3, V3);
    broker
        .producer()
        .send(
            "readings",
            &[Record::new(
                0,
                framed(3, v3("bar", 6, "press-6", 6.5, T0 + 3_000)),
            )],
        )
        .await;
    wait_rows(
        &s,
        "SELECT id, sensor, v FROM r WHERE id > 5 ORDER BY id",
        &["6 | press-6 | 6.5"],
    )
    .await;
    wait_rows(&s, "SELECT id FROM r1 WHERE id > 5", &["6"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_schema_with_declared_columns_and_clear_errors() {
    let broker = Broker::start();
    broker.create_topic("bare", 1);
    let records: Vec<Record> = (0..30)
        .map(|i| Record::new(0, v2(i, &format!("s{}", i % 3), i as f64, T0 + i * 1_000)))
        .collect();
    broker.producer().send("bare", &records).await;
    let s = session();
    let schema = V2.replace('\'', "''");
    // Declared columns pick fields by name, in their own order and types.
    exec(
        &s,
        &format!(
            "CREATE SOURCE bare (ts TIMESTAMPTZ, sensor TEXT, v DOUBLE, \
               WATERMARK FOR ts AS ts - INTERVAL '1 second') \
             WITH (connector = 'kafka', topic = 'bare', properties.bootstrap.server = '{}') \
             FORMAT PLAIN ENCODE AVRO (schema = '{schema}');
             CREATE MATERIALIZED VIEW per_sensor AS
               SELECT sensor, count(*) AS n, sum(v) AS total FROM bare GROUP BY sensor;",
            broker.address
        ),
    )
    .await;
    wait_rows(
        &s,
        "SELECT sensor, n, total FROM per_sensor ORDER BY sensor",
        &["s0 | 10 | 135", "s1 | 10 | 145", "s2 | 10 | 155"],
    )
    .await;
    // Mistakes are named at CREATE SOURCE, and the server goes on.
    let cases = [
        (
            format!(
                "CREATE SOURCE x (nope TEXT) WITH (connector = 'kafka', topic = 'bare', \
                 properties.bootstrap.server = '{}') FORMAT PLAIN ENCODE AVRO (schema = '{schema}')",
                broker.address
            ),
            "not a field",
        ),
        (
            format!(
                "CREATE SOURCE x WITH (connector = 'kafka', topic = 'bare', \
                 properties.bootstrap.server = '{}') FORMAT PLAIN ENCODE AVRO",
                broker.address
            ),
            "needs its schema",
        ),
        (
            format!(
                "CREATE SOURCE x WITH (connector = 'kafka', topic = 'bare', \
                 properties.bootstrap.server = '{}') FORMAT PLAIN ENCODE AVRO \
                 (schema.registry = 'http://127.0.0.1:9')",
                broker.address
            ),
            "schema registry",
        ),
        (
            format!(
                "CREATE SOURCE x WITH (connector = 'kafka', topic = 'bare', \
                 properties.bootstrap.server = '{}') FORMAT PLAIN ENCODE AVRO \
                 (schema = '{{\"type\": \"record\"')",
                broker.address
            ),
            "Avro schema",
        ),
        (
            format!(
                "CREATE SOURCE x (a TEXT) WITH (connector = 'file', path = 'Cargo.toml') \
                 FORMAT PLAIN ENCODE AVRO (schema = '{schema}')"
            ),
            "binary",
        ),
    ];
    for (sql, expected) in cases {
        let err = s.execute_all(&sql).await.expect_err(&sql).to_string();
        assert!(err.contains(expected), "{sql}: {err}");
    }
    let rows = query_rows(&s, "SELECT count(*) FROM per_sensor").await;
    assert_eq!(rows, ["3"]);
}

const READING_PROTO: &str = r#"syntax = "proto3";
package plant;
import "google/protobuf/timestamp.proto";
message Reading {
  string sensor = 1;
  optional double value = 2;
  google.protobuf.Timestamp ts = 3;
  Location loc = 4;
  repeated string tags = 5;
}
message Location { int32 bay = 1; }"#;

fn pb_key(out: &mut Vec<u8>, number: u64, wire_type: u64) {
    pb_varint(out, (number << 3) | wire_type);
}

fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn pb_bytes(out: &mut Vec<u8>, number: u64, value: &[u8]) {
    pb_key(out, number, 2);
    pb_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// A `plant.Reading` in the Protobuf wire format.
fn pb_reading(sensor: &str, value: f64, ts_ms: i64, bay: i32, tags: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    pb_bytes(&mut out, 1, sensor.as_bytes());
    pb_key(&mut out, 2, 1);
    out.extend_from_slice(&value.to_le_bytes());
    let mut ts = Vec::new();
    pb_key(&mut ts, 1, 0);
    pb_varint(&mut ts, (ts_ms / 1000) as u64);
    pb_key(&mut ts, 2, 0);
    pb_varint(&mut ts, ((ts_ms % 1000) * 1_000_000) as u64);
    pb_bytes(&mut out, 3, &ts);
    let mut loc = Vec::new();
    pb_key(&mut loc, 1, 0);
    pb_varint(&mut loc, bay as u64);
    pb_bytes(&mut out, 4, &loc);
    for tag in tags {
        pb_bytes(&mut out, 5, tag.as_bytes());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_records_inline_and_from_a_registry() {
    let broker = Broker::start();
    broker.create_topic("pb", 1);
    broker.create_topic("pb_bare", 1);
    let registry = Registry::start().await;
    registry.register_typed("pb-value", 5, READING_PROTO, "PROTOBUF");
    // Confluent framing: magic byte, schema id, message-index path (a lone 0: the first message).
    let framed_pb = |body: Vec<u8>| {
        let mut out = vec![0, 0, 0, 0, 5, 0];
        out.extend(body);
        out
    };
    let mut framed_records: Vec<Record> = (0..20)
        .map(|i| {
            Record::new(
                0,
                framed_pb(pb_reading(
                    &format!("s{}", i % 2),
                    i as f64,
                    T0 + i * 500,
                    (i % 3) as i32,
                    &["a", "b"][..(i % 3) as usize],
                )),
            )
        })
        .collect();
    framed_records.insert(5, Record::new(0, vec![0, 0, 0, 0, 5, 0, 0x0a, 0x50, 1]));
    broker.producer().send("pb", &framed_records).await;
    let bare: Vec<Record> = (0..4)
        .map(|i| Record::new(0, pb_reading("bare", i as f64, T0, 1, &[])))
        .collect();
    broker.producer().send("pb_bare", &bare).await;
    let s = session();
    let proto = READING_PROTO.replace('\'', "''");
    exec(
        &s,
        &format!(
            "CREATE SOURCE pb (WATERMARK FOR ts AS ts - INTERVAL '1 second') \
             WITH (connector = 'kafka', topic = 'pb', properties.bootstrap.server = '{}') \
             FORMAT PLAIN ENCODE PROTOBUF (message = 'plant.Reading', schema.registry = '{}');
             CREATE MATERIALIZED VIEW pb_stats AS
               SELECT sensor, count(*) AS n, sum(value) AS total, max(loc['bay']) AS top_bay,
                      sum(array_length(tags, 1)) AS tags
               FROM pb GROUP BY sensor;
             CREATE SOURCE pb_bare (value DOUBLE, sensor TEXT)
             WITH (connector = 'kafka', topic = 'pb_bare', properties.bootstrap.server = '{}')
             FORMAT PLAIN ENCODE PROTOBUF (schema = '{proto}');
             CREATE MATERIALIZED VIEW bare_total AS SELECT sensor, sum(value) AS total FROM pb_bare GROUP BY sensor;",
            broker.address, registry.url, broker.address
        ),
    )
    .await;
    wait_rows(
        &s,
        "SELECT sensor, n, total, top_bay, tags FROM pb_stats ORDER BY sensor",
        &["s0 | 10 | 90 | 2 | 9", "s1 | 10 | 100 | 2 | 10"],
    )
    .await;
    wait_rows(&s, "SELECT sensor, total FROM bare_total", &["bare | 6"]).await;
    // The record cut off mid-string is a bad record of its own.
    let errors = query_rows(
        &s,
        "SELECT \"offset\", error FROM weir_source_errors WHERE source_name = 'pb'",
    )
    .await;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with("5 | truncated"), "{errors:#?}");
}
