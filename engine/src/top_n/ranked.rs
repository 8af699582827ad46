//! The rows of one Top-N partition in rank order.
//!
//! Each row is held as two byte strings in Arrow's row format: its ORDER BY values (encoded with
//! the sort's direction and null placement, so byte order is rank order) and the whole row
//! (which breaks ties deterministically and is what a retraction must match). Identical rows
//! share one entry with a count.

use std::collections::BTreeMap;

use crate::changes::Op;

/// How rows are numbered within their partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankFunction {
    /// 1, 2, 3, … even for ties (ties in an order fixed by the row's values).
    RowNumber,
    /// Ties share a rank; the next distinct value skips ahead (1, 1, 3).
    Rank,
    /// Ties share a rank; the next distinct value takes the next rank (1, 1, 2).
    DenseRank,
}

impl RankFunction {
    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            RankFunction::RowNumber => "row_number",
            RankFunction::Rank => "rank",
            RankFunction::DenseRank => "dense_rank",
        }
    }
}

/// A row of a partition's output: one downstream no longer holds (moved out of what it
/// held), or the one at a position of a partition's `emitted` (by partition id).
pub(crate) enum Emitted {
    Owned(Box<[u8]>),
    At(usize, usize),
}

/// A held row: how many copies, and where its ORDER BY bytes end within its key (the key is
/// the ORDER BY values' bytes followed by the whole row's; Arrow's row format is prefix-free,
/// so comparing keys compares (ORDER BY values, whole row) as a pair).
#[derive(Debug, Clone, Copy)]
struct Held {
    count: u32,
    sort_len: u32,
}

/// One partition's rows, ordered by rank, and the top rows as last emitted.
#[derive(Debug, Default)]
pub(crate) struct Ranked {
    rows: BTreeMap<Box<[u8]>, Held>,
    /// Copies held (sum of counts).
    held: usize,
    /// Bytes held by the encoded rows.
    bytes: usize,
    /// The whole rows and ranks downstream holds for this partition, in rank order.
    emitted: Vec<(Box<[u8]>, u64)>,
    /// Bytes of `emitted`'s rows.
    emitted_bytes: usize,
    /// The key, ORDER BY length and rank of the last row of `emitted` (None: nothing emitted
    /// yet, or not tracked: any change may change the top).
    emitted_last: Option<(Box<[u8]>, usize, u64)>,
    /// A change in the current batch may have changed the top.
    pub(crate) dirty: bool,
    /// The last batch that touched this partition (to list each touched partition once).
    pub(crate) touched_in: u64,
}

/// The key of a row: ORDER BY bytes then whole-row bytes, built in a reused buffer.
pub(crate) fn key_into<'a>(buffer: &'a mut Vec<u8>, sort: &[u8], row: &[u8]) -> &'a [u8] {
    buffer.clear();
    buffer.extend_from_slice(sort);
    buffer.extend_from_slice(row);
    buffer
}

impl Ranked {
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.held == 0
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes + self.emitted_bytes
    }

    /// The whole row at `position` of what downstream holds.
    pub(crate) fn emitted_row(&self, position: usize) -> &[u8] {
        self.emitted.get(position).map_or(&[], |(row, _)| &**row)
    }

    /// Brings what downstream holds up to date with the current top, pushing each change
    /// (position by position: a changed position is an update pair) onto `changed` as
    /// `(op, row, rank)`; `id` is this partition's id, for rows that stay in `emitted`.
    pub(crate) fn refresh_emitted(
        &mut self,
        function: RankFunction,
        limit: u64,
        id: usize,
        changed: &mut Vec<(Op, Emitted, u64)>,
    ) {
        let top = top_of(&self.rows, function, limit);
        self.emitted_last = top
            .last()
            .map(|(key, sort_len, rank)| ((*key).into(), *sort_len, *rank));
        let top: Vec<(&[u8], u64)> = top
            .into_iter()
            .map(|(key, sort_len, rank)| (&key[sort_len..], rank))
            .collect();
        let unchanged = top.len() == self.emitted.len()
            && top
                .iter()
                .zip(&self.emitted)
                .all(|((row, rank), (old, old_rank))| *row == &**old && rank == old_rank);
        if unchanged {
            return;
        }
        let mut old = std::mem::take(&mut self.emitted).into_iter();
        for (position, (row, rank)) in top.into_iter().enumerate() {
            match old.next() {
                // Unchanged: the row downstream holds stays, without a copy.
                Some((o, orank)) if &*o == row && orank == rank => {
                    self.emitted.push((o, orank));
                    continue;
                }
                Some((o, orank)) => {
                    changed.push((Op::UpdateBefore, Emitted::Owned(o), orank));
                    changed.push((Op::UpdateAfter, Emitted::At(id, position), rank));
                }
                None => changed.push((Op::Insert, Emitted::At(id, position), rank)),
            }
            self.emitted.push((row.into(), rank));
        }
        changed.extend(old.map(|(o, orank)| (Op::Delete, Emitted::Owned(o), orank)));
        self.emitted_bytes = self.emitted.iter().map(|(row, _)| row.len()).sum();
    }

    /// Downstream holds the current top (restored from a checkpoint taken after it was sent).
    pub(crate) fn mark_emitted(&mut self, function: RankFunction, limit: u64) {
        let top = top_of(&self.rows, function, limit);
        self.emitted_last = top
            .last()
            .map(|(key, sort_len, rank)| ((*key).into(), *sort_len, *rank));
        self.emitted = top
            .into_iter()
            .map(|(key, sort_len, rank)| (key[sort_len..].into(), rank))
            .collect();
        self.dirty = false;
        self.emitted_bytes = self.emitted.iter().map(|(row, _)| row.len()).sum();
    }

    /// Every held whole row with its count, in rank order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&[u8], u32)> {
        self.rows
            .iter()
            .map(|(key, held)| (&key[held.sort_len as usize..], held.count))
    }

    /// Adds `count` copies of the row whose key is `key` (ORDER BY bytes: the first `sort_len`).
    pub(crate) fn insert(&mut self, key: &[u8], sort_len: usize, count: u32) {
        // One search: a new row (the common case) needs its owned key anyway.
        match self.rows.entry(key.into()) {
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().count += count,
            std::collections::btree_map::Entry::Vacant(e) => {
                self.bytes += key.len();
                e.insert(Held {
                    count,
                    sort_len: sort_len as u32,
                });
            }
        }
        self.held += count as usize;
    }

    /// Removes one copy of a row; false when the row is not held.
    pub(crate) fn remove(&mut self, key: &[u8]) -> bool {
        // One search when the row had one copy (the common case).
        let Some((owned, mut held)) = self.rows.remove_entry(key) else {
            return false;
        };
        self.held -= 1;
        if held.count > 1 {
            held.count -= 1;
            self.rows.insert(owned, held);
        } else {
            self.bytes -= key.len();
        }
        true
    }

    /// True when a new row could not enter the top `limit` of an append-only partition: the
    /// partition already fills every rank up to the limit and the row orders after its last row
    /// (for RANK and DENSE_RANK, strictly after: a tie with the last row shares its rank).
    pub(crate) fn rejects(
        &self,
        function: RankFunction,
        limit: u64,
        key: &[u8],
        sort_len: usize,
    ) -> bool {
        let Some((last, held)) = self.rows.last_key_value() else {
            return false;
        };
        let filled = match function {
            RankFunction::RowNumber | RankFunction::Rank => self.held as u64 >= limit,
            RankFunction::DenseRank => {
                self.rows.len() as u64 >= limit && self.distinct_sorts(limit) >= limit
            }
        };
        filled
            && match function {
                RankFunction::RowNumber => key > &**last,
                RankFunction::Rank | RankFunction::DenseRank => {
                    key[..sort_len] > last[..held.sort_len as usize]
                }
            }
    }

    /// Distinct ORDER BY values, counting up to `cap`.
    fn distinct_sorts(&self, cap: u64) -> u64 {
        let mut distinct = 0u64;
        let mut previous: Option<&[u8]> = None;
        for (key, held) in &self.rows {
            let sort = &key[..held.sort_len as usize];
            if previous != Some(sort) {
                distinct += 1;
                if distinct >= cap {
                    break;
                }
                previous = Some(sort);
            }
        }
        distinct
    }

    /// The whole rows ranked `limit` or better, each copy with its rank, in rank order.
    pub(crate) fn top(&self, function: RankFunction, limit: u64) -> Vec<(&[u8], u64)> {
        top_of(&self.rows, function, limit)
            .into_iter()
            .map(|(key, sort_len, rank)| (&key[sort_len..], rank))
            .collect()
    }

    /// True when a change to the row with `key` can change the top `limit` downstream holds:
    /// unless its ranks are all taken and the row orders after the last of them (for RANK and
    /// DENSE_RANK, strictly after its ORDER BY values: a tie shares the rank).
    pub(crate) fn may_change_top(
        &self,
        function: RankFunction,
        limit: u64,
        key: &[u8],
        sort_len: usize,
    ) -> bool {
        let Some((last, last_sort_len, last_rank)) = &self.emitted_last else {
            return true;
        };
        let full = match function {
            RankFunction::RowNumber | RankFunction::Rank => self.emitted.len() as u64 >= limit,
            RankFunction::DenseRank => *last_rank >= limit,
        };
        !full
            || match function {
                RankFunction::RowNumber => key <= &**last,
                RankFunction::Rank | RankFunction::DenseRank => {
                    key[..sort_len] <= last[..*last_sort_len]
                }
            }
    }

    /// Drops every copy ranked after `limit` (an append-only partition: such a row can never
    /// rise again, since rows are only added).
    pub(crate) fn prune(&mut self, function: RankFunction, limit: u64) {
        let mut remaining = top_of(&self.rows, function, limit).len();
        if remaining == self.held {
            return;
        }
        // The last entry kept, and how many of its copies.
        let mut last: Option<(Box<[u8]>, Held)> = None;
        for (key, held) in &self.rows {
            if remaining == 0 {
                break;
            }
            let take = (held.count as usize).min(remaining);
            remaining -= take;
            last = Some((
                key.clone(),
                Held {
                    count: take as u32,
                    sort_len: held.sort_len,
                },
            ));
        }
        match last {
            Some((key, held)) => {
                drop(self.rows.split_off(&key));
                self.rows.insert(key, held);
            }
            None => self.rows.clear(),
        }
        self.held = self.rows.values().map(|h| h.count as usize).sum();
        self.bytes = self.rows.keys().map(|k| k.len()).sum();
    }
}

/// The rows of `rows` ranked `limit` or better, each copy as (key, ORDER BY length, rank), in
/// rank order.
fn top_of(
    rows: &BTreeMap<Box<[u8]>, Held>,
    function: RankFunction,
    limit: u64,
) -> Vec<(&[u8], usize, u64)> {
    let mut out = Vec::with_capacity(limit.min(64) as usize);
    let mut position = 0u64;
    let mut dense = 0u64;
    let mut rank = 0u64;
    let mut previous: Option<&[u8]> = None;
    'entries: for (key, held) in rows {
        let sort = &key[..held.sort_len as usize];
        // Only RANK and DENSE_RANK look at ties.
        if function != RankFunction::RowNumber && previous != Some(sort) {
            dense += 1;
            rank = position + 1;
            previous = Some(sort);
        }
        for _ in 0..held.count {
            position += 1;
            let r = match function {
                RankFunction::RowNumber => position,
                RankFunction::Rank => rank,
                RankFunction::DenseRank => dense,
            };
            if r > limit {
                break 'entries;
            }
            out.push((&**key, held.sort_len as usize, r));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(rows: &[(u8, u8)]) -> Ranked {
        let mut r = Ranked::default();
        for (sort, row) in rows {
            r.insert(&[*sort, *row], 1, 1);
        }
        r
    }

    fn ranks(r: &Ranked, function: RankFunction, limit: u64) -> Vec<(u8, u64)> {
        r.top(function, limit)
            .into_iter()
            .map(|(row, rank)| (row[0], rank))
            .collect()
    }

    #[test]
    fn ranks_ties_as_sql_does() {
        let r = ranked(&[(1, 10), (2, 20), (2, 21), (3, 30)]);
        assert_eq!(
            ranks(&r, RankFunction::RowNumber, 10),
            vec![(10, 1), (20, 2), (21, 3), (30, 4)]
        );
        assert_eq!(
            ranks(&r, RankFunction::Rank, 10),
            vec![(10, 1), (20, 2), (21, 2), (30, 4)]
        );
        assert_eq!(
            ranks(&r, RankFunction::DenseRank, 10),
            vec![(10, 1), (20, 2), (21, 2), (30, 3)]
        );
        // The limit keeps every tie of the last rank.
        assert_eq!(ranks(&r, RankFunction::Rank, 2).len(), 3);
        assert_eq!(ranks(&r, RankFunction::RowNumber, 2).len(), 2);
    }

    #[test]
    fn duplicates_are_counted_and_removed_one_at_a_time() {
        let mut r = Ranked::default();
        r.insert(&[1, 7], 1, 1);
        r.insert(&[1, 7], 1, 1);
        assert_eq!(ranks(&r, RankFunction::RowNumber, 5), vec![(7, 1), (7, 2)]);
        assert!(r.remove(&[1, 7]));
        assert_eq!(ranks(&r, RankFunction::RowNumber, 5), vec![(7, 1)]);
        assert!(r.remove(&[1, 7]));
        assert!(!r.remove(&[1, 7]));
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn prune_keeps_exactly_the_top_and_rejects_what_cannot_enter() {
        let mut r = ranked(&[(5, 50), (1, 10), (3, 30), (3, 31), (9, 90)]);
        r.insert(&[1, 10], 1, 1);
        r.prune(RankFunction::RowNumber, 3);
        assert_eq!(
            ranks(&r, RankFunction::RowNumber, 10),
            vec![(10, 1), (10, 2), (30, 3)]
        );
        assert!(r.rejects(RankFunction::RowNumber, 3, &[4, 0], 1));
        assert!(r.rejects(RankFunction::RowNumber, 3, &[3, 31], 1));
        assert!(!r.rejects(RankFunction::RowNumber, 3, &[2, 0], 1));

        let mut r = ranked(&[(1, 10), (3, 30), (3, 31), (9, 90)]);
        r.prune(RankFunction::Rank, 2);
        assert_eq!(
            ranks(&r, RankFunction::Rank, 10),
            vec![(10, 1), (30, 2), (31, 2)]
        );
        assert!(
            !r.rejects(RankFunction::Rank, 2, &[3, 99], 1),
            "a tie shares rank 2"
        );
        assert!(r.rejects(RankFunction::Rank, 2, &[4, 0], 1));

        let mut r = ranked(&[(1, 10), (1, 11), (3, 30), (9, 90)]);
        r.prune(RankFunction::DenseRank, 2);
        assert_eq!(
            ranks(&r, RankFunction::DenseRank, 10),
            vec![(10, 1), (11, 1), (30, 2)]
        );
        assert!(r.rejects(RankFunction::DenseRank, 2, &[5, 0], 1));
        assert!(!r.rejects(RankFunction::DenseRank, 2, &[2, 0], 1));
    }
}
