//! Source readers shared by views: one reader of a (source, split) serves every view on it, so
//! ten views over a topic decode each record once, not ten times.
//!
//! Each view's pipeline starts its own reader *group* where its checkpoint left it (or at the
//! connector's start). The first group of a (source, split) is the canonical one
//! ([`SharedSources`]). Any other group, once it is close behind the canonical group, joins it:
//!
//! 1. it asks with its position; the canonical group, when it is at or past that position on
//!    every partition, stops reading at its own position `P` and answers with `P` (it still
//!    passes barriers while it waits);
//! 2. the asking group reads on up to exactly `P` (rows at or past `P` are cut off, and the
//!    position it reports at a barrier never passes `P`), answers its pending barriers, and hands
//!    its views over; it ends, and the canonical group reads on for all of them.
//!
//! So a new view backfills the source's history with a reader of its own while the others follow
//! the head, and joins them when it has caught up; after a restart, views that checkpointed the
//! same position share at once. Every view keeps its own barriers: its checkpoint records the
//! shared reader's position when its barrier passed, and its watermarks never step back. Cutting
//! at `P` needs each row's offset to be its position ([`SourceProvider::positions_are_offsets`]);
//! a source without that shares only between groups at the same position. A view that stops
//! taking rows is split off onto a reader of its own (`stall.rs`), so it never holds the others
//! back.

mod join;
mod registry;
mod stall;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::record_batch::RecordBatch;
use futures::FutureExt;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use registry::{CanonicalLink, Join, capped};
pub use registry::{GroupKey, SharedSources};

use crate::checkpoint::{CheckpointReport, SourcePosition, SourceState};
use crate::error::{EngineError, Result};
use crate::message::{Message, Watermark};
use crate::source::{
    Source, SourceCheckpointing, SourceEvent, SourceProvider, SourceTaskConfig, reject_future_rows,
};
use crate::source_metrics::now_millis;
use crate::watermark::WatermarkTracker;

/// One view's input fed by a reader group.
pub struct Subscriber {
    /// The view (logs).
    pub view: String,
    /// Where its rows, watermarks and barriers go.
    pub tx: mpsc::Sender<Message>,
    /// Its barriers and where to report the reader's state at them.
    pub checkpointing: Option<SourceCheckpointing>,
    /// Stops the view when the reader fails.
    pub on_error: Box<dyn Fn(&EngineError) + Send>,
    /// Event time last sent: a view's watermarks never step back, whichever group feeds it.
    time: Option<i64>,
    /// The last watermark message sent.
    last: Option<Watermark>,
    /// Messages not delivered because the view stopped taking them (see `stall.rs`).
    backlog: Vec<Message>,
}

impl Subscriber {
    /// A view's input.
    pub fn new(
        view: &str,
        tx: mpsc::Sender<Message>,
        checkpointing: Option<SourceCheckpointing>,
        on_error: impl Fn(&EngineError) + Send + 'static,
    ) -> Self {
        Self {
            view: view.to_string(),
            tx,
            checkpointing,
            on_error: Box::new(on_error),
            time: None,
            last: None,
            backlog: Vec::new(),
        }
    }

    /// What of `wm` this view has not been told yet.
    fn news(&mut self, wm: Watermark) -> Option<Watermark> {
        let next = match wm {
            Watermark::Idle => Watermark::Idle,
            Watermark::EventTime(t) => {
                let t = self.time.map_or(t, |s| s.max(t));
                self.time = Some(t);
                Watermark::EventTime(t)
            }
        };
        (self.last != Some(next)).then(|| {
            self.last = Some(next);
            next
        })
    }
}

/// What lets a group share: the registry, its key, and the source definition (to reopen its
/// reader at an exact position when a join is abandoned).
pub struct Sharing {
    /// Every source's canonical groups.
    pub registry: Arc<SharedSources>,
    /// The (source, split) read.
    pub key: GroupKey,
    /// The source.
    pub provider: Arc<dyn SourceProvider>,
    /// Where a reader split off for a view registers its figures.
    pub metrics: Arc<crate::source_metrics::SourceMetricsRegistry>,
}

/// A group's part in sharing.
struct Shared {
    link: Sharing,
    _running: registry::Running,
    own: CanonicalLink,
    joins: mpsc::UnboundedReceiver<Join>,
    position: watch::Sender<Option<SourcePosition>>,
    canonical: bool,
    /// Join only at exactly the canonical group's position: the source cannot cut rows at a
    /// position, or gave a batch without offsets (a generator of one Nexmark event kind).
    exact_only: bool,
    next_check: Instant,
    catch_up: Option<join::CatchUp>,
}

/// Per-partition liveness as the group sees it.
#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    last_data: Instant,
    idle: bool,
}

/// One reader and the views it feeds.
struct Group {
    config: SourceTaskConfig,
    source: Box<dyn Source>,
    subscribers: Vec<Subscriber>,
    tracker: WatermarkTracker,
    clocks: BTreeMap<u32, PartitionClock>,
    emitted: Option<Watermark>,
    delivering: bool,
    shared: Option<Shared>,
}

/// Spawns a reader group for `first` on `source`; with `sharing`, other views' groups may join it
/// or it may join theirs. A failure (or panic) of the reader stops every view it feeds.
pub fn spawn_group(
    config: SourceTaskConfig,
    source: Box<dyn Source>,
    first: Subscriber,
    sharing: Option<Sharing>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let name = config.context.source.clone();
        let metrics = Arc::clone(&config.context.metrics);
        let mut group = Group::new(config, source, first, sharing);
        let run = AssertUnwindSafe(group.run());
        let error = match run.catch_unwind().await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(panic) => EngineError::Internal(format!(
                "source reader panicked: {}",
                crate::error::panic_message(&*panic)
            )),
        };
        warn!(source = %name, error = %error, "source failed");
        metrics.set_status(format!("failed: {error}"));
        for s in &group.subscribers {
            (s.on_error)(&error);
        }
    })
}

impl Group {
    fn new(
        config: SourceTaskConfig,
        source: Box<dyn Source>,
        first: Subscriber,
        sharing: Option<Sharing>,
    ) -> Self {
        let mut tracker = WatermarkTracker::default();
        let mut clocks = BTreeMap::new();
        if let Some(restored) = &config.restore {
            // One reader of several holds back time only for its own partitions.
            let own: BTreeMap<u32, i64> = restored
                .partition_watermarks
                .iter()
                .filter(|(p, _)| config.context.split.owns(**p))
                .map(|(p, w)| (*p, *w))
                .collect();
            tracker.restore(&own, restored.watermark);
            let now = Instant::now();
            for p in own.keys() {
                clocks.insert(
                    *p,
                    PartitionClock {
                        last_data: now,
                        idle: false,
                    },
                );
            }
        }
        let shared = sharing.map(|link| {
            let (joins_tx, joins) = mpsc::unbounded_channel();
            let (position, position_rx) = watch::channel(source.position());
            let own = CanonicalLink {
                joins: joins_tx,
                position: position_rx,
            };
            let canonical = link.registry.claim(&link.key, &link.provider, &own);
            Shared {
                _running: link.registry.running(),
                link,
                own,
                joins,
                position,
                canonical,
                exact_only: false,
                // A view split off for not keeping up waits before joining again.
                next_check: if first.backlog.is_empty() {
                    Instant::now()
                } else {
                    Instant::now() + join::RETRY_AFTER
                },
                catch_up: None,
            }
        });
        Self {
            config,
            source,
            subscribers: vec![first],
            tracker,
            clocks,
            emitted: None,
            delivering: false,
            shared,
        }
    }

    async fn run(&mut self) -> Result<()> {
        // A view split off a shared reader first gets what it had not taken.
        for s in &mut self.subscribers {
            for message in std::mem::take(&mut s.backlog) {
                let _ = s.tx.send(message).await;
            }
        }
        let poll = self
            .config
            .idle_timeout
            .min(Duration::from_millis(200))
            .max(Duration::from_millis(10));
        loop {
            // Barriers go between two events, so the position and watermarks reported are
            // exactly those of the rows sent before the barrier.
            self.answer_barriers().await;
            if self.subscribers.is_empty() {
                return Ok(());
            }
            self.serve_joins().await;
            let before = self.catching_up().then(|| self.source.position());
            let event = self.source.next_event(poll).await?;
            let now = Instant::now();
            let mut caught_up_with_source = false;
            match event {
                SourceEvent::Data {
                    partition,
                    batch,
                    offsets,
                } => {
                    // Rows cut off while catching up are not delivered, but the position they
                    // reached still counts towards the handover below.
                    if let Some((batch, offsets)) = self.cut(partition, batch, offsets, before)? {
                        self.deliver(partition, batch, offsets, now).await?;
                    }
                }
                SourceEvent::Partitions(partitions) => {
                    for p in partitions {
                        let tracker = &mut self.tracker;
                        self.clocks.entry(p).or_insert_with(|| {
                            tracker.observe(p, None);
                            PartitionClock {
                                last_data: now,
                                idle: false,
                            }
                        });
                        self.config.context.metrics.update(p, |_| ());
                    }
                }
                SourceEvent::Idle => caught_up_with_source = true,
                SourceEvent::End => return self.end().await,
            }
            for (p, clock) in self.clocks.iter_mut() {
                if !clock.idle && now.duration_since(clock.last_data) >= self.config.idle_timeout {
                    clock.idle = true;
                    self.tracker.mark_idle(*p);
                    self.config.context.metrics.update(*p, |m| m.idle = true);
                }
            }
            if let Some(wm) = self.tracker.current()
                && self.emitted != Some(wm)
            {
                self.emitted = Some(wm);
                self.send_watermark(wm).await;
            }
            self.split_off_stalled()?;
            if self.share(caught_up_with_source).await? {
                return Ok(());
            }
        }
    }

    /// Hands rows of `partition` to every view.
    async fn deliver(
        &mut self,
        partition: u32,
        batch: RecordBatch,
        offsets: Option<Int64Array>,
        now: Instant,
    ) -> Result<()> {
        let ctx = &self.config.context;
        if !self.delivering {
            // Connectors with a connection report their own status; for the others, rows
            // arriving is what "running" means.
            self.delivering = true;
            if ctx.metrics.status() == "starting" {
                ctx.metrics.set_status("running");
            }
        }
        self.clocks.insert(
            partition,
            PartitionClock {
                last_data: now,
                idle: false,
            },
        );
        let batch = match &self.config.watermark {
            Some(spec) => reject_future_rows(&self.config, spec, partition, batch, offsets)?,
            None => batch,
        };
        let candidate = match &self.config.watermark {
            Some(spec) if batch.num_rows() > 0 => spec.candidate(&batch)?,
            _ => None,
        };
        let rows = batch.num_rows();
        if rows > 0 {
            let message = Message::Changes(crate::changes::Changes::inserts(batch));
            let alone = self.alone();
            for s in &mut self.subscribers {
                // A view gone (dropped, failed) leaves the group at the next barrier check.
                stall::offer(s, message.clone(), alone).await;
            }
        }
        self.tracker.observe(partition, candidate);
        let partition_watermark = self.tracker.input_watermark(partition);
        self.config.context.metrics.update(partition, |m| {
            m.records += rows as u64;
            m.last_record_millis = Some(now_millis());
            m.watermark = partition_watermark;
            m.idle = false;
        });
        Ok(())
    }

    async fn send_watermark(&mut self, wm: Watermark) {
        let alone = self.alone();
        for s in &mut self.subscribers {
            if let Some(news) = s.news(wm) {
                stall::offer(s, Message::Watermark(news), alone).await;
            }
        }
    }

    /// The reader's state as a checkpoint records it.
    fn state(&self) -> SourceState {
        let position = self.source.position();
        let position = match self.shared.as_ref().and_then(|s| s.catch_up.as_ref()) {
            Some(c) => position.map(|p| capped(&p, &c.target)),
            None => position,
        };
        SourceState {
            position,
            partition_watermarks: self.tracker.input_watermarks(),
            watermark: self.tracker.combined(),
        }
    }

    /// Reports the state at every view's pending barriers and passes them on; drops views that
    /// are gone.
    async fn answer_barriers(&mut self) {
        self.subscribers.retain(|s| !s.tx.is_closed());
        if !self.subscribers.iter().any(|s| {
            s.checkpointing
                .as_ref()
                .is_some_and(|c| !c.barriers.is_empty())
        }) {
            return;
        }
        let state = self.state();
        let alone = self.alone();
        for s in &mut self.subscribers {
            let mut barriers = Vec::new();
            if let Some(link) = s.checkpointing.as_mut() {
                while let Ok(barrier) = link.barriers.try_recv() {
                    let _ = link.reports.send(CheckpointReport::Source {
                        epoch: barrier.epoch,
                        input: link.input,
                        state: state.clone(),
                    });
                    barriers.push(barrier);
                }
            }
            for barrier in barriers {
                stall::offer(s, Message::Barrier(barrier), alone).await;
            }
        }
    }

    /// The source ended: every view learns where, then gets the end.
    async fn end(&mut self) -> Result<()> {
        debug!(source = %self.config.context.source, "source ended");
        self.config.context.metrics.set_status("finished");
        let state = self.state();
        for s in &self.subscribers {
            // Before the end goes downstream: a checkpoint that sees this input ended must also
            // know where it ended.
            if let Some(link) = &s.checkpointing {
                let _ = link.reports.send(CheckpointReport::SourceEnded {
                    input: link.input,
                    state: state.clone(),
                });
            }
        }
        // Each view gets what it had not taken yet, then the end, at its own pace: one slow
        // view does not hold back the others' end.
        for s in std::mem::take(&mut self.subscribers) {
            tokio::spawn(async move {
                let Subscriber { tx, backlog, .. } = s;
                for message in backlog
                    .into_iter()
                    .chain([Message::Watermark(Watermark::MAX), Message::End])
                {
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
        Ok(())
    }
}
