//! The manifest: the one file that makes a checkpoint exist. Every state file is written first;
//! the manifest naming them is written last, in one atomic put (a staged file renamed into place
//! on a local disk, a single PUT on an object store), so a checkpoint is all or nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::state::SourceState;

/// Format version of manifests this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// A file of a checkpoint, with what is needed to tell a damaged copy from a good one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// Path inside the checkpoint store.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32 of the whole file.
    pub crc32: u32,
    /// Rows in the file.
    pub rows: u64,
    /// Newest event time among a view segment's rows (nanoseconds), for retention: the whole
    /// file goes once the retention cutoff passes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time: Option<i64>,
}

/// An operator's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorCheckpoint {
    /// Position of the operator in its pipeline.
    pub stage: usize,
    /// Operator name.
    pub name: String,
    /// Row state, if any.
    pub file: Option<FileRef>,
    /// Scalar state.
    pub values: BTreeMap<String, i64>,
    /// In-memory bytes of the state when it was taken.
    pub bytes: u64,
}

/// A view's rows as of a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewCheckpoint {
    /// Final rows, in append order: segments written by successive checkpoints (merged in the
    /// background once there are many).
    pub segments: Vec<FileRef>,
    /// Final rows retention dropped before or out of the segments; they keep their positions,
    /// so the segments end at final row `expired_rows + rows in segments`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expired_rows: u64,
    /// Provisional rows of open partitions (a `__weir_partition` column first).
    pub provisional: Option<FileRef>,
    /// The view's watermark (nanoseconds), if it had one.
    pub watermark: Option<i64>,
    /// The watermark was "idle".
    pub idle: bool,
}

impl ViewCheckpoint {
    /// Final rows up to the end of the segments (expired ones included): the position the next
    /// segment starts at.
    pub fn appended_rows(&self) -> u64 {
        self.expired_rows + self.segments.iter().map(|s| s.rows).sum::<u64>()
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One view's pipeline in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineCheckpoint {
    /// The view's incarnation (a view dropped and created again under the same name does not
    /// inherit the old one's state).
    pub view_id: String,
    /// The pipeline had ended: the view is final and nothing needs to run.
    pub ended: bool,
    /// Rows the pipeline had read.
    pub rows_in: u64,
    /// Source task state of the pipeline's first input (pipelines reading a source).
    pub source: Option<SourceState>,
    /// Source task state of its other inputs, by input (a `UNION ALL` of sources).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub more_sources: BTreeMap<usize, SourceState>,
    /// Operator states, by stage.
    pub operators: Vec<OperatorCheckpoint>,
    /// The view's rows.
    pub view: ViewCheckpoint,
}

/// A complete checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// Checkpoint epoch, increasing.
    pub epoch: u64,
    /// When the barriers were injected (milliseconds since the epoch).
    pub started_at_ms: i64,
    /// When the manifest was written.
    pub completed_at_ms: i64,
    /// Pipelines by view name.
    pub pipelines: BTreeMap<String, PipelineCheckpoint>,
}

impl Manifest {
    /// Every file the checkpoint needs.
    pub fn files(&self) -> impl Iterator<Item = &FileRef> {
        self.pipelines.values().flat_map(|p| {
            p.operators
                .iter()
                .filter_map(|o| o.file.as_ref())
                .chain(p.view.segments.iter())
                .chain(p.view.provisional.iter())
        })
    }

    /// Bytes of all files the checkpoint needs.
    pub fn bytes(&self) -> u64 {
        self.files().map(|f| f.size).sum()
    }
}
