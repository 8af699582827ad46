//! A Top-N operator's state in checkpoints: every held row with its count. Changes are emitted
//! batch by batch, so at a barrier downstream holds exactly the top of this state; restoring
//! applies the rows again and marks each partition's top as emitted.

use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::TopN;
use super::ranked::Ranked;
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};
use crate::operator::Collector;

impl TopN {
    /// Every held row with its count, as Arrow.
    pub(super) fn held_rows(&self) -> Result<OperatorState> {
        let parser = self.whole_rows.parser();
        let mut rows = Vec::new();
        let mut counts = Vec::new();
        for set in self.sets.values() {
            for partition in &set.partitions {
                for (row, count) in partition.entries() {
                    rows.push(parser.parse(row));
                    counts.push(count);
                }
            }
        }
        let mut state = OperatorState::default();
        if rows.is_empty() {
            return Ok(state);
        }
        let mut columns = self.whole_rows.convert_rows(rows)?;
        columns.push(Arc::new(UInt32Array::from(counts)));
        let mut fields: Vec<_> = self.spec.input_schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(
            "__weir_count",
            DataType::UInt32,
            false,
        )));
        let schema = Arc::new(Schema::new(fields));
        state
            .batches
            .push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
        state.schema = Some(schema);
        Ok(state)
    }

    /// Takes back [`TopN::held_rows`]: the rows are applied again without output, then marked
    /// as what downstream holds (it received them before the checkpoint's barrier).
    pub(super) fn restore_rows(&mut self, state: OperatorState) -> Result<()> {
        let width = self.spec.input_schema.fields().len();
        let mut sink = Collector::default();
        for batch in &state.batches {
            let counts = batch
                .column(width)
                .as_any()
                .downcast_ref::<UInt32Array>()
                .ok_or_else(|| {
                    EngineError::Storage("checkpointed Top-N counts are not UINT".into())
                })?;
            let repeat: Vec<u32> = counts
                .values()
                .iter()
                .enumerate()
                .flat_map(|(i, n)| std::iter::repeat_n(i as u32, *n as usize))
                .collect();
            let rows = RecordBatch::try_new(
                Arc::clone(&self.spec.input_schema),
                batch.columns()[..width].to_vec(),
            )?;
            let rows = take_record_batch(&rows, &UInt32Array::from(repeat))?;
            self.apply(&rows, None, false, &mut sink)?;
        }
        // Downstream holds each partition's top as of the checkpoint.
        if !self.spec.emit_at_close {
            let (function, limit) = (self.spec.function, self.spec.limit);
            for partition in self.sets.values_mut().flat_map(|s| s.partitions.iter_mut()) {
                partition.mark_emitted(function, limit);
            }
            self.state_bytes = self
                .sets
                .values()
                .flat_map(|s| s.partitions.iter())
                .map(Ranked::bytes)
                .sum();
        }
        Ok(())
    }
}
