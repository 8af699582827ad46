//! Building and running a table: its [`ViewTable`] and [`Fanout`] (restored from the newest
//! checkpoint), its [`TableWriter`], and the task that replays the log after the checkpoint and
//! then passes checkpoint barriers through the table in order with its writes.
//!
//! Like a view, a table is built, then published, then started ([`TableRuntime::into_start`]),
//! so during recovery the views reading it subscribe before the log replay reaches them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::arrow::datatypes::SchemaRef;
use tokio::sync::{OwnedMutexGuard, mpsc, watch};
use tracing::{Instrument, info, info_span, warn};

use super::log::TableLog;
use super::{TableWriter, WriterState};
use crate::catalog::ViewEntry;
use crate::checkpoint::{
    CheckpointCoordinator, CheckpointOutcomes, CheckpointReport, SourcePosition, SourceState,
};
use crate::error::{EngineError, Result};
use crate::fanout::Fanout;
use crate::message::{CheckpointBarrier, Message, Watermark};
use crate::pipeline::{Failure, PipelineStatus, RunningPipeline, supervised, view_state};
use crate::stream_props::{StreamKind, StreamProps};
use crate::view_runtime::{PipelineStart, ViewCheckpointing};
use crate::view_table::ViewTable;

/// The partition the log sequence is reported under in the table's source position.
const LOG_PARTITION: u32 = 0;

/// A table built, not yet started.
pub struct TableRuntime {
    entry: Arc<ViewEntry>,
    writer: Arc<TableWriter>,
    /// Held from build until the log is replayed: no write comes before the replayed ones.
    guard: OwnedMutexGuard<WriterState>,
    checkpointing: Option<(String, Arc<CheckpointCoordinator>)>,
}

impl TableRuntime {
    /// Builds table `name` (defined by `sql`) of `schema`, keyed by `key` (None: append-only),
    /// with the rows the newest checkpoint holds for it.
    pub async fn build(
        name: &str,
        sql: &str,
        schema: SchemaRef,
        key: Option<Vec<usize>>,
        checkpointing: Option<ViewCheckpointing>,
    ) -> Result<Self> {
        let props = match &key {
            Some(k) => StreamProps {
                kind: StreamKind::Retract,
                key: Some(k.clone()),
                sealed_by: None,
                seal_span: 0,
                event_time: None,
            },
            None => StreamProps::append_only(),
        };
        let (table, recovered, log, checkpointing) = match checkpointing {
            Some(c) => (
                ViewTable::with_segments(Arc::clone(&schema), c.segments.clone()).updating(&props),
                c.recovered,
                Some(TableLog::new(c.segments.store, &c.id, Arc::clone(&schema))),
                Some((c.id, c.coordinator)),
            ),
            None => (
                ViewTable::new(Arc::clone(&schema)).updating(&props),
                None,
                None,
                None,
            ),
        };
        let table = Arc::new(table);
        let fanout = Arc::new(Fanout::new(Arc::clone(&table)));
        let status = Arc::new(PipelineStatus::default());
        let mut seq = 0;
        if let Some(r) = recovered {
            let watermark = r.watermark();
            table.restore(r.segments, r.entry.view.expired_rows, r.provisional)?;
            fanout.restore(watermark, false).await;
            status.rows_in.store(r.entry.rows_in, Ordering::Relaxed);
            seq = r
                .restore
                .sources
                .get(&0)
                .and_then(|s| s.position.as_ref())
                .and_then(|p| p.offsets.get(&LOG_PARTITION))
                .map_or(0, |s| u64::try_from(*s).unwrap_or(0));
            info!(table = %name, log_sequence = seq, "table restored from checkpoint");
        }
        let writer = Arc::new(TableWriter::new(
            name,
            Arc::clone(&fanout),
            Arc::clone(&status),
            key,
            log,
        ));
        let mut guard = Arc::clone(writer.state())
            .try_lock_owned()
            .map_err(|_| EngineError::Internal("a new table's write lock is taken".into()))?;
        guard.seq = seq;
        let entry = Arc::new(ViewEntry {
            name: name.to_string(),
            sql: sql.to_string(),
            table,
            fanout,
            inputs: Vec::new(),
            props,
            explain: format!("Table {name}\n"),
            status,
            reader_metrics: Vec::new(),
            pipeline: parking_lot::Mutex::new(None),
            writer: Some(Arc::clone(&writer)),
            fed_by: None,
        });
        Ok(Self {
            entry,
            writer,
            guard,
            checkpointing,
        })
    }

    /// The table's catalog entry.
    pub fn entry(&self) -> &Arc<ViewEntry> {
        &self.entry
    }

    /// Registers the table with the checkpoint coordinator and returns what starts its task.
    pub fn into_start(self) -> PipelineStart {
        let Self {
            entry,
            writer,
            guard,
            checkpointing,
        } = self;
        let link = checkpointing.map(|(id, coordinator)| {
            let link = coordinator.register(
                &entry.name,
                &id,
                Vec::new(),
                1,
                Arc::clone(&entry.table),
                Arc::clone(&entry.status),
            );
            (link, coordinator.outcomes())
        });
        Box::new(move || {
            let failure = Failure::new(&entry.name, &entry.status, &entry.fanout);
            let (barriers, reports, outcomes) = match link {
                Some((mut link, outcomes)) => {
                    (link.barriers.pop(), Some(link.reports), Some(outcomes))
                }
                None => (None, None, None),
            };
            let task = run_table(writer, guard, barriers, reports, outcomes);
            let span = info_span!("table", table = %entry.name);
            let handle = tokio::spawn(
                supervised("table writer".to_string(), failure, task).instrument(span),
            );
            *entry.pipeline.lock() = Some(RunningPipeline::from_tasks(vec![handle]));
        })
    }
}

/// Replays the log after the restored sequence, then passes barriers through the table under
/// its write lock and deletes log entries that committed checkpoints hold.
async fn run_table(
    writer: Arc<TableWriter>,
    mut guard: OwnedMutexGuard<WriterState>,
    barriers: Option<mpsc::Receiver<CheckpointBarrier>>,
    reports: Option<mpsc::UnboundedSender<CheckpointReport>>,
    mut outcomes: Option<watch::Receiver<CheckpointOutcomes>>,
) -> Result<()> {
    let fanout = Arc::clone(writer.fanout());
    let restored = guard.seq;
    let replay = async {
        if let Some(log) = writer.log() {
            let mut replayed = 0usize;
            for (seq, entry) in log.read_after(guard.seq).await? {
                for changes in &entry {
                    replayed += changes.num_rows();
                    writer.publish(changes).await?;
                }
                guard.seq = seq;
            }
            if replayed > 0 {
                info!(table = %writer.name(), rows = replayed, through = guard.seq, "table log replayed");
            }
        }
        Ok::<(), EngineError>(())
    }
    .await;
    // Queries wait for this; a failed replay has marked the table failed, which they then report.
    writer.mark_replayed();
    replay?;
    // A table has no event time: it never holds back the time of views that also read sources.
    if fanout.watermark().await.is_none() {
        fanout.publish(Message::Watermark(Watermark::Idle)).await?;
    }
    drop(guard);
    let (Some(mut barriers), Some(reports)) = (barriers, reports) else {
        return Ok(());
    };
    // Log sequence at each barrier, to delete what committed checkpoints hold.
    let mut at_barrier: VecDeque<(u64, u64)> = VecDeque::new();
    // The sequence of the older of the last two committed checkpoints is what may go (the
    // coordinator keeps the one before the last as a fallback).
    let mut last_committed: Option<u64> = (restored > 0).then_some(restored);
    loop {
        let outcome_changed = async {
            match outcomes.as_mut() {
                Some(o) => o.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            barrier = barriers.recv() => {
                let Some(barrier) = barrier else { return Ok(()) };
                let state = writer.state().lock().await;
                let position = SourcePosition {
                    offsets: [(LOG_PARTITION, i64::try_from(state.seq).unwrap_or(i64::MAX))].into(),
                };
                let _ = reports.send(CheckpointReport::Source {
                    epoch: barrier.epoch,
                    input: 0,
                    state: SourceState {
                        position: Some(position),
                        ..SourceState::default()
                    },
                });
                fanout.publish(Message::Barrier(barrier)).await?;
                let view = view_state(&fanout, &writer.status).await?;
                let _ = reports.send(CheckpointReport::View { epoch: barrier.epoch, state: view });
                at_barrier.push_back((barrier.epoch, state.seq));
            }
            changed = outcome_changed => {
                if !changed {
                    outcomes = None;
                    continue;
                }
                let committed = outcomes.as_ref().map_or(0, |o| o.borrow().committed);
                let mut newest = None;
                while let Some(&(epoch, seq)) = at_barrier.front() && epoch <= committed {
                    at_barrier.pop_front();
                    if epoch == committed {
                        newest = Some(seq);
                    }
                }
                if let Some(seq) = newest
                    && let (Some(log), Some(older)) = (writer.log(), last_committed.replace(seq))
                    && let Err(e) = log.truncate_through(older).await
                {
                    warn!(table = %writer.name(), error = %e, "old table log entries stay (deleted later)");
                }
            }
        }
    }
}
