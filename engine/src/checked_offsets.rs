//! The offsets of one source partition whose bad records have been reported, so a bad record is
//! logged and counted once per source however many readers (one per view) read it.
//!
//! Every reader runs the same deterministic checks on the same records, so the first reader to
//! report the bad records of a span of offsets has reported them for all: a later reader skips the
//! bad records that fall in spans already claimed and logs only the rest. Spans are kept as
//! disjoint intervals; intervals that touch merge, so readers following the same topic keep one
//! interval per partition. The number of intervals is capped by merging the lowest ones: the gap
//! between two spans claimed by readers holds no bad record of that check (each reader claims
//! every span in which it found one), so bridging it loses nothing a reader would report.

use std::collections::BTreeMap;

/// Intervals kept per partition before the lowest ones are merged.
const MAX_INTERVALS: usize = 256;

/// Disjoint, inclusive intervals of offsets, keyed by their first offset.
#[derive(Debug, Default, Clone)]
pub struct CheckedOffsets {
    /// first offset → last offset (inclusive); no two intervals overlap or touch.
    intervals: BTreeMap<i64, i64>,
}

impl CheckedOffsets {
    /// True when `offset` lies in a claimed interval.
    pub fn contains(&self, offset: i64) -> bool {
        self.intervals
            .range(..=offset)
            .next_back()
            .is_some_and(|(_, last)| *last >= offset)
    }

    /// Claims `first..=last`; returns a predicate telling which offsets of the span were not
    /// claimed before (the ones whose bad records this reader reports).
    pub fn claim(&mut self, first: i64, last: i64) -> Claimed {
        let (first, last) = (first.min(last), first.max(last));
        let before: Vec<(i64, i64)> = self
            .intervals
            .range(..=last)
            .rev()
            .take_while(|(_, end)| **end >= first)
            .map(|(s, e)| (*s, *e))
            .collect();
        let mut start = first;
        let mut end = last;
        // Merge what overlaps, and what touches on either side.
        let touching_left = self
            .intervals
            .range(..first)
            .next_back()
            .filter(|(_, e)| e.saturating_add(1) >= first)
            .map(|(s, e)| (*s, *e));
        let touching_right = self
            .intervals
            .range(last.saturating_add(1)..)
            .next()
            .filter(|(s, _)| **s == last.saturating_add(1))
            .map(|(s, e)| (*s, *e));
        for (s, e) in before
            .iter()
            .copied()
            .chain(touching_left)
            .chain(touching_right)
        {
            self.intervals.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.intervals.insert(start, end);
        while self.intervals.len() > MAX_INTERVALS {
            let mut lowest = self.intervals.iter().take(2).map(|(s, e)| (*s, *e));
            if let (Some((s1, _)), Some((s2, e2))) = (lowest.next(), lowest.next()) {
                self.intervals.remove(&s2);
                self.intervals.insert(s1, e2);
            }
        }
        Claimed { taken: before }
    }

    /// Number of intervals held.
    pub fn intervals(&self) -> usize {
        self.intervals.len()
    }
}

/// What a [`CheckedOffsets::claim`] found already claimed inside the span.
#[derive(Debug)]
pub struct Claimed {
    taken: Vec<(i64, i64)>,
}

impl Claimed {
    /// True when `offset` was claimed by an earlier span (its bad record is already logged).
    pub fn already(&self, offset: i64) -> bool {
        self.taken.iter().any(|(s, e)| *s <= offset && offset <= *e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_spans_report_each_offset_once() {
        let mut c = CheckedOffsets::default();
        let first = c.claim(0, 99);
        assert!(!first.already(50));
        let second = c.claim(50, 149);
        assert!(second.already(50) && second.already(99));
        assert!(!second.already(100));
        assert_eq!(c.intervals(), 1);
        assert!(c.contains(149) && !c.contains(150));
    }

    #[test]
    fn disjoint_spans_stay_apart_and_touching_ones_merge() {
        let mut c = CheckedOffsets::default();
        c.claim(10, 19);
        c.claim(30, 39);
        assert_eq!(c.intervals(), 2);
        let middle = c.claim(20, 29);
        assert!(!middle.already(20) && !middle.already(29));
        assert_eq!(c.intervals(), 1);
        assert!(c.contains(10) && c.contains(39) && !c.contains(9));
    }

    #[test]
    fn a_span_covering_several_intervals_swallows_them() {
        let mut c = CheckedOffsets::default();
        c.claim(5, 5);
        c.claim(8, 9);
        let wide = c.claim(0, 20);
        assert!(wide.already(5) && wide.already(9) && !wide.already(7));
        assert_eq!(c.intervals(), 1);
    }

    #[test]
    fn intervals_are_capped_by_merging_the_lowest() {
        let mut c = CheckedOffsets::default();
        for i in 0..(MAX_INTERVALS as i64 + 10) {
            c.claim(i * 10, i * 10 + 1);
        }
        assert_eq!(c.intervals(), MAX_INTERVALS);
        let top = (MAX_INTERVALS as i64 + 9) * 10;
        assert!(c.contains(top) && !c.contains(top + 5));
    }
}
