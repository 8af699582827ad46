//! `connector = 'kafka'`: reads a topic with librdkafka (rdkafka's bundled build).
//!
//! Weir assigns every partition of the topic to each reader itself (no consumer-group
//! membership, so no rebalances and no slow group joins) and keeps each partition's next offset
//! in its own state; consumer-group offset commits happen only when `properties.group.id` is
//! given, and only so tools can show lag. A reader runs on its own thread: it polls messages,
//! buffers them per partition, and decodes each partition's run of records in one call of the
//! source's format ([`crate::format`]) straight into Arrow.
//!
//! ```sql
//! CREATE SOURCE readings (sensor_id VARCHAR, value DOUBLE, ts TIMESTAMPTZ,
//!                         WATERMARK FOR ts AS ts - INTERVAL '5 seconds')
//! INCLUDE partition AS p INCLUDE offset AS o
//! WITH (connector = 'kafka', topic = 'readings',
//!       properties.bootstrap.server = '127.0.0.1:9092', scan.startup.mode = 'earliest')
//! FORMAT PLAIN ENCODE JSON;
//! ```
//!
//! Options: `topic`; `properties.bootstrap.server` (or `bootstrap.servers`); `scan.startup.mode`
//! = `earliest` (default) | `latest` | `timestamp` with `scan.startup.timestamp.millis`;
//! `scan.partition.discovery.interval` (default 10 s); `batch_size` (records per batch, default
//! 4096); `max_record_bytes` (default 1 MiB; larger records are bad records); any
//! `properties.<librdkafka setting>` (security settings included) is passed through.

mod client;
mod consumer;
mod metadata_columns;
mod sink;
mod sink_config;
mod transport;

pub use sink::KafkaSinkConnector;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConnectorError;
use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::info;
use weir_engine::source::{ConnectorFactory, ReaderContext, Source, SourceProvider, SourceSpec};
use weir_engine::{EngineError, Result};

use crate::format::FormatConfig;
pub use metadata_columns::MetadataColumn;

/// How long `CREATE SOURCE` waits for the broker to describe the topic.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a new reader starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupMode {
    /// The oldest record still in the partition.
    Earliest,
    /// Only records written after the reader starts.
    Latest,
    /// The first record with a timestamp at or after this (milliseconds since the epoch).
    Timestamp(i64),
}

/// A validated Kafka source definition.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// Source name.
    pub source: String,
    /// Topic read.
    pub topic: String,
    /// librdkafka settings, Weir's defaults overridden by the user's `properties.*`.
    pub properties: BTreeMap<String, String>,
    /// True when the user named a consumer group: offsets are committed to it for monitoring.
    pub commit_to_group: bool,
    /// Where readers start.
    pub startup: StartupMode,
    /// The payload's declared columns.
    pub payload_schema: SchemaRef,
    /// Payload columns followed by the `INCLUDE` columns.
    pub schema: SchemaRef,
    /// `INCLUDE` columns, in schema order.
    pub metadata: Vec<MetadataColumn>,
    /// The payload format.
    pub format: FormatConfig,
    /// Records decoded per batch (per partition).
    pub batch_size: usize,
    /// Larger records are rejected as bad records.
    pub max_record_bytes: usize,
    /// How often the topic is checked for new partitions.
    pub discovery_interval: Duration,
}

impl KafkaSourceConfig {
    /// Validates a `CREATE SOURCE … WITH (connector = 'kafka', …)`, taking its options.
    pub fn from_spec(spec: &mut SourceSpec) -> Result<Self> {
        let options = &mut spec.options;
        let topic = options.take_required("topic")?;
        let bootstrap = take_bootstrap(options)?;
        let mode = options
            .take("scan.startup.mode")
            .unwrap_or_else(|| "earliest".into());
        let timestamp = options.take_parsed::<i64>("scan.startup.timestamp.millis")?;
        let startup = match (mode.to_ascii_lowercase().as_str(), timestamp) {
            ("earliest", None) => StartupMode::Earliest,
            ("latest", None) => StartupMode::Latest,
            ("timestamp", Some(t)) if t >= 0 => StartupMode::Timestamp(t),
            ("timestamp", _) => {
                return Err(EngineError::User(
                    "scan.startup.mode = 'timestamp' needs scan.startup.timestamp.millis (milliseconds since the epoch)".into(),
                ));
            }
            ("earliest" | "latest", Some(_)) => {
                return Err(EngineError::User(
                    "scan.startup.timestamp.millis only goes with scan.startup.mode = 'timestamp'"
                        .into(),
                ));
            }
            (other, _) => {
                return Err(EngineError::User(format!(
                    "scan.startup.mode must be 'earliest', 'latest' or 'timestamp', not '{other}'"
                )));
            }
        };
        let discovery_interval = options
            .take_duration("scan.partition.discovery.interval")?
            .unwrap_or(Duration::from_secs(10));
        let batch_size = options
            .take_parsed::<usize>("batch_size")?
            .unwrap_or(4096)
            .clamp(1, 1 << 20);
        let max_record_bytes = options
            .take_parsed::<usize>("max_record_bytes")?
            .unwrap_or(1 << 20)
            .max(1);
        let format = FormatConfig::from_spec(spec.format.as_ref(), options)?;

        let mut properties: BTreeMap<String, String> = [
            ("bootstrap.servers", bootstrap.as_str()),
            ("client.id", "weir"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "false"),
            // Only used when a stored position is out of range (retention removed it): read what
            // is left rather than jump to the end.
            ("auto.offset.reset", "earliest"),
            ("statistics.interval.ms", "1000"),
            ("queued.max.messages.kbytes", "16384"),
            // librdkafka pauses fetching for this long (default 1 s) whenever its queue is over
            // the thresholds above; a reader that decodes as it goes crosses them constantly, and
            // the default left it idle half the time in the Kafka benchmark.
            ("fetch.queue.backoff.ms", "10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        properties.insert("group.id".into(), format!("weir-{}", spec.name));
        let user = options.take_prefixed("properties.");
        let commit_to_group = user.iter().any(|(k, _)| k == "group.id");
        for (k, v) in user {
            if k == "bootstrap.servers" || k == "bootstrap.server" {
                continue;
            }
            properties.insert(k, v);
        }

        let payload_schema = match spec.columns.clone() {
            Some(columns) => columns,
            // Settled by `resolve_format` from the format's schema.
            None if format.is_binary() => Arc::new(Schema::empty()),
            None => {
                return Err(EngineError::User(format!(
                    "source \"{}\": a Kafka source needs its columns declared (or a format \
                     with a schema, such as ENCODE AVRO)",
                    spec.name
                )));
            }
        };
        let mut fields: Vec<_> = payload_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut metadata = Vec::new();
        for include in std::mem::take(&mut spec.include) {
            let (column, field) = MetadataColumn::from_include(&include)?;
            if fields.iter().any(|f| f.name() == field.name()) {
                return Err(EngineError::User(format!(
                    "INCLUDE {}: column \"{}\" already exists; name it with AS",
                    include.kind,
                    field.name()
                )));
            }
            fields.push(field);
            metadata.push(column);
        }
        Ok(Self {
            source: spec.name.clone(),
            topic,
            properties,
            commit_to_group,
            startup,
            payload_schema,
            schema: Arc::new(Schema::new(fields)),
            metadata,
            format,
            batch_size,
            max_record_bytes,
            discovery_interval,
        })
    }

    /// Settles the format's schema (a registry lookup for Avro) and, when no columns were
    /// declared, takes the payload's columns from it (the `INCLUDE` columns stay after them).
    async fn resolve_format(&mut self, declared: Option<SchemaRef>) -> Result<()> {
        let Some(payload) = self.format.resolve(declared, &self.topic).await? else {
            return Ok(());
        };
        let metadata_fields = self.schema.fields()[self.payload_schema.fields().len()..].to_vec();
        for field in payload.fields() {
            if metadata_fields.iter().any(|m| m.name() == field.name()) {
                return Err(EngineError::User(format!(
                    "INCLUDE column \"{}\" is also a field of the payload; name it with AS",
                    field.name()
                )));
            }
        }
        let fields: Vec<_> = payload
            .fields()
            .iter()
            .chain(metadata_fields.iter())
            .cloned()
            .collect();
        self.schema = Arc::new(Schema::new(fields));
        self.payload_schema = payload;
        Ok(())
    }

    /// librdkafka configuration for a consumer of this source.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// Connects and describes the topic: its partition count, or a clear error.
    fn probe(&self) -> Result<usize> {
        let consumer: BaseConsumer = self.client_config().create().map_err(|e| {
            EngineError::User(format!("Kafka settings of source \"{}\": {e}", self.source))
        })?;
        let bootstrap = self
            .properties
            .get("bootstrap.servers")
            .cloned()
            .unwrap_or_default();
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), PROBE_TIMEOUT)
            .map_err(|source| ConnectorError::KafkaUnreachable {
                bootstrap: bootstrap.clone(),
                source,
            })?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .ok_or_else(|| {
                EngineError::User(format!("Kafka topic \"{}\" does not exist", self.topic))
            })?;
        if let Some(err) = topic.error() {
            let code = rdkafka::types::RDKafkaErrorCode::from(err);
            if code == rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition {
                return Err(EngineError::User(format!(
                    "Kafka topic \"{}\" does not exist at {bootstrap}",
                    self.topic
                )));
            }
            return Err(EngineError::User(format!(
                "Kafka topic \"{}\" at {bootstrap}: {}",
                self.topic,
                rdkafka::types::RDKafkaErrorCode::from(err)
            )));
        }
        if topic.partitions().is_empty() {
            return Err(EngineError::User(format!(
                "Kafka topic \"{}\" has no partitions",
                self.topic
            )));
        }
        Ok(topic.partitions().len())
    }
}

/// The broker list, under any of its spellings (`properties.bootstrap.server`,
/// `properties.bootstrap.servers`, `bootstrap.servers`), given once.
pub(crate) fn take_bootstrap(options: &mut weir_engine::options::Options) -> Result<String> {
    let servers = [
        options.take("properties.bootstrap.server"),
        options.take("properties.bootstrap.servers"),
        options.take("bootstrap.servers"),
    ];
    let mut servers = servers.into_iter().flatten();
    let bootstrap = servers.next().ok_or_else(|| {
        EngineError::User(format!(
            "missing required option \"properties.bootstrap.server\" for {}",
            options.context()
        ))
    })?;
    if servers.next().is_some() {
        return Err(EngineError::User(
            "give the broker list once: properties.bootstrap.server or bootstrap.servers".into(),
        ));
    }
    Ok(bootstrap)
}

/// The `kafka` connector.
#[derive(Debug, Clone, Copy)]
pub struct KafkaConnector;

#[async_trait]
impl ConnectorFactory for KafkaConnector {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn create_source(&self, spec: &mut SourceSpec) -> Result<Arc<dyn SourceProvider>> {
        let mut config = KafkaSourceConfig::from_spec(spec)?;
        config.resolve_format(spec.columns.clone()).await?;
        let config = Arc::new(config);
        let probe = Arc::clone(&config);
        let partitions = tokio::task::spawn_blocking(move || probe.probe())
            .await
            .map_err(|source| ConnectorError::Task {
                what: "Kafka probe",
                source,
            })??;
        info!(source = %config.source, topic = %config.topic, partitions, "Kafka topic found");
        Ok(Arc::new(KafkaProvider { config, partitions }))
    }
}

/// A defined Kafka source.
#[derive(Debug)]
pub struct KafkaProvider {
    config: Arc<KafkaSourceConfig>,
    /// Partitions of the topic when the source was created: a view reads it with up to this
    /// many readers (partitions added later go to the reader owning their number).
    partitions: usize,
}

impl SourceProvider for KafkaProvider {
    fn connector(&self) -> &str {
        "kafka"
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.config.schema)
    }

    fn partitions(&self) -> usize {
        self.partitions
    }

    fn has_backlog(&self) -> bool {
        true
    }

    fn positions_are_offsets(&self) -> bool {
        // A row's offset is its record offset, and a partition's position the offset after
        // the last record delivered.
        true
    }

    fn pinned_options(&self) -> Vec<(String, String)> {
        self.config.format.pinned_options()
    }

    fn open(&self, context: ReaderContext) -> Result<Box<dyn Source>> {
        Ok(Box::new(consumer::KafkaReader::start(
            Arc::clone(&self.config),
            context,
        )?))
    }
}
