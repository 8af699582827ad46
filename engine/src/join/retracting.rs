//! Joins whose output retracts: regular joins over updating inputs (a table, an updating view or
//! aggregate), and outer, semi and anti joins without a time bound, whose unmatched rows come
//! out at once and are taken back when a match arrives.
//!
//! A delta join: a batch of changes from one input is probed against the other input's held
//! rows (vectorised, as in the append-only join), and the matched pairs are walked in row order
//! to keep each held row's *degree* (how many rows of the other input it joins):
//!
//! - an insert emits `+I` for each pair; a retraction emits `-D` for each pair it made;
//! - a preserved row whose degree leaves 0 takes back its NULL-padded row (`-D`), and one whose
//!   degree returns to 0 puts it back (`+I`); a new or retracted preserved row without matches
//!   emits or takes back its padded row itself;
//! - semi joins emit a left row when its degree leaves 0 and take it back when it returns; anti
//!   joins the opposite.
//!
//! Retractions first take out their held copy (same key, same full-row hash, equal columns), or
//! cancel an insert of the same row earlier in the batch. Updates come out as `-D`/`+I`, never
//! as `U-`/`U+` pairs, which is always a valid changelog whatever the output's key.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, UInt8Array, UInt32Array,
};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::common::hash_utils::{RandomState, create_hashes};

use super::keys::NO_KEY;
use super::output::{gather_from, take_rows};
use super::side::Position;
use super::{JoinKind, OUTPUT_ROWS, StreamJoin};
use crate::changes::{Changes, Op};
use crate::error::{EngineError, Result};
use crate::operator::Collector;

/// The changes a batch makes, before their rows are gathered: for each output row its op, the
/// probing batch's row and the other input's held row (None: that side's columns are NULL).
#[derive(Default)]
struct Plan {
    ops: Vec<u8>,
    this: Vec<Option<u32>>,
    other: Vec<Option<Position>>,
}

impl Plan {
    fn push(&mut self, op: Op, this: Option<u32>, other: Option<Position>) {
        self.ops.push(op as u8);
        self.this.push(this);
        self.other.push(other);
    }
}

impl StreamJoin {
    /// Full-row hashes of `rows` of input `side`, if that input's rows can be retracted.
    pub(super) fn row_hashes(&self, side: usize, rows: &RecordBatch) -> Result<Vec<u64>> {
        if !self.spec.updating[side] {
            return Ok(Vec::new());
        }
        let mut hashes = vec![0u64; rows.num_rows()];
        create_hashes(rows.columns(), &RandomState::with_seed(0), &mut hashes)?;
        Ok(hashes)
    }

    /// Applies a batch of changes from input `side`; see the module docs.
    pub(super) fn process_changes(
        &mut self,
        side: usize,
        changes: Changes,
        out: &mut Collector,
    ) -> Result<()> {
        let (rows, ops) = changes.into_parts();
        let n = rows.num_rows();
        if n == 0 {
            return Ok(());
        }
        let retracts: Vec<bool> = match &ops {
            Some(ops) => ops.values().iter().map(|&op| op & 1 == 1).collect(),
            None => vec![false; n],
        };
        if !self.spec.updating[side] && retracts.iter().any(|&r| r) {
            return Err(EngineError::Internal(
                "an append-only join input retracted a row".into(),
            ));
        }
        let ids = self.key_ids(side, &rows)?;
        let hashes = self.row_hashes(side, &rows)?;
        let (keep, hold) = self.take_out_retracted(side, &rows, &ids, &hashes, &retracts)?;

        // Candidate pairs with the other input's held rows, then the rest of ON over them.
        let other = 1 - side;
        let mut probe: Vec<u32> = Vec::new();
        let mut partners: Vec<Position> = Vec::new();
        for (row, &id) in ids.iter().enumerate() {
            if id == NO_KEY || !keep[row] {
                continue;
            }
            for &p in self.sides[other].positions(id as usize) {
                probe.push(row as u32);
                partners.push(p);
            }
        }
        let (probe, partners) = self.passing_pairs(side, &rows, probe, partners)?;

        let mut plan = Plan::default();
        let mut degrees = vec![0u32; n];
        let kind = self.spec.kind;
        let mut next = 0;
        for row in 0..n {
            let start = next;
            while next < probe.len() && probe[next] as usize == row {
                next += 1;
            }
            if !keep[row] {
                continue;
            }
            let matches = &partners[start..next];
            degrees[row] = matches.len() as u32;
            let op = if retracts[row] {
                Op::Delete
            } else {
                Op::Insert
            };
            for &m in matches {
                let degree = self.sides[other].degree_mut(m)?;
                let before = *degree;
                *degree = if retracts[row] {
                    degree.saturating_sub(1)
                } else {
                    degree.saturating_add(1)
                };
                let turned = (before == 0) != (*degree == 0);
                // A held row that starts matching loses its padded row before its first pair;
                // one that stops matching gets it back after its last pair goes.
                if turned && !retracts[row] {
                    self.matched_changed(other, m, true, &mut plan);
                }
                if !kind.left_only() {
                    plan.push(op, Some(row as u32), Some(m));
                }
                if turned && retracts[row] {
                    self.matched_changed(other, m, false, &mut plan);
                }
            }
            let alone = if matches.is_empty() {
                kind.preserves(side)
            } else {
                kind == JoinKind::Semi && side == 0
            };
            if alone {
                plan.push(op, Some(row as u32), None);
            }
        }

        // Inserts are held (with their degrees) for rows of the other input still to come.
        if hold.iter().any(|&h| h) {
            let mask = BooleanArray::from(hold.clone());
            let held = filter_record_batch(&rows, &mask)?;
            let pick = |values: &[u32]| -> Vec<u32> {
                values
                    .iter()
                    .zip(&hold)
                    .filter(|(_, h)| **h)
                    .map(|(v, _)| *v)
                    .collect()
            };
            let held_hashes = hashes
                .iter()
                .zip(&hold)
                .filter(|(_, h)| **h)
                .map(|(v, _)| *v)
                .collect();
            self.sides[side].push(held, pick(&ids), pick(&degrees), held_hashes)?;
        }
        self.emit_plan(side, &rows, &plan, out)?;
        let keys = self.keys.len();
        self.sides[side].compact(keys, false)?;
        self.maybe_rebuild()
    }

    /// Takes the held copy of each retracted row out of input `side`'s rows (or cancels an
    /// insert of the same row earlier in the batch). Returns which rows take part (a retraction
    /// whose row expired under a TTL does not) and which inserts are to be held.
    fn take_out_retracted(
        &mut self,
        side: usize,
        rows: &RecordBatch,
        ids: &[u32],
        hashes: &[u64],
        retracts: &[bool],
    ) -> Result<(Vec<bool>, Vec<bool>)> {
        let n = rows.num_rows();
        let mut keep = vec![true; n];
        // Rows with a NULL key match nothing and are not held: their own output is all they make.
        let mut hold: Vec<bool> = (0..n).map(|r| ids[r] != NO_KEY && !retracts[r]).collect();
        if !retracts.iter().any(|&r| r) {
            return Ok((keep, hold));
        }
        let mut inserted: HashMap<u64, Vec<usize>> = HashMap::new();
        for row in 0..n {
            if ids[row] == NO_KEY {
                continue;
            }
            if !retracts[row] {
                inserted.entry(hashes[row]).or_default().push(row);
                continue;
            }
            if let Some(earlier) = inserted.get_mut(&hashes[row]) {
                let mut same = None;
                for (index, &r) in earlier.iter().enumerate() {
                    if super::side::rows_equal(rows, r, rows, row)? {
                        same = Some(index);
                        break;
                    }
                }
                if let Some(index) = same {
                    hold[earlier.swap_remove(index)] = false;
                    continue;
                }
            }
            if !self.sides[side].remove(ids[row], hashes[row], rows, row)? {
                if self.spec.ttl.is_none() {
                    return Err(EngineError::Internal(format!(
                        "a join input retracted a row it never inserted (input {side})"
                    )));
                }
                // Gone under the TTL: its pairs were never taken back either.
                keep[row] = false;
                self.ttl_misses += 1;
            }
        }
        Ok((keep, hold))
    }

    /// The pairs that pass the rest of `ON` (evaluated over joined rows in slices).
    fn passing_pairs(
        &self,
        side: usize,
        rows: &RecordBatch,
        probe: Vec<u32>,
        partners: Vec<Position>,
    ) -> Result<(Vec<u32>, Vec<Position>)> {
        let Some(filter) = &self.spec.filter else {
            return Ok((probe, partners));
        };
        let mut kept_probe = Vec::with_capacity(probe.len());
        let mut kept_partners = Vec::with_capacity(partners.len());
        for (probe_part, partner_part) in
            probe.chunks(OUTPUT_ROWS).zip(partners.chunks(OUTPUT_ROWS))
        {
            let this = take_rows(rows, probe_part)?.columns().to_vec();
            let held = self.sides[1 - side]
                .gather(partner_part)?
                .columns()
                .to_vec();
            let (left, right) = if side == 0 {
                (this, held)
            } else {
                (held, this)
            };
            let joined = RecordBatch::try_new(
                Arc::clone(&self.spec.joined_schema),
                left.into_iter().chain(right).collect(),
            )?;
            let mask = filter.evaluate(&joined)?.into_array(joined.num_rows())?;
            let mask = mask
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| EngineError::Internal("a join condition is not boolean".into()))?;
            for (i, (&p, &q)) in probe_part.iter().zip(partner_part).enumerate() {
                if mask.is_valid(i) && mask.value(i) {
                    kept_probe.push(p);
                    kept_partners.push(q);
                }
            }
        }
        Ok((kept_probe, kept_partners))
    }

    /// A held row of input `side` started (`matched`) or stopped matching: its padded row (outer
    /// and anti joins) goes or comes back, a semi join's left row comes or goes.
    fn matched_changed(&self, side: usize, at: Position, matched: bool, plan: &mut Plan) {
        let kind = self.spec.kind;
        let (gain, lose) = if kind == JoinKind::Semi && side == 0 {
            (Op::Insert, Op::Delete)
        } else if kind.preserves(side) {
            (Op::Delete, Op::Insert)
        } else {
            return;
        };
        plan.push(if matched { gain } else { lose }, None, Some(at));
    }

    /// Gathers the planned rows: the probing batch's columns by `take` (NULL where absent), the
    /// other input's by `interleave` over its chunks and a one-row NULL column.
    fn emit_plan(
        &self,
        side: usize,
        rows: &RecordBatch,
        plan: &Plan,
        out: &mut Collector,
    ) -> Result<()> {
        let other = &self.sides[1 - side];
        let left_only = self.spec.kind.left_only();
        for start in (0..plan.ops.len()).step_by(OUTPUT_ROWS) {
            let end = (start + OUTPUT_ROWS).min(plan.ops.len());
            let this_at = UInt32Array::from(plan.this[start..end].to_vec());
            let this: Vec<ArrayRef> = rows
                .columns()
                .iter()
                .map(|c| take(c, &this_at, None))
                .collect::<std::result::Result<_, _>>()?;
            let held = gather_from(
                &other.schema,
                &|seq| other.chunk(seq).map(|c| &c.rows),
                &plan.other[start..end],
            )?;
            let columns = match (side, left_only) {
                (0, true) => this,
                (_, true) => held,
                (0, false) => this.into_iter().chain(held).collect(),
                _ => held.into_iter().chain(this).collect(),
            };
            let batch = RecordBatch::try_new(Arc::clone(&self.spec.output_schema), columns)?;
            let ops = UInt8Array::from(plan.ops[start..end].to_vec());
            out.changes(Changes::try_new(batch, ops)?);
        }
        Ok(())
    }
}
