//! A Kafka reader: a thread that owns one librdkafka consumer, assigns the topic's partitions,
//! buffers messages per partition and hands decoded Arrow batches to the pipeline over a small
//! bounded channel (a full channel is backpressure: the thread waits and librdkafka's prefetch
//! queue fills up to `queued.max.messages.kbytes`).
//!
//! The thread keeps each partition's next offset itself. librdkafka keeps fetching from that
//! position across broker outages (it reconnects with backoff on its own); a message below the
//! next offset, which a reconnect or reset could deliver again, is dropped, so no record reaches a
//! view twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::ConnectorError;
use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use weir_engine::checkpoint::SourcePosition;
use weir_engine::source::{ReaderContext, Source, SourceEvent};
use weir_engine::source_errors::BadRecord;
use weir_engine::{EngineError, Result};

use super::client::{RUNNING, ReaderClientContext};
use super::metadata_columns::{MessageMetadata, MetadataColumn};
use super::{KafkaSourceConfig, StartupMode};
use crate::format::{RecordBuffer, RecordDecoder, decode_records, decoded_span};

/// A partition's records wait at most this long for more before they are decoded and sent (while
/// the client keeps delivering; they go at once when its queue runs dry).
const LINGER: Duration = Duration::from_millis(10);
/// How long one poll waits for a message.
const POLL: Duration = Duration::from_millis(20);
/// Timeout of metadata and offset lookups.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry backoff while the broker cannot be reached at start.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often offsets are committed to the consumer group (when one is named).
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);

type Consumer_ = BaseConsumer<ReaderClientContext>;

/// The pipeline's end of a reader thread.
pub struct KafkaReader {
    events: mpsc::Receiver<Result<SourceEvent>>,
    stop: Arc<AtomicBool>,
    /// Next offset per partition after the rows handed to the pipeline (its checkpoint
    /// position), starting from the position it was resumed at.
    position: SourcePosition,
}

impl KafkaReader {
    /// Starts the reader thread.
    pub fn start(config: Arc<KafkaSourceConfig>, context: ReaderContext) -> Result<Self> {
        let (tx, events) = mpsc::channel(4);
        let stop = Arc::new(AtomicBool::new(false));
        let position = context.resume.clone().unwrap_or_default();
        let thread_stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name(format!("kafka-{}", config.source))
            .spawn(move || {
                let metrics = Arc::clone(&context.metrics);
                let result = ReaderLoop::new(config, context, tx.clone(), thread_stop)
                    .and_then(|mut r| r.run());
                if let Err(e) = result {
                    metrics.set_status(format!("failed: {e}"));
                    let _ = tx.blocking_send(Err(e));
                }
            })
            .map_err(|source| ConnectorError::Thread {
                what: "Kafka reader",
                source,
            })?;
        Ok(Self {
            events,
            stop,
            position,
        })
    }
}

impl Drop for KafkaReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl Source for KafkaReader {
    async fn next_event(&mut self, max_wait: Duration) -> Result<SourceEvent> {
        match tokio::time::timeout(max_wait, self.events.recv()).await {
            Err(_) => Ok(SourceEvent::Idle),
            Ok(Some(event)) => {
                if let Ok(SourceEvent::Data {
                    partition,
                    offsets: Some(offsets),
                    ..
                }) = &event
                    && let Some(last) = datafusion::arrow::compute::max(offsets)
                {
                    self.position.offsets.insert(*partition, last + 1);
                }
                event
            }
            Ok(None) => Err(ConnectorError::bug("the Kafka reader thread stopped").into()),
        }
    }

    fn position(&self) -> Option<SourcePosition> {
        Some(self.position.clone())
    }
}

/// One partition as the reader tracks it.
#[derive(Debug, Default)]
struct PartitionState {
    /// Next offset to read; None until the first message when starting at `latest`.
    next_offset: Option<i64>,
    /// `timestamp` start mode: skip records older than this until the first one at or after it.
    /// This makes the start exact even when a broker answers a timestamp lookup too early.
    skip_before_millis: Option<i64>,
    records: RecordBuffer,
    metadata: MessageMetadata,
    /// When the oldest buffered record arrived.
    oldest: Option<Instant>,
}

struct ReaderLoop {
    config: Arc<KafkaSourceConfig>,
    context: ReaderContext,
    tx: mpsc::Sender<Result<SourceEvent>>,
    stop: Arc<AtomicBool>,
    decoder: Box<dyn RecordDecoder>,
    partitions: BTreeMap<i32, PartitionState>,
    /// Index among header columns of each metadata column (headers only).
    header_columns: Vec<(usize, String)>,
    needs_key: bool,
    /// Tombstones are rows (all payload columns NULL), flagged in their metadata column.
    needs_tombstones: bool,
}

impl ReaderLoop {
    fn new(
        config: Arc<KafkaSourceConfig>,
        context: ReaderContext,
        tx: mpsc::Sender<Result<SourceEvent>>,
        stop: Arc<AtomicBool>,
    ) -> Result<Self> {
        let decoder = config
            .format
            .decoder(Arc::clone(&config.payload_schema), config.batch_size)?;
        let header_columns = config
            .metadata
            .iter()
            .filter_map(|c| match c {
                MetadataColumn::Header { name, .. } => Some(name.clone()),
                _ => None,
            })
            .enumerate()
            .collect();
        let needs_key = config.metadata.iter().any(MetadataColumn::needs_key);
        let needs_tombstones = config.metadata.iter().any(MetadataColumn::needs_tombstones);
        Ok(Self {
            config,
            context,
            tx,
            stop,
            decoder,
            partitions: BTreeMap::new(),
            header_columns,
            needs_key,
            needs_tombstones,
        })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.tx.is_closed()
    }

    /// Sends an event; false when the pipeline is gone.
    fn send(&self, event: SourceEvent) -> bool {
        self.tx.blocking_send(Ok(event)).is_ok()
    }

    fn run(&mut self) -> Result<()> {
        let context = ReaderClientContext::new(
            &self.config.source,
            &self.config.topic,
            Arc::clone(&self.context.metrics),
        );
        let consumer: Consumer_ = self
            .config
            .client_config()
            .create_with_context(context)
            .map_err(|e| {
                EngineError::User(format!(
                    "Kafka settings of source \"{}\": {e}",
                    self.config.source
                ))
            })?;
        let Some(partitions) = self.discover(&consumer, true) else {
            return Ok(());
        };
        if !self.assign(&consumer, &partitions, true)? {
            return Ok(());
        }
        self.context.metrics.set_status(RUNNING);
        let mut last_discovery = Instant::now();
        let mut last_commit = Instant::now();
        let mut last_linger_check = Instant::now();
        let mut since_clock_check = 0u32;
        // Records are buffered that the pipeline has not been handed yet.
        let mut buffered = false;
        while !self.stopped() {
            // While records are buffered, take only what the client already holds: once its
            // queue is empty they go on at once, instead of waiting out the linger (which then
            // only bounds how long a steady stream is batched).
            let wait = if buffered { Duration::ZERO } else { POLL };
            match consumer.poll(wait) {
                Some(Ok(message)) => {
                    if !self.on_message(&message)? {
                        return Ok(());
                    }
                    buffered = true;
                    // Reading the clock per message shows up in profiles; every 64 messages
                    // is often enough for a 10 ms linger.
                    since_clock_check += 1;
                    if since_clock_check < 64 {
                        continue;
                    }
                }
                Some(Err(e)) => {
                    // Transport errors are retried by librdkafka; the status shows them.
                    debug!(source = %self.config.source, error = %e, "Kafka poll error");
                }
                None => {
                    buffered = false;
                    if !self.flush_all(Duration::ZERO)? {
                        return Ok(());
                    }
                }
            }
            since_clock_check = 0;
            let now = Instant::now();
            if now.duration_since(last_linger_check) >= LINGER {
                last_linger_check = now;
                if !self.flush_all(LINGER)? {
                    return Ok(());
                }
            }
            if now.duration_since(last_discovery) >= self.config.discovery_interval {
                last_discovery = now;
                if let Some(found) = self.discover(&consumer, false) {
                    let new: Vec<i32> = found
                        .into_iter()
                        .filter(|p| !self.partitions.contains_key(p))
                        .collect();
                    if !new.is_empty() && !self.assign(&consumer, &new, false)? {
                        return Ok(());
                    }
                }
            }
            if self.config.commit_to_group && now.duration_since(last_commit) >= COMMIT_INTERVAL {
                last_commit = now;
                self.commit(&consumer);
            }
        }
        Ok(())
    }

    /// The topic's partitions. At start, retries with backoff until the broker answers (None if
    /// the reader is stopped meanwhile); later, one attempt (None on failure).
    fn discover(&self, consumer: &Consumer_, wait: bool) -> Option<Vec<i32>> {
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.stopped() {
                return None;
            }
            let found = consumer
                .fetch_metadata(Some(&self.config.topic), LOOKUP_TIMEOUT)
                .map_err(|e| e.to_string())
                .and_then(|m| {
                    let topic = m
                        .topics()
                        .iter()
                        .find(|t| t.name() == self.config.topic)
                        .ok_or("topic not in metadata")?;
                    if let Some(err) = topic.error() {
                        return Err(format!("{}", rdkafka::types::RDKafkaErrorCode::from(err)));
                    }
                    Ok(topic
                        .partitions()
                        .iter()
                        .map(|p| p.id())
                        .collect::<Vec<i32>>())
                });
            match found {
                // A reader of several reads only its own partitions.
                Ok(p) if !p.is_empty() => {
                    let split = self.context.split;
                    return Some(
                        p.into_iter()
                            .filter(|p| u32::try_from(*p).is_ok_and(|p| split.owns(p)))
                            .collect(),
                    );
                }
                Ok(_) => debug!(source = %self.config.source, "topic has no partitions yet"),
                Err(e) => {
                    warn!(source = %self.config.source, topic = %self.config.topic, error = %e, "cannot describe the Kafka topic");
                    if wait {
                        self.context
                            .metrics
                            .set_status(format!("retrying: cannot describe topic: {e}"));
                    }
                }
            }
            if !wait {
                return None;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Assigns `partitions` (all of them at start; new ones later, which are read from their
    /// beginning whatever the start mode, since every record in them is new). False if stopped.
    fn assign(&mut self, consumer: &Consumer_, partitions: &[i32], initial: bool) -> Result<bool> {
        let topic = self.config.topic.as_str();
        let mut list = TopicPartitionList::new();
        // Recovery: resumed partitions continue right after the last record the checkpoint holds.
        let mut resumed = TopicPartitionList::new();
        let mut skip_before = None;
        for &p in partitions {
            if let Some(next) = self
                .context
                .resume
                .as_ref()
                .and_then(|r| r.offsets.get(&(p as u32)).copied())
            {
                resumed
                    .add_partition_offset(topic, p, Offset::Offset(next))
                    .map_err(kafka_error)?;
                continue;
            }
            let offset = match (initial, self.config.startup) {
                (false, _) | (true, StartupMode::Earliest) => Offset::Beginning,
                (true, StartupMode::Latest) => Offset::End,
                (true, StartupMode::Timestamp(ms)) => {
                    skip_before = Some(ms);
                    Offset::Offset(ms)
                }
            };
            list.add_partition_offset(topic, p, offset)
                .map_err(kafka_error)?;
        }
        if skip_before.is_some() && list.count() > 0 {
            let mut backoff = BACKOFF_MIN;
            list = loop {
                match consumer.offsets_for_times(list.clone(), LOOKUP_TIMEOUT) {
                    Ok(found) => break found,
                    Err(e) => {
                        warn!(source = %self.config.source, error = %e, "offset lookup by timestamp failed; retrying");
                        self.context
                            .metrics
                            .set_status(format!("retrying: offset lookup by timestamp: {e}"));
                    }
                }
                if self.stopped() {
                    return Ok(false);
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            };
        }
        for element in resumed.elements() {
            list.add_partition_offset(topic, element.partition(), element.offset())
                .map_err(kafka_error)?;
        }
        for element in list.elements() {
            let next_offset = match element.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            let is_resumed = resumed.find_partition(topic, element.partition()).is_some();
            let skip_before_millis = if is_resumed { None } else { skip_before };
            self.partitions.insert(
                element.partition(),
                PartitionState {
                    next_offset,
                    skip_before_millis,
                    ..PartitionState::default()
                },
            );
            self.context
                .metrics
                .update(element.partition() as u32, |m| m.offset = next_offset);
        }
        consumer.incremental_assign(&list).map_err(kafka_error)?;
        info!(source = %self.config.source, topic, ?partitions, initial, "Kafka partitions assigned");
        Ok(self.send(SourceEvent::Partitions(
            partitions.iter().map(|&p| p as u32).collect(),
        )))
    }

    /// Buffers one message. False if the pipeline is gone.
    fn on_message(&mut self, message: &BorrowedMessage<'_>) -> Result<bool> {
        let p = message.partition();
        let offset = message.offset();
        let timestamp = message.timestamp().to_millis();
        let Some(state) = self.partitions.get_mut(&p) else {
            debug!(source = %self.config.source, partition = p, "message from an unassigned partition");
            return Ok(true);
        };
        if state.next_offset.is_some_and(|next| offset < next) {
            // Delivered again (reconnect or reset): it already reached the pipeline.
            return Ok(true);
        }
        state.next_offset = Some(offset + 1);
        if let Some(start) = state.skip_before_millis {
            if timestamp.is_some_and(|t| t < start) {
                return Ok(true);
            }
            state.skip_before_millis = None;
        }
        let payload = match message.payload() {
            Some(p) => p,
            // A JSON object without fields: the payload columns of a tombstone are NULL.
            None if self.needs_tombstones => &b"{}"[..],
            None => &[],
        };
        if payload.len() > self.config.max_record_bytes {
            let bad = BadRecord::new(
                payload,
                format!(
                    "record of {} bytes is larger than max_record_bytes ({})",
                    payload.len(),
                    self.config.max_record_bytes
                ),
            )
            .at(Some(p), Some(offset), timestamp);
            let span = decoded_span(p, &[offset]);
            self.context.reject(Some(p as u32), span, vec![bad])?;
            return Ok(true);
        }
        state.records.push(payload);
        state.metadata.offsets.push(offset);
        state.metadata.timestamps.push(timestamp);
        if self.needs_key {
            state.metadata.keys.push(message.key().map(<[u8]>::to_vec));
        }
        if self.needs_tombstones {
            state.metadata.tombstones.push(message.payload().is_none());
        }
        if !self.header_columns.is_empty() {
            state
                .metadata
                .headers
                .resize_with(self.header_columns.len(), Vec::new);
            let headers = message.headers();
            for (i, name) in &self.header_columns {
                let value = headers.and_then(|h| {
                    h.iter()
                        .find(|h| h.key == name.as_str())
                        .and_then(|h| h.value.map(<[u8]>::to_vec))
                });
                state.metadata.headers[*i].push(value);
            }
        }
        state.oldest.get_or_insert_with(Instant::now);
        if state.records.len() >= self.config.batch_size {
            return self.flush(p);
        }
        Ok(true)
    }

    /// Flushes every partition whose oldest record has waited at least `age`.
    fn flush_all(&mut self, age: Duration) -> Result<bool> {
        let due: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.oldest.is_some_and(|t| t.elapsed() >= age))
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            if !self.flush(p)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Decodes a partition's buffered records and sends the batch.
    fn flush(&mut self, p: i32) -> Result<bool> {
        let Some(state) = self.partitions.get_mut(&p) else {
            return Ok(true);
        };
        state.oldest = None;
        if state.records.is_empty() {
            return Ok(true);
        }
        let decoded = decode_records(self.decoder.as_mut(), &state.records)?;
        let metadata = &state.metadata;
        let bad = decoded.bad_records(&state.records, |i| {
            (
                Some(p),
                metadata.offsets.get(i).copied(),
                metadata.timestamps.get(i).copied().flatten(),
            )
        });
        let span = decoded_span(p, &metadata.offsets);
        let mut columns: Vec<ArrayRef> = decoded.batch.columns().to_vec();
        let mut header_index = 0;
        for column in &self.config.metadata {
            columns.push(decoded.keep_good(metadata.array(column, p, header_index))?);
            if matches!(column, MetadataColumn::Header { .. }) {
                header_index += 1;
            }
        }
        let offsets: ArrayRef = Arc::new(Int64Array::from(std::mem::take(
            &mut state.metadata.offsets,
        )));
        let offsets = decoded
            .keep_good(offsets)?
            .as_primitive::<Int64Type>()
            .clone();
        let next_offset = state.next_offset;
        state.records.clear();
        state.metadata.clear();
        let batch = RecordBatch::try_new(Arc::clone(&self.config.schema), columns)?;
        self.context.reject(Some(p as u32), span, bad)?;
        self.context
            .metrics
            .update(p as u32, |m| m.offset = next_offset);
        if batch.num_rows() == 0 {
            return Ok(true);
        }
        Ok(self.send(SourceEvent::Data {
            partition: p as u32,
            batch,
            offsets: Some(offsets),
        }))
    }

    /// Commits the next offsets to the named consumer group, for monitoring tools.
    fn commit(&self, consumer: &Consumer_) {
        let mut list = TopicPartitionList::new();
        for (p, s) in &self.partitions {
            if let Some(next) = s.next_offset
                && list
                    .add_partition_offset(&self.config.topic, *p, Offset::Offset(next))
                    .is_err()
            {
                return;
            }
        }
        if list.count() > 0
            && let Err(e) = consumer.commit(&list, CommitMode::Async)
        {
            debug!(source = %self.config.source, error = %e, "offset commit to the consumer group failed");
        }
    }
}

fn kafka_error(e: rdkafka::error::KafkaError) -> EngineError {
    ConnectorError::Kafka(e).into()
}
