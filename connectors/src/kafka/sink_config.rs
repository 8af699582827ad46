//! A Kafka sink's settings, validated once from `CREATE SINK … WITH (…)`: shared by the sink's
//! protocol ([`super::sink`]) and the transport that talks to the broker
//! ([`super::transport`]).

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use weir_engine::error::{EngineError, Result};
use weir_engine::sink::{SinkFormat, SinkSpec};

/// How a Kafka sink delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    ExactlyOnce,
    AtLeastOnce,
}

/// A Kafka sink's settings.
#[derive(Debug)]
pub(super) struct KafkaSinkConfig {
    pub(super) sink: String,
    id: String,
    pub(super) topic: String,
    delivery: Delivery,
    /// Columns whose JSON object is the record key (empty: no key).
    pub(super) key: Vec<String>,
    /// Records are Debezium envelopes (`FORMAT DEBEZIUM`).
    pub(super) debezium: bool,
    pub(super) properties: BTreeMap<String, String>,
}

impl KafkaSinkConfig {
    pub(super) fn from_spec(spec: &mut SinkSpec) -> Result<Self> {
        let options = &mut spec.options;
        let topic = options.take_required("topic")?;
        let bootstrap = super::take_bootstrap(options)?;
        let delivery = match options
            .take("sink.delivery")
            .unwrap_or_else(|| "exactly_once".into())
            .to_ascii_lowercase()
            .as_str()
        {
            "exactly_once" => Delivery::ExactlyOnce,
            "at_least_once" => Delivery::AtLeastOnce,
            other => {
                return Err(EngineError::User(format!(
                    "sink.delivery must be 'exactly_once' or 'at_least_once', not '{other}'"
                )));
            }
        };
        let key = match (&spec.format, options.take("key")) {
            (SinkFormat::Upsert { key } | SinkFormat::Debezium { key }, None) => key.clone(),
            (SinkFormat::Upsert { .. } | SinkFormat::Debezium { .. }, Some(_)) => {
                return Err(EngineError::User(
                    "FORMAT UPSERT and DEBEZIUM records are keyed by primary_key; drop the key option"
                        .into(),
                ));
            }
            (SinkFormat::Plain, Some(k)) => k.split(',').map(|c| c.trim().to_string()).collect(),
            (SinkFormat::Plain, None) => Vec::new(),
        };
        for column in &key {
            if spec.schema.index_of(column).is_err() {
                return Err(EngineError::User(format!(
                    "key column \"{column}\" is not a column of sink \"{}\"",
                    spec.name
                )));
            }
        }
        let mut properties: BTreeMap<String, String> =
            options.take_prefixed("properties.").into_iter().collect();
        properties.insert("bootstrap.servers".into(), bootstrap);
        Ok(Self {
            sink: spec.name.clone(),
            id: spec.id.clone(),
            topic,
            delivery,
            key,
            debezium: matches!(spec.format, SinkFormat::Debezium { .. }),
            properties,
        })
    }

    pub(super) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// The transactional id: stable across restarts of this sink, so a new producer fences the
    /// crashed one and aborts its open transaction.
    pub(super) fn transactional_id(&self) -> String {
        format!("weir-sink-{}-{}", self.sink, self.id)
    }

    /// Exactly once, with transactions.
    pub(super) fn transactional(&self) -> bool {
        self.delivery == Delivery::ExactlyOnce
    }
}
