//! Processing-time temporal joins (`JOIN t FOR SYSTEM_TIME AS OF PROCTIME() ON s.k = t.k`): each
//! stream row is joined with the table's current row for its key, looked up as the row passes.
//!
//! The table is the state: the operator keeps nothing, so nothing is checkpointed and a restart
//! looks rows up in the restored table. A row joined before the table changed is not revised,
//! which is what the processing-time form promises (and why its output stays append-only).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::JoinKind;
use crate::error::{EngineError, Result};
use crate::operator::{Collector, StreamOperator};
use crate::view_table::ViewTable;

/// What a lookup join computes.
pub struct LookupSpec {
    /// `Inner` or `Left`.
    pub kind: JoinKind,
    /// Expressions over the stream's rows giving the table's key, column by key column.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The table's rows.
    pub table: Arc<ViewTable>,
    /// The table's name, for EXPLAIN.
    pub table_name: String,
    /// Conditions on the table's own columns (over its full schema), pushed below the join.
    pub table_filter: Option<Arc<dyn PhysicalExpr>>,
    /// The table columns the join passes on.
    pub table_columns: Vec<usize>,
    /// The rest of `ON`, over a joined row.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Stream columns, then the table columns.
    pub output_schema: SchemaRef,
    /// Text of the condition for EXPLAIN.
    pub condition: String,
}

/// A processing-time temporal join against a table.
pub struct LookupJoin {
    spec: LookupSpec,
}

impl LookupJoin {
    /// Builds the join (inner or left).
    pub fn try_new(spec: LookupSpec) -> Result<Self> {
        if !matches!(spec.kind, JoinKind::Inner | JoinKind::Left) {
            return Err(EngineError::NotSupported(
                "a temporal join other than INNER or LEFT".into(),
            ));
        }
        Ok(Self { spec })
    }

    fn mask(expr: &Arc<dyn PhysicalExpr>, rows: &RecordBatch) -> Result<BooleanArray> {
        let mask = expr.evaluate(rows)?.into_array(rows.num_rows())?;
        mask.as_any()
            .downcast_ref::<BooleanArray>()
            .cloned()
            .ok_or_else(|| EngineError::Internal("a join condition is not boolean".into()))
    }
}

/// `rows` at `indices`.
fn take_columns(rows: &RecordBatch, indices: &[u32]) -> Result<Vec<ArrayRef>> {
    let indices = UInt32Array::from(indices.to_vec());
    rows.columns()
        .iter()
        .map(|c| Ok(take(c, &indices, None)?))
        .collect()
}

impl StreamOperator for LookupJoin {
    fn name(&self) -> String {
        "LookupJoin".into()
    }

    fn process_batch(&mut self, rows: RecordBatch, out: &mut Collector) -> Result<()> {
        let keys = self
            .spec
            .keys
            .iter()
            .map(|e| Ok(e.evaluate(&rows)?.into_array(rows.num_rows())?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let (mut found, mut versions) = self.spec.table.lookup(&keys)?;
        if let Some(filter) = &self.spec.table_filter
            && versions.num_rows() > 0
        {
            let keep = Self::mask(filter, &versions)?;
            versions = filter_record_batch(&versions, &keep)?;
            found = found
                .iter()
                .enumerate()
                .filter(|(i, _)| keep.is_valid(*i) && keep.value(*i))
                .map(|(_, &f)| f)
                .collect();
        }
        let probe: Vec<u32> = found.iter().map(|&f| f as u32).collect();
        let mut columns = take_columns(&rows, &probe)?;
        columns.extend(
            self.spec
                .table_columns
                .iter()
                .map(|&c| Arc::clone(versions.column(c))),
        );
        let joined = RecordBatch::try_new(Arc::clone(&self.spec.output_schema), columns)?;
        let (joined, matched) = match &self.spec.filter {
            Some(filter) if joined.num_rows() > 0 => {
                let keep = Self::mask(filter, &joined)?;
                let matched: Vec<u32> = probe
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| keep.is_valid(*i) && keep.value(*i))
                    .map(|(_, &p)| p)
                    .collect();
                (filter_record_batch(&joined, &keep)?, matched)
            }
            _ => (joined, probe),
        };
        out.data(joined);
        if self.spec.kind == JoinKind::Left {
            let mut joined_rows = vec![false; rows.num_rows()];
            for &m in &matched {
                joined_rows[m as usize] = true;
            }
            let alone: Vec<u32> = (0..rows.num_rows() as u32)
                .filter(|&r| !joined_rows[r as usize])
                .collect();
            if !alone.is_empty() {
                let mut columns = take_columns(&rows, &alone)?;
                let fields = self.spec.output_schema.fields();
                columns.extend(
                    fields.iter().skip(rows.num_columns()).map(|f| {
                        datafusion::arrow::array::new_null_array(f.data_type(), alone.len())
                    }),
                );
                out.data(RecordBatch::try_new(
                    Arc::clone(&self.spec.output_schema),
                    columns,
                )?);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "LookupJoin: {} on {} against the current rows of table {} (FOR SYSTEM_TIME AS OF \
             PROCTIME(): joined rows are not revised when the table changes later; keeps no state)",
            if self.spec.kind == JoinKind::Left {
                "left"
            } else {
                "inner"
            },
            self.spec.condition,
            self.spec.table_name
        )
    }
}
