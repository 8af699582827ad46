//! Recovery: find the newest checkpoint whose manifest and files are intact, and load it.
//!
//! A manifest that does not parse, names a missing or short file, or a state file whose checksum
//! does not match, makes the whole checkpoint unusable: the one before is tried, with a log line
//! saying why. State files are read and decoded in parallel, before anything is restored, so a
//! bad checkpoint never half-restores a view. View segments are only checked for size here
//! (queries read them where they are; reading them all at start would cost what they weigh).

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::{filter_record_batch, kernels::cmp};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::try_join_all;
use tracing::{info, warn};

use super::coordinator::PARTITION_COLUMN;
use super::manifest::{FileRef, Manifest, PipelineCheckpoint};
use super::state::{OperatorState, PipelineRestore, ViewState};
use super::store::CheckpointStore;
use crate::error::{EngineError, Result};
use crate::message::Watermark;

/// One view as of the recovered checkpoint.
#[derive(Debug)]
pub struct RecoveredView {
    /// Its manifest entry.
    pub entry: PipelineCheckpoint,
    /// Final rows, in segments (read by queries, not loaded).
    pub segments: Vec<FileRef>,
    /// Provisional rows by partition.
    pub provisional: BTreeMap<i64, RecordBatch>,
    /// State for the pipeline's stages.
    pub restore: PipelineRestore,
}

impl RecoveredView {
    /// The view's state as the writer had it at the barrier.
    pub fn view_state(&self) -> ViewState {
        ViewState {
            appended_rows: self.entry.view.appended_rows(),
            provisional: self.provisional.clone(),
            watermark: self.watermark(),
            rows_in: self.entry.rows_in,
        }
    }

    /// The view's watermark at the barrier.
    pub fn watermark(&self) -> Option<Watermark> {
        if self.entry.view.idle {
            return Some(Watermark::Idle);
        }
        self.entry.view.watermark.map(Watermark::EventTime)
    }
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Recovered {
    /// Its manifest.
    pub manifest: Manifest,
    /// Views by name.
    pub views: BTreeMap<String, RecoveredView>,
}

/// Loads the newest usable checkpoint, or None when there is none.
pub async fn recover(store: &CheckpointStore) -> Result<Option<Recovered>> {
    for epoch in store.manifest_epochs().await? {
        match load(store, epoch).await {
            Ok(recovered) => {
                info!(
                    epoch,
                    views = recovered.views.len(),
                    "recovered from checkpoint"
                );
                return Ok(Some(recovered));
            }
            Err(e) => {
                warn!(epoch, error = %e, "checkpoint is unusable; falling back to the previous one")
            }
        }
    }
    Ok(None)
}

async fn load(store: &CheckpointStore, epoch: u64) -> Result<Recovered> {
    let manifest = store.load_manifest(epoch).await?;
    let views = try_join_all(manifest.pipelines.iter().map(|(view, entry)| async move {
        Ok::<_, EngineError>((view.clone(), load_view(store, entry).await?))
    }))
    .await?;
    Ok(Recovered {
        manifest,
        views: views.into_iter().collect(),
    })
}

async fn load_view(store: &CheckpointStore, entry: &PipelineCheckpoint) -> Result<RecoveredView> {
    let provisional = match &entry.view.provisional {
        Some(f) => split_provisional(store.read_batches(f).await?)?,
        None => BTreeMap::new(),
    };
    let operators = try_join_all(entry.operators.iter().map(|o| async move {
        let batches = match &o.file {
            Some(f) => store.read_batches(f).await?,
            None => Vec::new(),
        };
        let schema = batches.first().map(RecordBatch::schema);
        Ok::<_, EngineError>((
            o.stage,
            OperatorState {
                schema,
                batches,
                values: o.values.clone(),
            },
        ))
    }))
    .await?;
    Ok(RecoveredView {
        entry: entry.clone(),
        segments: entry.view.segments.clone(),
        provisional,
        restore: PipelineRestore {
            sources: entry
                .source
                .iter()
                .map(|s| (0, s.clone()))
                .chain(entry.more_sources.clone())
                .collect(),
            operators: operators.into_iter().collect(),
        },
    })
}

/// Splits persisted provisional rows back into partitions, dropping the partition column.
fn split_provisional(batches: Vec<RecordBatch>) -> Result<BTreeMap<i64, RecordBatch>> {
    let mut out: BTreeMap<i64, Vec<RecordBatch>> = BTreeMap::new();
    for batch in batches {
        let Some(index) = batch.schema().index_of(PARTITION_COLUMN).ok() else {
            return Err(EngineError::Storage(
                "provisional rows without their partition column".into(),
            ));
        };
        let keys = batch
            .column(index)
            .as_primitive_opt::<Int64Type>()
            .cloned()
            .ok_or_else(|| {
                EngineError::Storage("provisional rows: the partition column is not BIGINT".into())
            })?;
        let rest = batch.project(
            &(0..batch.num_columns())
                .filter(|i| *i != index)
                .collect::<Vec<_>>(),
        )?;
        if keys.null_count() > 0 {
            return Err(EngineError::Storage(
                "provisional rows with a NULL partition key".into(),
            ));
        }
        let mut distinct: Vec<i64> = keys.values().to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        for key in distinct {
            let mask = cmp::eq(
                &keys,
                &datafusion::arrow::array::Int64Array::new_scalar(key),
            )?;
            out.entry(key)
                .or_default()
                .push(filter_record_batch(&rest, &mask)?);
        }
    }
    out.into_iter()
        .map(|(k, parts)| {
            let schema = parts
                .first()
                .map(RecordBatch::schema)
                .ok_or_else(|| EngineError::Internal("empty partition".into()))?;
            Ok((
                k,
                datafusion::arrow::compute::concat_batches(&schema, &parts)?,
            ))
        })
        .collect()
}
