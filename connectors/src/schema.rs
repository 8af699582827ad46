//! Fitting a connector's natural columns to the columns a `CREATE SOURCE` declared.

use std::sync::Arc;

use crate::error::ConnectorError;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::SchemaRef;
use weir_engine::{EngineError, Result};

/// Maps columns of a natural schema onto declared ones (by name, with a cast where needed).
#[derive(Debug, Clone)]
pub struct Projection {
    target: SchemaRef,
    /// For each target column, the index of the natural column it comes from.
    indices: Vec<usize>,
}

impl Projection {
    /// Plans the mapping; errors name a declared column the connector cannot provide.
    pub fn try_new(natural: &SchemaRef, target: &SchemaRef, connector: &str) -> Result<Self> {
        let mut indices = Vec::with_capacity(target.fields().len());
        for field in target.fields() {
            let (i, from) = natural.column_with_name(field.name()).ok_or_else(|| {
                let available: Vec<&str> =
                    natural.fields().iter().map(|f| f.name().as_str()).collect();
                EngineError::User(format!(
                    "{connector} has no column \"{}\"; it provides: {}",
                    field.name(),
                    available.join(", ")
                ))
            })?;
            if !can_cast_types(from.data_type(), field.data_type()) {
                return Err(EngineError::User(format!(
                    "{connector} column \"{}\" is {} and cannot be read as {}",
                    field.name(),
                    from.data_type(),
                    field.data_type()
                )));
            }
            indices.push(i);
        }
        Ok(Self {
            target: Arc::clone(target),
            indices,
        })
    }

    /// The declared columns, or all natural ones when the statement declared none.
    pub fn declared_or_all(
        natural: &SchemaRef,
        declared: Option<&SchemaRef>,
        connector: &str,
    ) -> Result<Self> {
        Self::try_new(natural, declared.unwrap_or(natural), connector)
    }

    /// The declared schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.target)
    }

    /// Whether natural column `i` feeds any declared column (generators skip the others).
    pub fn reads(&self, i: usize) -> bool {
        self.indices.contains(&i)
    }

    /// Builds the declared batch from natural columns, of which only those [`Self::reads`]
    /// need to be present.
    pub fn apply_columns(&self, natural: &[Option<ArrayRef>], rows: usize) -> Result<RecordBatch> {
        let columns = self
            .indices
            .iter()
            .zip(self.target.fields())
            .map(|(&i, f)| {
                let c = natural.get(i).and_then(Option::as_ref).ok_or_else(|| {
                    ConnectorError::bug(format!("generator skipped column {i}, which is declared"))
                })?;
                if c.data_type() == f.data_type() {
                    Ok(Arc::clone(c))
                } else {
                    Ok(cast(c, f.data_type())?)
                }
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.schema(),
            columns,
            &options,
        )?)
    }

    /// Applies the mapping to a batch of the natural schema.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = self
            .indices
            .iter()
            .zip(self.target.fields())
            .map(|(&i, f)| {
                let c = batch.column(i);
                if c.data_type() == f.data_type() {
                    Ok(Arc::clone(c))
                } else {
                    cast(c, f.data_type())
                }
            })
            .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}
