//! The rows of one Top-N partition in rank order.
//!
//! Each row is held as two byte strings in Arrow's row format: its ORDER BY values (encoded with
//! the sort's direction and null placement, so byte order is rank order) and the whole row
//! (which breaks ties deterministically and is what a retraction must match). Identical rows
//! share one entry with a count.

use std::collections::BTreeMap;

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

/// A row's place: its ORDER BY values, then the whole row.
pub(crate) type Entry = (Box<[u8]>, Box<[u8]>);

/// One partition's rows, ordered by rank.
#[derive(Debug, Default)]
pub(crate) struct Ranked {
    rows: BTreeMap<Entry, u32>,
    /// Copies held (sum of counts).
    held: usize,
    /// Bytes held by the encoded rows.
    bytes: usize,
}

impl Ranked {
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.held == 0
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every entry with its count, in rank order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&Entry, u32)> {
        self.rows.iter().map(|(e, n)| (e, *n))
    }

    /// Adds `count` copies of a row.
    pub(crate) fn insert(&mut self, sort: &[u8], row: &[u8], count: u32) {
        let entry: Entry = (sort.into(), row.into());
        let size = entry.0.len() + entry.1.len();
        let n = self.rows.entry(entry).or_insert(0);
        if *n == 0 {
            self.bytes += size;
        }
        *n += count;
        self.held += count as usize;
    }

    /// Removes one copy of a row; false when the row is not held.
    pub(crate) fn remove(&mut self, sort: &[u8], row: &[u8]) -> bool {
        let key: Entry = (sort.into(), row.into());
        let Some(n) = self.rows.get_mut(&key) else {
            return false;
        };
        *n -= 1;
        self.held -= 1;
        if *n == 0 {
            self.bytes -= key.0.len() + key.1.len();
            self.rows.remove(&key);
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
        sort: &[u8],
        row: &[u8],
    ) -> bool {
        let Some(((last_sort, last_row), _)) = self.rows.last_key_value() else {
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
                RankFunction::RowNumber => (sort, row) > (&**last_sort, &**last_row),
                RankFunction::Rank | RankFunction::DenseRank => sort > &**last_sort,
            }
    }

    /// Distinct ORDER BY values, counting up to `cap`.
    fn distinct_sorts(&self, cap: u64) -> u64 {
        let mut distinct = 0u64;
        let mut previous: Option<&[u8]> = None;
        for (sort, _) in self.rows.keys() {
            if previous != Some(&**sort) {
                distinct += 1;
                if distinct >= cap {
                    break;
                }
                previous = Some(sort);
            }
        }
        distinct
    }

    /// The rows ranked `limit` or better, each copy with its rank, in rank order.
    pub(crate) fn top(&self, function: RankFunction, limit: u64) -> Vec<(&[u8], u64)> {
        let mut out = Vec::new();
        let mut position = 0u64;
        let mut dense = 0u64;
        let mut rank = 0u64;
        let mut previous: Option<&[u8]> = None;
        'entries: for ((sort, row), count) in &self.rows {
            if previous != Some(&**sort) {
                dense += 1;
                rank = position + 1;
                previous = Some(sort);
            }
            for _ in 0..*count {
                position += 1;
                let r = match function {
                    RankFunction::RowNumber => position,
                    RankFunction::Rank => rank,
                    RankFunction::DenseRank => dense,
                };
                if r > limit {
                    break 'entries;
                }
                out.push((&**row, r));
            }
        }
        out
    }

    /// Drops every copy ranked after `limit` (an append-only partition: such a row can never
    /// rise again, since rows are only added).
    pub(crate) fn prune(&mut self, function: RankFunction, limit: u64) {
        let mut remaining = self.top(function, limit).len();
        if remaining == self.held {
            return;
        }
        // The last entry kept, and how many of its copies.
        let mut last: Option<(Entry, u32)> = None;
        for (entry, count) in &self.rows {
            if remaining == 0 {
                break;
            }
            let take = (*count as usize).min(remaining);
            remaining -= take;
            last = Some((entry.clone(), take as u32));
        }
        match last {
            Some((entry, count)) => {
                drop(self.rows.split_off(&entry));
                self.rows.insert(entry, count);
            }
            None => self.rows.clear(),
        }
        self.held = self.rows.values().map(|n| *n as usize).sum();
        self.bytes = self.rows.keys().map(|(s, r)| s.len() + r.len()).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(rows: &[(u8, u8)]) -> Ranked {
        let mut r = Ranked::default();
        for (sort, row) in rows {
            r.insert(&[*sort], &[*row], 1);
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
        r.insert(&[1], &[7], 1);
        r.insert(&[1], &[7], 1);
        assert_eq!(ranks(&r, RankFunction::RowNumber, 5), vec![(7, 1), (7, 2)]);
        assert!(r.remove(&[1], &[7]));
        assert_eq!(ranks(&r, RankFunction::RowNumber, 5), vec![(7, 1)]);
        assert!(r.remove(&[1], &[7]));
        assert!(!r.remove(&[1], &[7]));
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn prune_keeps_exactly_the_top_and_rejects_what_cannot_enter() {
        let mut r = ranked(&[(5, 50), (1, 10), (3, 30), (3, 31), (9, 90)]);
        r.insert(&[1], &[10], 1);
        r.prune(RankFunction::RowNumber, 3);
        assert_eq!(
            ranks(&r, RankFunction::RowNumber, 10),
            vec![(10, 1), (10, 2), (30, 3)]
        );
        assert!(r.rejects(RankFunction::RowNumber, 3, &[4], &[0]));
        assert!(r.rejects(RankFunction::RowNumber, 3, &[3], &[31]));
        assert!(!r.rejects(RankFunction::RowNumber, 3, &[2], &[0]));

        let mut r = ranked(&[(1, 10), (3, 30), (3, 31), (9, 90)]);
        r.prune(RankFunction::Rank, 2);
        assert_eq!(
            ranks(&r, RankFunction::Rank, 10),
            vec![(10, 1), (30, 2), (31, 2)]
        );
        assert!(
            !r.rejects(RankFunction::Rank, 2, &[3], &[99]),
            "a tie shares rank 2"
        );
        assert!(r.rejects(RankFunction::Rank, 2, &[4], &[0]));

        let mut r = ranked(&[(1, 10), (1, 11), (3, 30), (9, 90)]);
        r.prune(RankFunction::DenseRank, 2);
        assert_eq!(
            ranks(&r, RankFunction::DenseRank, 10),
            vec![(10, 1), (11, 1), (30, 2)]
        );
        assert!(r.rejects(RankFunction::DenseRank, 2, &[5], &[0]));
        assert!(!r.rejects(RankFunction::DenseRank, 2, &[2], &[0]));
    }
}
