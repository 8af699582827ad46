//! A join's key table: the values of the `ON` equalities of either input interned to dense ids
//! with DataFusion's `GroupValues` (the vectorised hash table its aggregates use), so one id
//! names a key on both sides.

use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::error::Result;

/// The id of a NULL key (a key column is NULL): it matches nothing.
pub(super) const NO_KEY: u32 = u32::MAX;

/// Interned join keys; see the module docs.
pub(super) struct JoinKeys {
    /// Key columns, typed as the left input's key expressions (the right's are cast to them).
    schema: SchemaRef,
    table: Box<dyn GroupValues>,
    /// Reused buffer of ids.
    scratch: Vec<usize>,
}

impl JoinKeys {
    /// A key table for keys computed by `exprs` over rows of `input`.
    pub(super) fn try_new(exprs: &[Arc<dyn PhysicalExpr>], input: &Schema) -> Result<Self> {
        let fields = exprs
            .iter()
            .enumerate()
            .map(|(i, e)| Ok(Field::new(format!("k{i}"), e.data_type(input)?, true)))
            .collect::<Result<Vec<_>>>()?;
        let schema = Arc::new(Schema::new(fields));
        let table = new_group_values(Arc::clone(&schema), &GroupOrdering::None)?;
        Ok(Self {
            schema,
            table,
            scratch: Vec::new(),
        })
    }

    /// Key ids of `rows` under the key expressions `exprs` ([`NO_KEY`] where a key is NULL).
    pub(super) fn ids(
        &mut self,
        exprs: &[Arc<dyn PhysicalExpr>],
        rows: &RecordBatch,
    ) -> Result<Vec<u32>> {
        let mut columns = Vec::with_capacity(exprs.len());
        for (expr, field) in exprs.iter().zip(self.schema.fields()) {
            let column = expr.evaluate(rows)?.into_array(rows.num_rows())?;
            columns.push(if column.data_type() == field.data_type() {
                column
            } else {
                cast(&column, field.data_type())?
            });
        }
        let mut ids = std::mem::take(&mut self.scratch);
        self.table.intern(&columns, &mut ids)?;
        let out = ids
            .iter()
            .enumerate()
            .map(|(row, &id)| {
                if columns.iter().any(|c| c.is_null(row)) {
                    NO_KEY
                } else {
                    id as u32
                }
            })
            .collect();
        self.scratch = ids;
        Ok(out)
    }

    /// Keys interned.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Forgets every key (ids are handed out from 0 again).
    pub(super) fn clear(&mut self) -> Result<()> {
        self.table = new_group_values(Arc::clone(&self.schema), &GroupOrdering::None)?;
        Ok(())
    }

    /// Bytes held.
    pub(super) fn size(&self) -> usize {
        self.table.size() + self.scratch.capacity() * std::mem::size_of::<usize>()
    }
}
