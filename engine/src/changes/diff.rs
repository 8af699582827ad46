//! Changes between two versions of a set of rows whose keys sit at the same positions: the
//! values a refreshing aggregate emitted last time and its values now.

use std::ops::Range;

use datafusion::arrow::array::{RecordBatch, UInt8Array};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::row::{RowConverter, SortField};

use super::{Changes, Op};
use crate::error::{EngineError, Result};

/// The changes from `previous` to `current`, where row `i` of both holds the same key and
/// `current` may have more rows (new keys) at the end. Rows whose `values` columns differ become
/// an update pair, new rows inserts; unchanged rows produce nothing, so the work downstream is
/// proportional to what changed.
pub fn diff_by_position(
    previous: Option<&RecordBatch>,
    current: &RecordBatch,
    values: Range<usize>,
) -> Result<Changes> {
    let old = previous.map_or(0, RecordBatch::num_rows);
    if old > current.num_rows() {
        return Err(EngineError::Internal(format!(
            "refresh lost rows: {old} before, {} now",
            current.num_rows()
        )));
    }
    let changed = match previous {
        Some(previous) if old > 0 => changed_rows(previous, &current.slice(0, old), values)?,
        _ => Vec::new(),
    };
    if changed.is_empty() && old == current.num_rows() {
        return Ok(Changes::empty(current.schema()));
    }
    if changed.is_empty() {
        return Ok(Changes::inserts(
            current.slice(old, current.num_rows() - old),
        ));
    }
    let Some(previous) = previous else {
        return Err(EngineError::Internal(
            "changed rows without a previous version".into(),
        ));
    };
    let added = current.num_rows() - old;
    let mut positions = Vec::with_capacity(2 * changed.len() + added);
    let mut ops = Vec::with_capacity(positions.capacity());
    for &i in &changed {
        positions.extend([(0, i), (1, i)]);
        ops.extend([Op::UpdateBefore as u8, Op::UpdateAfter as u8]);
    }
    positions.extend((old..current.num_rows()).map(|i| (1, i)));
    ops.extend(std::iter::repeat_n(Op::Insert as u8, added));
    let rows = interleave_record_batch(&[previous, current], &positions)?;
    Changes::try_new(rows, UInt8Array::from(ops))
}

/// Positions where the `values` columns of `a` and `b` (same length) differ.
fn changed_rows(a: &RecordBatch, b: &RecordBatch, values: Range<usize>) -> Result<Vec<usize>> {
    let fields = values
        .clone()
        .map(|i| SortField::new(a.schema().field(i).data_type().clone()))
        .collect();
    // A value type the row format cannot encode: report every row as changed (correct, just
    // more output).
    let Ok(converter) = RowConverter::new(fields) else {
        return Ok((0..a.num_rows()).collect());
    };
    let a = converter.convert_columns(&a.columns()[values.clone()])?;
    let b = converter.convert_columns(&b.columns()[values])?;
    Ok((0..a.num_rows())
        .filter(|&i| a.row(i) != b.row(i))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn rows(keys: &[&str], values: &[Option<i64>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn only_changed_and_new_rows_are_emitted() {
        let before = rows(&["a", "b", "c"], &[Some(1), None, Some(3)]);
        let after = rows(&["a", "b", "c", "d"], &[Some(1), Some(2), Some(3), Some(4)]);
        let changes = diff_by_position(Some(&before), &after, 1..2).unwrap();
        let ops: Vec<Op> = (0..changes.num_rows()).map(|i| changes.op(i)).collect();
        assert_eq!(ops, vec![Op::UpdateBefore, Op::UpdateAfter, Op::Insert]);
        let v = changes.rows().column(1).as_primitive::<Int64Type>();
        assert!(datafusion::arrow::array::Array::is_null(v, 0));
        assert_eq!((v.value(1), v.value(2)), (2, 4));
    }

    #[test]
    fn first_and_unchanged_versions() {
        let now = rows(&["a"], &[Some(1)]);
        let first = diff_by_position(None, &now, 1..2).unwrap();
        assert!(first.ops().is_none());
        assert_eq!(first.num_rows(), 1);
        assert!(diff_by_position(Some(&now), &now, 1..2).unwrap().is_empty());
        assert!(diff_by_position(Some(&rows(&["a", "b"], &[None, None])), &now, 1..2).is_err());
    }
}
