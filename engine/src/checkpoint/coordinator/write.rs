//! Writing one pipeline's part of a checkpoint: operator state files, new view segments (merged
//! when there are too many) and provisional rows, into the pipeline's manifest entry.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use super::super::manifest::{OperatorCheckpoint, PipelineCheckpoint, ViewCheckpoint};
use super::super::store::{Compress, epoch_dir};
use super::collect::Outcome;
use super::{CheckpointCoordinator, PARTITION_COLUMN, PipelineHandle};
use crate::error::Result;
use crate::message::Watermark;
use crate::view_table::ViewTable;

/// Segments of one view merged into one once there are more than this.
const MAX_SEGMENTS: usize = 16;

impl CheckpointCoordinator {
    /// Writes one pipeline's files; None when it has nothing to keep (failed before any
    /// checkpoint).
    pub(super) async fn write_pipeline(
        &self,
        epoch: u64,
        view: String,
        handle: Arc<PipelineHandle>,
        outcome: Outcome,
        previous: Option<PipelineCheckpoint>,
    ) -> Result<Option<(String, PipelineCheckpoint, u64)>> {
        let (mut sources, operators, state, ended) = match outcome {
            Outcome::Keep => return Ok(previous.map(|p| (view, p, 0))),
            Outcome::Ended(ended) => {
                if let Some(p) = previous.as_ref().filter(|p| p.ended) {
                    return Ok(Some((view, p.clone(), 0)));
                }
                (BTreeMap::new(), ended.operators, ended.view, true)
            }
            Outcome::Barrier {
                sources,
                operators,
                view: state,
            } => (sources, operators, state, false),
        };
        let dir = format!("{}/{}", epoch_dir(epoch), handle.view_id);
        let mut bytes = 0u64;
        let mut checkpoints = Vec::with_capacity(operators.len());
        for (stage, name, op) in operators {
            let memory = op.bytes() as u64;
            let file = match (&op.schema, op.rows()) {
                (Some(schema), rows) if rows > 0 => {
                    let path = format!("{dir}/op-{stage}.parquet");
                    let f = self
                        .store
                        .write_batches(&path, Arc::clone(schema), op.batches, Compress::None)
                        .await?;
                    bytes += f.size;
                    Some(f)
                }
                _ => None,
            };
            checkpoints.push(OperatorCheckpoint {
                stage,
                name,
                file,
                values: op.values,
                bytes: memory,
            });
        }
        let mut segments = previous
            .as_ref()
            .map(|p| p.view.segments.clone())
            .unwrap_or_default();
        let mut expired_rows = previous.as_ref().map_or(0, |p| p.view.expired_rows);
        let persisted = expired_rows + segments.iter().map(|s| s.rows).sum::<u64>();
        // Retention at the view's watermark as of the barrier: whole segments past it go, and
        // rows written or rewritten now leave their expired ones behind.
        let cutoff = match (handle.table.retention(), state.watermark) {
            (Some(r), Some(Watermark::EventTime(t))) if !Watermark::is_end_of_input(t) => {
                Some(r.cutoff(t))
            }
            _ => None,
        };
        if let Some(cutoff) = cutoff {
            segments.retain(|s| match s.max_time {
                Some(newest) if newest < cutoff => {
                    expired_rows += s.rows;
                    false
                }
                _ => true,
            });
        }
        if state.appended_rows > persisted || segments.len() > MAX_SEGMENTS {
            let mut rows = Vec::new();
            if segments.len() > MAX_SEGMENTS {
                // Compaction: many small segments become one, read back and rewritten with the
                // new rows; the old ones go once no retained checkpoint names them.
                for segment in segments.drain(..) {
                    rows.extend(self.store.read_batches(&segment).await?);
                }
            }
            rows.extend(
                handle
                    .table
                    .rows_range(persisted as usize, state.appended_rows as usize)?,
            );
            let mut max_time = None;
            if let Some(r) = handle.table.retention() {
                let mut kept = Vec::with_capacity(rows.len());
                for batch in rows {
                    let batch = match cutoff {
                        Some(cutoff) => {
                            let (batch, dropped) = r.retained(&batch, cutoff)?;
                            expired_rows += dropped as u64;
                            batch
                        }
                        None => batch,
                    };
                    if batch.num_rows() > 0 {
                        max_time = max_time.max(r.max_time(&batch)?);
                        kept.push(batch);
                    }
                }
                rows = kept;
            }
            if rows.iter().any(|b| b.num_rows() > 0) {
                let path = format!("views/{}/seg-{epoch:020}.parquet", handle.view_id);
                let mut f = self
                    .store
                    .write_batches(&path, handle.table.schema_ref(), rows, Compress::Fast)
                    .await?;
                f.max_time = max_time;
                bytes += f.size;
                segments.push(f);
            }
        }
        let provisional = match provisional_batch(&handle.table, &state.provisional)? {
            Some(batch) => {
                let path = format!("{dir}/provisional.parquet");
                let f = self
                    .store
                    .write_batches(&path, batch.schema(), vec![batch], Compress::Fast)
                    .await?;
                bytes += f.size;
                Some(f)
            }
            None => None,
        };
        let entry = PipelineCheckpoint {
            view_id: handle.view_id.clone(),
            ended,
            rows_in: state.rows_in,
            source: sources.remove(&0),
            more_sources: sources,
            operators: checkpoints,
            view: ViewCheckpoint {
                segments,
                expired_rows,
                provisional,
                watermark: match state.watermark {
                    Some(Watermark::EventTime(t)) => Some(t),
                    _ => None,
                },
                idle: state.watermark == Some(Watermark::Idle),
            },
        };
        Ok(Some((view, entry, bytes)))
    }
}

/// The provisional rows as one batch with their partition key first.
fn provisional_batch(
    table: &ViewTable,
    provisional: &BTreeMap<i64, RecordBatch>,
) -> Result<Option<RecordBatch>> {
    let rows: usize = provisional.values().map(RecordBatch::num_rows).sum();
    if rows == 0 {
        return Ok(None);
    }
    let view_schema = table.schema_ref();
    let mut fields = vec![Arc::new(Field::new(
        PARTITION_COLUMN,
        DataType::Int64,
        false,
    ))];
    fields.extend(view_schema.fields().iter().cloned());
    let schema = Arc::new(Schema::new(fields));
    let mut batches = Vec::with_capacity(provisional.len());
    for (partition, batch) in provisional {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_value(
            *partition,
            batch.num_rows(),
        ))];
        columns.extend(batch.columns().iter().cloned());
        batches.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
    }
    Ok(Some(datafusion::arrow::compute::concat_batches(
        &schema, &batches,
    )?))
}
