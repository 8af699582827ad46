//! What an `OnUpdate` window has already emitted, kept so a refresh costs what it touched.
//!
//! An `OnUpdate` window folds new rows into a small *delta* (the window state's own
//! `GroupValues` and `GroupsAccumulator`s, emptied by every refresh) and keeps everything
//! emitted before in [`Settled`]: every group's key interned to a stable id, and its partial
//! aggregate state in [`PartialStates`]. A refresh exports the delta's k groups, looks up their
//! settled states, and computes three things for those k groups only: the values last emitted
//! (the settled states evaluated), the merged states (written back), and the current values
//! (the merged states evaluated). Both sides are evaluated from the same kind of state, so a
//! group whose values did not change compares equal and is not re-emitted. Nothing is
//! proportional to the window's groups except checkpoints.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take;
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::partial_states::PartialStates;
use super::{GroupState, WindowAggregate, new_accumulator, split_states};
use crate::changes::{Changes, diff_by_position};
use crate::error::{EngineError, Result};

/// Groups of an `OnUpdate` window as last emitted; see the module docs.
pub(super) struct Settled {
    keys: Box<dyn GroupValues>,
    states: PartialStates,
}

impl Settled {
    pub(super) fn size(&self) -> usize {
        self.keys.size() + self.states.size()
    }
}

impl WindowAggregate {
    pub(super) fn new_settled(&self) -> Result<Settled> {
        Ok(Settled {
            keys: new_group_values(Arc::clone(&self.key_schema), &GroupOrdering::None)?,
            states: PartialStates::new(self.state_widths.iter().sum()),
        })
    }

    /// Folds window `start`'s delta into its settled state and returns what changed: inserts
    /// for new groups, update pairs for groups whose values changed.
    pub(super) fn settle(&self, start: i64, state: &mut GroupState) -> Result<Changes> {
        state.dirty = false;
        if state.group_values.is_empty() {
            return Ok(Changes::empty(Arc::clone(&self.spec.output_schema)));
        }
        let delta_keys = state.group_values.emit(EmitTo::All)?;
        state.group_values = new_group_values(Arc::clone(&self.key_schema), &GroupOrdering::None)?;
        let mut delta = Vec::with_capacity(state.accumulators.len());
        for acc in state.accumulators.iter_mut() {
            delta.push(acc.state(EmitTo::All)?);
        }
        state.accumulators = self.new_accumulators()?;
        let k = delta_keys.first().map_or(0, |c| c.len());
        let settled = state.settled.as_mut().ok_or_else(|| {
            EngineError::Internal("refresh of a window without settled state".into())
        })?;
        if k == 0 {
            return Ok(Changes::empty(Arc::clone(&self.spec.output_schema)));
        }

        let known = settled.keys.len();
        let mut ids = Vec::with_capacity(k);
        settled.keys.intern(&delta_keys, &mut ids)?;
        // Output order: groups emitted before first (so old and new rows line up by position),
        // then new groups. `slot[i]` is delta row i's output position.
        let mut order: Vec<u32> = Vec::with_capacity(k);
        order.extend((0..k as u32).filter(|&i| ids[i as usize] < known));
        let existing = order.len();
        order.extend((0..k as u32).filter(|&i| ids[i as usize] >= known));
        let mut slot = vec![0usize; k];
        for (position, &i) in order.iter().enumerate() {
            slot[i as usize] = position;
        }
        let ordered_ids: Vec<usize> = order.iter().map(|&i| ids[i as usize]).collect();
        let gathered = if existing > 0 {
            settled.states.gather(&ordered_ids[..existing])?
        } else {
            Vec::new()
        };
        let before = split_states(&gathered, &self.state_widths);
        let firsts: Vec<usize> = (0..existing).collect();
        let all: Vec<usize> = (0..k).collect();

        let mut old_values = Vec::with_capacity(delta.len());
        let mut new_values = Vec::with_capacity(delta.len());
        let mut merged_states = Vec::with_capacity(self.state_widths.iter().sum());
        for (call, (delta_state, before_state)) in
            self.spec.aggregates.iter().zip(delta.iter().zip(&before))
        {
            if existing > 0 {
                let mut old = new_accumulator(&call.function)?;
                old.merge_batch(before_state, &firsts, existing)?;
                old_values.push(old.evaluate(EmitTo::All)?);
            }
            let mut merged = new_accumulator(&call.function)?;
            merged.merge_batch(delta_state, &slot, k)?;
            if existing > 0 {
                merged.merge_batch(before_state, &firsts, k)?;
            }
            let merged_state = merged.state(EmitTo::All)?;
            let mut current = new_accumulator(&call.function)?;
            current.merge_batch(&merged_state, &all, k)?;
            new_values.push(current.evaluate(EmitTo::All)?);
            merged_states.extend(merged_state);
        }
        settled.states.put(&ordered_ids, merged_states)?;

        let order = UInt32Array::from(order);
        let keys = delta_keys
            .iter()
            .map(|c| Ok(take(c.as_ref(), &order, None)?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let current = self.output(start, &keys, new_values)?;
        if existing == 0 {
            return Ok(Changes::inserts(current));
        }
        let old_keys: Vec<ArrayRef> = keys.iter().map(|c| c.slice(0, existing)).collect();
        let previous = self.output(start, &old_keys, old_values)?;
        diff_by_position(Some(&previous), &current, self.value_columns())
    }

    /// A window's settled keys and states, by settled id, leaving them in place (for
    /// checkpoints; proportional to the window).
    pub(super) fn settled_rows(
        &self,
        state: &mut GroupState,
    ) -> Result<Option<(Vec<ArrayRef>, Vec<ArrayRef>)>> {
        let Some(settled) = state.settled.as_mut() else {
            return Ok(None);
        };
        let keys = settled.keys.emit(EmitTo::All)?;
        let n = keys.first().map_or(0, |c| c.len());
        let mut reinterned = Vec::with_capacity(n);
        settled.keys = new_group_values(Arc::clone(&self.key_schema), &GroupOrdering::None)?;
        settled.keys.intern(&keys, &mut reinterned)?;
        if reinterned.iter().enumerate().any(|(i, &id)| i != id) {
            return Err(EngineError::Internal(
                "re-interning changed group ids".into(),
            ));
        }
        if n == 0 {
            return Ok(None);
        }
        Ok(Some((keys, settled.states.all()?)))
    }
}
