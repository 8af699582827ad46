//! The Kafka calls a sink makes, behind a small trait so the exactly-once protocol
//! ([`super::sink`]) can be checked at every crash point against a broker model (librdkafka's
//! mock cluster keeps no transactional offsets). [`RdKafkaTransport`] is the real one: a
//! librdkafka producer, and a consumer handle for the sink's consumer group, whose committed
//! offset is the sink's commit mark.

use std::sync::Arc;
use std::time::Duration;

use crate::error::ConnectorError;
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use weir_engine::error::{EngineError, Result};

use super::sink_config::KafkaSinkConfig;

/// How long a flush, commit or mark read may take before it is retried.
pub(super) const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// Puts `epoch` into the open transaction as the sink's commit mark: it becomes the mark
    /// when, and only when, the transaction commits.
    fn mark(&mut self, epoch: u64) -> Result<()>;
    /// The mark of the last committed transaction (0: none yet).
    fn committed_mark(&mut self) -> Result<u64>;
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
    /// A member-less consumer of the sink's group: its metadata goes with each transaction's
    /// offsets, and it reads the committed mark back. It never joins or fetches.
    group: Option<BaseConsumer>,
}

impl RdKafkaTransport {
    pub(super) fn new(config: Arc<KafkaSinkConfig>) -> Self {
        Self {
            config,
            context: SinkContext::default(),
            producer: None,
            group: None,
        }
    }

    fn group(&mut self) -> Result<&BaseConsumer> {
        if self.group.is_none() {
            let consumer: BaseConsumer = self
                .config
                .client_config()
                .set("group.id", self.config.transactional_id())
                .set("isolation.level", "read_committed")
                .set("enable.auto.commit", "false")
                .create()
                .map_err(external)?;
            self.group = Some(consumer);
        }
        self.group
            .as_ref()
            .ok_or_else(|| ConnectorError::bug("Kafka group consumer missing").into())
    }

    /// The sink's mark lives as the group's committed offset of the output topic's partition 0
    /// (a partition that always exists; the group never consumes it).
    fn mark_partition(&self, offset: Offset) -> Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.config.topic, 0, offset)
            .map_err(external)?;
        Ok(tpl)
    }

    fn producer(&mut self) -> Result<&ThreadedProducer<SinkContext>> {
        self.open()?;
        self.producer
            .as_ref()
            .ok_or_else(|| ConnectorError::bug("Kafka producer missing").into())
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
            (Ok(()), Some(e)) => Err(ConnectorError::KafkaDelivery(e).into()),
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

    fn mark(&mut self, epoch: u64) -> Result<()> {
        // The end-of-input epoch (u64::MAX) is stored as the largest offset.
        let offset = Offset::Offset(i64::try_from(epoch).unwrap_or(i64::MAX));
        let offsets = self.mark_partition(offset)?;
        let group = self
            .group()?
            .group_metadata()
            .ok_or_else(|| ConnectorError::bug("Kafka group metadata missing"))?;
        self.producer()?
            .send_offsets_to_transaction(&offsets, &group, OPERATION_TIMEOUT)
            .map_err(external)
    }

    fn committed_mark(&mut self) -> Result<u64> {
        let wanted = self.mark_partition(Offset::Invalid)?;
        let committed = self
            .group()?
            .committed_offsets(wanted, OPERATION_TIMEOUT)
            .map_err(external)?;
        Ok(committed
            .elements()
            .iter()
            .find_map(|e| match e.offset() {
                Offset::Offset(n) => u64::try_from(n).ok(),
                _ => None,
            })
            .unwrap_or(0))
    }
}

pub(super) fn external(e: KafkaError) -> EngineError {
    ConnectorError::Kafka(e).into()
}

/// The output topic must exist.
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
        .map_err(|source| ConnectorError::KafkaUnreachable {
            bootstrap: bootstrap.clone(),
            source,
        })?;
    let exists = metadata
        .topics()
        .iter()
        .any(|t| t.name() == config.topic && t.error().is_none() && !t.partitions().is_empty());
    if !exists {
        return Err(EngineError::User(format!(
            "Kafka topic \"{}\" does not exist at {bootstrap}",
            config.topic
        )));
    }
    Ok(())
}
