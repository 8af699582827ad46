//! A window aggregate's state in checkpoints: one row per group (`window end, keys…, partial
//! states…`) for every open window (its delta and its settled groups) and every frozen pane, plus
//! the watermark and, for panes, the last window emitted. Restoring merges the rows back into
//! open windows; an updating aggregate settles them without emitting (changes were flushed before
//! the barrier, so downstream already holds exactly these values).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{Field, Int64Type, Schema, SchemaRef};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::new_group_values;
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::{
    EmitMode, GroupState, WindowAggregate, new_accumulator, runs_of, split_states, window_in,
};
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};
use crate::operator::StreamOperator;

impl WindowAggregate {
    pub(super) fn snapshot_state(&mut self) -> Result<OperatorState> {
        let mut state = OperatorState::default();
        if let Some(wm) = self.watermark {
            state.values.insert(WATERMARK_VALUE.into(), wm);
        }
        if let Some(until) = self.emitted_until {
            state.values.insert(EMITTED_UNTIL_VALUE.into(), until);
        }
        let mut windows = std::mem::take(&mut self.windows);
        let written = windows
            .iter_mut()
            .try_for_each(|(&end, window)| self.snapshot_window(end, window, &mut state));
        self.windows = windows;
        written?;
        // Frozen panes come back as open panes; the next watermark freezes them again.
        for (&end, pane) in &self.frozen {
            self.push_state_rows(end, pane.keys.clone(), pane.states.clone(), &mut state)?;
        }
        Ok(state)
    }

    pub(super) fn restore_state(&mut self, state: OperatorState) -> Result<()> {
        self.watermark = state.values.get(WATERMARK_VALUE).copied();
        self.emitted_until = state.values.get(EMITTED_UNTIL_VALUE).copied();
        for batch in &state.batches {
            self.restore_rows(batch)?;
        }
        // Changes were flushed before the barrier, so downstream holds exactly the values of
        // the restored state: settle it without emitting.
        if self.spec.emit != EmitMode::OnWindowClose {
            let mut windows = std::mem::take(&mut self.windows);
            let settled = windows
                .iter_mut()
                .try_for_each(|(&end, window)| self.settle(end, window).map(drop));
            self.windows = windows;
            settled?;
        }
        Ok(())
    }

    /// Takes a window's keys and partial aggregate states out and rebuilds its live state from
    /// them (`GroupValues::emit` and `GroupsAccumulator::state` consume what they return).
    pub(super) fn take_partials(
        &self,
        state: &mut GroupState,
    ) -> Result<(Vec<ArrayRef>, Vec<Vec<ArrayRef>>)> {
        // An empty state (an updating window's delta right after a refresh) has nothing to take,
        // and DataFusion's accumulator adapter exports no columns at all for zero groups, which
        // merging back would index.
        if state.group_values.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let keys = state.group_values.emit(EmitTo::All)?;
        let n = keys.first().map_or(0, |k| k.len());
        let ids: Vec<usize> = (0..n).collect();
        let mut live = new_group_values(Arc::clone(&self.key_schema), &GroupOrdering::None)?;
        let mut reinterned = Vec::with_capacity(n);
        live.intern(&keys, &mut reinterned)?;
        if reinterned != ids {
            return Err(EngineError::Internal(
                "re-interning changed group ids".into(),
            ));
        }
        let mut partials = Vec::with_capacity(state.accumulators.len());
        let mut accumulators = Vec::with_capacity(state.accumulators.len());
        for (call, acc) in self
            .spec
            .aggregates
            .iter()
            .zip(state.accumulators.iter_mut())
        {
            let partial = acc.state(EmitTo::All)?;
            let mut continued = new_accumulator(&call.function)?;
            continued.merge_batch(&partial, &ids, n)?;
            partials.push(partial);
            accumulators.push(continued);
        }
        state.group_values = live;
        state.accumulators = accumulators;
        Ok((keys, partials))
    }

    /// Folds checkpointed partial states (`window end, keys…, states…`) back into windows.
    fn restore_rows(&mut self, batch: &RecordBatch) -> Result<()> {
        let n_keys = self.key_schema.fields().len();
        let expected = 1 + n_keys + self.state_widths.iter().sum::<usize>();
        if batch.num_columns() != expected {
            return Err(EngineError::Storage(format!(
                "checkpointed state of {} has {} columns, the view's plan needs {expected}",
                self.name(),
                batch.num_columns()
            )));
        }
        let ends = batch
            .column(0)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| EngineError::Storage("checkpointed window ends are not BIGINT".into()))?
            .clone();
        // Older checkpoints keyed fixed-size windows by start.
        let ends = match self.spec.window {
            Some(w) if batch.schema().field(0).name() == "window_start" => {
                ends.unary(|start| w.spec.end_of(start))
            }
            _ => ends,
        };
        let runs = runs_of(ends.values(), usize::MAX).unwrap_or_default();
        for (end, offset, len) in runs {
            let part = batch.slice(offset, len);
            let keys = part.columns()[1..1 + n_keys].to_vec();
            let total = self.intern_keys(end, &keys)?;
            let states = split_states(&part.columns()[1 + n_keys..], &self.state_widths);
            let state = window_in(&mut self.windows, end)?;
            for (acc, partial) in state.accumulators.iter_mut().zip(states) {
                acc.merge_batch(partial, &self.group_ids, total)?;
            }
        }
        Ok(())
    }

    /// Appends a window's checkpoint rows (`window end, keys…, states…`) to `state`: its
    /// settled groups and whatever its delta holds (the same key may be in both; restoring
    /// merges them).
    fn snapshot_window(
        &self,
        end: i64,
        window: &mut GroupState,
        state: &mut OperatorState,
    ) -> Result<()> {
        let delta = Some(self.take_partials(window)?);
        let settled = self
            .settled_rows(window)?
            .map(|(keys, states)| (keys, vec![states]));
        for (keys, partials) in delta.into_iter().chain(settled) {
            let partials = partials.into_iter().flatten().collect();
            self.push_state_rows(end, keys, partials, state)?;
        }
        Ok(())
    }

    /// Appends checkpoint rows `end, keys…, states…` (nothing when there are no keys).
    fn push_state_rows(
        &self,
        end: i64,
        keys: Vec<ArrayRef>,
        states: Vec<ArrayRef>,
        state: &mut OperatorState,
    ) -> Result<()> {
        let rows = keys.first().map_or(0, |k| k.len());
        if rows == 0 {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_value(end, rows))];
        columns.extend(keys);
        columns.extend(states);
        let schema = state.schema.get_or_insert_with(|| state_schema(&columns));
        state
            .batches
            .push(RecordBatch::try_new(Arc::clone(schema), columns)?);
        Ok(())
    }
}

/// Name of the checkpointed column of window ends. Checkpoints written before cumulating
/// windows keyed windows by start in a column named `window_start`.
const STATE_WINDOW_COLUMN: &str = "window_end";

/// Name of the end of the last window emitted from panes, in checkpoints.
const EMITTED_UNTIL_VALUE: &str = "emitted_until";

/// Name of the operator's watermark in checkpoints.
const WATERMARK_VALUE: &str = "watermark";

/// Schema of checkpointed state: `window_end`, then keys `k0…`, then partial states `s0…`;
/// types from the arrays, everything nullable (partial states may hold nulls their fields don't
/// declare).
fn state_schema(columns: &[ArrayRef]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Field::new(
                if i == 0 {
                    STATE_WINDOW_COLUMN.to_string()
                } else {
                    format!("c{i}")
                },
                c.data_type().clone(),
                true,
            )
        })
        .collect();
    Arc::new(Schema::new(fields))
}
