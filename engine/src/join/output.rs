//! Building a join's output: matched pairs gathered from the probing batch and the other input's
//! held chunks, the rest of `ON` applied, and NULL-padded rows of preserved inputs.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{filter_record_batch, interleave, take};
use datafusion::arrow::datatypes::SchemaRef;

use super::StreamJoin;
use super::side::{Chunk, JoinSide, Position};
use crate::error::{EngineError, Result};
use crate::operator::Collector;

impl StreamJoin {
    /// Emits the joined rows of `probe_rows` (of `rows`, from input `side`) and their partners
    /// held by the other input that pass the rest of `ON`, counting who joined.
    pub(super) fn emit_pairs(
        &mut self,
        side: usize,
        rows: &RecordBatch,
        probe_rows: &[u32],
        partners: &[Position],
        degrees: &mut [u32],
        out: &mut Collector,
    ) -> Result<()> {
        if probe_rows.is_empty() {
            return Ok(());
        }
        let probe = take_rows(rows, probe_rows)?;
        let other = &self.sides[1 - side];
        let partner_columns = other.gather(partners)?.columns().to_vec();
        let (left, right) = if side == 0 {
            (probe.columns().to_vec(), partner_columns)
        } else {
            (partner_columns, probe.columns().to_vec())
        };
        let joined = RecordBatch::try_new(
            Arc::clone(&self.spec.joined_schema),
            left.into_iter().chain(right).collect(),
        )?;
        let (joined, passed) = match &self.spec.filter {
            Some(filter) => {
                let mask = filter.evaluate(&joined)?.into_array(joined.num_rows())?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| EngineError::Internal("a join condition is not boolean".into()))?
                    .clone();
                (filter_record_batch(&joined, &mask)?, Some(mask))
            }
            None => (joined, None),
        };
        let joined_at = |i: usize| passed.as_ref().is_none_or(|m| m.is_valid(i) && m.value(i));
        if self.spec.kind.left_only() {
            return self.left_matches(side, rows, probe_rows, partners, degrees, &joined_at, out);
        }
        if self.spec.kind.preserves(side) {
            for (i, &row) in probe_rows.iter().enumerate() {
                if joined_at(i) {
                    degrees[row as usize] = degrees[row as usize].saturating_add(1);
                }
            }
        }
        if self.spec.kind.preserves(1 - side) {
            let other = &mut self.sides[1 - side];
            for (i, p) in partners.iter().enumerate() {
                if joined_at(i)
                    && let Some(chunk) = other.chunk_mut(p.seq)
                    && let Some(d) = chunk.degrees.get_mut(p.row as usize)
                {
                    *d = d.saturating_add(1);
                }
            }
        }
        // The output schema: the joined columns, nullable where an outer join pads them.
        out.data(RecordBatch::try_new(
            Arc::clone(&self.spec.output_schema),
            joined.columns().to_vec(),
        )?);
        Ok(())
    }

    /// Semi and anti joins: marks the left rows that joined; a semi join emits the ones that
    /// joined for the first time (each left row comes out once).
    #[allow(clippy::too_many_arguments)]
    fn left_matches(
        &mut self,
        side: usize,
        rows: &RecordBatch,
        probe_rows: &[u32],
        partners: &[Position],
        degrees: &mut [u32],
        joined_at: &dyn Fn(usize) -> bool,
        out: &mut Collector,
    ) -> Result<()> {
        let semi = self.spec.kind == super::JoinKind::Semi;
        if side == 0 {
            let mut first: Vec<u32> = Vec::new();
            for (i, &row) in probe_rows.iter().enumerate() {
                if joined_at(i) && degrees[row as usize] == 0 {
                    degrees[row as usize] = 1;
                    first.push(row);
                }
            }
            if semi && !first.is_empty() {
                out.data(take_rows(rows, &first)?);
            }
            return Ok(());
        }
        let left = &mut self.sides[0];
        let mut first: Vec<Position> = Vec::new();
        for (i, p) in partners.iter().enumerate() {
            if joined_at(i)
                && let Some(chunk) = left.chunk_mut(p.seq)
                && let Some(d) = chunk.degrees.get_mut(p.row as usize)
                && *d == 0
            {
                *d = 1;
                first.push(*p);
            }
        }
        if semi && !first.is_empty() {
            out.data(left.gather(&first)?);
        }
        Ok(())
    }

    /// Rows of input `side` with the other input's columns NULL.
    pub(super) fn padded(&self, side: usize, rows: &RecordBatch) -> Result<RecordBatch> {
        if self.spec.kind.left_only() {
            // An anti join's unmatched left rows come out as they are.
            return Ok(RecordBatch::try_new(
                Arc::clone(&self.spec.output_schema),
                rows.columns().to_vec(),
            )?);
        }
        let other = &self.sides[1 - side].schema;
        let nulls: Vec<ArrayRef> = other
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), rows.num_rows()))
            .collect();
        let columns: Vec<ArrayRef> = if side == 0 {
            rows.columns().iter().cloned().chain(nulls).collect()
        } else {
            nulls
                .into_iter()
                .chain(rows.columns().iter().cloned())
                .collect()
        };
        Ok(RecordBatch::try_new(
            Arc::clone(&self.spec.output_schema),
            columns,
        )?)
    }

    /// Rows of gone chunks that never joined, for preserved sides.
    pub(super) fn emit_unmatched(
        &self,
        side: usize,
        chunks: &[Chunk],
        out: &mut Collector,
    ) -> Result<()> {
        if !self.spec.kind.preserves(side) {
            return Ok(());
        }
        for chunk in chunks {
            if let Some(rows) = JoinSide::unmatched(chunk)? {
                out.data(self.padded(side, &rows)?);
            }
        }
        Ok(())
    }
}

/// `rows` at `indices`.
pub(super) fn take_rows(rows: &RecordBatch, indices: &[u32]) -> Result<RecordBatch> {
    let indices = UInt32Array::from(indices.to_vec());
    let columns = rows
        .columns()
        .iter()
        .map(|c| take(c, &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(rows.schema(), columns)?)
}

/// Columns of rows of `batches` at `positions`, NULL where a position is None (one `interleave`
/// per column over the batches and a one-row NULL column).
pub(super) fn gather_or_null(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    positions: &[Option<Position>],
) -> Result<Vec<ArrayRef>> {
    gather_from(schema, &|seq| batches.get(seq as usize), positions)
}

/// [`gather_or_null`] over batches found by a sequence number.
pub(super) fn gather_from<'a>(
    schema: &SchemaRef,
    batch: &dyn Fn(u64) -> Option<&'a RecordBatch>,
    positions: &[Option<Position>],
) -> Result<Vec<ArrayRef>> {
    let mut local: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut sources: Vec<&RecordBatch> = Vec::new();
    let mut indices = Vec::with_capacity(positions.len());
    for p in positions {
        indices.push(match p {
            Some(p) => {
                let index = match local.get(&p.seq) {
                    Some(&i) => i,
                    None => {
                        let rows = batch(p.seq).ok_or_else(|| {
                            EngineError::Internal("a held join row is gone".into())
                        })?;
                        sources.push(rows);
                        local.insert(p.seq, sources.len() - 1);
                        sources.len() - 1
                    }
                };
                (index, p.row as usize)
            }
            // The NULL row comes after the batches.
            None => (usize::MAX, 0),
        });
    }
    let null_source = sources.len();
    for index in &mut indices {
        if index.0 == usize::MAX {
            index.0 = null_source;
        }
    }
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(column, field)| {
            let null = new_null_array(field.data_type(), 1);
            let mut arrays: Vec<&dyn Array> =
                sources.iter().map(|b| b.column(column).as_ref()).collect();
            arrays.push(null.as_ref());
            Ok(interleave(&arrays, &indices)?)
        })
        .collect()
}
