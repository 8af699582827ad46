//! Sinks: a view's changes pushed to another system (a Kafka topic, Parquet files, a PostgreSQL
//! table), exactly once across crashes where the target allows it.
//!
//! ```text
//!  view's Fanout ──changes──▶ sink task: ChangeTracker ──▶ SinkWriter::write   (open transaction)
//!                              │ barrier N                 SinkWriter::pre_commit(N) ─▶ state ─▶ coordinator
//!                              │ rows after N wait         (manifest N durable)
//!                              └ commit watch ≥ N ───────▶ SinkWriter::commit, then the waiting rows
//! ```
//!
//! Two-phase commit with the checkpoint: at barrier N the writer makes everything written since
//! its last commit durable but invisible (a Kafka transaction flushed, Parquet files closed under
//! pending names) and returns a description of it, saved in checkpoint N. Only when manifest N
//! is durable does the writer publish it. Rows that arrive meanwhile are held (bounded, then
//! backpressure) so a commit never covers rows after its barrier. On recovery from checkpoint N
//! the writer gets that description back and finishes the job ([`SinkWriter::recover`]): a crash
//! between manifest and commit neither loses nor repeats the epoch. Rows after the barrier are
//! produced again by the replayed sources.

mod changes;
mod runner;
mod runtime;
mod status;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::checkpoint::OperatorState;
use crate::error::Result;
use crate::options::Options;

pub use changes::ChangeTracker;
pub use runner::{SinkDurability, SinkInput, spawn_sink};
pub use runtime::{SinkCheckpointing, SinkDefinition, SinkRuntime};
pub use status::{SinkState, SinkStatus};

/// `FORMAT PLAIN | UPSERT | DEBEZIUM`: what a sink emits for a view's changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkFormat {
    /// Final rows only, each once (open windows are sent when they close).
    Plain,
    /// Every current value by key: open windows as they change, deletes as tombstones.
    Upsert {
        /// Key columns.
        key: Vec<String>,
    },
    /// Every change as a Debezium envelope (`before`, `after`, `op`: `c`, `u`, `d`), keyed;
    /// an update is one record carrying both versions.
    Debezium {
        /// Key columns.
        key: Vec<String>,
    },
}

impl SinkFormat {
    /// The key columns records are keyed by (UPSERT, DEBEZIUM).
    pub fn key(&self) -> Option<&[String]> {
        match self {
            SinkFormat::Plain => None,
            SinkFormat::Upsert { key } | SinkFormat::Debezium { key } => Some(key),
        }
    }
}

/// What happened to a batch of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    /// New final rows (PLAIN) or the current value of their keys (UPSERT).
    Upsert,
    /// These keys have no row any more (UPSERT, DEBEZIUM).
    Delete,
    /// These rows replaced the rows in [`ChangeBatch::before`], position by position (DEBEZIUM
    /// only; UPSERT writes updates as upserts).
    Update,
}

/// Rows of one change kind, in the view's schema.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// Insert / upsert or delete.
    pub op: ChangeOp,
    /// The rows (for deletes, the rows that went away: their key columns matter; for updates,
    /// the new versions).
    pub rows: RecordBatch,
    /// For updates, the versions the rows replaced.
    pub before: Option<RecordBatch>,
}

/// A sink connector's writer: one per sink, driven by the sink task.
#[async_trait]
pub trait SinkWriter: Send {
    /// Delivers `changes` into the open transaction (or, for targets without one, directly).
    async fn write(&mut self, changes: &ChangeBatch) -> Result<()>;

    /// Barrier `epoch`: make everything written since the last commit durable but not yet
    /// visible, and describe it; the description is saved in checkpoint `epoch`.
    async fn pre_commit(&mut self, epoch: u64) -> Result<OperatorState>;

    /// The checkpoint of the last `pre_commit` is durable: make its output visible.
    async fn commit(&mut self) -> Result<()>;

    /// Recovery from a checkpoint whose `pre_commit` returned `state`: make sure that output is
    /// visible exactly once (finish it if the crash came before the commit), and discard
    /// anything written after it.
    async fn recover(&mut self, state: OperatorState) -> Result<()> {
        let _ = state;
        Ok(())
    }

    /// Rows written and not yet committed that a commit would publish.
    fn pending_rows(&self) -> u64 {
        0
    }

    /// The view is final: the next `pre_commit` is the last one and must leave nothing
    /// buffered (a file writer closes its open files).
    fn input_ended(&mut self) {}

    /// Rows accepted (and kept in the checkpoint) that the last commit did not make visible in
    /// the target yet, such as a file writer's open buffers: `weir_sinks` counts them as
    /// pending, not written.
    fn unpublished_rows(&self) -> u64 {
        0
    }
}

/// What `CREATE SINK` hands a connector.
#[derive(Debug)]
pub struct SinkSpec {
    /// Sink name.
    pub name: String,
    /// A stable id (the persisted catalog's), for transactional ids and file names that must
    /// survive restarts but not a drop and re-create.
    pub id: String,
    /// Schema of the rows.
    pub schema: SchemaRef,
    /// `WITH (…)` options left after the generic ones.
    pub options: Options,
    /// PLAIN or UPSERT.
    pub format: SinkFormat,
    /// `ENCODE …`, lower case; empty when not given (the connector's own encoding).
    pub encode: String,
    /// A new sink (check the target now); false when re-created at start-up, where the target
    /// may be away for a while and the sink retries instead.
    pub check: bool,
}

/// Builds sink writers for one connector name.
#[async_trait]
pub trait SinkFactory: Send + Sync {
    /// The `connector = '…'` value.
    fn name(&self) -> &'static str;

    /// Validates `spec` (taking its options), checks what can be checked up front, and opens the
    /// writer.
    async fn open_sink(&self, spec: &mut SinkSpec) -> Result<Box<dyn SinkWriter>>;
}

/// Shared handle to a running sink's figures.
pub type SharedSinkStatus = Arc<SinkStatus>;
