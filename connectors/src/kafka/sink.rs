//! `CREATE SINK … WITH (connector = 'kafka', topic = '…')`: a view's changes as JSON records.
//!
//! Exactly once by default, with Kafka transactions committed with Weir's checkpoints:
//!
//! - rows go into an open transaction as they arrive;
//! - at a checkpoint barrier the sink puts a commit mark (`epoch N`) into the same transaction,
//!   as a transactional offset commit of its own consumer group (`weir-sink-<name>-<id>`, the
//!   output topic's partition 0, offset N), flushes, and hands the transaction's records to the
//!   checkpoint (pre-commit);
//! - when the checkpoint's manifest is durable, the transaction is committed;
//! - on recovery the new producer's `init_transactions` aborts whatever the crashed process left
//!   open; if the checkpoint recovered from names epoch N and the group's committed offset is
//!   below N, the crash came between manifest and commit: the checkpointed records are sent
//!   again, with the mark, in a new transaction. Either way epoch N is in the topic once.
//!
//! The mark is an offset commit, not a record, because the broker applies a transaction's
//! offsets only when it commits (as Kafka Streams and Flink rely on); it does not depend on
//! `read_committed` fetch filtering, which some Kafka-compatible brokers (tansu) lack. Lag
//! tools will list the group; its "offset" is the checkpoint epoch, not a position.
//!
//! `sink.delivery = 'at_least_once'` (for brokers without transactions) flushes at each barrier
//! instead: nothing is lost, and rows after the last checkpoint may repeat after a crash.
//! Readers of an exactly-once sink's topic must read with `isolation.level = read_committed`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::ConnectorError;
use async_trait::async_trait;
use datafusion::arrow::array::{Array, BinaryArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::Mutex;
use tracing::{info, warn};
use weir_engine::checkpoint::OperatorState;
use weir_engine::error::{EngineError, Result};
use weir_engine::sink::{ChangeBatch, ChangeOp, SinkFactory, SinkSpec, SinkWriter};

use super::sink_config::KafkaSinkConfig;
use super::transport::{RdKafkaTransport, Transport, check_topics};
use crate::format::json_encode::{json_rows, project};

/// One record: key and payload (None payload: a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) key: Option<Vec<u8>>,
    pub(super) payload: Option<Vec<u8>>,
}

/// The exactly-once protocol over a [`Transport`], run on tokio's blocking threads.
pub(super) struct Core<T: Transport> {
    config: Arc<KafkaSinkConfig>,
    transport: T,
    /// Records since the last commit (sent again if their transaction is lost).
    pending: Vec<Record>,
    /// A transaction holding every pending record is open on the broker.
    in_transaction: bool,
    /// Epoch of the last pre-commit (its mark goes into the transaction).
    epoch: Option<u64>,
}

impl<T: Transport> Core<T> {
    pub(super) fn new(config: Arc<KafkaSinkConfig>, transport: T) -> Self {
        Self {
            config,
            transport,
            pending: Vec::new(),
            in_transaction: false,
            epoch: None,
        }
    }

    /// Opens a transaction holding every pending record, if none is open.
    fn ensure_transaction(&mut self) -> Result<()> {
        if self.in_transaction {
            return Ok(());
        }
        self.transport.open()?;
        if self.config.transactional() {
            self.transport.begin()?;
        }
        // Everything since the last commit goes (again) into this transaction.
        let topic = self.config.topic.clone();
        let pending = std::mem::take(&mut self.pending);
        let sent = pending.iter().try_for_each(|r| {
            self.transport
                .send(&topic, r.key.as_deref(), r.payload.as_deref())
        });
        self.pending = pending;
        self.in_transaction = true;
        if sent.is_err() {
            self.abandon_transaction();
        }
        sent
    }

    pub(super) fn write(&mut self, records: Vec<Record>) -> Result<()> {
        self.ensure_transaction()?;
        let topic = self.config.topic.clone();
        let sent = records.iter().try_for_each(|r| {
            self.transport
                .send(&topic, r.key.as_deref(), r.payload.as_deref())
        });
        // Kept even when sending failed part-way: the transaction is then redone whole.
        self.pending.extend(records);
        if sent.is_err() {
            self.abandon_transaction();
        }
        sent
    }

    /// Flushes; a failed delivery dooms the open transaction.
    fn flush(&mut self) -> Result<()> {
        let flushed = self.transport.flush();
        if flushed.is_err() {
            self.abandon_transaction();
        }
        flushed
    }

    /// Gives up the open transaction; its records go into the next one.
    fn abandon_transaction(&mut self) {
        if self.in_transaction
            && self.config.transactional()
            && let Err(e) = self.transport.abort()
        {
            warn!(sink = %self.config.sink, error = %e, "aborting the Kafka transaction failed; starting a new producer");
            self.transport.reset();
        }
        self.in_transaction = false;
    }

    pub(super) fn pre_commit(&mut self, epoch: u64) -> Result<OperatorState> {
        if self.pending.is_empty() {
            return Ok(OperatorState::default());
        }
        self.ensure_transaction()?;
        self.epoch = Some(epoch);
        if !self.config.transactional() {
            // Delivered now: nothing to finish after a crash.
            self.flush()?;
            return Ok(OperatorState::default());
        }
        if let Err(e) = self.transport.mark(epoch) {
            self.abandon_transaction();
            return Err(e);
        }
        self.flush()?;
        pending_state(&self.pending, epoch)
    }

    pub(super) fn commit(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if !self.config.transactional() {
            self.ensure_transaction()?;
            self.flush()?;
        } else {
            if !self.in_transaction {
                // The transaction was lost after its pre-commit: redo it whole, mark included.
                let epoch = self.epoch.unwrap_or_default();
                self.pre_commit(epoch)?;
            }
            if let Err(e) = self.transport.commit() {
                self.abandon_transaction();
                return Err(e);
            }
        }
        self.pending.clear();
        self.in_transaction = false;
        Ok(())
    }

    pub(super) fn recover(&mut self, state: OperatorState) -> Result<()> {
        let Some(&epoch) = state.values.get("epoch") else {
            return Ok(());
        };
        let epoch = epoch as u64;
        if !self.config.transactional() {
            return Ok(());
        }
        // Opening the producer aborts what the previous process left open.
        self.transport.open()?;
        if self.transport.committed_mark()? >= epoch {
            info!(sink = %self.config.sink, epoch, "recovered: the checkpoint's transaction was committed");
            return Ok(());
        }
        self.pending = records_of(&state)?;
        self.in_transaction = false;
        self.epoch = Some(epoch);
        info!(sink = %self.config.sink, epoch, records = self.pending.len(), "recovered: re-sending the checkpoint's transaction, which the crash left uncommitted");
        self.pre_commit(epoch)?;
        self.commit()
    }
}

/// The pending records as checkpoint state: one row per record, and the epoch.
fn pending_state(pending: &[Record], epoch: u64) -> Result<OperatorState> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Binary, true),
        Field::new("payload", DataType::Binary, true),
    ]));
    let keys = BinaryArray::from_iter(pending.iter().map(|r| r.key.as_deref()));
    let payloads = BinaryArray::from_iter(pending.iter().map(|r| r.payload.as_deref()));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(keys), Arc::new(payloads)],
    )?;
    Ok(OperatorState {
        schema: Some(schema),
        batches: vec![batch],
        values: BTreeMap::from([("epoch".to_string(), epoch as i64)]),
    })
}

fn records_of(state: &OperatorState) -> Result<Vec<Record>> {
    let mut out = Vec::with_capacity(state.rows());
    for batch in &state.batches {
        let column = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<BinaryArray>()
                .cloned()
                .ok_or_else(|| {
                    EngineError::from(ConnectorError::CorruptState(
                        "Kafka sink state has an unexpected shape",
                    ))
                })
        };
        let (keys, payloads) = (column(0)?, column(1)?);
        for i in 0..batch.num_rows() {
            out.push(Record {
                key: keys.is_valid(i).then(|| keys.value(i).to_vec()),
                payload: payloads.is_valid(i).then(|| payloads.value(i).to_vec()),
            });
        }
    }
    Ok(out)
}

/// The sink task's side: encodes changes, and runs the blocking Kafka calls off the runtime.
struct KafkaSinkWriter {
    config: Arc<KafkaSinkConfig>,
    core: Arc<Mutex<Core<RdKafkaTransport>>>,
    pending_rows: u64,
}

impl KafkaSinkWriter {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core<RdKafkaTransport>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let core = Arc::clone(&self.core);
        tokio::task::spawn_blocking(move || f(&mut core.lock()))
            .await
            .map_err(|source| ConnectorError::Task {
                what: "Kafka sink",
                source,
            })?
    }

    fn encode(&self, change: &ChangeBatch) -> Result<Vec<Record>> {
        let keys = if self.config.key.is_empty() {
            None
        } else {
            Some(json_rows(&project(&change.rows, &self.config.key)?)?)
        };
        if self.config.debezium {
            return self.encode_debezium(change, keys);
        }
        let payloads = match change.op {
            ChangeOp::Upsert | ChangeOp::Update => {
                json_rows(&change.rows)?.into_iter().map(Some).collect()
            }
            ChangeOp::Delete => vec![None; change.rows.num_rows()],
        };
        let mut keys = keys.map(Vec::into_iter);
        Ok(payloads
            .into_iter()
            .map(|payload| Record {
                key: keys.as_mut().and_then(Iterator::next),
                payload,
            })
            .collect())
    }
}

impl KafkaSinkWriter {
    /// Debezium envelopes: `{"before": …, "after": …, "op": "c" | "u" | "d"}`; a delete is
    /// followed by a tombstone for its key, as Debezium does, so compaction can drop the key.
    fn encode_debezium(
        &self,
        change: &ChangeBatch,
        keys: Option<Vec<Vec<u8>>>,
    ) -> Result<Vec<Record>> {
        let rows = json_rows(&change.rows)?;
        let befores = match &change.before {
            Some(before) => Some(json_rows(before)?),
            None => None,
        };
        let mut keys = keys.map(Vec::into_iter);
        let mut records = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            let key = keys.as_mut().and_then(Iterator::next);
            let envelope = |before: &[u8], after: &[u8], op: &str| {
                let mut out = Vec::with_capacity(before.len() + after.len() + 40);
                out.extend_from_slice(b"{\"before\":");
                out.extend_from_slice(before);
                out.extend_from_slice(b",\"after\":");
                out.extend_from_slice(after);
                out.extend_from_slice(format!(",\"op\":\"{op}\"}}").as_bytes());
                out
            };
            match change.op {
                ChangeOp::Upsert => records.push(Record {
                    key,
                    payload: Some(envelope(b"null", &row, "c")),
                }),
                ChangeOp::Update => {
                    let before = befores
                        .as_ref()
                        .and_then(|b| b.get(i))
                        .map_or(&b"null"[..], Vec::as_slice);
                    records.push(Record {
                        key,
                        payload: Some(envelope(before, &row, "u")),
                    });
                }
                ChangeOp::Delete => {
                    records.push(Record {
                        key: key.clone(),
                        payload: Some(envelope(&row, b"null", "d")),
                    });
                    records.push(Record { key, payload: None });
                }
            }
        }
        Ok(records)
    }
}

#[async_trait]
impl SinkWriter for KafkaSinkWriter {
    async fn write(&mut self, changes: &ChangeBatch) -> Result<()> {
        let records = self.encode(changes)?;
        let n = records.len() as u64;
        self.blocking(move |core| core.write(records)).await?;
        self.pending_rows += n;
        Ok(())
    }

    async fn pre_commit(&mut self, epoch: u64) -> Result<OperatorState> {
        self.blocking(move |core| core.pre_commit(epoch)).await
    }

    async fn commit(&mut self) -> Result<()> {
        self.blocking(Core::commit).await?;
        self.pending_rows = 0;
        Ok(())
    }

    async fn recover(&mut self, state: OperatorState) -> Result<()> {
        self.blocking(move |core| core.recover(state)).await
    }

    fn pending_rows(&self) -> u64 {
        self.pending_rows
    }
}

/// The `kafka` sink connector.
#[derive(Debug, Clone, Copy)]
pub struct KafkaSinkConnector;

#[async_trait]
impl SinkFactory for KafkaSinkConnector {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn open_sink(&self, spec: &mut SinkSpec) -> Result<Box<dyn SinkWriter>> {
        if !matches!(spec.encode.as_str(), "" | "json") {
            return Err(EngineError::User(format!(
                "the Kafka sink encodes JSON, not {}",
                spec.encode.to_ascii_uppercase()
            )));
        }
        let config = Arc::new(KafkaSinkConfig::from_spec(spec)?);
        if spec.check {
            let probe = Arc::clone(&config);
            tokio::task::spawn_blocking(move || check_topics(&probe))
                .await
                .map_err(|source| ConnectorError::Task {
                    what: "Kafka probe",
                    source,
                })??;
        }
        let core = Core::new(
            Arc::clone(&config),
            RdKafkaTransport::new(Arc::clone(&config)),
        );
        Ok(Box::new(KafkaSinkWriter {
            config,
            core: Arc::new(Mutex::new(core)),
            pending_rows: 0,
        }))
    }
}

#[cfg(test)]
#[path = "sink_tests.rs"]
mod tests;
