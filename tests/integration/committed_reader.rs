//! A `read_committed` reader that applies Kafka's transaction markers itself.
//!
//! A Kafka broker hides aborted transactions from `read_committed` consumers by sending, with
//! each fetch, the list of aborted transactions it derived from the commit and abort markers in
//! the partition log; the consumer then drops those producers' records up to the abort marker.
//! tansu, the test broker, writes those markers (it also aborts the open transaction of a
//! producer that re-initialises, as a real transaction coordinator does) but always sends an
//! empty aborted list, so librdkafka's `read_committed` consumer shows aborted records.
//!
//! This reader therefore fetches the raw record batches (Fetch v11, `read_uncommitted`) and
//! applies the rule itself, from the markers in the log:
//! - a non-transactional record is visible at once;
//! - a transactional record of producer (id, epoch) is held until that producer's next marker:
//!   a commit marker makes the held records visible, an abort marker drops them;
//! - a marker of a newer epoch of the same producer id also drops held records of older epochs
//!   (that producer was fenced; a real coordinator writes an abort marker for them);
//! - records still held when the log ends belong to an open transaction: not visible.
//!
//! That is the visibility a `read_committed` consumer of a real Kafka broker gives, so the crash
//! test can assert exactly once on the topic itself.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;

use crate::broker::ReadRecord;

const FETCH_VERSION: i16 = 11;
const MAX_BYTES: i32 = 16 << 20;

/// What a `read_committed` reader sees of a topic, and what it left out.
#[derive(Debug, Default)]
pub struct CommittedRead {
    /// Records of committed transactions and non-transactional records, per partition in offset
    /// order of their commit.
    pub records: Vec<ReadRecord>,
    /// Records dropped because their transaction was aborted (or its producer fenced).
    pub aborted: usize,
    /// Records of transactions still open at the end of the log.
    pub open: usize,
}

/// Reads partitions `0..partitions` of `topic` from the broker at `address` (a single-broker
/// cluster: it leads every partition).
pub fn read_committed(address: &str, topic: &str, partitions: i32) -> CommittedRead {
    let mut stream = TcpStream::connect(address).expect("connect to the broker");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut out = CommittedRead::default();
    for partition in 0..partitions {
        read_partition(&mut stream, topic, partition, &mut out);
    }
    out
}

/// Records of one producer id waiting for a marker: the epoch they were written under.
struct Held {
    epoch: i16,
    records: Vec<ReadRecord>,
}

fn read_partition(stream: &mut TcpStream, topic: &str, partition: i32, out: &mut CommittedRead) {
    let mut held: BTreeMap<i64, Held> = BTreeMap::new();
    let mut offset = 0i64;
    let mut correlation = 0;
    let mut empty_fetches = 0;
    loop {
        correlation += 1;
        let (records, high_watermark) = fetch(stream, topic, partition, offset, correlation);
        let mut progressed = false;
        let mut bytes = records;
        for set in RecordBatchDecoder::decode_all(&mut bytes).expect("record batches") {
            for record in set.records {
                // A fetch returns whole batches, so it may start before the offset asked for.
                if record.offset < offset {
                    continue;
                }
                offset = record.offset + 1;
                progressed = true;
                if record.control {
                    let commit = control_is_commit(record.key);
                    let stale = held
                        .get(&record.producer_id)
                        .is_some_and(|h| record.producer_epoch < h.epoch);
                    if stale {
                        continue;
                    }
                    if let Some(h) = held.remove(&record.producer_id) {
                        if commit && h.epoch == record.producer_epoch {
                            out.records.extend(h.records);
                        } else {
                            out.aborted += h.records.len();
                        }
                    }
                    continue;
                }
                let read = ReadRecord {
                    key: record.key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                    payload: record
                        .value
                        .map(|v| String::from_utf8_lossy(&v).into_owned()),
                };
                if record.transactional {
                    let h = held.entry(record.producer_id).or_insert(Held {
                        epoch: record.producer_epoch,
                        records: Vec::new(),
                    });
                    if h.epoch != record.producer_epoch {
                        // Fenced by a newer epoch without a marker of its own.
                        out.aborted += h.records.len();
                        h.records.clear();
                        h.epoch = record.producer_epoch;
                    }
                    h.records.push(read);
                } else {
                    out.records.push(read);
                }
            }
        }
        if offset >= high_watermark {
            break;
        }
        if !progressed {
            empty_fetches += 1;
            assert!(
                empty_fetches < 100,
                "{topic}/{partition}: no records at {offset} below the high watermark {high_watermark}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    out.open += held.values().map(|h| h.records.len()).sum::<usize>();
}

/// A control record's key is (version: i16, type: i16); type 1 is COMMIT, 0 is ABORT.
fn control_is_commit(key: Option<Bytes>) -> bool {
    let mut key = key.expect("control record key");
    assert!(key.len() >= 4, "control record key too short");
    let _version = key.get_i16();
    key.get_i16() == 1
}

/// One Fetch round trip: the raw record batches from `offset` and the partition's high
/// watermark.
fn fetch(
    stream: &mut TcpStream,
    topic: &str,
    partition: i32,
    offset: i64,
    correlation: i32,
) -> (Bytes, i64) {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(MAX_BYTES)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_current_leader_epoch(-1)
                        .with_fetch_offset(offset)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(MAX_BYTES),
                ]),
        ]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(FETCH_VERSION)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str(
            "weir-test-committed-reader",
        )));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, FetchRequest::header_version(FETCH_VERSION))
        .expect("encode header");
    request
        .encode(&mut body, FETCH_VERSION)
        .expect("encode fetch");
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).expect("send fetch");

    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("fetch response size");
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut response).expect("fetch response");
    let mut response = Bytes::from(response);
    let header =
        ResponseHeader::decode(&mut response, FetchResponse::header_version(FETCH_VERSION))
            .expect("response header");
    assert_eq!(header.correlation_id, correlation, "correlation id");
    let response = FetchResponse::decode(&mut response, FETCH_VERSION).expect("fetch response");
    assert_eq!(response.error_code, 0, "fetch error");
    let data = response
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
        .expect("the partition in the fetch response");
    assert_eq!(data.error_code, 0, "fetch error on {topic}/{partition}");
    (data.records.unwrap_or_default(), data.high_watermark)
}
