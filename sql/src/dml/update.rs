//! `UPDATE` and `DELETE` on a keyed table. `UPDATE` runs one plan producing each new row beside
//! its old one, so the two pair up without a second scan or a join; an update keeping the key is
//! an update pair, one changing it a delete plus an insert (checked for duplicate keys first).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, interleave_record_batch};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection};
use weir_engine::changes::{Changes, Op};
use weir_engine::table::TableWriter;
use weir_engine::view_table::ViewTable;

use super::insert::unique_violation;
use super::{Computed, conform};
use crate::error::{Result, SqlError, SqlErrorKind};

/// DataFusion's `UPDATE` input (new values, one projection over the filtered table) with the old
/// values beside them.
pub(super) fn with_old_rows(input: &LogicalPlan, table: &TableWriter) -> Result<LogicalPlan> {
    let LogicalPlan::Projection(p) = input else {
        return Err(SqlError::new(
            SqlErrorKind::Internal,
            "UPDATE did not plan as a projection",
        ));
    };
    let n = table.table().schema_ref().fields().len();
    let mut exprs = p.expr.clone();
    for (i, (qualifier, field)) in p.input.schema().iter().enumerate().take(n) {
        exprs.push(Expr::Column(Column::from((qualifier, field))).alias(format!("__weir_old_{i}")));
    }
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::clone(&p.input),
    )?))
}

/// The changes of an `UPDATE` whose plan produced `rows` (new columns, then old ones).
pub(super) fn changes(
    table: &ViewTable,
    writer: &TableWriter,
    rows: RecordBatch,
) -> Result<Computed> {
    let n = table.schema_ref().fields().len();
    let count = rows.num_rows();
    let new = conform(
        writer,
        RecordBatch::try_new(table.schema_ref(), rows.columns()[..n].to_vec())?,
    )?;
    let old = RecordBatch::try_new(table.schema_ref(), rows.columns()[n..].to_vec())?;
    let key = writer.key().unwrap_or_default();
    let old_keys = key_rows(&old, key)?;
    let new_keys = key_rows(&new, key)?;
    let same: Vec<bool> = (0..count)
        .map(|i| old_keys.row(i) == new_keys.row(i))
        .collect();
    if same.iter().all(|s| *s) {
        return Ok((pairs(&old, &new)?, count));
    }
    // Keys change: the new keys must be unique, and free unless this update moves their row.
    let mut seen = HashSet::with_capacity(count);
    for i in 0..count {
        if !seen.insert(new_keys.row(i)) {
            return Err(unique_violation(writer, &new, i));
        }
    }
    let leaving: HashSet<_> = (0..count).map(|i| old_keys.row(i)).collect();
    let moved = BooleanArray::from(same.iter().map(|s| !s).collect::<Vec<_>>());
    let kept = BooleanArray::from(same.clone());
    let moved_new = filter_record_batch(&new, &moved)?;
    let (found, _) = table.live_versions(&moved_new)?;
    let moved_new_keys = key_rows(&moved_new, key)?;
    if let Some(&at) = found
        .iter()
        .find(|&&i| !leaving.contains(&moved_new_keys.row(i)))
    {
        return Err(unique_violation(writer, &moved_new, at));
    }
    // Deletes of moved rows first (freeing their keys), then pairs, then the moved rows' inserts.
    let deletes = filter_record_batch(&old, &moved)?;
    let updates = pairs(
        &filter_record_batch(&old, &kept)?,
        &filter_record_batch(&new, &kept)?,
    )?;
    let all = concat_batches(&table.schema_ref(), [&deletes, updates.rows(), &moved_new])?;
    let mut ops = vec![Op::Delete; deletes.num_rows()];
    for _ in 0..updates.num_rows() / 2 {
        ops.push(Op::UpdateBefore);
        ops.push(Op::UpdateAfter);
    }
    ops.resize(all.num_rows(), Op::Insert);
    Ok((Changes::from_ops(all, &ops)?, count))
}

/// The changes of a `DELETE` whose plan produced the live rows `rows`.
pub(super) fn deletes(rows: RecordBatch) -> Result<Computed> {
    let n = rows.num_rows();
    let ops: datafusion::arrow::array::UInt8Array =
        std::iter::repeat_n(Op::Delete as u8, n).collect();
    Ok((Changes::try_new(rows, ops)?, n))
}

/// Update pairs: `-U old[i], +U new[i]` for every row.
fn pairs(old: &RecordBatch, new: &RecordBatch) -> Result<Changes> {
    let indices: Vec<(usize, usize)> = (0..old.num_rows()).flat_map(|i| [(0, i), (1, i)]).collect();
    let rows = interleave_record_batch(&[old, new], &indices)?;
    let ops: Vec<Op> = (0..old.num_rows())
        .flat_map(|_| [Op::UpdateBefore, Op::UpdateAfter])
        .collect();
    Ok(Changes::from_ops(rows, &ops)?)
}

/// The key columns of `rows` in comparable byte form.
fn key_rows(rows: &RecordBatch, key: &[usize]) -> Result<Rows> {
    let converter = RowConverter::new(
        key.iter()
            .map(|&k| SortField::new(rows.schema().field(k).data_type().clone()))
            .collect(),
    )?;
    let columns: Vec<ArrayRef> = key.iter().map(|&k| Arc::clone(rows.column(k))).collect();
    Ok(converter.convert_columns(&columns)?)
}
