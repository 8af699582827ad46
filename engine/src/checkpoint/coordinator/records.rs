//! What the coordinator tells the rest of the server: the checkpoint history
//! (`weir_checkpoints`, `weir_checkpoint_state`) and the committed / failed epochs sinks wait on.

use std::time::Duration;

use super::super::manifest::Manifest;

/// One row of `weir_checkpoints`.
#[derive(Debug, Clone)]
pub struct CheckpointRecord {
    /// Epoch.
    pub epoch: u64,
    /// When barriers were injected (ms since the epoch).
    pub started_at_ms: i64,
    /// Wall time until the manifest was committed (or the attempt failed).
    pub duration: Duration,
    /// Bytes of the files the checkpoint refers to.
    pub bytes: u64,
    /// Bytes written by this checkpoint.
    pub written_bytes: u64,
    /// Pipelines in the checkpoint.
    pub pipelines: usize,
    /// None when committed (or recovered from), else why it failed.
    pub error: Option<String>,
    /// This is the checkpoint the server recovered from at start (duration: loading it).
    pub recovered: bool,
    /// Operator states written.
    pub operators: Vec<OperatorRecord>,
}

impl CheckpointRecord {
    /// The record of `manifest`: nothing written, no operator figures, no error.
    pub(super) fn of(manifest: &Manifest, started_at_ms: i64, duration: Duration) -> Self {
        Self {
            epoch: manifest.epoch,
            started_at_ms,
            duration,
            bytes: manifest.bytes(),
            written_bytes: 0,
            pipelines: manifest.pipelines.len(),
            error: None,
            recovered: false,
            operators: Vec::new(),
        }
    }
}

/// One operator's state in a checkpoint (`weir_checkpoint_state`).
#[derive(Debug, Clone)]
pub struct OperatorRecord {
    /// The view.
    pub view: String,
    /// Position in the pipeline.
    pub stage: usize,
    /// Operator name.
    pub operator: String,
    /// Rows of state.
    pub rows: u64,
    /// In-memory bytes of the state.
    pub bytes: u64,
}

/// The newest committed and failed checkpoint epochs, for sinks waiting to publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointOutcomes {
    /// The newest epoch whose manifest is durable.
    pub committed: u64,
    /// The newest epoch whose attempt failed (its manifest will never exist).
    pub failed: u64,
}
