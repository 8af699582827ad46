//! The changelog: the one data message between operators. A [`Changes`] is an Arrow batch of
//! rows in the stream's own schema plus, beside it, one [`Op`] per row.
//!
//! Why an op array beside the batch (and not a hidden column or a weight): DataFusion's
//! `PhysicalExpr`s evaluate `rows` unchanged, so filters, projections and UDFs need not know the
//! stream updates; append-only streams carry no op array at all (`ops: None`) and keep their
//! fast paths; and an update stays one adjacent `UpdateBefore`/`UpdateAfter` pair, which sinks
//! turn into one atomic upsert. `../shared/design/changelog.md` has the comparison with other
//! systems.
//!
//! Invariants, checked by [`ChangelogChecker`] in tests:
//! 1. an `UpdateBefore` is immediately followed by its `UpdateAfter` in the same `Changes`
//!    (no operator splits a pair across batches; [`Changes::chunks`] never does);
//! 2. a retraction carries the full old row, and retracting a row that is not live is a bug;
//! 3. operators emit at most [`MAX_CHANGES_ROWS`] rows per `Changes`.

mod checker;
mod diff;
mod ops;

pub use checker::ChangelogChecker;
pub use diff::diff_by_position;
pub use ops::Op;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch, UInt8Array};
use datafusion::arrow::compute::{filter, filter_record_batch};
use datafusion::arrow::datatypes::{SchemaRef, UInt8Type};
use datafusion::arrow::row::{RowConverter, SortField};

use crate::error::{EngineError, Result};

/// Most rows an operator puts in one [`Changes`], so a row matching millions stays bounded.
pub const MAX_CHANGES_ROWS: usize = 8192;

/// Rows and what happened to each of them.
#[derive(Debug, Clone)]
pub struct Changes {
    rows: RecordBatch,
    /// One op byte per row; `None` means every row is an insert.
    ops: Option<UInt8Array>,
}

impl Changes {
    /// Rows that were all inserted (an append-only stream's only kind of change).
    pub fn inserts(rows: RecordBatch) -> Self {
        Self { rows, ops: None }
    }

    /// Rows with one op each. Fails if the lengths differ, an op byte is not an [`Op`], or an
    /// update pair is not adjacent.
    pub fn try_new(rows: RecordBatch, ops: UInt8Array) -> Result<Self> {
        if ops.len() != rows.num_rows() {
            return Err(EngineError::Internal(format!(
                "changes with {} rows but {} ops",
                rows.num_rows(),
                ops.len()
            )));
        }
        if ops.null_count() > 0 {
            return Err(EngineError::Internal("changes with a null op".into()));
        }
        ops::check_pairs(ops.values())?;
        Ok(Self {
            rows,
            ops: Some(ops),
        })
    }

    /// Rows with the given ops (tests and small producers).
    pub fn from_ops(rows: RecordBatch, ops: &[Op]) -> Result<Self> {
        Self::try_new(rows, ops.iter().map(|op| *op as u8).collect())
    }

    /// An empty change set of the given schema.
    pub fn empty(schema: SchemaRef) -> Self {
        Self::inserts(RecordBatch::new_empty(schema))
    }

    /// The rows, in the stream's schema.
    pub fn rows(&self) -> &RecordBatch {
        &self.rows
    }

    /// The op bytes, or `None` when every row is an insert.
    pub fn ops(&self) -> Option<&UInt8Array> {
        self.ops.as_ref()
    }

    /// Rows and op bytes.
    pub fn into_parts(self) -> (RecordBatch, Option<UInt8Array>) {
        (self.rows, self.ops)
    }

    /// The schema of the rows.
    pub fn schema(&self) -> SchemaRef {
        self.rows.schema()
    }

    /// Number of changed rows.
    pub fn num_rows(&self) -> usize {
        self.rows.num_rows()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.num_rows() == 0
    }

    /// The op of row `i`.
    pub fn op(&self, i: usize) -> Op {
        match &self.ops {
            // `try_new` checked every byte.
            Some(ops) => Op::from_byte(ops.value(i)).unwrap_or(Op::Insert),
            None => Op::Insert,
        }
    }

    /// Every row is an insert (the op array may still be present).
    pub fn is_inserts_only(&self) -> bool {
        match &self.ops {
            None => true,
            Some(ops) => ops.values().iter().all(|b| *b == Op::Insert as u8),
        }
    }

    /// The rows, if every one of them is an insert.
    pub fn into_inserts(self) -> Option<RecordBatch> {
        self.is_inserts_only().then_some(self.rows)
    }

    /// The same ops over new rows (a projection or any other row-for-row mapping). Update pairs
    /// the mapping made identical are dropped: they no longer change anything.
    pub fn with_rows(&self, rows: RecordBatch) -> Result<Changes> {
        if rows.num_rows() != self.rows.num_rows() {
            return Err(EngineError::Internal(format!(
                "a row-for-row mapping of {} changes returned {} rows",
                self.rows.num_rows(),
                rows.num_rows()
            )));
        }
        let mapped = Changes {
            rows,
            ops: self.ops.clone(),
        };
        mapped.without_unchanged_updates()
    }

    /// Keep the rows where `keep` is true. An update pair that loses one half becomes a plain
    /// change: a kept `UpdateBefore` turns into a `Delete`, a kept `UpdateAfter` into an
    /// `Insert`, so what downstream sees still adds up.
    pub fn filter(&self, keep: &BooleanArray) -> Result<Changes> {
        let rows = filter_record_batch(&self.rows, keep)?;
        let Some(ops) = &self.ops else {
            return Ok(Changes::inserts(rows));
        };
        let repaired: UInt8Array = ops::repair_split_pairs(ops.values(), keep).into();
        let ops = filter(&repaired, keep)?.as_primitive::<UInt8Type>().clone();
        Ok(Changes {
            rows,
            ops: Some(ops),
        })
    }

    /// Rows `offset..offset + len`. The caller keeps update pairs together.
    fn slice(&self, offset: usize, len: usize) -> Changes {
        Changes {
            rows: self.rows.slice(offset, len),
            ops: self.ops.as_ref().map(|ops| ops.slice(offset, len)),
        }
    }

    /// Pieces of at most `max_rows` rows (at least 2), never splitting an update pair.
    pub fn chunks(&self, max_rows: usize) -> Vec<Changes> {
        let max_rows = max_rows.max(2);
        if self.num_rows() <= max_rows {
            return vec![self.clone()];
        }
        let mut pieces = Vec::with_capacity(self.num_rows() / max_rows + 1);
        let mut start = 0;
        while start < self.num_rows() {
            let mut end = (start + max_rows).min(self.num_rows());
            if end < self.num_rows() && self.op(end - 1) == Op::UpdateBefore {
                end -= 1;
            }
            pieces.push(self.slice(start, end - start));
            start = end;
        }
        pieces
    }

    /// Drop update pairs whose before and after rows are equal.
    fn without_unchanged_updates(self) -> Result<Changes> {
        let Some(ops) = &self.ops else {
            return Ok(self);
        };
        let befores: Vec<usize> = ops
            .values()
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == Op::UpdateBefore as u8)
            .map(|(i, _)| i)
            .collect();
        if befores.is_empty() {
            return Ok(self);
        }
        let fields = self
            .schema()
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        // Types the row format cannot encode keep their pairs: a no-op update is noise, not an
        // error.
        let Ok(converter) = RowConverter::new(fields) else {
            return Ok(self);
        };
        let converted = converter.convert_columns(self.rows.columns())?;
        let mut keep = vec![true; self.num_rows()];
        let mut dropped = false;
        for i in befores {
            if converted.row(i) == converted.row(i + 1) {
                keep[i] = false;
                keep[i + 1] = false;
                dropped = true;
            }
        }
        if !dropped {
            return Ok(self);
        }
        self.filter(&BooleanArray::from(keep))
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
