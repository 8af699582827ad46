//! Stateless stages: filters, projections and window assignment, evaluated as DataFusion
//! `PhysicalExpr`s over whole batches. Consecutive stateless plan nodes fuse into one operator.

use std::fmt::Write as _;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use crate::changes::Changes;
use crate::error::{EngineError, Result};
use crate::operator::{Collector, StreamOperator};
use crate::window::WindowAssigner;

/// One step of a stateless stage.
#[derive(Debug, Clone)]
pub enum Step {
    /// Keep rows where the predicate is true.
    Filter(Arc<dyn PhysicalExpr>),
    /// Compute new columns; `schema` is the output schema.
    Project {
        /// One expression per output column.
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        /// Output schema.
        schema: SchemaRef,
    },
    /// Append `window_start` and `window_end` of each window a row is in (one copy per window).
    AssignWindows(WindowAssigner),
}

impl Step {
    /// Apply the step to a batch.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        match self {
            Step::Filter(predicate) => {
                let mask = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
                let mask = mask.as_boolean_opt().ok_or_else(|| {
                    EngineError::Internal(format!("filter {predicate} did not return booleans"))
                })?;
                Ok(filter_record_batch(batch, mask)?)
            }
            Step::Project { exprs, schema } => {
                let columns = exprs
                    .iter()
                    .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
                    .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
                let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                Ok(RecordBatch::try_new_with_options(
                    Arc::clone(schema),
                    columns,
                    &options,
                )?)
            }
            Step::AssignWindows(assigner) => assigner.assign(batch),
        }
    }

    fn describe(&self) -> String {
        match self {
            Step::Filter(p) => format!("Filter: {p}"),
            Step::Project { exprs, schema } => {
                let mut s = String::from("Project: ");
                for (i, (e, f)) in exprs.iter().zip(schema.fields()).enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    let _ = write!(s, "{e} AS {}", f.name());
                }
                s
            }
            Step::AssignWindows(t) => t.describe(),
        }
    }
}

/// A fused run of stateless steps.
#[derive(Debug)]
pub struct StatelessOperator {
    steps: Vec<Step>,
}

impl StatelessOperator {
    /// A stage applying `steps` in order.
    pub fn new(steps: Vec<Step>) -> Self {
        Self { steps }
    }

    /// Apply all steps to a batch.
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let mut batch = batch;
        for step in &self.steps {
            if batch.num_rows() == 0 && !matches!(step, Step::Project { .. }) {
                continue;
            }
            batch = step.apply(&batch)?;
        }
        Ok(batch)
    }

    /// Apply all steps to changes: the steps see the rows as they are, a filter's mask also
    /// filters the ops (repairing update pairs it splits), and update pairs a projection made
    /// identical are dropped.
    pub fn apply_changes(&self, changes: Changes) -> Result<Changes> {
        if changes.ops().is_none() {
            return Ok(Changes::inserts(self.apply(changes.into_parts().0)?));
        }
        let mut changes = changes;
        for step in &self.steps {
            if changes.is_empty() && !matches!(step, Step::Project { .. }) {
                continue;
            }
            changes = match step {
                Step::Filter(predicate) => {
                    let rows = changes.rows();
                    let mask = predicate.evaluate(rows)?.into_array(rows.num_rows())?;
                    let mask = mask.as_boolean_opt().ok_or_else(|| {
                        EngineError::Internal(format!("filter {predicate} did not return booleans"))
                    })?;
                    changes.filter(mask)?
                }
                Step::Project { .. } | Step::AssignWindows(_) => {
                    let rows = step.apply(changes.rows())?;
                    changes.with_rows(rows)?
                }
            };
        }
        Ok(changes)
    }

    /// The steps, for EXPLAIN.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

impl StreamOperator for StatelessOperator {
    fn name(&self) -> String {
        "stateless".to_string()
    }

    fn is_stateless(&self) -> bool {
        true
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        out.data(self.apply(batch)?);
        Ok(())
    }

    fn process_changes(&mut self, changes: Changes, out: &mut Collector) -> Result<()> {
        // Inserts (every message of an append-only stream) take the batch path: one output
        // message per input batch, as before the changelog.
        if changes.ops().is_none() {
            return self.process_batch(changes.into_parts().0, out);
        }
        out.changes(self.apply_changes(changes)?);
        Ok(())
    }

    fn describe(&self) -> String {
        self.steps
            .iter()
            .map(Step::describe)
            .collect::<Vec<_>>()
            .join("\n  ")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::RecordBatch;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{binary, col, lit};

    use super::*;
    use crate::changes::Op;

    fn rows(keys: &[&str], values: &[i64]) -> RecordBatch {
        crate::changes::testing::key_value_rows(keys, values)
    }

    #[test]
    fn filter_and_projection_keep_the_changelog_consistent() {
        let input = rows(&["a", "a", "b", "b", "c"], &[1, 5, 6, 7, 9]);
        let schema = input.schema();
        let v_over_2 =
            binary(col("v", &schema).unwrap(), Operator::Gt, lit(2i64), &schema).unwrap();
        let k_only = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)]));
        let op = StatelessOperator::new(vec![
            Step::Filter(v_over_2),
            Step::Project {
                exprs: vec![col("k", &schema).unwrap()],
                schema: k_only,
            },
        ]);
        let changes = Changes::from_ops(
            input,
            &[
                Op::UpdateBefore,
                Op::UpdateAfter,
                Op::UpdateBefore,
                Op::UpdateAfter,
                Op::Delete,
            ],
        )
        .unwrap();
        let out = op.apply_changes(changes).unwrap();
        // a: 1 → 5 enters the filter, so it is an insert; b: 6 → 7 projects to the same row and
        // disappears; c's delete passes.
        let ops: Vec<Op> = (0..out.num_rows()).map(|i| out.op(i)).collect();
        assert_eq!(ops, vec![Op::Insert, Op::Delete]);
        assert_eq!(out.rows().num_columns(), 1);
    }
}
