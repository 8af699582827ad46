//! The Kafka calls a sink makes, behind a small trait so the exactly-once protocol
//! ([`super::sink`]) can be checked against a broker model with real transaction isolation
//! (neither the test broker nor librdkafka's mock cluster hides aborted records from
//! `read_committed` readers). [`RdKafkaTransport`] is the real one: a librdkafka producer, and a
//! consumer for reading commit markers back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use weir_engine::error::{EngineError, Result};

use super::sink::KafkaSinkConfig;

/// How long a flush, commit or control-topic read may take before it is retried.
pub(super) const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Control-topic records read back on recovery (each commit adds a marker and a control record).
const MARKERS_READ_BACK: i64 = 2000;

/// A producer's transactional calls, and reading a topic back.
pub(super) trait Transport: Send {
    /// Connects if needed; with transactions, fences earlier instances (aborting what they left
    /// open).
    fn open(&mut self) -> Result<()>;
    /// Starts a transaction.
    fn begin(&mut self) -> Result<()>;
    /// Queues one record.
    fn send(&mut self, topic: &str, key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<()>;
    /// Waits until every queued record is acknowledged; an error if any was not.
    fn flush(&mut self) -> Result<()>;
    /// Commits the open transaction.
    fn commit(&mut self) -> Result<()>;
    /// Aborts the open transaction.
    fn abort(&mut self) -> Result<()>;
    /// Forgets the connection (after a failed abort): the next `open` starts a new producer.
    fn reset(&mut self);
    /// Payloads of the records keyed `key` among the newest of `topic`'s partition 0, as a
    /// `read_committed` reader sees them.
    fn read_back(&mut self, topic: &str, key: &[u8]) -> Result<Vec<Vec<u8>>>;
}

/// Delivery failures reported by librdkafka's callback, read at flush.
#[derive(Debug, Default)]
struct DeliveryFailures {
    last: Mutex<Option<String>>,
}

/// The producer's context: remembers failed deliveries.
#[derive(Debug, Clone, Default)]
struct SinkContext {
    failures: Arc<DeliveryFailures>,
}

impl ClientContext for SinkContext {}

/// The control-topic reader's context: reaching the end of the partition is how it knows it
/// is done, not an error worth logging.
struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            *self.failures.last.lock() = Some(e.to_string());
        }
    }
}

/// librdkafka.
pub(super) struct RdKafkaTransport {
    config: Arc<KafkaSinkConfig>,
    context: SinkContext,
    producer: Option<ThreadedProducer<SinkContext>>,
}

impl RdKafkaTransport {
    pub(super) fn new(config: Arc<KafkaSinkConfig>) -> Self {
        Self {
            config,
            context: SinkContext::default(),
            producer: None,
        }
    }

    fn producer(&mut self) -> Result<&ThreadedProducer<SinkContext>> {
        self.open()?;
        self.producer
            .as_ref()
            .ok_or_else(|| EngineError::Internal("Kafka producer missing".into()))
    }
}

impl Transport for RdKafkaTransport {
    fn open(&mut self) -> Result<()> {
        if self.producer.is_some() {
            return Ok(());
        }
        let mut config = self.config.client_config();
        config
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "120000");
        if self.config.transactional() {
            config
                .set("transactional.id", self.config.transactional_id())
                .set("transaction.timeout.ms", "300000");
        }
        let producer: ThreadedProducer<SinkContext> = config
            .create_with_context(self.context.clone())
            .map_err(|e| {
                EngineError::User(format!(
                    "Kafka settings of sink \"{}\": {e}",
                    self.config.sink
                ))
            })?;
        if self.config.transactional() {
            producer
                .init_transactions(OPERATION_TIMEOUT)
                .map_err(external)?;
        }
        self.producer = Some(producer);
        Ok(())
    }

    fn begin(&mut self) -> Result<()> {
        self.producer()?.begin_transaction().map_err(external)
    }

    fn send(&mut self, topic: &str, key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<()> {
        let producer = self.producer()?;
        loop {
            let mut record = BaseRecord::<[u8], [u8]>::to(topic);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(p) = payload {
                record = record.payload(p);
            }
            match producer.send(record) {
                Ok(()) => return Ok(()),
                // librdkafka's queue is full: wait for acknowledgements (backpressure).
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(external(e)),
            }
        }
    }

    fn flush(&mut self) -> Result<()> {
        let flushed = self.producer()?.flush(OPERATION_TIMEOUT).map_err(external);
        let failed = self.context.failures.last.lock().take();
        match (flushed, failed) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(e)) => Err(EngineError::External(format!("Kafka delivery failed: {e}"))),
            (Ok(()), None) => Ok(()),
        }
    }

    fn commit(&mut self) -> Result<()> {
        self.producer()?
            .commit_transaction(OPERATION_TIMEOUT)
            .map_err(external)
    }

    fn abort(&mut self) -> Result<()> {
        match &self.producer {
            Some(p) => p.abort_transaction(OPERATION_TIMEOUT).map_err(external),
            None => Ok(()),
        }
    }

    fn reset(&mut self) {
        self.producer = None;
    }

    fn read_back(&mut self, topic: &str, key: &[u8]) -> Result<Vec<Vec<u8>>> {
        let consumer: BaseConsumer<QuietEof> = self
            .config
            .client_config()
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .set("group.id", self.config.transactional_id())
            .create_with_context(QuietEof)
            .map_err(external)?;
        let (low, high) = consumer
            .fetch_watermarks(topic, 0, OPERATION_TIMEOUT)
            .map_err(external)?;
        if high <= low {
            return Ok(Vec::new());
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Offset(low.max(high - MARKERS_READ_BACK)))
            .map_err(external)?;
        consumer.assign(&assignment).map_err(external)?;
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) if m.key() == Some(key) => {
                    out.push(m.payload().map(<[u8]>::to_vec).unwrap_or_default());
                }
                Some(Ok(_)) | None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(out),
                Some(Err(e)) => return Err(external(e)),
            }
        }
        Err(EngineError::External(format!(
            "reading \"{topic}\" back timed out"
        )))
    }
}

pub(super) fn external(e: KafkaError) -> EngineError {
    EngineError::External(format!("Kafka: {e}"))
}

/// The output topic must exist; the control topic is created when missing (one partition).
pub(super) fn check_topics(config: &KafkaSinkConfig) -> Result<()> {
    let consumer: BaseConsumer = config.client_config().create().map_err(|e| {
        EngineError::User(format!("Kafka settings of sink \"{}\": {e}", config.sink))
    })?;
    let bootstrap = config
        .properties
        .get("bootstrap.servers")
        .cloned()
        .unwrap_or_default();
    let metadata = consumer
        .fetch_metadata(None, OPERATION_TIMEOUT)
        .map_err(|e| {
            EngineError::External(format!("cannot reach the Kafka broker at {bootstrap}: {e}"))
        })?;
    let exists = |name: &str| {
        metadata
            .topics()
            .iter()
            .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
    };
    if !exists(&config.topic) {
        return Err(EngineError::User(format!(
            "Kafka topic \"{}\" does not exist at {bootstrap}",
            config.topic
        )));
    }
    if config.transactional() && !exists(&config.control_topic) {
        let admin: AdminClient<DefaultClientContext> =
            config.client_config().create().map_err(external)?;
        let topic = NewTopic::new(&config.control_topic, 1, TopicReplication::Fixed(1));
        let created = futures::executor::block_on(admin.create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(OPERATION_TIMEOUT)),
        ))
        .map_err(external)?;
        for result in created {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(EngineError::External(format!(
                        "creating the sink's control topic \"{name}\": {code} (create it with one partition, or set sink.control_topic)"
                    )));
                }
            }
        }
    }
    Ok(())
}
