//! Partial aggregate states by group id, readable and writable for a few groups at a time.
//!
//! DataFusion's `GroupsAccumulator` can only evaluate or export all of its groups at once, so an
//! updating aggregate that kept every group in one accumulator would pay for the whole view on
//! every refresh. Instead the settled state of each group lives here as a row of Arrow partial
//! state (the columns of `AggregateFunctionExpr::state_fields`), and a refresh reads the rows of
//! the groups it touched ([`PartialStates::gather`]) and writes their merged states back
//! ([`PartialStates::put`]).
//!
//! Writes append a segment (one per refresh) and move each written group's location to it; the
//! rows they replace become garbage. Segments are merged like a log-structured merge tree (the
//! newest two while the older is at most twice the newer), so there are O(log groups) segments,
//! and everything is compacted into one segment once garbage outgrows the live rows. Each row is
//! copied O(log groups) times over its life: the cost of a refresh stays proportional to the
//! groups it touched.

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::interleave;

use crate::error::{EngineError, Result};

/// Rows of partial state written together, with the group each row belongs to.
struct Segment {
    columns: Vec<ArrayRef>,
    owners: Vec<u32>,
}

/// Partial states of a set of groups with dense ids `0..len`; see the module docs.
pub(super) struct PartialStates {
    /// Number of state columns (the sum of every aggregate's state width).
    width: usize,
    segments: Vec<Segment>,
    /// `(segment, row)` of every group's current state, by group id.
    locations: Vec<(u32, u32)>,
    /// Rows in all segments, live or not.
    rows: usize,
}

/// Location of a group interned but not yet written.
const UNWRITTEN: (u32, u32) = (u32::MAX, u32::MAX);

impl PartialStates {
    pub(super) fn new(width: usize) -> Self {
        Self {
            width,
            segments: Vec::new(),
            locations: Vec::new(),
            rows: 0,
        }
    }

    /// The state columns of groups `ids` (each already written), in that order.
    pub(super) fn gather(&self, ids: &[usize]) -> Result<Vec<ArrayRef>> {
        let mut positions = Vec::with_capacity(ids.len());
        for &id in ids {
            match self.locations.get(id) {
                Some(&(segment, row)) if (segment, row) != UNWRITTEN => {
                    positions.push((segment as usize, row as usize));
                }
                _ => {
                    return Err(EngineError::Internal(format!(
                        "no partial state for group {id}"
                    )));
                }
            }
        }
        self.interleave_columns(&positions)
    }

    /// Writes the states of groups `ids` (row `i` of `columns` is group `ids[i]`'s state),
    /// replacing what they had. Ids at or past `len()` are new groups.
    pub(super) fn put(&mut self, ids: &[usize], columns: Vec<ArrayRef>) -> Result<()> {
        if columns.len() != self.width || columns.iter().any(|c| c.len() != ids.len()) {
            return Err(EngineError::Internal(
                "partial states of the wrong shape".into(),
            ));
        }
        if ids.is_empty() {
            return Ok(());
        }
        let segment = u32::try_from(self.segments.len())
            .map_err(|_| EngineError::Internal("too many state segments".into()))?;
        let mut owners = Vec::with_capacity(ids.len());
        for (row, &id) in ids.iter().enumerate() {
            if id >= self.locations.len() {
                self.locations.resize(id + 1, UNWRITTEN);
            }
            self.locations[id] = (segment, to_u32(row)?);
            owners.push(to_u32(id)?);
        }
        self.rows += ids.len();
        self.segments.push(Segment { columns, owners });
        self.maintain()
    }

    /// Every group's state, by id (for checkpoints).
    pub(super) fn all(&self) -> Result<Vec<ArrayRef>> {
        let ids: Vec<usize> = (0..self.locations.len()).collect();
        self.gather(&ids)
    }

    /// Bytes held by the segments and the index.
    pub(super) fn size(&self) -> usize {
        let arrays: usize = self
            .segments
            .iter()
            .flat_map(|s| s.columns.iter())
            .map(|c| c.get_array_memory_size())
            .sum();
        let owners: usize = self.segments.iter().map(|s| s.owners.capacity() * 4).sum();
        arrays + owners + self.locations.capacity() * 8
    }

    /// Merges the newest segments and compacts garbage; see the module docs.
    fn maintain(&mut self) -> Result<()> {
        if self.rows > 2 * self.locations.len() + COMPACT_SLACK {
            return self.merge_from(0);
        }
        while self.segments.len() >= 2 {
            let n = self.segments.len();
            if self.segments[n - 2].owners.len() > 2 * self.segments[n - 1].owners.len() {
                break;
            }
            self.merge_from(n - 2)?;
        }
        Ok(())
    }

    /// Replaces segments `first..` with one segment of their live rows.
    fn merge_from(&mut self, first: usize) -> Result<()> {
        let mut positions = Vec::new();
        let mut owners = Vec::new();
        for (s, segment) in self.segments.iter().enumerate().skip(first) {
            for (row, &owner) in segment.owners.iter().enumerate() {
                if self.locations[owner as usize] == (to_u32(s)?, to_u32(row)?) {
                    positions.push((s, row));
                    owners.push(owner);
                }
            }
        }
        let columns = self.interleave_columns(&positions)?;
        let removed: usize = self.segments[first..].iter().map(|s| s.owners.len()).sum();
        self.segments.truncate(first);
        let segment = to_u32(first)?;
        for (row, &owner) in owners.iter().enumerate() {
            self.locations[owner as usize] = (segment, to_u32(row)?);
        }
        self.rows = self.rows - removed + owners.len();
        self.segments.push(Segment { columns, owners });
        Ok(())
    }

    /// Column by column, the rows at `positions` (`(segment, row)`).
    fn interleave_columns(&self, positions: &[(usize, usize)]) -> Result<Vec<ArrayRef>> {
        (0..self.width)
            .map(|c| {
                let arrays: Vec<&dyn Array> = self
                    .segments
                    .iter()
                    .map(|s| s.columns[c].as_ref())
                    .collect();
                Ok(interleave(&arrays, positions)?)
            })
            .collect()
    }
}

/// Garbage tolerated beyond the live rows before a full compaction.
const COMPACT_SLACK: usize = 4096;

fn to_u32(value: usize) -> Result<u32> {
    u32::try_from(value).map_err(|_| EngineError::Internal("more than 2^32 groups".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;
    use std::sync::Arc;

    fn column(values: &[i64]) -> Vec<ArrayRef> {
        vec![Arc::new(Int64Array::from(values.to_vec()))]
    }

    fn values(columns: &[ArrayRef]) -> Vec<i64> {
        columns[0].as_primitive::<Int64Type>().values().to_vec()
    }

    #[test]
    fn gather_returns_the_newest_state_of_each_group() -> Result<()> {
        let mut states = PartialStates::new(1);
        states.put(&[0, 1, 2], column(&[10, 11, 12]))?;
        states.put(&[2, 0], column(&[22, 20]))?;
        states.put(&[3], column(&[33]))?;
        assert_eq!(values(&states.gather(&[3, 2, 1, 0])?), vec![33, 22, 11, 20]);
        assert_eq!(values(&states.all()?), vec![20, 11, 22, 33]);
        assert!(states.gather(&[4]).is_err());
        Ok(())
    }

    #[test]
    fn segments_stay_few_and_garbage_bounded_under_many_small_writes() -> Result<()> {
        let groups = 10_000;
        let mut states = PartialStates::new(1);
        let ids: Vec<usize> = (0..groups).collect();
        let zeros = vec![0; groups];
        states.put(&ids, column(&zeros))?;
        let mut expected = zeros;
        for round in 0..2_000usize {
            let touched: Vec<usize> = (0..7)
                .map(|i| (round * 7919 + i * 104_729) % groups)
                .collect();
            let mut unique = touched.clone();
            unique.sort_unstable();
            unique.dedup();
            let written: Vec<i64> = unique
                .iter()
                .map(|&id| (round * groups + id) as i64)
                .collect();
            for (&id, &v) in unique.iter().zip(&written) {
                expected[id] = v;
            }
            states.put(&unique, column(&written))?;
            assert!(
                states.segments.len() <= 40,
                "{} segments",
                states.segments.len()
            );
            assert!(states.rows <= 2 * groups + COMPACT_SLACK + unique.len());
        }
        assert_eq!(values(&states.all()?), expected);
        Ok(())
    }

    #[test]
    fn a_full_rewrite_compacts() -> Result<()> {
        let mut states = PartialStates::new(1);
        let ids: Vec<usize> = (0..10_000).collect();
        for round in 0..5 {
            states.put(&ids, column(&vec![round; 10_000]))?;
        }
        assert!(states.rows <= 2 * 10_000 + COMPACT_SLACK);
        assert_eq!(values(&states.gather(&[9_999])?), vec![4]);
        Ok(())
    }
}
