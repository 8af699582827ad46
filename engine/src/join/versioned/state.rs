//! An event-time temporal join's state in checkpoints: the waiting left rows and the kept
//! versions in one table (the input, then the left columns and the right columns, the other
//! input's NULL). Key lists are rebuilt on restore.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int8Array, RecordBatch, new_null_array,
};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};

use super::super::output::gather_or_null;
use super::VersionedJoin;
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};

const SIDE: &str = "__weir_side";
const WATERMARK: &str = "watermark";

fn state_schema(join: &VersionedJoin) -> SchemaRef {
    let mut fields = vec![Field::new(SIDE, DataType::Int8, false)];
    for schema in [&join.spec.left_schema, &join.spec.right_schema] {
        fields.extend(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
    }
    Arc::new(Schema::new(fields))
}

/// `rows` of input `side` as a state batch.
fn tagged(
    join: &VersionedJoin,
    schema: &SchemaRef,
    side: usize,
    rows: &RecordBatch,
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
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

pub(super) fn snapshot(join: &VersionedJoin) -> Result<OperatorState> {
    let schema = state_schema(join);
    let mut batches = Vec::new();
    for rows in &join.waiting {
        batches.push(tagged(join, &schema, 0, rows)?);
    }
    let kept: Vec<_> = join
        .versions
        .iter()
        .flat_map(|list| list.iter().map(|v| Some(v.1)))
        .collect();
    if !kept.is_empty() {
        let columns = gather_or_null(&join.spec.right_schema, &join.batches, &kept)?;
        let versions = RecordBatch::try_new(Arc::clone(&join.spec.right_schema), columns)?;
        batches.push(tagged(join, &schema, 1, &versions)?);
    }
    let mut values = BTreeMap::new();
    if let Some(wm) = join.watermark {
        values.insert(WATERMARK.to_string(), wm);
    }
    Ok(OperatorState {
        schema: Some(schema),
        batches,
        values,
    })
}

pub(super) fn restore(join: &mut VersionedJoin, state: OperatorState) -> Result<()> {
    join.watermark = state.values.get(WATERMARK).copied();
    if state.batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(());
    }
    let schema = state_schema(join);
    let all = concat_batches(&schema, &state.batches)?;
    let sides = all.column(0).as_primitive::<Int8Type>().clone();
    let left_width = join.spec.left_schema.fields().len();
    for side in 0..2 {
        let mine: BooleanArray = sides.iter().map(|s| Some(s == Some(side as i8))).collect();
        let rows = filter_record_batch(&all, &mine)?;
        if rows.num_rows() == 0 {
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
            rows.columns()[first..first + width].to_vec(),
        )
        .map_err(|e| {
            EngineError::Storage(format!("temporal join state of the wrong shape: {e}"))
        })?;
        if side == 0 {
            join.waiting.push(rows);
        } else {
            join.keep_versions(rows)?;
        }
    }
    Ok(())
}
