//! The librdkafka client context of a reader: turns librdkafka's statistics, errors and logs
//! into `weir_source_partitions` figures, a connection status and `tracing` events.

use std::sync::Arc;

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use tracing::{debug, error, trace, warn};
use weir_engine::source_metrics::ReaderMetrics;

/// Status shown while at least one broker is up.
pub const RUNNING: &str = "running";

/// Context shared by a reader's consumer callbacks.
#[derive(Debug)]
pub struct ReaderClientContext {
    source: String,
    topic: String,
    metrics: Arc<ReaderMetrics>,
    /// The last error librdkafka reported, shown with the status while brokers are down.
    last_error: Mutex<Option<String>>,
}

impl ReaderClientContext {
    /// A context reporting into `metrics`.
    pub fn new(source: &str, topic: &str, metrics: Arc<ReaderMetrics>) -> Self {
        Self {
            source: source.into(),
            topic: topic.into(),
            metrics,
            last_error: Mutex::new(None),
        }
    }
}

impl ClientContext for ReaderClientContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let source = self.source.as_str();
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                error!(source, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => warn!(source, facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                debug!(source, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => trace!(source, facility, "librdkafka: {message}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            for (id, p) in &topic.partitions {
                // Partition -1 is librdkafka's internal "unassigned" queue.
                if *id >= 0 && p.hi_offset >= 0 {
                    self.metrics
                        .update(*id as u32, |m| m.high_watermark = Some(p.hi_offset));
                }
            }
        }
        // Bootstrap entries have node id -1; real brokers have their own ids.
        let brokers: Vec<_> = statistics
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0)
            .collect();
        let up = brokers.iter().any(|b| b.state == "UP");
        let status =
            if up || brokers.is_empty() && statistics.brokers.values().any(|b| b.state == "UP") {
                RUNNING.to_string()
            } else {
                let states: Vec<String> = statistics
                    .brokers
                    .values()
                    .map(|b| format!("{} {}", b.name, b.state))
                    .collect();
                let last = self
                    .last_error
                    .lock()
                    .clone()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                format!("retrying: no broker up ({}){last}", states.join(", "))
            };
        if self.metrics.status() != status {
            debug!(source = %self.source, %status, "Kafka reader status");
            self.metrics.set_status(status);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn!(source = %self.source, error = %error, "Kafka: {reason}");
        *self.last_error.lock() = Some(reason.to_string());
        self.metrics.set_status(format!("retrying: {reason}"));
    }
}

impl ConsumerContext for ReaderClientContext {}
