//! Hopping windows from panes: each row is folded once, into the pane it falls in, and a window
//! is the merge of its `size / pane` panes' partial states when it closes. Panes are
//! `gcd(size, slide)` long, so windows start every `slide / pane` panes.
//!
//! Used for `EMIT ON WINDOW CLOSE` over overlapping `HOP` windows (the planner makes the assigner
//! hand out panes instead of one copy per window). Open panes are ordinary window states
//! keyed by pane end. Once the watermark passes a pane's end it is *frozen*: its keys and partial
//! states are taken out once as Arrow arrays, which every window containing it merges without
//! consuming them. A row behind the watermark whose pane is frozen but still needed by an open
//! window thaws the pane (its partials merged back into live accumulators); windows already
//! emitted do not see it, exactly as when rows were copied per window. A pane is dropped once
//! the last window containing it is emitted.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::new_group_values;
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::{GroupState, WindowAggregate, new_accumulator, split_states};
use crate::error::{EngineError, Result};
use crate::operator::Collector;
use crate::window::WindowSpec;

/// The lengths of the hopping windows panes make (nanoseconds).
#[derive(Debug, Clone, Copy)]
struct Hop {
    size: i64,
    slide: i64,
    offset: i64,
}

impl Hop {
    /// The last window end at or before `t`.
    fn last_end_until(self, t: i64) -> i64 {
        t.saturating_sub((t - self.offset - self.size).rem_euclid(self.slide))
    }

    /// The first window end at or after `t`: window ends are `offset + size` plus whole slides.
    fn first_end_from(self, t: i64) -> i64 {
        let behind = (t - self.offset - self.size).rem_euclid(self.slide);
        if behind == 0 {
            t
        } else {
            t.saturating_add(self.slide - behind)
        }
    }
}

/// A complete pane's keys and partial states (flat: every aggregate's state columns in turn).
#[derive(Debug)]
pub(super) struct FrozenPane {
    pub keys: Vec<ArrayRef>,
    pub states: Vec<ArrayRef>,
}

impl FrozenPane {
    pub(super) fn size(&self) -> usize {
        self.keys
            .iter()
            .chain(&self.states)
            .map(|a| a.get_array_memory_size())
            .sum()
    }
}

impl WindowAggregate {
    /// Pane length when this aggregate builds hopping windows from panes.
    pub(super) fn pane(&self) -> Option<i64> {
        self.spec.window.and_then(|w| w.pane)
    }

    /// True when no open window can take rows of the pane ending at `pane_end` any more.
    pub(super) fn pane_closed(&self, pane_end: i64, pane: i64) -> bool {
        let Some(hop) = self.hop() else {
            return self.watermark.is_some_and(|wm| pane_end <= wm);
        };
        // The last window containing the pane starts at the last window start at or before
        // the pane's start.
        let pane_start = pane_end.saturating_sub(pane);
        let last_start = pane_start - (pane_start - hop.offset).rem_euclid(hop.slide);
        self.watermark
            .is_some_and(|wm| last_start.saturating_add(hop.size) <= wm)
    }

    /// The hopping windows the panes make.
    fn hop(&self) -> Option<Hop> {
        match self.spec.window?.spec {
            WindowSpec::Hop {
                size,
                slide,
                offset,
            } => Some(Hop {
                size,
                slide,
                offset,
            }),
            _ => None,
        }
    }

    /// Moves a frozen pane back into live state (a late row for it arrived).
    pub(super) fn thaw(&mut self, pane_end: i64) -> Result<()> {
        let Some(frozen) = self.frozen.remove(&pane_end) else {
            return Ok(());
        };
        let mut state = self.new_state()?;
        let mut ids = Vec::new();
        state.group_values.intern(&frozen.keys, &mut ids)?;
        let groups = state.group_values.len();
        let states = split_states(&frozen.states, &self.state_widths);
        for (acc, partial) in state.accumulators.iter_mut().zip(states) {
            acc.merge_batch(partial, &ids, groups)?;
        }
        self.windows.insert(pane_end, state);
        Ok(())
    }

    fn freeze(&self, mut state: GroupState) -> Result<FrozenPane> {
        let keys = state.group_values.emit(EmitTo::All)?;
        let mut states = Vec::new();
        for acc in state.accumulators.iter_mut() {
            states.extend(acc.state(EmitTo::All)?);
        }
        Ok(FrozenPane { keys, states })
    }

    /// The watermark moved from `previous` to `wm`: freezes panes ending at or before `wm`,
    /// emits every window ending after `previous` and at or before `wm`, and drops panes no
    /// window needs any more.
    pub(super) fn advance_panes(
        &mut self,
        previous: Option<i64>,
        wm: i64,
        out: &mut Collector,
    ) -> Result<()> {
        let (Some(_), Some(hop)) = (self.pane(), self.hop()) else {
            return Ok(());
        };
        let Hop { size, slide, .. } = hop;
        // Windows the previous watermark closed were emitted then, or had no row on time (a
        // row for one of their panes arrived later, for the windows still open): never again.
        if let Some(previous) = previous {
            let closed = hop.last_end_until(previous);
            self.emitted_until = Some(self.emitted_until.map_or(closed, |e| e.max(closed)));
        }
        let open = self.windows.split_off(&wm.saturating_add(1));
        let complete = std::mem::replace(&mut self.windows, open);
        for (end, state) in complete {
            let frozen = self.freeze(state)?;
            self.frozen.insert(end, frozen);
        }
        // The next window to emit: after the last one emitted, and no earlier than the first
        // window containing the oldest pane still kept.
        while let Some((&oldest, _)) = self.frozen.first_key_value() {
            let first = hop.first_end_from(oldest);
            let end = match self.emitted_until {
                Some(last) => last.saturating_add(slide).max(first),
                None => first,
            };
            if end > wm {
                break;
            }
            let panes: Vec<&FrozenPane> = self
                .frozen
                .range(end.saturating_sub(size).saturating_add(1)..=end)
                .map(|(_, p)| p)
                .collect();
            if !panes.is_empty() {
                out.data(self.merge_panes(end, &panes)?);
            }
            self.emitted_until = Some(end);
            // Panes whose last window is emitted: those ending at or before the next window's
            // start.
            let keep = self.frozen.split_off(
                &end.saturating_sub(size)
                    .saturating_add(slide)
                    .saturating_add(1),
            );
            self.frozen = keep;
        }
        Ok(())
    }

    /// The final rows of the window ending at `end`, from its panes.
    fn merge_panes(
        &self,
        end: i64,
        panes: &[&FrozenPane],
    ) -> Result<datafusion::arrow::array::RecordBatch> {
        let mut keys = new_group_values(Arc::clone(&self.key_schema), &GroupOrdering::None)?;
        let mut accumulators = self
            .spec
            .aggregates
            .iter()
            .map(|a| new_accumulator(&a.function))
            .collect::<Result<Vec<_>>>()?;
        let mut ids = Vec::new();
        for pane in panes {
            keys.intern(&pane.keys, &mut ids)?;
            let groups = keys.len();
            let states = split_states(&pane.states, &self.state_widths);
            if states.len() != accumulators.len() {
                return Err(EngineError::Internal(
                    "pane state of the wrong shape".into(),
                ));
            }
            for (acc, partial) in accumulators.iter_mut().zip(states) {
                acc.merge_batch(partial, &ids, groups)?;
            }
        }
        let out_keys = keys.emit(EmitTo::All)?;
        let mut values = Vec::with_capacity(accumulators.len());
        for acc in accumulators.iter_mut() {
            values.push(acc.evaluate(EmitTo::All)?);
        }
        self.output(end, &out_keys, values)
    }
}
