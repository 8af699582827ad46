//! An order-statistic multiset of finite `f64`s: insert, remove, k-th smallest and rank in
//! O(log n) expected. The sliding median and MAD need rank queries over a window that changes
//! by one value at a time; recomputing them from the window would cost O(W) per row.
//!
//! A treap (randomised balanced search tree) with subtree sizes, stored in one arena `Vec` so a
//! window of W values costs W small nodes and no allocation per row once warm.

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    value: f64,
    left: u32,
    right: u32,
    /// Nodes in this subtree.
    size: u32,
    /// Sum of the subtree's values (recomputed from the children, so it never drifts).
    sum: f64,
    priority: u32,
}

/// A multiset of finite floats with rank queries.
#[derive(Debug, Clone)]
pub struct OrderStatTree {
    nodes: Vec<Node>,
    /// Arena slots of removed nodes, reused first.
    free: Vec<u32>,
    root: u32,
    /// xorshift state for priorities: deterministic, so a replay builds the same tree.
    rng: u64,
}

impl Default for OrderStatTree {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

impl OrderStatTree {
    /// Values held.
    pub fn len(&self) -> usize {
        self.size(self.root) as usize
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.root == NIL
    }

    fn size(&self, t: u32) -> u32 {
        if t == NIL {
            0
        } else {
            self.nodes[t as usize].size
        }
    }

    fn update(&mut self, t: u32) {
        let (l, r) = (self.nodes[t as usize].left, self.nodes[t as usize].right);
        self.nodes[t as usize].size = 1 + self.size(l) + self.size(r);
        self.nodes[t as usize].sum = self.nodes[t as usize].value + self.sum(l) + self.sum(r);
    }

    fn sum(&self, t: u32) -> f64 {
        if t == NIL {
            0.0
        } else {
            self.nodes[t as usize].sum
        }
    }

    /// Sum of all values.
    pub fn total(&self) -> f64 {
        self.sum(self.root)
    }

    fn next_priority(&mut self) -> u32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 32) as u32
    }

    /// Splits `t` into (values before `value`, the rest); with `inclusive`, values equal to
    /// `value` go left.
    fn split(&mut self, t: u32, value: f64, inclusive: bool) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        let v = self.nodes[t as usize].value;
        let goes_left = if inclusive { v <= value } else { v < value };
        if goes_left {
            let (l, r) = self.split(self.nodes[t as usize].right, value, inclusive);
            self.nodes[t as usize].right = l;
            self.update(t);
            (t, r)
        } else {
            let (l, r) = self.split(self.nodes[t as usize].left, value, inclusive);
            self.nodes[t as usize].left = r;
            self.update(t);
            (l, t)
        }
    }

    /// Joins two trees where every value of `a` ≤ every value of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].priority > self.nodes[b as usize].priority {
            let r = self.merge(self.nodes[a as usize].right, b);
            self.nodes[a as usize].right = r;
            self.update(a);
            a
        } else {
            let l = self.merge(a, self.nodes[b as usize].left);
            self.nodes[b as usize].left = l;
            self.update(b);
            b
        }
    }

    /// Adds a value.
    pub fn insert(&mut self, value: f64) {
        let node = Node {
            value,
            left: NIL,
            right: NIL,
            size: 1,
            sum: value,
            priority: self.next_priority(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let (l, r) = self.split(self.root, value, true);
        let left = self.merge(l, id);
        self.root = self.merge(left, r);
    }

    /// Removes one occurrence of `value`; false when absent.
    pub fn remove(&mut self, value: f64) -> bool {
        let (less, rest) = self.split(self.root, value, false);
        let (equal, greater) = self.split(rest, value, true);
        let found = equal != NIL;
        let equal = if found {
            self.free.push(equal);
            let node = self.nodes[equal as usize];
            self.merge(node.left, node.right)
        } else {
            NIL
        };
        let left = self.merge(less, equal);
        self.root = self.merge(left, greater);
        found
    }

    /// The k-th smallest value (0-based), if k < len.
    pub fn select(&self, mut k: u32) -> Option<f64> {
        let mut t = self.root;
        while t != NIL {
            let node = &self.nodes[t as usize];
            let left = self.size(node.left);
            if k < left {
                t = node.left;
            } else if k == left {
                return Some(node.value);
            } else {
                k -= left + 1;
                t = node.right;
            }
        }
        None
    }

    /// How many values are strictly below `value`.
    pub fn count_less(&self, value: f64) -> u32 {
        self.below(value).0
    }

    /// Count and sum of the values strictly below `value`.
    pub fn below(&self, value: f64) -> (u32, f64) {
        let mut t = self.root;
        let (mut count, mut sum) = (0, 0.0);
        while t != NIL {
            let node = &self.nodes[t as usize];
            if node.value < value {
                count += self.size(node.left) + 1;
                sum += self.sum(node.left) + node.value;
                t = node.right;
            } else {
                t = node.left;
            }
        }
        (count, sum)
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>() + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_sorted_vector_under_churn() {
        let mut tree = OrderStatTree::default();
        let mut reference: Vec<f64> = Vec::new();
        let mut seed = 7u64;
        for step in 0..5000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let value = ((seed >> 33) % 50) as f64;
            if step % 3 == 2 && !reference.is_empty() {
                let victim = reference[(seed as usize >> 5) % reference.len()];
                assert!(tree.remove(victim));
                let at = reference.iter().position(|&v| v == victim).unwrap_or(0);
                reference.remove(at);
            } else {
                tree.insert(value);
                reference.push(value);
            }
            reference.sort_by(f64::total_cmp);
            assert_eq!(tree.len(), reference.len());
            if step % 97 == 0 {
                for (k, v) in reference.iter().enumerate() {
                    assert_eq!(tree.select(k as u32), Some(*v));
                }
                assert_eq!(
                    tree.count_less(25.0) as usize,
                    reference.iter().filter(|&&v| v < 25.0).count()
                );
                let below: f64 = reference.iter().filter(|&&v| v < 25.0).sum();
                assert!((tree.below(25.0).1 - below).abs() < 1e-9);
                assert!((tree.total() - reference.iter().sum::<f64>()).abs() < 1e-9);
            }
        }
        assert!(!tree.remove(1000.0));
    }
}
