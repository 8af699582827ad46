//! Joining: a group that is not canonical asks the canonical group to stop at its position,
//! reads up to exactly there, and hands its views over (see the module docs of
//! [`super`]). Positions and cut-off rows are handled here; everything else about a group is in
//! `mod.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::compute;
use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::oneshot;
use tracing::{debug, info};

use super::Group;
use super::registry::{Handover, Join, capped, covers, distance};
use crate::checkpoint::SourcePosition;
use crate::error::{EngineError, Result};
use crate::message::Message;

/// A group asks to join once it is at most this many records behind the canonical group (or has
/// caught up with the source): the canonical group then waits while it reads them.
const JOIN_DISTANCE: i64 = 50_000;
/// How often a group not yet sharing looks at the canonical group.
const JOIN_CHECK_EVERY: Duration = Duration::from_millis(100);
/// A joining group that has not reached the canonical group's position by then gives up (and
/// reads on alone, from exactly where it had delivered).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);
/// After giving up, a group waits this long before asking again.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(30);

/// A joining group's progress towards the canonical group's position.
pub(super) struct CatchUp {
    pub(super) target: SourcePosition,
    pub(super) handover: oneshot::Sender<Handover>,
    pub(super) deadline: Instant,
}

impl Group {
    pub(super) fn catching_up(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.catch_up.is_some())
    }

    /// While catching up: the rows of a batch before the target position (None: none). A batch
    /// whose rows have no offsets cannot be cut; if it reaches past the target, the join is
    /// abandoned and the reader reopened where it was before the batch.
    pub(super) fn cut(
        &mut self,
        partition: u32,
        batch: RecordBatch,
        offsets: Option<Int64Array>,
        before: Option<Option<SourcePosition>>,
    ) -> Result<Option<(RecordBatch, Option<Int64Array>)>> {
        let Some(catch_up) = self.shared.as_ref().and_then(|s| s.catch_up.as_ref()) else {
            return Ok(Some((batch, offsets)));
        };
        let Some(&end) = catch_up.target.offsets.get(&partition) else {
            // The canonical group has not read this partition: it delivers all of it.
            return Ok(None);
        };
        let Some(offsets) = offsets else {
            let after = self.source.position();
            let within = after
                .as_ref()
                .and_then(|a| a.offsets.get(&partition))
                .is_some_and(|a| *a <= end);
            if within {
                return Ok(Some((batch, None)));
            }
            let reopen_at = before.flatten().map(|b| capped(&b, &catch_up.target));
            self.abandon_join(reopen_at)?;
            if let Some(shared) = self.shared.as_mut() {
                shared.exact_only = true;
            }
            return Ok(None);
        };
        if offsets.null_count() == 0 && compute::max(&offsets).is_none_or(|m| m < end) {
            return Ok(Some((batch, Some(offsets))));
        }
        let keep = compute::kernels::cmp::lt(&offsets, &Int64Array::new_scalar(end))?;
        let keep = if keep.null_count() > 0 {
            compute::prep_null_mask_filter(&keep)
        } else {
            keep
        };
        if keep.true_count() == 0 {
            return Ok(None);
        }
        let batch = compute::filter_record_batch(&batch, &keep)?;
        let offsets = compute::filter(&offsets, &keep)?;
        let offsets = offsets
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
            .ok_or_else(|| EngineError::Internal("row offsets are not BIGINT".into()))?;
        Ok(Some((batch, Some(offsets))))
    }

    /// Gives up a join: the canonical group reads on (its wait ends when the handover is
    /// dropped), and this group reopens its reader exactly where it had delivered.
    fn abandon_join(&mut self, at: Option<SourcePosition>) -> Result<()> {
        let Some(catch_up) = self.shared.as_mut().and_then(|s| s.catch_up.take()) else {
            return Ok(());
        };
        let at = at.or_else(|| self.source.position().map(|p| capped(&p, &catch_up.target)));
        info!(source = %self.config.context.source, "reader gave up joining the shared reader; reads on alone");
        self.read_alone_from(at)
    }

    /// Reopens the reader at `at` (where this group's views have every row before) and waits
    /// [`RETRY_AFTER`] before asking to join again.
    fn read_alone_from(&mut self, at: Option<SourcePosition>) -> Result<()> {
        let Some(shared) = self.shared.as_mut() else {
            return Ok(());
        };
        shared.next_check = Instant::now() + RETRY_AFTER;
        let mut context = self.config.context.clone();
        context.resume = at;
        self.source = shared.link.provider.open(context)?;
        Ok(())
    }

    /// The canonical group: answers groups asking to join. When one is not ahead of it, it stands
    /// still at its position (passing barriers) until that group hands its views over.
    pub(super) async fn serve_joins(&mut self) {
        let Some(shared) = self.shared.as_mut() else {
            return;
        };
        if !shared.canonical {
            return;
        }
        let _ = shared.position.send(self.source.position());
        let mut asked = Vec::new();
        while let Ok(join) = shared.joins.try_recv() {
            asked.push(join);
        }
        for join in asked {
            let Some(here) = self.source.position() else {
                continue;
            };
            // Ahead of this group (or, for a source that cannot cut at a position, anywhere
            // else than where it is): it asks again later.
            let agreed = if join.exact {
                here == join.position
            } else {
                covers(&here, &join.position)
            };
            if !agreed || join.reply.send(here).is_err() {
                continue;
            }
            let mut handover = join.handover;
            let deadline = tokio::time::Instant::now() + CATCH_UP_TIMEOUT + Duration::from_secs(2);
            loop {
                tokio::select! {
                    views = &mut handover => {
                        if let Ok(views) = views {
                            self.adopt(views).await;
                        }
                        break;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {
                        self.answer_barriers().await;
                        if tokio::time::Instant::now() >= deadline {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Takes over views handed over by a group that caught up with this one.
    async fn adopt(&mut self, views: Handover) {
        self.config.context.metrics.adopt_views(&views.metrics);
        let names: Vec<&str> = views.subscribers.iter().map(|s| s.view.as_str()).collect();
        info!(source = %self.config.context.source, views = ?names, "views now share a reader");
        for mut s in views.subscribers {
            // After anything the view had not taken yet (it then stays behind, and is split off);
            // never waited on for long: the other views are waiting too.
            if let Some(wm) = self.emitted
                && let Some(news) = s.news(wm)
            {
                super::stall::offer(&mut s, Message::Watermark(news), false).await;
            }
            self.subscribers.push(s);
        }
    }

    /// A group that is not canonical: joins the canonical group when close behind it, and
    /// hands its views over once it has reached the agreed position. True when it has (the group
    /// ends). `at_head`: the source had nothing more just now.
    pub(super) async fn share(&mut self, at_head: bool) -> Result<bool> {
        let Some(shared) = self.shared.as_mut() else {
            return Ok(false);
        };
        if shared.canonical {
            return Ok(false);
        }
        if let Some(catch_up) = &shared.catch_up {
            let here = self.source.position();
            let reached = here.as_ref().is_some_and(|h| covers(h, &catch_up.target));
            if reached {
                return self.hand_over().await;
            }
            if Instant::now() >= catch_up.deadline {
                self.abandon_join(None)?;
            }
            return Ok(false);
        }
        let now = Instant::now();
        if now < shared.next_check {
            return Ok(false);
        }
        shared.next_check = now + JOIN_CHECK_EVERY;
        let Some(canonical) = shared
            .link
            .registry
            .canonical(&shared.link.key, &shared.link.provider)
        else {
            shared.canonical =
                shared
                    .link
                    .registry
                    .claim(&shared.link.key, &shared.link.provider, &shared.own);
            return Ok(false);
        };
        let (Some(mine), Some(theirs)) =
            (self.source.position(), canonical.position.borrow().clone())
        else {
            return Ok(false);
        };
        // Without offsets that are positions, rows cannot be cut at the canonical group's
        // position: only a group already there joins.
        let exact = shared.exact_only || !shared.link.provider.positions_are_offsets();
        let close = if exact {
            theirs == mine
        } else {
            covers(&theirs, &mine) && (at_head || distance(&theirs, &mine) <= JOIN_DISTANCE)
        };
        if !close {
            return Ok(false);
        }
        let (reply_tx, reply) = oneshot::channel();
        let (handover, handover_rx) = oneshot::channel();
        let asked = Join {
            exact,
            position: mine,
            reply: reply_tx,
            handover: handover_rx,
        };
        if canonical.joins.send(asked).is_err() {
            return Ok(false);
        }
        // The canonical group answers between two of its events.
        let Ok(Ok(target)) = tokio::time::timeout(Duration::from_secs(1), reply).await else {
            return Ok(false);
        };
        debug!(source = %self.config.context.source, ?target, "reader catching up with the shared reader");
        shared.catch_up = Some(CatchUp {
            target,
            handover,
            deadline: Instant::now() + CATCH_UP_TIMEOUT,
        });
        // Already there (the same checkpointed position): hand over at once.
        let here = self.source.position();
        let reached = match (&here, shared.catch_up.as_ref()) {
            (Some(h), Some(c)) => covers(h, &c.target),
            _ => false,
        };
        if reached {
            return self.hand_over().await;
        }
        Ok(false)
    }

    /// Answers pending barriers (at this group's position), then hands the views over.
    async fn hand_over(&mut self) -> Result<bool> {
        self.answer_barriers().await;
        let Some(catch_up) = self.shared.as_mut().and_then(|s| s.catch_up.take()) else {
            return Ok(false);
        };
        let views = Handover {
            subscribers: std::mem::take(&mut self.subscribers),
            metrics: Arc::clone(&self.config.context.metrics),
        };
        match catch_up.handover.send(views) {
            Ok(()) => Ok(true),
            Err(views) => {
                // The canonical group stopped waiting: read on alone from the agreed position.
                self.subscribers = views.subscribers;
                self.read_alone_from(Some(catch_up.target))?;
                Ok(false)
            }
        }
    }
}
