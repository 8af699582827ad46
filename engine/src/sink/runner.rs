//! The sink task: reads a view's changes, drives the [`SinkWriter`] through the checkpoint's
//! two phases, and retries what the target refuses.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tracing::{Instrument, info_span, warn};

use super::status::{SinkState, SinkStatus};
use super::{ChangeBatch, ChangeTracker, SinkWriter};
use crate::checkpoint::{
    CheckpointOutcomes, CheckpointReport, OperatorState, PipelineLink, ViewState,
};
use crate::error::{EngineError, ErrorKind, Result};
use crate::message::{Message, Watermark};
use crate::pipeline::{PipelineStatus, RunningPipeline};
use crate::source_metrics::now_millis;

/// Rows held while a commit is awaited, before the sink stops reading (backpressure).
const MAX_HELD_ROWS: usize = 1 << 20;
/// Without checkpoints, written rows are committed this often.
const UNCHECKPOINTED_COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// Keys of the sink's published-row count, and of the rows it keeps but has not published, in
/// its checkpoint state.
const ROWS_WRITTEN: &str = "weir.rows_written";
const ROWS_UNPUBLISHED: &str = "weir.rows_unpublished";
/// Longest wait between retries of a refused write or commit.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Runs `$op` until it succeeds, backing off while the target refuses or is away; user errors
/// (bad options, rows the format cannot encode) and bugs are not retried.
macro_rules! retry {
    ($status:expr, $what:expr, $op:expr) => {{
        let mut backoff = Duration::from_millis(100);
        loop {
            match $op.await {
                Ok(v) => {
                    if $status.state() == SinkState::Retrying {
                        $status.set_state(SinkState::Running);
                    }
                    break Ok::<_, EngineError>(v);
                }
                Err(e) if matches!(e.kind(), ErrorKind::User | ErrorKind::Internal) => break Err(e),
                Err(e) => {
                    warn!(error = %e, "sink {} failed; retrying in {backoff:?}", $what);
                    $status.record_error(&format!("{}: {e}", $what), SinkState::Retrying);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }};
}

/// The view's changes: its current rows first, then live messages.
pub struct SinkInput {
    /// Messages replaying the view's state (empty when recovering).
    pub backfill: Vec<Message>,
    /// Live messages.
    pub live: mpsc::Receiver<Message>,
}

/// A sink's part in checkpoints.
pub struct SinkDurability {
    /// Reports to the coordinator (barriers come through the view's stream).
    pub link: PipelineLink,
    /// What `pre_commit` returned for the checkpoint recovered from.
    pub restore: Option<OperatorState>,
    /// How checkpoints end ([`crate::checkpoint::CheckpointCoordinator::outcomes`]).
    pub commits: watch::Receiver<CheckpointOutcomes>,
    /// Asks for a checkpoint now (at the view's end, so the last rows need not wait for the
    /// next interval).
    pub request_checkpoint: Arc<Notify>,
}

/// Starts the task delivering `input` to `writer`.
pub fn spawn_sink(
    name: &str,
    input: SinkInput,
    tracker: ChangeTracker,
    writer: Box<dyn SinkWriter>,
    status: Arc<SinkStatus>,
    pipeline: Arc<PipelineStatus>,
    durability: Option<SinkDurability>,
) -> RunningPipeline {
    let span = info_span!("sink", sink = %name);
    let task = tokio::spawn(
        async move {
            let mut run = SinkRun {
                tracker,
                writer,
                status: Arc::clone(&status),
                pipeline: Arc::clone(&pipeline),
                held: VecDeque::new(),
                held_rows: 0,
                awaiting: None,
            };
            match run.run(input, durability).await {
                Ok(()) => {}
                Err(e) => {
                    warn!(error = %e, "sink stopped");
                    status.record_error(&e.to_string(), SinkState::Failed);
                    pipeline.fail(&e);
                }
            }
        }
        .instrument(span),
    );
    RunningPipeline::from_tasks(vec![task])
}

struct SinkRun {
    tracker: ChangeTracker,
    writer: Box<dyn SinkWriter>,
    status: Arc<SinkStatus>,
    pipeline: Arc<PipelineStatus>,
    /// Changes that arrived after a pre-commit whose commit is awaited.
    held: VecDeque<ChangeBatch>,
    held_rows: usize,
    /// Epoch of the last pre-commit not yet committed.
    awaiting: Option<u64>,
}

impl SinkRun {
    async fn run(&mut self, input: SinkInput, durability: Option<SinkDurability>) -> Result<()> {
        let (reports, mut commits, restore, request_checkpoint) = match durability {
            Some(d) => (
                Some(d.link.reports),
                Some(d.commits),
                d.restore,
                Some(d.request_checkpoint),
            ),
            None => (None, None, None, None),
        };
        // The newest barrier passed: the sink's last pre-commit is named after it.
        let mut last_barrier = 0;
        if let Some(mut state) = restore {
            if let Some(written) = state.values.remove(ROWS_WRITTEN) {
                self.status
                    .rows_committed
                    .store(written.max(0) as u64, Ordering::Relaxed);
            }
            if let Some(unpublished) = state.values.remove(ROWS_UNPUBLISHED)
                && unpublished > 0
            {
                self.status
                    .rows_pending
                    .store(unpublished as u64, Ordering::Relaxed);
                self.status
                    .oldest_pending_ms
                    .store(now_millis().max(1) as u64, Ordering::Relaxed);
            }
            retry!(
                self.status,
                "recovering",
                self.writer.recover(state.clone())
            )?;
        }
        let mut backfill = input.backfill.into_iter();
        let mut live = input.live;
        let mut ticker = tokio::time::interval(UNCHECKPOINTED_COMMIT_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let can_read = self.held_rows < MAX_HELD_ROWS;
            let message = tokio::select! {
                biased;
                outcome = wait_outcome(&mut commits, self.awaiting) => {
                    match outcome {
                        Outcome::Committed => self.commit().await?,
                        // That checkpoint will never exist: its rows stay in the open
                        // transaction with the held ones, for the next barrier to pre-commit.
                        Outcome::Failed => {
                            self.awaiting = None;
                            self.write_held().await?;
                        }
                    }
                    continue;
                }
                _ = ticker.tick(), if reports.is_none() => {
                    if self.writer.pending_rows() > 0 {
                        self.pre_commit(0).await?;
                        self.commit().await?;
                    }
                    continue;
                }
                m = next_message(&mut backfill, &mut live), if can_read => m,
            };
            let Some(message) = message else {
                // A dropped view drops its sinks first, so a stream closed without `End` is a
                // view that stopped on a failure: nothing more will come.
                return Err(EngineError::External(
                    "the view it reads stopped on a failure (see weir_views)".into(),
                ));
            };
            match &message {
                Message::Barrier(b) => {
                    let Some(reports) = &reports else { continue };
                    last_barrier = b.epoch;
                    // Rows held since an earlier pre-commit belong to this barrier's epoch.
                    self.write_held().await?;
                    let state = self.pre_commit(b.epoch).await?;
                    let _ = reports.send(CheckpointReport::Operator {
                        epoch: b.epoch,
                        stage: 0,
                        name: "sink".into(),
                        state,
                    });
                    let _ = reports.send(CheckpointReport::View {
                        epoch: b.epoch,
                        state: self.view_state(),
                    });
                }
                Message::End => {
                    match (&reports, commits.as_mut(), &request_checkpoint) {
                        (Some(reports), Some(commits), Some(request)) => {
                            self.finish_durably(reports, commits, request, last_barrier)
                                .await?;
                        }
                        _ => {
                            self.write_held().await?;
                            self.writer.input_ended();
                            self.pre_commit(u64::MAX).await?;
                            self.commit().await?;
                        }
                    }
                    self.status.set_state(SinkState::Finished);
                    self.pipeline.finish();
                    return Ok(());
                }
                Message::Watermark(_) => {}
                _ => {
                    let changes = self.tracker.changes(&message)?;
                    let rows: usize = changes.iter().map(|c| c.rows.num_rows()).sum();
                    if rows == 0 {
                        continue;
                    }
                    self.pipeline
                        .rows_in
                        .fetch_add(rows as u64, Ordering::Relaxed);
                    self.status
                        .rows_pending
                        .fetch_add(rows as u64, Ordering::Relaxed);
                    let _ = self.status.oldest_pending_ms.compare_exchange(
                        0,
                        now_millis().max(1) as u64,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    if self.awaiting.is_some() {
                        self.held_rows += rows;
                        self.held.extend(changes);
                    } else {
                        for change in &changes {
                            retry!(self.status, "writing", self.writer.write(change))?;
                        }
                    }
                }
            }
        }
    }

    /// The view is final (no barrier will come). The last pre-commit goes into the checkpoint
    /// that records the end, and is published once that checkpoint is durable: a crash in
    /// between finishes the publication on recovery, where publishing at once would have the
    /// view's last rows replayed (from the checkpoint before) and delivered twice.
    async fn finish_durably(
        &mut self,
        reports: &mpsc::UnboundedSender<CheckpointReport>,
        commits: &mut watch::Receiver<CheckpointOutcomes>,
        request_checkpoint: &Notify,
        last_barrier: u64,
    ) -> Result<()> {
        // A checkpoint still awaited is settled first: the last pre-commit must not take over
        // what that checkpoint describes (a Parquet sink would move its staged files).
        if let Some(epoch) = self.awaiting {
            let Ok(outcome) = commits
                .wait_for(|o| o.committed >= epoch || o.failed >= epoch)
                .await
                .map(|o| *o)
            else {
                return Ok(());
            };
            if outcome.committed >= epoch {
                self.commit().await?;
            } else {
                self.awaiting = None;
            }
        }
        self.write_held().await?;
        self.writer.input_ended();
        // Named after every epoch it could follow, so commit marks keep growing.
        let after = last_barrier.max(commits.borrow().committed);
        let state = self.pre_commit(after + 1).await?;
        let _ = reports.send(CheckpointReport::Ended {
            state: self.view_state(),
            operators: vec![(0, "sink".into(), state)],
        });
        if self.awaiting.is_none() {
            return Ok(());
        }
        request_checkpoint.notify_one();
        if commits.wait_for(|o| o.committed > after).await.is_err() {
            // The coordinator is gone (shutting down): recovery publishes from the checkpoint.
            return Ok(());
        }
        self.commit().await
    }

    async fn write_held(&mut self) -> Result<()> {
        while let Some(change) = self.held.pop_front() {
            self.held_rows -= change.rows.num_rows();
            retry!(self.status, "writing", self.writer.write(&change))?;
        }
        Ok(())
    }

    async fn pre_commit(&mut self, epoch: u64) -> Result<OperatorState> {
        // With nothing written since the last commit there is nothing to wait for (and the
        // checkpoint may not even change, so no commit would be announced).
        let pending = self.writer.pending_rows() > 0;
        let mut state = retry!(self.status, "pre-committing", self.writer.pre_commit(epoch))?;
        if pending {
            self.awaiting = Some(epoch);
        }
        // Rows published once this checkpoint commits, and rows it keeps unpublished, so
        // `weir_sinks` counts on after a restart.
        let unpublished = self.writer.unpublished_rows();
        let written = (self.status.rows_committed.load(Ordering::Relaxed)
            + self.status.rows_pending.load(Ordering::Relaxed))
        .saturating_sub(unpublished);
        state.values.insert(ROWS_WRITTEN.into(), written as i64);
        state
            .values
            .insert(ROWS_UNPUBLISHED.into(), unpublished as i64);
        Ok(state)
    }

    /// The awaited checkpoint is durable: publish, then write what waited for it.
    async fn commit(&mut self) -> Result<()> {
        let Some(epoch) = self.awaiting.take() else {
            return Ok(());
        };
        retry!(self.status, "committing", self.writer.commit())?;
        // Still pending: rows that waited for this commit, and rows the writer keeps unpublished.
        let unpublished = self.writer.unpublished_rows();
        let keep = self.held_rows as u64 + unpublished;
        let committed = self
            .status
            .rows_pending
            .swap(keep, Ordering::Relaxed)
            .saturating_sub(keep);
        self.status
            .rows_committed
            .fetch_add(committed, Ordering::Relaxed);
        if epoch != u64::MAX {
            self.status.committed_epoch.store(epoch, Ordering::Relaxed);
        }
        if unpublished == 0 {
            // The oldest unpublished row is now one that waited for this commit, if any.
            let oldest = if self.held_rows > 0 {
                now_millis().max(1) as u64
            } else {
                0
            };
            self.status
                .oldest_pending_ms
                .store(oldest, Ordering::Relaxed);
        }
        self.write_held().await
    }

    fn view_state(&self) -> ViewState {
        ViewState {
            appended_rows: 0,
            provisional: Default::default(),
            watermark: None::<Watermark>,
            rows_in: self.pipeline.rows_in.load(Ordering::Relaxed),
        }
    }
}

/// How the awaited checkpoint ended.
enum Outcome {
    Committed,
    Failed,
}

/// Waits until the checkpoint of `awaiting` (or a later one) is committed, or fails; never
/// resolves when nothing is awaited, there are no checkpoints, or the coordinator is gone.
async fn wait_outcome(
    commits: &mut Option<watch::Receiver<CheckpointOutcomes>>,
    awaiting: Option<u64>,
) -> Outcome {
    let (Some(commits), Some(epoch)) = (commits.as_mut(), awaiting) else {
        return std::future::pending().await;
    };
    let seen = commits
        .wait_for(|o| o.committed >= epoch || o.failed >= epoch)
        .await
        .map(|o| *o);
    match seen {
        Ok(o) if o.committed >= epoch => Outcome::Committed,
        Ok(_) => Outcome::Failed,
        Err(_) => std::future::pending().await,
    }
}

async fn next_message(
    backfill: &mut std::vec::IntoIter<Message>,
    live: &mut mpsc::Receiver<Message>,
) -> Option<Message> {
    match backfill.next() {
        Some(m) => Some(m),
        None => live.recv().await,
    }
}
