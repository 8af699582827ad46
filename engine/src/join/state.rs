//! A join's state in checkpoints: the live rows each input holds, in one table (the input, the
//! chunk they arrived in, how many rows of the other input each joins, then the left columns and
//! the right columns, the other input's NULL). Key lists and row hashes are rebuilt on restore.
//! (Checkpoints written before joins retracted have a boolean "joined" column instead of the
//! degree; it restores as degree 0 or 1, which is what an append-only join reads.)

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int8Array, RecordBatch, UInt32Array, UInt64Array,
    new_null_array,
};
use datafusion::arrow::compute::{cast, concat_batches, filter, filter_record_batch};
use datafusion::arrow::datatypes::{
    DataType, Field, Int8Type, Schema, SchemaRef, UInt32Type, UInt64Type,
};

use super::StreamJoin;
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};

const SIDE: &str = "__weir_side";
const CHUNK: &str = "__weir_chunk";
const DEGREE: &str = "__weir_degree";
const WATERMARK: &str = "watermark";
const EMITTED_WATERMARK: &str = "emitted_watermark";

fn state_schema(join: &StreamJoin) -> SchemaRef {
    let mut fields = vec![
        Field::new(SIDE, DataType::Int8, false),
        Field::new(CHUNK, DataType::UInt64, false),
        Field::new(DEGREE, DataType::UInt32, false),
    ];
    for side in &join.sides {
        fields.extend(
            side.schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
    }
    Arc::new(Schema::new(fields))
}

pub(super) fn snapshot(join: &StreamJoin) -> Result<OperatorState> {
    let schema = state_schema(join);
    let mut batches = Vec::new();
    for (index, side) in join.sides.iter().enumerate() {
        for (offset, chunk) in side.chunks.iter().enumerate() {
            let live = BooleanArray::from(chunk.live.clone());
            let held = filter_record_batch(&chunk.rows, &live)?;
            let degrees = filter(&UInt32Array::from(chunk.degrees.clone()), &live)?;
            let rows = held.num_rows();
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(Int8Array::from_value(index as i8, rows)),
                Arc::new(UInt64Array::from_value(offset as u64, rows)),
                degrees,
            ];
            for (other, s) in join.sides.iter().enumerate() {
                if other == index {
                    columns.extend(held.columns().iter().cloned());
                } else {
                    columns.extend(
                        s.schema
                            .fields()
                            .iter()
                            .map(|f| new_null_array(f.data_type(), rows)),
                    );
                }
            }
            batches.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
        }
    }
    let mut values = BTreeMap::new();
    if let Some(wm) = join.watermark {
        values.insert(WATERMARK.to_string(), wm);
    }
    if let Some(wm) = join.emitted_watermark {
        values.insert(EMITTED_WATERMARK.to_string(), wm);
    }
    Ok(OperatorState {
        schema: Some(schema),
        batches,
        values,
    })
}

pub(super) fn restore(join: &mut StreamJoin, state: OperatorState) -> Result<()> {
    join.watermark = state.values.get(WATERMARK).copied();
    join.emitted_watermark = state.values.get(EMITTED_WATERMARK).copied();
    if state.batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(());
    }
    let schema = state_schema(join);
    let batches = state
        .batches
        .iter()
        .map(|b| with_degrees(b, &schema))
        .collect::<Result<Vec<_>>>()?;
    let all = concat_batches(&schema, &batches)?;
    let sides = all.column(0).as_primitive::<Int8Type>().clone();
    let widths = [
        join.sides[0].schema.fields().len(),
        join.sides[1].schema.fields().len(),
    ];
    for side in 0..2 {
        let mine: BooleanArray = sides.iter().map(|s| Some(s == Some(side as i8))).collect();
        let rows = filter_record_batch(&all, &mine)?;
        if rows.num_rows() == 0 {
            continue;
        }
        let chunks = rows.column(1).as_primitive::<UInt64Type>().clone();
        let degrees = rows.column(2).as_primitive::<UInt32Type>().clone();
        let first = 3 + if side == 0 { 0 } else { widths[0] };
        let columns: Vec<ArrayRef> = rows.columns()[first..first + widths[side]].to_vec();
        let side_rows = RecordBatch::try_new(Arc::clone(&join.sides[side].schema), columns)
            .map_err(|e| EngineError::Storage(format!("join state of the wrong shape: {e}")))?;
        // Runs of one chunk become a chunk again (so rows leave as they would have).
        let mut start = 0;
        while start < side_rows.num_rows() {
            let chunk = chunks.value(start);
            let mut end = start + 1;
            while end < side_rows.num_rows() && chunks.value(end) == chunk {
                end += 1;
            }
            let part = side_rows.slice(start, end - start);
            let counts = degrees.values()[start..end].to_vec();
            let ids = join.key_ids(side, &part)?;
            let hashes = join.row_hashes(side, &part)?;
            join.sides[side].push(part, ids, counts, hashes)?;
            start = end;
        }
    }
    Ok(())
}

/// A state batch with its third column as degrees (older checkpoints: a boolean "joined").
fn with_degrees(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    if let Some(column) = columns.get_mut(2)
        && column.data_type() == &DataType::Boolean
    {
        *column = cast(column, &DataType::UInt32)?;
    }
    RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(|e| EngineError::Storage(format!("join state of the wrong shape: {e}")))
}
