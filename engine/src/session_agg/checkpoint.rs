//! Open sessions in checkpoints: one row per session (`keys…, start, end, partial states…`).
//!
//! Pending changes are flushed before every barrier, so downstream holds exactly what the
//! sessions show: restored `OnUpdate` sessions count their current rows as emitted.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::common::ScalarValue;

use super::store::{Session, SessionStore};
use super::{SessionAggregate, state_schema};
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};
use crate::window_agg::EmitMode;

/// Name of the operator's watermark in checkpoints.
const WATERMARK_VALUE: &str = "watermark";

impl SessionAggregate {
    pub(super) fn snapshot_sessions(&mut self) -> Result<OperatorState> {
        let mut state = OperatorState::default();
        if let Some(wm) = self.watermark {
            state.values.insert(WATERMARK_VALUE.into(), wm);
        }
        let width: usize = self.state_widths.iter().sum();
        let mut keys: Vec<Box<[u8]>> = Vec::new();
        let (mut starts, mut ends) = (Vec::new(), Vec::new());
        let mut partials: Vec<Vec<ScalarValue>> = vec![Vec::new(); width];
        let mut store = std::mem::take(&mut self.store);
        let collected = store.all_mut().try_for_each(|(key, session)| {
            keys.push(key.into());
            starts.push(session.start);
            ends.push(session.end);
            let mut column = 0;
            for (i, acc) in session.accumulators.iter_mut().enumerate() {
                // `state` consumes: rebuild the accumulator from what it returned.
                let values = acc.state()?;
                let arrays = values
                    .iter()
                    .map(|v| Ok(v.to_array()?))
                    .collect::<Result<Vec<ArrayRef>>>()?;
                let mut fresh = self.spec.aggregates[i].function.create_accumulator()?;
                fresh.merge_batch(&arrays)?;
                *acc = fresh;
                for value in values {
                    partials[column].push(value);
                    column += 1;
                }
            }
            Ok::<(), EngineError>(())
        });
        self.store = store;
        collected?;
        if keys.is_empty() {
            return Ok(state);
        }
        let parser = self.converter.parser();
        let mut columns = self
            .converter
            .convert_rows(keys.iter().map(|k| parser.parse(k)))?;
        columns.push(Arc::new(Int64Array::from(starts)));
        columns.push(Arc::new(Int64Array::from(ends)));
        for values in partials {
            columns.push(ScalarValue::iter_to_array(values)?);
        }
        let schema = state_schema(&columns);
        state
            .batches
            .push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
        state.schema = Some(schema);
        Ok(state)
    }

    pub(super) fn restore_sessions(&mut self, state: OperatorState) -> Result<()> {
        self.watermark = state.values.get(WATERMARK_VALUE).copied();
        self.store = SessionStore::new(self.spec.gap_nanos);
        let n_keys = self.key_exprs.len();
        let width: usize = self.state_widths.iter().sum();
        for batch in &state.batches {
            if batch.num_columns() != n_keys + 2 + width {
                return Err(EngineError::Storage(format!(
                    "checkpointed sessions have {} columns, the view's plan needs {}",
                    batch.num_columns(),
                    n_keys + 2 + width
                )));
            }
            let rows = self.converter.convert_columns(&batch.columns()[..n_keys])?;
            let times = |i: usize| {
                batch
                    .column(i)
                    .as_primitive_opt::<Int64Type>()
                    .cloned()
                    .ok_or_else(|| EngineError::Storage("checkpointed session times".into()))
            };
            let (starts, ends) = (times(n_keys)?, times(n_keys + 1)?);
            for row in 0..batch.num_rows() {
                let mut accumulators = self.new_accumulators()?;
                let mut column = n_keys + 2;
                for (acc, &w) in accumulators.iter_mut().zip(&self.state_widths) {
                    let slices: Vec<ArrayRef> = batch.columns()[column..column + w]
                        .iter()
                        .map(|c| c.slice(row, 1))
                        .collect();
                    acc.merge_batch(&slices)?;
                    column += w;
                }
                let mut session = Session {
                    id: 0,
                    start: starts.value(row),
                    end: ends.value(row),
                    accumulators,
                    emitted: None,
                    dirty: false,
                };
                if let EmitMode::OnUpdate { .. } = self.spec.emit {
                    session.emitted = Some(self.current(&mut session)?);
                }
                self.store.restore(rows.row(row).as_ref(), session);
            }
        }
        Ok(())
    }
}
