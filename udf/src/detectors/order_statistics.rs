//! The order-statistic multiset the sliding detectors use, in the representation that is fastest
//! for its size: a sorted vector up to [`SORTED_LIMIT`] values, the treap
//! ([`OrderStatTree`]) beyond.
//!
//! For the windows detectors usually have (hundreds to a few thousand values) a sorted vector
//! wins by a wide margin: the k-th smallest is an index, a rank one binary search, and an insert
//! or removal one binary search plus a `memmove` of at most a few tens of kilobytes, all in
//! cache. The MAD's k-th-deviation search makes ~40 rank queries per row; on the treap each is a
//! walk of pointer-chasing node visits (3.7 µs per row at W = 600), on the vector an index.
//! Past the limit the memmove would grow with the window, so the treap takes over and keeps
//! every operation O(log n).

use crate::detectors::order_stat::OrderStatTree;

/// Largest multiset kept as a sorted vector (a memmove of at most 64 KB per change).
pub const SORTED_LIMIT: usize = 8192;

/// A multiset of finite floats with rank queries.
#[derive(Debug, Clone)]
pub enum OrderStatistics {
    /// Values in ascending order.
    Sorted(Vec<f64>),
    /// A treap, for large multisets.
    Tree(OrderStatTree),
}

impl Default for OrderStatistics {
    fn default() -> Self {
        OrderStatistics::Sorted(Vec::new())
    }
}

impl OrderStatistics {
    /// Values held.
    pub fn len(&self) -> usize {
        match self {
            OrderStatistics::Sorted(v) => v.len(),
            OrderStatistics::Tree(t) => t.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a value.
    pub fn insert(&mut self, value: f64) {
        match self {
            OrderStatistics::Sorted(v) if v.len() < SORTED_LIMIT => {
                let at = v.partition_point(|&x| x < value);
                v.insert(at, value);
            }
            OrderStatistics::Sorted(v) => {
                let mut tree = OrderStatTree::default();
                for &x in v.iter() {
                    tree.insert(x);
                }
                tree.insert(value);
                *self = OrderStatistics::Tree(tree);
            }
            OrderStatistics::Tree(t) => t.insert(value),
        }
    }

    /// Removes one copy of `value`; false if there was none.
    pub fn remove(&mut self, value: f64) -> bool {
        match self {
            OrderStatistics::Sorted(v) => {
                let at = v.partition_point(|&x| x < value);
                if v.get(at) == Some(&value) {
                    v.remove(at);
                    true
                } else {
                    false
                }
            }
            OrderStatistics::Tree(t) => t.remove(value),
        }
    }

    /// The k-th smallest value (0-based), if k < len.
    pub fn select(&self, k: u32) -> Option<f64> {
        match self {
            OrderStatistics::Sorted(v) => v.get(k as usize).copied(),
            OrderStatistics::Tree(t) => t.select(k),
        }
    }

    /// How many values are strictly below `value`.
    pub fn count_less(&self, value: f64) -> u32 {
        match self {
            OrderStatistics::Sorted(v) => v.partition_point(|&x| x < value) as u32,
            OrderStatistics::Tree(t) => t.count_less(value),
        }
    }

    /// Count and sum of the values strictly below `value`.
    pub fn below(&self, value: f64) -> (u32, f64) {
        match self {
            OrderStatistics::Sorted(v) => {
                let n = v.partition_point(|&x| x < value);
                (n as u32, v[..n].iter().sum())
            }
            OrderStatistics::Tree(t) => t.below(value),
        }
    }

    /// Count and sum of the values at or above `value`.
    pub fn at_or_above(&self, value: f64) -> (u32, f64) {
        match self {
            OrderStatistics::Sorted(v) => {
                let n = v.partition_point(|&x| x < value);
                ((v.len() - n) as u32, v[n..].iter().sum())
            }
            OrderStatistics::Tree(t) => {
                let (below, below_sum) = t.below(value);
                (t.len() as u32 - below, t.total() - below_sum)
            }
        }
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        match self {
            OrderStatistics::Sorted(v) => v.capacity() * 8,
            OrderStatistics::Tree(t) => t.bytes(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn both_representations_answer_alike_across_the_switch() {
        let mut seed = 5u64;
        let mut values = Vec::new();
        let mut multiset = OrderStatistics::default();
        for i in 0..(2 * SORTED_LIMIT) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = ((seed >> 40) % 1000) as f64;
            multiset.insert(v);
            values.push(v);
            if i % 4 == 0 {
                let gone = values.remove(values.len() / 2);
                assert!(multiset.remove(gone));
            }
        }
        assert!(matches!(multiset, OrderStatistics::Tree(_)));
        assert!(!multiset.remove(-1.0));
        values.sort_by(f64::total_cmp);
        assert_eq!(multiset.len(), values.len());
        for k in [0, 1, values.len() / 2, values.len() - 1] {
            assert_eq!(multiset.select(k as u32), Some(values[k]));
        }
        let cut = 500.0;
        let below = values.iter().filter(|&&x| x < cut).count();
        assert_eq!(multiset.count_less(cut), below as u32);
        let (count, sum) = multiset.at_or_above(cut);
        assert_eq!(count as usize, values.len() - below);
        assert!((sum - values.iter().filter(|&&x| x >= cut).sum::<f64>()).abs() < 1e-6);
        let mut small = OrderStatistics::default();
        for v in [3.0, 1.0, 2.0, 2.0] {
            small.insert(v);
        }
        assert_eq!(small.below(2.5), (3, 5.0));
        assert_eq!(small.at_or_above(2.0), (3, 7.0));
    }
}
