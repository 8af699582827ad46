//! `weir produce`: sends lines from stdin to a Kafka topic, one record per line, so the README
//! and examples can feed a topic without another Kafka client (Debian's kcat is too old for some
//! brokers). A convenience for demos and tests, not a load generator.

use std::io::BufRead;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tracing::info;

use crate::cli::ProduceArgs;

/// Produces every non-empty line of stdin; returns how many records were delivered.
pub fn run(args: &ProduceArgs) -> Result<u64, String> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "10")
        .create()
        .map_err(|e| format!("Kafka producer for {}: {e}", args.brokers))?;
    let mut sent = 0u64;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut record = BaseRecord::<(), str>::to(&args.topic).payload(line.as_str());
        if let Some(p) = args.partition {
            record = record.partition(p);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(format!("producing to {}: {e}", args.topic)),
            }
        }
        sent += 1;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("delivering to {}: {e}", args.topic))?;
    info!(records = sent, topic = %args.topic, "produced");
    Ok(sent)
}
