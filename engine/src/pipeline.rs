//! Running a view's pipeline: an input task per input (a source reader, or another view's
//! stream), one task per operator, and a writer task that applies results to the view, all
//! joined by bounded channels carrying [`Message`]s in order. A pipeline with several inputs (a
//! `UNION ALL`) runs each input's own operators, then merges them ([`crate::merge`]: barriers
//! aligned, the least watermark) before the operators they share.
//!
//! ```text
//! input ──ch──▶ operator 1 ──ch──▶ … ──ch──▶ operator n ──ch──▶ writer (ViewTable + Fanout)
//! input ──ch──▶ (its operators) ──┐
//!                                  ├──▶ merge ──ch──▶ operators … ──ch──▶ writer
//! input ──ch──▶ (its operators) ──┘
//! ```
//!
//! Dropping a [`RunningPipeline`] aborts its tasks. Every task is supervised: an error or a
//! panic in any of them (a bug in an operator must not pass silently) stops the pipeline, is
//! logged, kept in its [`PipelineStatus`] (`weir_views.status`), and makes queries on the view
//! fail with the reason; other views keep running.

mod chain;

use chain::OperatorChain;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, error, info_span};

use crate::checkpoint::{
    CheckpointReport, OperatorState, PipelineLink, PipelineRestore, ViewState,
};
use crate::error::{EngineError, Result, panic_message};
use crate::fanout::{CHANNEL_CAPACITY, Fanout};
use crate::message::{CheckpointBarrier, Message};
use crate::operator::{Collector, StreamOperator};
use crate::operator_metrics::{OperatorFigures, OperatorMetrics};
use crate::source::{Source, SourceCheckpointing, SourceTaskConfig};
use crate::source_group::{Sharing, Subscriber, spawn_group};

/// How often, at most, an operator's state size is read (at watermarks).
const STATE_SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Where a pipeline's rows come from.
pub enum PipelineInput {
    /// A fresh reader of a source.
    Source {
        /// Which of the view's inputs it reads, for checkpoints: a source read by one reader per
        /// worker is one input, whose state is its readers' together.
        input: usize,
        /// Reader settings (watermarks, idleness).
        config: SourceTaskConfig,
        /// The reader.
        reader: Box<dyn Source>,
        /// Other views' readers of the source it may share (None: it reads alone).
        sharing: Option<Box<Sharing>>,
    },
    /// Another view's stream: its current contents first, then live messages.
    View {
        /// Messages replaying the upstream view's state.
        backfill: Vec<Message>,
        /// Live messages.
        live: mpsc::Receiver<Message>,
    },
}

/// Lifecycle of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineState {
    /// Processing input.
    Running,
    /// Its input ended and every result is in the view.
    Finished,
    /// It stopped on an error; the view keeps the rows it had.
    Failed(String),
}

/// Shared, observable status of a pipeline.
#[derive(Debug)]
pub struct PipelineStatus {
    state: Mutex<PipelineState>,
    /// Rows read from the input.
    pub rows_in: AtomicU64,
    /// Bytes of operator state (open windows, groups), as of the last watermark.
    pub state_bytes: AtomicU64,
    /// The most state held at any watermark or at the end of input.
    pub peak_state_bytes: AtomicU64,
    /// Each running operator's figures (`EXPLAIN ANALYZE MATERIALIZED VIEW`).
    operators: Mutex<Vec<Arc<OperatorMetrics>>>,
}

impl Default for PipelineStatus {
    fn default() -> Self {
        Self {
            state: Mutex::new(PipelineState::Running),
            rows_in: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            peak_state_bytes: AtomicU64::new(0),
            operators: Mutex::new(Vec::new()),
        }
    }
}

impl PipelineStatus {
    /// The figures of each operator, by stage and shard.
    pub fn operators(&self) -> Vec<OperatorFigures> {
        let mut figures: Vec<OperatorFigures> =
            self.operators.lock().iter().map(|m| m.figures()).collect();
        figures.sort_by_key(|f| (f.stage, f.shard));
        figures
    }

    /// Counts `metrics` among the pipeline's operators (replacing an earlier run of the same
    /// stage and shard).
    fn add_operator(&self, metrics: Arc<OperatorMetrics>) {
        let mut operators = self.operators.lock();
        operators.retain(|m| (m.stage, m.shard) != (metrics.stage, metrics.shard));
        operators.push(metrics);
    }

    /// Current state.
    pub fn state(&self) -> PipelineState {
        self.state.lock().clone()
    }

    /// Marks the pipeline failed with `error` (kept for `weir_views` / `weir_sinks`).
    pub(crate) fn fail(&self, error: &EngineError) {
        let mut s = self.state.lock();
        if *s == PipelineState::Running {
            *s = PipelineState::Failed(error.to_string());
        }
    }

    /// Records one operator's state size; a pipeline with several stateful operators reports the
    /// sum of their latest figures.
    fn record_state(&self, previous: &mut u64, bytes: usize) {
        let bytes = bytes as u64;
        let total = if bytes >= *previous {
            self.state_bytes
                .fetch_add(bytes - *previous, Ordering::Relaxed)
                + (bytes - *previous)
        } else {
            self.state_bytes
                .fetch_sub(*previous - bytes, Ordering::Relaxed)
                - (*previous - bytes)
        };
        *previous = bytes;
        self.peak_state_bytes.fetch_max(total, Ordering::Relaxed);
    }

    /// Marks the pipeline finished (a view recovered as final has no tasks to do it).
    pub fn finish(&self) {
        let mut s = self.state.lock();
        if *s == PipelineState::Running {
            *s = PipelineState::Finished;
        }
    }
}

/// The tasks of a running pipeline; dropping it stops them.
#[derive(Debug)]
pub struct RunningPipeline {
    tasks: Vec<JoinHandle<()>>,
}

impl RunningPipeline {
    /// Tasks started elsewhere (a sink's), stopped when this is dropped.
    pub(crate) fn from_tasks(tasks: Vec<JoinHandle<()>>) -> Self {
        Self { tasks }
    }
}

impl Drop for RunningPipeline {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A pipeline's part in checkpoints: its link to the coordinator, and the state of the last
/// checkpoint when it is recovered.
#[derive(Debug)]
pub struct Durability {
    /// Barriers in, reports out.
    pub link: PipelineLink,
    /// Operator state to restore before the first message (empty for a new view).
    pub restore: PipelineRestore,
}

/// One input of a pipeline and the operators that run on it alone, before the inputs merge (a
/// `UNION ALL` has one per input; a single-input pipeline one, without operators).
pub struct PipelineBranch {
    /// Where the rows come from.
    pub input: PipelineInput,
    /// Operators on this input's rows only.
    pub operators: Vec<Box<dyn StreamOperator>>,
    /// Another reader of the previous branch's input, with copies of its operators (a source
    /// read by one reader per worker): the copies are the same stages in checkpoints.
    pub lane: bool,
}

impl PipelineBranch {
    /// An input without operators of its own.
    pub fn input(input: PipelineInput) -> Self {
        Self {
            input,
            operators: Vec::new(),
            lane: false,
        }
    }
}

/// Starts a pipeline for `view`: each branch's input and operators, the merge of the branches
/// when there are several ([`crate::merge`]), then `operators`, then the view writer. `copies`
/// holds more copies of `operators`, planned alike, for a run with a keyed operator in as many
/// more shards ([`crate::shards`]); empty, every operator runs once.
pub fn spawn_pipeline(
    view: &str,
    branches: Vec<PipelineBranch>,
    operators: Vec<Box<dyn StreamOperator>>,
    copies: Vec<Vec<Box<dyn StreamOperator>>>,
    fanout: Arc<Fanout>,
    status: Arc<PipelineStatus>,
    durability: Option<Durability>,
) -> RunningPipeline {
    let mut tasks = Vec::with_capacity(operators.len() + 2 * branches.len() + 2);
    let (reports, barriers, restore) = match durability {
        Some(d) => (Some(d.link.reports), d.link.barriers, d.restore.operators),
        None => (None, Vec::new(), Default::default()),
    };
    let mut barriers = barriers.into_iter();
    let failure = Failure {
        view: view.to_string(),
        status: Arc::clone(&status),
        fanout: Arc::clone(&fanout),
    };
    let mut chain = OperatorChain {
        view: view.to_string(),
        failure: failure.clone(),
        status: Arc::clone(&status),
        reports: reports.clone(),
        restore,
        next_stage: 0,
    };
    let single = branches.len() == 1;
    // Readers of one source (a lane per worker), each with its own copy of the operators before
    // the exchange: with a keyed operator first, each lane hashes its own rows to the shards.
    let only_lanes = branches.len() > 1 && branches.iter().skip(1).all(|b| b.lane);
    let mut outputs = Vec::with_capacity(branches.len());
    // Per branch: whether the merge counts its rows (no operator of its own did).
    let mut merge_counts = Vec::with_capacity(branches.len());
    // Stage of the first operator of the branch the current lanes copy.
    let mut lane_base = chain.next_stage;
    for branch in branches {
        if !branch.lane {
            lane_base = chain.next_stage;
        }
        let (input_tx, mut rx) = mpsc::channel::<Message>(CHANNEL_CAPACITY);
        tasks.push(spawn_input(
            branch.input,
            input_tx,
            &mut barriers,
            reports.as_ref(),
            &failure,
        ));
        merge_counts.push(branch.operators.is_empty());
        for (i, op) in branch.operators.into_iter().enumerate() {
            rx = if branch.lane {
                let restore = chain.restore.remove(&(lane_base + i));
                chain.spawn_stage(op, rx, i == 0, (lane_base + i, restore, None), &mut tasks)
            } else {
                chain.spawn(op, rx, i == 0, &mut tasks)
            };
        }
        outputs.push(rx);
    }
    let counted_before = !merge_counts.iter().all(|c| *c);
    let lane_exchange = if only_lanes {
        crate::shards::sharded_segment(&operators, &copies).filter(|s| s.start == 0)
    } else {
        None
    };
    let mut rx = if let Some(segment) = lane_exchange {
        let lanes = outputs.into_iter().zip(merge_counts).collect();
        chain.spawn_lane_shards(operators, copies, lanes, segment, &mut tasks)
    } else {
        let rx = if single && let Some(rx) = outputs.pop() {
            rx
        } else {
            let (tx, merged) = mpsc::channel::<Message>(CHANNEL_CAPACITY);
            let counter = Arc::clone(&status);
            // A join reads rows by input: the merge says which input each batch came from.
            let tag = operators.first().is_some_and(|op| op.reads_inputs());
            let merge = crate::merge::merge_inputs(outputs, merge_counts, tag, tx, move |rows| {
                counter.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
            });
            tasks.push(tokio::spawn(
                supervised("merge of inputs".to_string(), failure.clone(), merge)
                    .instrument(info_span!("merge", view = %view)),
            ));
            merged
        };
        chain.spawn_all(operators, copies, rx, single && !counted_before, &mut tasks)
    };
    let span = info_span!("view_writer", view = %view);
    let writer = async move {
        while let Some(m) = rx.recv().await {
            let end = matches!(m, Message::End);
            let barrier = match &m {
                Message::Barrier(b) => Some(b.epoch),
                _ => None,
            };
            fanout.publish(m).await?;
            if let Some(reports) = &reports {
                // The view's side of the checkpoint is taken after the barrier is applied
                // and forwarded, so it holds exactly the rows that preceded the barrier.
                if let Some(epoch) = barrier {
                    let state = view_state(&fanout, &status).await?;
                    let _ = reports.send(CheckpointReport::View { epoch, state });
                } else if end {
                    let state = view_state(&fanout, &status).await?;
                    let _ = reports.send(CheckpointReport::Ended {
                        state,
                        operators: Vec::new(),
                    });
                }
            }
            if end {
                status.finish();
                return Ok(());
            }
        }
        Ok(())
    };
    tasks.push(tokio::spawn(
        supervised("view writer".to_string(), failure, writer).instrument(span),
    ));
    RunningPipeline { tasks }
}

/// Spawns a pipeline's input task: a source reader (with the next barrier channel when
/// checkpointing), or the relay of an upstream view's stream.
fn spawn_input(
    input: PipelineInput,
    input_tx: mpsc::Sender<Message>,
    barriers: &mut impl Iterator<Item = mpsc::Receiver<CheckpointBarrier>>,
    reports: Option<&mpsc::UnboundedSender<CheckpointReport>>,
    failure: &Failure,
) -> JoinHandle<()> {
    match input {
        PipelineInput::Source {
            input,
            config,
            reader,
            sharing,
        } => {
            let failure = failure.clone();
            let checkpointing = match (barriers.next(), reports) {
                (Some(barriers), Some(reports)) => Some(SourceCheckpointing {
                    input,
                    barriers,
                    reports: reports.clone(),
                }),
                _ => None,
            };
            let view = failure.view().to_string();
            let subscriber = Subscriber::new(&view, input_tx, checkpointing, move |e| {
                failure.fail("source reader", e)
            });
            spawn_group(config, reader, subscriber, sharing.map(|s| *s))
        }
        PipelineInput::View { backfill, mut live } => {
            let reader = async move {
                for m in backfill {
                    // The backfill of a view whose input ended closes with `End`.
                    let end = matches!(m, Message::End);
                    if input_tx.send(m).await.is_err() || end {
                        return Ok(());
                    }
                }
                while let Some(m) = live.recv().await {
                    let end = matches!(m, Message::End);
                    if input_tx.send(m).await.is_err() || end {
                        return Ok(());
                    }
                }
                // The view read from closed its stream without ending it: it failed.
                Err(EngineError::External(
                    "the view it reads stopped on a failure (see weir_views)".into(),
                ))
            };
            tokio::spawn(supervised("input".to_string(), failure.clone(), reader))
        }
    }
}

/// Where a pipeline's failure goes: its status, its table (so queries say why), the views
/// reading it, and the log.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    view: String,
    status: Arc<PipelineStatus>,
    fanout: Arc<Fanout>,
}

impl Failure {
    /// Where failures of `view`'s tasks go.
    pub(crate) fn new(view: &str, status: &Arc<PipelineStatus>, fanout: &Arc<Fanout>) -> Self {
        Self {
            view: view.to_string(),
            status: Arc::clone(status),
            fanout: Arc::clone(fanout),
        }
    }

    /// The view whose tasks these are.
    pub(crate) fn view(&self) -> &str {
        &self.view
    }

    /// Stops the view on `error`, raised by `stage`.
    pub(crate) fn fail(&self, stage: &str, error: &EngineError) {
        error!(view = %self.view, stage, error = %error, "pipeline stopped");
        self.status.fail(error);
        self.fanout.table().mark_failed(format!(
            "materialized view \"{}\" failed and stopped updating: {error}",
            self.view
        ));
        // Views reading this one fail in turn instead of waiting for rows that cannot come.
        let fanout = Arc::clone(&self.fanout);
        tokio::spawn(async move { fanout.close_readers().await });
    }
}

/// Runs one task of a pipeline; its error, or its panic, becomes the pipeline's failure.
pub(crate) async fn supervised(
    stage: String,
    failure: Failure,
    task: impl Future<Output = Result<()>>,
) {
    let error = match AssertUnwindSafe(task).catch_unwind().await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(panic) => {
            EngineError::Internal(format!("{stage} panicked: {}", panic_message(&*panic)))
        }
    };
    failure.fail(&stage, &error);
}

/// The view's side of a checkpoint: its final-row count, provisional rows, watermark, rows read.
pub async fn view_state(fanout: &Fanout, status: &PipelineStatus) -> Result<ViewState> {
    let table = fanout.table();
    Ok(ViewState {
        appended_rows: table.appended_rows(),
        provisional: table.live_partitions()?,
        watermark: fanout.watermark().await,
        rows_in: status.rows_in.load(Ordering::Relaxed),
    })
}

/// An operator's place in the pipeline, for checkpoints.
struct Stage {
    index: usize,
    reports: Option<mpsc::UnboundedSender<CheckpointReport>>,
    /// The stage's whole state (every shard's, when sharded).
    restore: Option<OperatorState>,
    /// `(shard, of shards)` when the operator is one shard of a keyed stage.
    shard: Option<(usize, usize)>,
}

/// Runs one operator until its input ends or its output goes away.
async fn run_operator(
    mut op: Box<dyn StreamOperator>,
    mut rx: mpsc::Receiver<Message>,
    tx: mpsc::Sender<Message>,
    status: Arc<PipelineStatus>,
    count_input: bool,
    stage: Stage,
) -> Result<()> {
    // State size is sampled at watermarks (at most every STATE_SAMPLE_EVERY) and at the end,
    // not per batch: watermarks are what change windows' lifetimes, and an operator may count
    // its state by walking it (every key of an aggregate or OVER window), which at every
    // watermark made a join of a few hundred thousand keys spend most of its time counting.
    let mut state_bytes = 0u64;
    let mut sampled: Option<std::time::Instant> = None;
    let metrics = Arc::new(OperatorMetrics::new(stage.index, stage.shard, op.name()));
    status.add_operator(Arc::clone(&metrics));
    let record_state = |state_bytes: &mut u64, size: usize| {
        status.record_state(state_bytes, size);
        metrics.state(size);
    };
    if let Some(state) = stage.restore {
        let state = match stage.shard {
            Some((shard, shards)) => {
                crate::shards::state_for_shard(&state, op.as_ref(), shard, shards)?
            }
            None => state,
        };
        op.restore(state)?;
        record_state(&mut state_bytes, op.state_size());
    }
    let mut out = Collector::default();
    let mut ticker = op.tick_interval().map(|period| {
        let mut t = tokio::time::interval(period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    loop {
        let message = match ticker.as_mut() {
            Some(t) => tokio::select! {
                m = rx.recv() => m,
                _ = t.tick() => {
                    let started = std::time::Instant::now();
                    op.on_tick(&mut out)?;
                    metrics.busy(started.elapsed());
                    metrics.produced(out.messages());
                    if !forward(&mut out, &tx).await { return Ok(()) }
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(message) = message else {
            return Ok(());
        };
        metrics.received(&message);
        let started = std::time::Instant::now();
        let mut end = false;
        match message {
            Message::Changes(changes) => {
                if count_input {
                    status
                        .rows_in
                        .fetch_add(changes.num_rows() as u64, Ordering::Relaxed);
                }
                op.process_changes(changes, &mut out)?
            }
            Message::FromInput(input, changes) => {
                if count_input {
                    status
                        .rows_in
                        .fetch_add(changes.num_rows() as u64, Ordering::Relaxed);
                }
                op.process_input(input, changes, &mut out)?
            }
            Message::Watermark(w) => {
                if sampled.is_none_or(|t| t.elapsed() >= STATE_SAMPLE_EVERY) {
                    record_state(&mut state_bytes, op.state_size());
                    sampled = Some(std::time::Instant::now());
                }
                if let Some(w) = op.on_watermark(w, &mut out)? {
                    out.push(Message::Watermark(w));
                }
            }
            Message::Barrier(b) => {
                op.before_barrier(b, &mut out)?;
                // Reported before the barrier is forwarded: the coordinator has every stage's
                // state once the view writer reports.
                if let Some(reports) = &stage.reports {
                    let state = op.snapshot(b)?;
                    let _ = reports.send(CheckpointReport::Operator {
                        epoch: b.epoch,
                        stage: stage.index,
                        name: op.name(),
                        state,
                    });
                }
                out.push(Message::Barrier(b));
            }
            Message::End => {
                record_state(&mut state_bytes, op.state_size());
                op.on_end(&mut out)?;
                record_state(&mut state_bytes, op.state_size());
                out.push(Message::End);
                end = true;
            }
        }
        metrics.busy(started.elapsed());
        metrics.produced(out.messages());
        if !forward(&mut out, &tx).await || end {
            return Ok(());
        }
    }
}

/// Sends everything collected downstream; false when downstream is gone.
async fn forward(out: &mut Collector, tx: &mpsc::Sender<Message>) -> bool {
    for m in out.drain() {
        if tx.send(m).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::view_table::ViewTable;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::catalog::TableProvider;
    use datafusion::prelude::SessionContext;
    use std::time::Duration;

    /// An operator with a bug: it panics on its second batch.
    struct Buggy {
        seen: usize,
    }

    impl StreamOperator for Buggy {
        fn name(&self) -> String {
            "buggy".into()
        }

        fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
            self.seen += 1;
            if self.seen == 2 {
                let empty: Vec<u8> = Vec::new();
                let _ = empty[self.seen]; // index out of bounds, as a real bug would
            }
            out.data(batch);
            Ok(())
        }
    }

    /// Waits (up to 2 s) for the pipeline to stop, and returns why it failed.
    async fn failure_of(status: &PipelineStatus) -> String {
        for _ in 0..200 {
            if status.state() != PipelineState::Running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match status.state() {
            PipelineState::Failed(why) => why,
            other => panic!("pipeline not failed: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_panicking_operator_fails_its_view_visibly() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        let table = Arc::new(ViewTable::new(Arc::clone(&schema)));
        let fanout = Arc::new(Fanout::new(Arc::clone(&table)));
        let status = Arc::new(PipelineStatus::default());
        let upstream = Arc::clone(&fanout);
        // A second view reads the first.
        let downstream_status = Arc::new(PipelineStatus::default());
        let (backfill, downstream_live) = fanout.subscribe().await.unwrap();
        let downstream_table = Arc::new(ViewTable::new(Arc::clone(&schema)));
        let _downstream = spawn_pipeline(
            "w",
            vec![PipelineBranch::input(PipelineInput::View {
                backfill,
                live: downstream_live,
            })],
            vec![Box::new(Buggy { seen: 10 })],
            Vec::new(),
            Arc::new(Fanout::new(Arc::clone(&downstream_table))),
            Arc::clone(&downstream_status),
            None,
        );
        let (tx, live) = mpsc::channel(4);
        let _running = spawn_pipeline(
            "v",
            vec![PipelineBranch::input(PipelineInput::View {
                backfill: Vec::new(),
                live,
            })],
            vec![Box::new(Buggy { seen: 0 })],
            Vec::new(),
            fanout,
            Arc::clone(&status),
            None,
        );
        for _ in 0..2 {
            tx.send(Message::Changes(crate::changes::Changes::inserts(
                batch.clone(),
            )))
            .await
            .unwrap();
        }
        let why = failure_of(&status).await;
        assert!(
            why.contains("operator \"buggy\" panicked") && why.contains("out of bounds"),
            "{why}"
        );
        let ctx = SessionContext::new();
        let scan = table.scan(&ctx.state(), None, &[], None).await;
        let error = scan.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            error.contains("materialized view \"v\" failed") && error.contains("panicked"),
            "{error}"
        );
        // The view reading it fails in turn, and no new reader can subscribe.
        let why = failure_of(&downstream_status).await;
        assert!(why.contains("the view it reads stopped"), "{why}");
        assert!(downstream_table.failure().is_some());
        assert!(upstream.subscribe().await.is_err());
    }
}
