//! The checkpoint coordinator: injects barriers at the sources, collects what every stage reports
//! when the barrier passes it, writes the state files, then commits the manifest.
//!
//! ```text
//!  coordinator ──barrier──▶ source task ──▶ op 1 ──▶ … ──▶ view writer ──▶ (views reading it)
//!       ▲                      │ position      │ state         │ rows, provisional
//!       └──────────── reports (one channel per pipeline, in barrier order) ◀──┘
//! ```
//!
//! Pipelines are linear and views reading views get the upstream's barriers through its output
//! stream, so alignment is the order of one channel: a stage reports before it forwards the
//! barrier. Stages hand over immutable Arrow arrays and go on processing; Parquet encoding and
//! writes happen here. A pipeline that failed, or reads a failed view, keeps its entry from the
//! last checkpoint (it received nothing since). View rows are persisted from "rows in the last
//! committed segments" up to the barrier, so a failed checkpoint loses nothing: the next one
//! writes those rows too.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::try_join_all;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::manifest::{
    MANIFEST_VERSION, Manifest, OperatorCheckpoint, PipelineCheckpoint, ViewCheckpoint,
};
use super::state::{CheckpointReport, OperatorState, SourceState, ViewState};
use super::store::{CheckpointStore, Compress, epoch_dir, manifest_path};
use crate::error::{EngineError, Result};
use crate::message::{CheckpointBarrier, Watermark};
use crate::pipeline::{PipelineState, PipelineStatus};
use crate::source_metrics::now_millis;
use crate::view_table::ViewTable;

/// How many past checkpoints the history (`weir_checkpoints`) keeps.
const HISTORY: usize = 100;
/// Segments of one view merged into one once there are more than this.
const MAX_SEGMENTS: usize = 16;

/// The pipeline's end of its link to the coordinator.
#[derive(Debug)]
pub struct PipelineLink {
    /// Barriers for the source task (None for pipelines reading a view: their barriers come
    /// through the upstream view's stream).
    pub barriers: Option<mpsc::Receiver<CheckpointBarrier>>,
    /// Where every stage reports.
    pub reports: mpsc::UnboundedSender<CheckpointReport>,
}

/// The coordinator's end of a pipeline.
#[derive(Debug)]
struct PipelineHandle {
    view_id: String,
    /// Views (not sources) the pipeline reads.
    upstream_views: Vec<String>,
    barriers: Option<mpsc::Sender<CheckpointBarrier>>,
    reports: tokio::sync::Mutex<mpsc::UnboundedReceiver<CheckpointReport>>,
    table: Arc<ViewTable>,
    status: Arc<PipelineStatus>,
    /// The pipeline's final state, once it reported its end.
    ended: Mutex<Option<EndedState>>,
}

/// What an ended pipeline keeps in every checkpoint.
#[derive(Debug, Clone)]
struct EndedState {
    view: ViewState,
    operators: Vec<(usize, String, OperatorState)>,
}

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
    fn of(manifest: &Manifest, started_at_ms: i64, duration: Duration) -> Self {
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

/// The last committed checkpoints.
#[derive(Debug, Default)]
struct Committed {
    last: Option<Manifest>,
    /// The committed checkpoint before `last`, kept as a fallback if `last` turns out damaged.
    previous: Option<Manifest>,
    next_epoch: u64,
}

/// What one pipeline contributes to a checkpoint.
enum Outcome {
    /// It passed the barrier.
    Barrier {
        source: Option<SourceState>,
        operators: Vec<(usize, String, OperatorState)>,
        view: ViewState,
    },
    /// It ended; its view is final.
    Ended(EndedState),
    /// It failed, or reads a failed view: its last checkpointed entry stands.
    Keep,
}

/// The newest committed and failed checkpoint epochs, for sinks waiting to publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointOutcomes {
    /// The newest epoch whose manifest is durable.
    pub committed: u64,
    /// The newest epoch whose attempt failed (its manifest will never exist).
    pub failed: u64,
}

/// Takes checkpoints of every registered pipeline.
#[derive(Debug)]
pub struct CheckpointCoordinator {
    store: CheckpointStore,
    /// Serialises checkpoints (the interval timer and `CHECKPOINT` statements).
    committed: tokio::sync::Mutex<Committed>,
    pipelines: Mutex<BTreeMap<String, Arc<PipelineHandle>>>,
    history: Mutex<VecDeque<CheckpointRecord>>,
    /// A pipeline that does not pass the barrier within this long fails the checkpoint.
    timeout: Duration,
    /// Announces committed and failed epochs (sinks commit their output on the first).
    outcomes: tokio::sync::watch::Sender<CheckpointOutcomes>,
    /// Requests for a checkpoint before the next interval tick.
    requests: Arc<tokio::sync::Notify>,
}

impl CheckpointCoordinator {
    /// A coordinator writing to `store`, continuing after `last` (the manifest recovered from).
    pub fn new(store: CheckpointStore, last: Option<Manifest>, timeout: Duration) -> Self {
        let next_epoch = last.as_ref().map_or(1, |m| m.epoch + 1);
        let (outcomes, _) = tokio::sync::watch::channel(CheckpointOutcomes {
            committed: last.as_ref().map_or(0, |m| m.epoch),
            failed: 0,
        });
        Self {
            outcomes,
            store,
            committed: tokio::sync::Mutex::new(Committed {
                last,
                previous: None,
                next_epoch,
            }),
            pipelines: Mutex::new(BTreeMap::new()),
            history: Mutex::new(VecDeque::new()),
            timeout,
            requests: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Committed and failed epochs as they happen.
    pub fn outcomes(&self) -> tokio::sync::watch::Receiver<CheckpointOutcomes> {
        self.outcomes.subscribe()
    }

    /// The store.
    pub fn store(&self) -> &CheckpointStore {
        &self.store
    }

    /// Registers a view's pipeline; the returned link goes to [`crate::pipeline::spawn_pipeline`].
    pub fn register(
        &self,
        view: &str,
        view_id: &str,
        upstream_views: Vec<String>,
        reads_source: bool,
        table: Arc<ViewTable>,
        status: Arc<PipelineStatus>,
    ) -> PipelineLink {
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let (barrier_tx, barrier_rx) = if reads_source {
            let (tx, rx) = mpsc::channel(4);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let handle = PipelineHandle {
            view_id: view_id.to_string(),
            upstream_views,
            barriers: barrier_tx,
            reports: tokio::sync::Mutex::new(reports_rx),
            table,
            status,
            ended: Mutex::new(None),
        };
        self.pipelines
            .lock()
            .insert(view.to_string(), Arc::new(handle));
        PipelineLink {
            barriers: barrier_rx,
            reports: reports_tx,
        }
    }

    /// Registers a view restored as final (its pipeline had ended): nothing runs, its rows stay.
    pub fn register_ended(
        &self,
        view: &str,
        view_id: &str,
        table: Arc<ViewTable>,
        status: Arc<PipelineStatus>,
        state: ViewState,
    ) {
        let link = self.register(view, view_id, Vec::new(), false, table, status);
        drop(link);
        if let Some(h) = self.pipelines.lock().get(view) {
            *h.ended.lock() = Some(EndedState {
                view: state,
                operators: Vec::new(),
            });
        }
    }

    /// Forgets a dropped view.
    pub fn unregister(&self, view: &str) {
        self.pipelines.lock().remove(view);
    }

    /// Past checkpoints, oldest first.
    pub fn history(&self) -> Vec<CheckpointRecord> {
        self.history.lock().iter().cloned().collect()
    }

    /// Asks the interval task for a checkpoint now rather than at its next tick.
    pub fn checkpoint_requests(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.requests)
    }

    /// Takes checkpoints every `interval`, and when asked, until the coordinator is dropped.
    pub fn spawn_interval(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let requests = Arc::clone(&self.requests);
        tokio::spawn(async move {
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = requests.notified() => {}
                }
                let Some(coordinator) = weak.upgrade() else {
                    return;
                };
                if coordinator.pipelines.lock().is_empty() {
                    continue;
                }
                if let Err(e) = coordinator.checkpoint().await {
                    warn!(error = %e, "checkpoint failed; the last complete checkpoint stays in use");
                }
            }
        })
    }

    /// Takes one checkpoint now and returns its record once the manifest is committed.
    pub async fn checkpoint(&self) -> Result<CheckpointRecord> {
        let mut committed = self.committed.lock().await;
        let epoch = committed.next_epoch;
        // Advanced even when this attempt fails, so late reports of it are recognisably stale.
        committed.next_epoch += 1;
        let started_at_ms = now_millis();
        let started = Instant::now();
        let result = self.run(epoch, started_at_ms, &committed).await;
        let record = match result {
            Ok((manifest, _, _)) if manifest.epoch != epoch => {
                // Unchanged since the last checkpoint, which stands; no manifest `epoch` will
                // ever exist.
                self.outcomes
                    .send_modify(|o| o.failed = o.failed.max(epoch));
                return Ok(CheckpointRecord::of(
                    &manifest,
                    started_at_ms,
                    started.elapsed(),
                ));
            }
            Ok((manifest, written_bytes, operators)) => {
                let record = CheckpointRecord {
                    written_bytes,
                    operators,
                    ..CheckpointRecord::of(&manifest, started_at_ms, started.elapsed())
                };
                // Rows now in committed segments leave the views' memory.
                for (view, handle) in self.pipelines.lock().iter() {
                    if let Some(entry) = manifest
                        .pipelines
                        .get(view)
                        .filter(|e| e.view_id == handle.view_id)
                        && let Err(e) = handle.table.persisted(&entry.view.segments)
                    {
                        warn!(view = %view, error = %e, "view rows stay in memory");
                    }
                }
                let committed_epoch = manifest.epoch;
                committed.previous = committed.last.replace(manifest);
                self.outcomes
                    .send_modify(|o| o.committed = o.committed.max(committed_epoch));
                if let Err(e) = self.clean_up(&committed).await {
                    warn!(error = %e, "removing old checkpoint files failed (they will be retried)");
                }
                info!(
                    epoch,
                    ms = record.duration.as_millis() as u64,
                    bytes = record.bytes,
                    "checkpoint committed"
                );
                record
            }
            Err(e) => {
                let record = CheckpointRecord {
                    epoch,
                    started_at_ms,
                    duration: started.elapsed(),
                    bytes: 0,
                    written_bytes: 0,
                    pipelines: 0,
                    error: Some(e.to_string()),
                    recovered: false,
                    operators: Vec::new(),
                };
                self.remember(record);
                self.outcomes
                    .send_modify(|o| o.failed = o.failed.max(epoch));
                return Err(e);
            }
        };
        self.remember(record.clone());
        Ok(record)
    }

    /// Notes the checkpoint recovered from at start, and how long loading it took.
    pub fn record_recovery(&self, manifest: &Manifest, loading: Duration) {
        self.remember(CheckpointRecord {
            recovered: true,
            ..CheckpointRecord::of(manifest, manifest.started_at_ms, loading)
        });
    }

    fn remember(&self, record: CheckpointRecord) {
        let mut h = self.history.lock();
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(record);
    }

    async fn run(
        &self,
        epoch: u64,
        started_at_ms: i64,
        committed: &Committed,
    ) -> Result<(Manifest, u64, Vec<OperatorRecord>)> {
        let handles: Vec<(String, Arc<PipelineHandle>)> = self
            .pipelines
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let failed: Vec<&str> = handles
            .iter()
            .filter(|(_, h)| matches!(h.status.state(), PipelineState::Failed(_)))
            .map(|(v, _)| v.as_str())
            .collect();
        let by_name: BTreeMap<&str, &Arc<PipelineHandle>> =
            handles.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let barrier = CheckpointBarrier { epoch };
        for (_, h) in &handles {
            if let Some(tx) = &h.barriers
                && h.ended.lock().is_none()
            {
                // A closed channel means the source task is gone: the pipeline ended or failed,
                // which its reports or status say.
                let _ = tx.try_send(barrier);
            }
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let outcomes = try_join_all(handles.iter().map(|(view, h)| {
            let blocked = reads_failed(view, &by_name, &failed);
            async move {
                if blocked {
                    return Ok::<_, EngineError>(Outcome::Keep);
                }
                collect(view, h, epoch, deadline).await
            }
        }))
        .await?;
        let mut written = 0u64;
        let mut operators_written = Vec::new();
        let writes = handles.iter().zip(outcomes).map(|((view, h), outcome)| {
            let previous = committed
                .last
                .as_ref()
                .and_then(|m| m.pipelines.get(view))
                .filter(|p| p.view_id == h.view_id)
                .cloned();
            self.write_pipeline(epoch, view.clone(), Arc::clone(h), outcome, previous)
        });
        let mut pipelines = BTreeMap::new();
        for (view, entry, bytes) in try_join_all(writes).await?.into_iter().flatten() {
            written += bytes;
            for o in entry
                .operators
                .iter()
                .filter(|o| o.file.is_some() || !o.values.is_empty())
            {
                let rows = o.file.as_ref().map_or(0, |f| f.rows);
                operators_written.push(OperatorRecord {
                    view: view.clone(),
                    stage: o.stage,
                    operator: o.name.clone(),
                    rows,
                    bytes: o.bytes,
                });
            }
            pipelines.insert(view, entry);
        }
        if let Some(last) = &committed.last
            && last.pipelines == pipelines
        {
            // Nothing moved (every view final or failed): the last checkpoint still says it all.
            return Ok((last.clone(), 0, operators_written));
        }
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            epoch,
            started_at_ms,
            completed_at_ms: now_millis(),
            pipelines,
        };
        self.store.commit_manifest(&manifest).await?;
        Ok((manifest, written, operators_written))
    }

    /// Writes one pipeline's files; None when it has nothing to keep (failed before any
    /// checkpoint).
    async fn write_pipeline(
        &self,
        epoch: u64,
        view: String,
        handle: Arc<PipelineHandle>,
        outcome: Outcome,
        previous: Option<PipelineCheckpoint>,
    ) -> Result<Option<(String, PipelineCheckpoint, u64)>> {
        let (source, operators, state, ended) = match outcome {
            Outcome::Keep => return Ok(previous.map(|p| (view, p, 0))),
            Outcome::Ended(ended) => {
                if let Some(p) = previous.as_ref().filter(|p| p.ended) {
                    return Ok(Some((view, p.clone(), 0)));
                }
                (None, ended.operators, ended.view, true)
            }
            Outcome::Barrier {
                source,
                operators,
                view: state,
            } => (source, operators, state, false),
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
        let persisted: u64 = segments.iter().map(|s| s.rows).sum();
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
            let path = format!("views/{}/seg-{epoch:020}.parquet", handle.view_id);
            let f = self
                .store
                .write_batches(&path, handle.table.schema_ref(), rows, Compress::Fast)
                .await?;
            bytes += f.size;
            segments.push(f);
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
            source,
            operators: checkpoints,
            view: ViewCheckpoint {
                segments,
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

    /// Removes manifests, state files and segments no retained checkpoint needs (the last two
    /// committed ones are kept, so a damaged last one can fall back to the one before).
    async fn clean_up(&self, committed: &Committed) -> Result<()> {
        let retained: Vec<&Manifest> = committed
            .last
            .iter()
            .chain(committed.previous.iter())
            .collect();
        if retained.is_empty() {
            return Ok(());
        }
        let manifests: Vec<String> = retained.iter().map(|m| manifest_path(m.epoch)).collect();
        let dirs: Vec<String> = retained
            .iter()
            .map(|m| format!("{}/", epoch_dir(m.epoch)))
            .collect();
        let keep_files: std::collections::HashSet<&str> = retained
            .iter()
            .flat_map(|m| m.files())
            .map(|f| f.path.as_str())
            .collect();
        self.store
            .delete_unless("checkpoints", |p| {
                manifests.iter().any(|m| m == p) || dirs.iter().any(|d| p.starts_with(d.as_str()))
            })
            .await?;
        self.store
            .delete_unless("views", |p| keep_files.contains(p))
            .await?;
        Ok(())
    }
}

/// True when `view` reads, directly or not, a failed view.
fn reads_failed(
    view: &str,
    by_name: &BTreeMap<&str, &Arc<PipelineHandle>>,
    failed: &[&str],
) -> bool {
    let mut todo = vec![view];
    let mut seen = Vec::new();
    while let Some(v) = todo.pop() {
        if failed.contains(&v) {
            return true;
        }
        seen.push(v);
        if let Some(h) = by_name.get(v) {
            todo.extend(
                h.upstream_views
                    .iter()
                    .map(String::as_str)
                    .filter(|u| !seen.contains(u)),
            );
        }
    }
    false
}

/// Waits for one pipeline's reports for `epoch`.
async fn collect(
    view: &str,
    h: &PipelineHandle,
    epoch: u64,
    deadline: tokio::time::Instant,
) -> Result<Outcome> {
    if let Some(state) = h.ended.lock().clone() {
        return Ok(Outcome::Ended(state));
    }
    let mut reports = h.reports.lock().await;
    let mut source = None;
    let mut operators = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_millis(100), reports.recv()).await;
        let report = match next {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(Outcome::Keep),
            Err(_) => {
                if matches!(h.status.state(), PipelineState::Failed(_)) {
                    return Ok(Outcome::Keep);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(EngineError::Storage(format!(
                        "view \"{view}\" did not reach checkpoint barrier {epoch} in time (is its pipeline stalled?)"
                    )));
                }
                continue;
            }
        };
        match report {
            CheckpointReport::Source { epoch: e, state } if e == epoch => source = Some(state),
            CheckpointReport::Operator {
                epoch: e,
                stage,
                name,
                state,
            } if e == epoch => operators.push((stage, name, state)),
            CheckpointReport::View { epoch: e, state } if e == epoch => {
                return Ok(Outcome::Barrier {
                    source,
                    operators,
                    view: state,
                });
            }
            CheckpointReport::Ended { state, operators } => {
                let ended = EndedState {
                    view: state,
                    operators,
                };
                *h.ended.lock() = Some(ended.clone());
                return Ok(Outcome::Ended(ended));
            }
            // Reports of an earlier attempt that timed out.
            _ => {}
        }
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

/// Name of the partition-key column of persisted provisional rows.
pub const PARTITION_COLUMN: &str = "__weir_partition";
