//! # weir-connectors: where rows come from, and where they go
//!
//! Each connector implements [`weir_engine::source::ConnectorFactory`]: it takes the `WITH (…)`
//! options it understands from a [`weir_engine::source::SourceSpec`] (anything left is an error
//! naming the option) and returns a [`weir_engine::source::SourceProvider`] that opens one reader
//! per pipeline. Transport is separate from format: [`json`] decodes bytes to Arrow for any
//! transport.
//!
//! | connector | what | module |
//! |---|---|---|
//! | `datagen` (`generator = 'sensors' \| 'nexmark' \| 'bids'`) | deterministic generators: IoT readings with labelled anomalies, the Nexmark auction events, uniform bids | [`datagen`] |
//! | `file` | JSON or CSV lines from a file (replay, tests) | [`file`] |
//! | `kafka` | a Kafka topic, every partition, offsets kept by Weir | [`kafka`] |
//!
//! Formats ([`format`]: `ENCODE JSON`, `ENCODE CSV`, `ENCODE AVRO` and `ENCODE PROTOBUF` with an
//! inline schema or a Confluent-compatible schema registry) decode runs of records straight to Arrow and isolate bad
//! records, which go to `weir_source_errors` instead of stopping the source.
//!
//! Sinks implement [`weir_engine::sink::SinkFactory`]:
//!
//! | sink connector | what | module |
//! |---|---|---|
//! | `kafka` | JSON records; exactly once with transactions committed with checkpoints, or at least once | [`kafka`] (`sink.rs`, `transport.rs`) |
//! | `parquet` | Parquet files in a local directory, partitioned by a column, rolled by size and age, published atomically | [`parquet_sink`] |
//! | `postgres` | rows upserted by key into a PostgreSQL table, in batches, idempotent across crashes | [`postgres_sink`] |
//!
//! Failures are [`error::ConnectorError`]s: typed (the Kafka, PostgreSQL, object-store or I/O
//! error kept as the source), each with a kind, reaching the engine as
//! `EngineError::Connector`. Invalid options are user errors with the option's name.

pub mod datagen;
pub mod error;
pub mod file;
pub mod format;
pub mod kafka;
pub mod parquet_sink;
pub mod postgres_sink;
mod schema;

use std::sync::Arc;

use weir_engine::sink::SinkFactory;
use weir_engine::source::ConnectorFactory;

/// Every built-in connector.
pub fn builtin_connectors() -> Vec<Arc<dyn ConnectorFactory>> {
    vec![
        Arc::new(datagen::DatagenConnector),
        Arc::new(file::FileConnector),
        Arc::new(kafka::KafkaConnector),
    ]
}

/// Every built-in sink connector.
pub fn builtin_sinks() -> Vec<Arc<dyn SinkFactory>> {
    vec![
        Arc::new(kafka::KafkaSinkConnector),
        Arc::new(parquet_sink::ParquetSinkConnector),
        Arc::new(postgres_sink::PostgresSinkConnector),
    ]
}
