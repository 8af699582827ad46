//! An event-time temporal join's state in checkpoints: the waiting left rows and the kept
//! versions in one table (the input, then the left columns and the right columns, the other
//! input's NULL, then when a deleted row ends its key's versions: NULL for a version, which
//! starts at its own time). Key lists are rebuilt on restore; checkpoints written before deletes
//! were kept have no last column.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int8Array, Int64Array, RecordBatch, new_null_array,
};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema, SchemaRef};

use super::super::output::gather_or_null;
use super::VersionedJoin;
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};

const SIDE: &str = "__weir_side";
const ENDS: &str = "__weir_ends";
const WATERMARK: &str = "watermark";
const CLOCK: &str = "clock";

fn state_schema(join: &VersionedJoin, with_ends: bool) -> SchemaRef {
    let mut fields = vec![Field::new(SIDE, DataType::Int8, false)];
    for schema in [&join.spec.left_schema, &join.spec.right_schema] {
        fields.extend(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
    }
    if with_ends {
        fields.push(Field::new(ENDS, DataType::Int64, true));
    }
    Arc::new(Schema::new(fields))
}

/// `rows` of input `side` as a state batch.
fn tagged(
    join: &VersionedJoin,
    schema: &SchemaRef,
    side: usize,
    rows: &RecordBatch,
    ends: Int64Array,
) -> Result<RecordBatch> {
    let n = rows.num_rows();
    let mut columns: Vec<ArrayRef> = vec![Arc::new(Int8Array::from_value(side as i8, n))];
    for (index, s) in [&join.spec.left_schema, &join.spec.right_schema]
        .into_iter()
        .enumerate()
    {
        if index == side {
            columns.extend(rows.columns().iter().cloned());
        } else {
            columns.extend(s.fields().iter().map(|f| new_null_array(f.data_type(), n)));
        }
    }
    columns.push(Arc::new(ends));
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

pub(super) fn snapshot(join: &VersionedJoin) -> Result<OperatorState> {
    let schema = state_schema(join, true);
    let mut batches = Vec::new();
    for rows in &join.waiting {
        let none = Int64Array::new_null(rows.num_rows());
        batches.push(tagged(join, &schema, 0, rows, none)?);
    }
    let kept: Vec<_> = join
        .versions
        .iter()
        .flat_map(|list| list.iter().map(|v| Some(v.at)))
        .collect();
    if !kept.is_empty() {
        let columns = gather_or_null(&join.spec.right_schema, &join.batches, &kept)?;
        let versions = RecordBatch::try_new(Arc::clone(&join.spec.right_schema), columns)?;
        let ends: Int64Array = join
            .versions
            .iter()
            .flat_map(|list| list.iter().map(|v| v.ends.then_some(v.start)))
            .collect();
        batches.push(tagged(join, &schema, 1, &versions, ends)?);
    }
    let mut values = BTreeMap::new();
    if let Some(wm) = join.watermark {
        values.insert(WATERMARK.to_string(), wm);
    }
    if join.clock > i64::MIN {
        values.insert(CLOCK.to_string(), join.clock);
    }
    Ok(OperatorState {
        schema: Some(schema),
        batches,
        values,
    })
}

pub(super) fn restore(join: &mut VersionedJoin, state: OperatorState) -> Result<()> {
    join.watermark = state.values.get(WATERMARK).copied();
    join.clock = state.values.get(CLOCK).copied().unwrap_or(i64::MIN);
    if state.batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(());
    }
    let with_ends = state
        .batches
        .first()
        .is_some_and(|b| b.schema().index_of(ENDS).is_ok());
    let schema = state_schema(join, with_ends);
    let all = concat_batches(&schema, &state.batches)?;
    let sides = all.column(0).as_primitive::<Int8Type>().clone();
    let left_width = join.spec.left_schema.fields().len();
    for side in 0..2 {
        let mine: BooleanArray = sides.iter().map(|s| Some(s == Some(side as i8))).collect();
        let filtered = filter_record_batch(&all, &mine)?;
        if filtered.num_rows() == 0 {
            continue;
        }
        let (first, target) = if side == 0 {
            (1, &join.spec.left_schema)
        } else {
            (1 + left_width, &join.spec.right_schema)
        };
        let width = target.fields().len();
        let rows = RecordBatch::try_new(
            Arc::clone(target),
            filtered.columns()[first..first + width].to_vec(),
        )
        .map_err(|e| {
            EngineError::Storage(format!("temporal join state of the wrong shape: {e}"))
        })?;
        let ends = with_ends.then(|| filtered.column(filtered.num_columns() - 1));
        if side == 0 {
            join.waiting.push(rows);
        } else {
            let times = super::times(&rows, join.spec.right_time)?;
            let (starts, ends): (Vec<i64>, Vec<bool>) = match ends {
                Some(ends) => {
                    let ends = ends.as_primitive::<Int64Type>();
                    (0..rows.num_rows())
                        .map(|i| {
                            if ends.is_valid(i) {
                                (ends.value(i), true)
                            } else {
                                (times[i], false)
                            }
                        })
                        .unzip()
                }
                None => (times, Vec::new()),
            };
            join.keep_versions(rows, &starts, &ends)?;
        }
    }
    Ok(())
}
