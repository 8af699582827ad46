//! The operator trait: one required method, new capabilities as defaulted hooks.

use std::sync::Arc;
use std::time::Duration;

use crate::changes::Changes;
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};
use crate::message::{CheckpointBarrier, Message, Watermark};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

/// Where an operator puts what it produces; the runner forwards it downstream in order.
#[derive(Debug, Default)]
pub struct Collector {
    out: Vec<Message>,
}

impl Collector {
    /// Emit a message downstream.
    pub fn push(&mut self, message: Message) {
        self.out.push(message);
    }

    /// Emit appended rows (skipping empty batches): inserts, without an op array.
    pub fn data(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.out.push(Message::Changes(Changes::inserts(batch)));
        }
    }

    /// Emit row-level changes (skipping empty ones), in pieces of at most
    /// [`crate::changes::MAX_CHANGES_ROWS`] rows.
    pub fn changes(&mut self, changes: Changes) {
        if changes.is_empty() {
            return;
        }
        if changes.num_rows() <= crate::changes::MAX_CHANGES_ROWS {
            self.out.push(Message::Changes(changes));
            return;
        }
        for piece in changes.chunks(crate::changes::MAX_CHANGES_ROWS) {
            self.out.push(Message::Changes(piece));
        }
    }

    /// What was emitted so far, not yet taken.
    pub fn messages(&self) -> &[Message] {
        &self.out
    }

    /// Take everything emitted so far.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Message> {
        self.out.drain(..)
    }
}

/// A streaming operator. Operators are synchronous: their work is CPU-bound batch processing;
/// the runner owns the channels and timers around them.
pub trait StreamOperator: Send {
    /// Name for logs, EXPLAIN and errors.
    fn name(&self) -> String;

    /// Process appended rows.
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()>;

    /// Process row-level changes. Inserts alone are appended rows and go to
    /// [`StreamOperator::process_batch`]; operators that can consume retractions override this.
    fn process_changes(&mut self, changes: Changes, out: &mut Collector) -> Result<()> {
        match changes.into_inserts() {
            Some(rows) => self.process_batch(rows, out),
            None => Err(EngineError::NotSupported(format!(
                "{} cannot consume updates or deletes",
                self.name()
            ))),
        }
    }

    /// True for an operator over several inputs (a join): the merge of its inputs tags each
    /// input's rows ([`crate::message::Message::FromInput`]) for
    /// [`StreamOperator::process_input`].
    fn reads_inputs(&self) -> bool {
        false
    }

    /// Process changes of input `input` (operators with [`StreamOperator::reads_inputs`]).
    fn process_input(&mut self, input: usize, changes: Changes, out: &mut Collector) -> Result<()> {
        let _ = (changes, out);
        Err(EngineError::Internal(format!(
            "{} received rows of input {input}; it reads one stream",
            self.name()
        )))
    }

    /// Event time advanced. Returns the watermark to forward (None: hold it back).
    fn on_watermark(
        &mut self,
        watermark: Watermark,
        out: &mut Collector,
    ) -> Result<Option<Watermark>> {
        let _ = out;
        Ok(Some(watermark))
    }

    /// A checkpoint barrier reached the operator, before [`StreamOperator::snapshot`]: emit
    /// what must precede the barrier (an aggregate flushes pending changes, so the checkpoint
    /// holds downstream exactly what the state says).
    fn before_barrier(&mut self, barrier: CheckpointBarrier, out: &mut Collector) -> Result<()> {
        let _ = (barrier, out);
        Ok(())
    }

    /// A checkpoint barrier reached the operator: its state as of now, without losing it.
    /// Stateless operators keep the default (nothing).
    fn snapshot(&mut self, barrier: CheckpointBarrier) -> Result<OperatorState> {
        let _ = barrier;
        Ok(OperatorState::default())
    }

    /// Recovery: take back the state of the last checkpoint, before any input arrives.
    fn restore(&mut self, state: OperatorState) -> Result<()> {
        if state.is_empty() {
            return Ok(());
        }
        Err(EngineError::Internal(format!(
            "{} has no state to restore",
            self.name()
        )))
    }

    /// How often [`StreamOperator::on_tick`] should run, if at all.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic wall-clock hook (e.g. refresh open windows).
    fn on_tick(&mut self, out: &mut Collector) -> Result<()> {
        let _ = out;
        Ok(())
    }

    /// The input ended.
    fn on_end(&mut self, out: &mut Collector) -> Result<()> {
        let _ = out;
        Ok(())
    }

    /// Approximate bytes of state held, for system tables.
    fn state_size(&self) -> usize {
        0
    }

    /// A keyed operator that can run as several shards ([`crate::shards`]): expressions over its
    /// input rows whose values say which shard a row belongs to (rows with equal values must meet
    /// in one shard, and each shard then holds only its keys' state). None, the default: the
    /// operator sees every row.
    fn partition_key(&self) -> Option<Vec<Arc<dyn PhysicalExpr>>> {
        None
    }

    /// For an operator with a [`StreamOperator::partition_key`]: the key's values for each row
    /// of a batch of its checkpointed state, in the key's order and types, so a restore with
    /// another number of shards hands each shard the state of its own keys.
    fn state_keys(&self, state_rows: &RecordBatch) -> Result<Vec<ArrayRef>> {
        let _ = state_rows;
        Err(EngineError::Internal(format!(
            "{} has no keyed state to split between shards",
            self.name()
        )))
    }

    /// True for an operator without state (filters, projections): it can run inside each shard
    /// after a sharded operator.
    fn is_stateless(&self) -> bool {
        false
    }

    /// One line describing the operator for EXPLAIN.
    fn describe(&self) -> String {
        self.name()
    }
}
