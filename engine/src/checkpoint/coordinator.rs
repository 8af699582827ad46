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
//!
//! `collect.rs` gathers one pipeline's reports for a barrier, `write.rs` writes its files, and
//! `records.rs` holds what the coordinator reports (history, committed / failed epochs).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::manifest::{MANIFEST_VERSION, Manifest};
use super::state::{CheckpointReport, ViewState};
use super::store::{CheckpointStore, epoch_dir, manifest_path};
use crate::error::{EngineError, Result};
use crate::message::CheckpointBarrier;
use crate::pipeline::{PipelineState, PipelineStatus};
use crate::source_metrics::now_millis;
use crate::view_table::ViewTable;

mod collect;
mod records;
mod write;

use collect::{EndedState, Outcome, collect, reads_failed};
pub use records::{CheckpointOutcomes, CheckpointRecord, OperatorRecord};

/// How many past checkpoints the history (`weir_checkpoints`) keeps.
const HISTORY: usize = 100;

/// The pipeline's end of its link to the coordinator.
#[derive(Debug)]
pub struct PipelineLink {
    /// Barriers for each source task, in the order of the pipeline's source inputs (none for
    /// pipelines reading only views: their barriers come through the upstream views' streams).
    pub barriers: Vec<mpsc::Receiver<CheckpointBarrier>>,
    /// Where every stage reports.
    pub reports: mpsc::UnboundedSender<CheckpointReport>,
}

/// The coordinator's end of a pipeline.
#[derive(Debug)]
struct PipelineHandle {
    view_id: String,
    /// Views (not sources) the pipeline reads.
    upstream_views: Vec<String>,
    barriers: Vec<mpsc::Sender<CheckpointBarrier>>,
    /// Final states of source inputs that ended (a union's other inputs may go on).
    ended_sources: Mutex<BTreeMap<usize, super::state::SourceState>>,
    reports: tokio::sync::Mutex<mpsc::UnboundedReceiver<CheckpointReport>>,
    table: Arc<ViewTable>,
    status: Arc<PipelineStatus>,
    /// The pipeline's final state, once it reported its end.
    ended: Mutex<Option<EndedState>>,
}

/// The last committed checkpoints.
#[derive(Debug, Default)]
struct Committed {
    last: Option<Manifest>,
    /// The committed checkpoint before `last`, kept as a fallback if `last` turns out damaged.
    previous: Option<Manifest>,
    next_epoch: u64,
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
        source_inputs: usize,
        table: Arc<ViewTable>,
        status: Arc<PipelineStatus>,
    ) -> PipelineLink {
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let (barrier_tx, barrier_rx): (Vec<_>, Vec<_>) =
            (0..source_inputs).map(|_| mpsc::channel(4)).unzip();
        let handle = PipelineHandle {
            view_id: view_id.to_string(),
            upstream_views,
            barriers: barrier_tx,
            ended_sources: Mutex::new(BTreeMap::new()),
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
        let link = self.register(view, view_id, Vec::new(), 0, table, status);
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
                        && let Err(e) = handle
                            .table
                            .persisted(&entry.view.segments, entry.view.expired_rows)
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
            if h.ended.lock().is_none() {
                for tx in &h.barriers {
                    // A closed channel means the source task is gone: its input ended or the
                    // pipeline failed, which its reports or status say.
                    let _ = tx.try_send(barrier);
                }
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

/// Name of the partition-key column of persisted provisional rows.
pub const PARTITION_COLUMN: &str = "__weir_partition";
