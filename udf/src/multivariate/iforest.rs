//! `anomaly_iforest`: a streaming isolation forest (Liu, Ting & Zhou 2008, over a sliding
//! window as in iForestASD, Ding & Fei 2013).
//!
//! ```sql
//! SELECT machine_id, ts,
//!        anomaly_iforest(ROW(temperature, pressure, vibration), trees => 32, window => 2048) OVER w AS r
//! FROM readings WINDOW w AS (PARTITION BY machine_id ORDER BY ts);
//! ```
//!
//! Per key the detector keeps the last `window` learned rows and a forest of `trees` isolation
//! trees, each grown on `sample` (256) rows drawn from the window: every node splits a random
//! input at a uniform point between that input's minimum and maximum among the node's rows.
//! Anomalies are isolated near the root, so the score is 2^(−E[path length] / c(sample)), in
//! (0, 1], higher = more anomalous (0.5 is average). Two cases plain iForest misjudges are
//! isolated where they are met: a value further outside a node's range than the range is wide
//! (it would most likely be cut off by that node's split), and a row unlike the copies that
//! make up a leaf. The forest is regrown from the window every
//! `refit` learned rows (default window / 4), so it follows the data without re-scoring history:
//! scoring is O(trees × log sample) per row, regrowth O(trees × sample × log sample) per
//! `refit` rows. Isolation needs no scaling; the p-value comes from the key's recent scores
//! ([`crate::multivariate::ScoreCalibrator`]); the attribution splits the score by how far each
//! input is from its mean, in σ.
//!
//! Deterministic: each regrowth draws from a generator seeded by `seed` and the regrowth's
//! number, so replays grow the same forests.

use std::collections::VecDeque;

use datafusion::common::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::multivariate::{FeatureStats, MultiAssessment, MultiDetector, ScoreCalibrator};
use crate::params::Params;

/// Settings of one call.
#[derive(Debug, Clone, Copy)]
pub struct IForestConfig {
    trees: usize,
    sample: usize,
    window: usize,
    refit: u64,
    seed: u64,
    calibration: u64,
}

impl IForestConfig {
    /// `anomaly_iforest`'s parameters.
    pub fn from_params(params: &Params) -> Result<Self> {
        let trees = params.count("trees", 32)?;
        let window = params.count("window", 2048)?;
        let sample = params.count("sample", 256)?.min(window);
        if !(1..=1000).contains(&trees) || !(2..=10_000_000).contains(&window) || sample < 2 {
            return datafusion::common::plan_err!(
                "anomaly_iforest: trees must be in 1..=1000 (got {trees}), window in 2..=10000000 (got {window}), sample at least 2 (got {sample})"
            );
        }
        Ok(Self {
            trees: trees as usize,
            sample: sample as usize,
            window: window as usize,
            refit: params.count("refit", (window / 4).max(1))?.max(1),
            seed: params.count("seed", 42)?,
            calibration: params.count("calibration", 2000)?.max(100),
        })
    }
}

/// A node: internal (split `feature` at `at`, children `left` and `left + 1`) or a leaf
/// holding `size` sample rows (`left == 0`). A leaf whose rows are all one point keeps it
/// (`point`, an index into `points`): a different row would be isolated by the next split,
/// which a leaf of copies cannot make.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Node {
    feature: u16,
    at: f64,
    left: u32,
    size: u32,
    point: u32,
}

const NO_POINT: u32 = u32::MAX;

impl Node {
    fn leaf(size: u32) -> Self {
        Self {
            feature: 0,
            at: 0.0,
            left: 0,
            size,
            point: NO_POINT,
        }
    }
}

/// One key's window and forest.
#[derive(Debug, Serialize, Deserialize)]
pub struct IsolationForest {
    n: u64,
    dims: usize,
    /// The last `window` learned rows, row-major.
    window: VecDeque<f64>,
    /// Trees, concatenated; `roots[t]` is tree t's root.
    nodes: Vec<Node>,
    roots: Vec<u32>,
    /// The points of leaves of copies, row-major.
    points: Vec<f64>,
    /// Each tree's sample range per input (min, max), tree-major.
    boxes: Vec<f64>,
    growths: u64,
    since_growth: u64,
    calibrator: ScoreCalibrator,
}

/// Average path length of an unsuccessful binary-search-tree search among n rows: the depth a
/// leaf of n rows stands for.
fn average_path(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n == 2.0 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
    }
}

impl IsolationForest {
    fn grow(&mut self, config: &IForestConfig) {
        let rows: Vec<f64> = self.window.iter().copied().collect();
        let count = rows.len() / self.dims;
        if count < 2 {
            return;
        }
        self.growths += 1;
        let mut rng = ChaCha8Rng::seed_from_u64(
            config.seed ^ self.growths.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let sample = config.sample.min(count);
        let limit = (sample as f64).log2().ceil() as u32;
        self.nodes.clear();
        self.roots.clear();
        self.points.clear();
        self.boxes.clear();
        let mut indices: Vec<usize> = (0..count).collect();
        for _ in 0..config.trees {
            // A partial Fisher–Yates shuffle draws `sample` distinct rows.
            for i in 0..sample {
                let j = rng.random_range(i..count);
                indices.swap(i, j);
            }
            let mut members = indices[..sample].to_vec();
            for f in 0..self.dims {
                let (lo, hi) =
                    members
                        .iter()
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                            let v = rows[r * self.dims + f];
                            (lo.min(v), hi.max(v))
                        });
                self.boxes.extend([lo, hi]);
            }
            self.roots.push(self.nodes.len() as u32);
            self.nodes.push(Node::leaf(sample as u32));
            let mut stack = vec![(self.nodes.len() - 1, 0usize, sample, 0u32)];
            while let Some((node, start, end, depth)) = stack.pop() {
                let part = &mut members[start..end];
                self.nodes[node].size = part.len() as u32;
                if part.len() <= 1 || depth >= limit {
                    continue;
                }
                // A random input that varies among the node's rows (the next one that does,
                // from a random start).
                let range = |f: usize| {
                    part.iter()
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                            let v = rows[r * self.dims + f];
                            (lo.min(v), hi.max(v))
                        })
                };
                let start_feature = rng.random_range(0..self.dims);
                let varying = (0..self.dims)
                    .map(|i| (start_feature + i) % self.dims)
                    .find_map(|f| {
                        let (lo, hi) = range(f);
                        (lo < hi).then_some((f, lo, hi))
                    });
                let Some((feature, lo, hi)) = varying else {
                    // All copies of one row.
                    self.nodes[node].point = (self.points.len() / self.dims) as u32;
                    let first = part[0] * self.dims;
                    self.points
                        .extend_from_slice(&rows[first..first + self.dims]);
                    continue;
                };
                let at = rng.random_range(lo..hi);
                // Partition in place: rows below `at` first.
                let mut split = 0;
                for i in 0..part.len() {
                    if rows[part[i] * self.dims + feature] < at {
                        part.swap(i, split);
                        split += 1;
                    }
                }
                let left = self.nodes.len() as u32;
                self.nodes[node] = Node {
                    feature: feature as u16,
                    at,
                    left,
                    size: part.len() as u32,
                    point: NO_POINT,
                };
                self.nodes.push(Node::leaf(0));
                self.nodes.push(Node::leaf(0));
                stack.push((left as usize, start, start + split, depth + 1));
                stack.push((left as usize + 1, start + split, end, depth + 1));
            }
        }
        self.since_growth = 0;
    }

    fn score(&self, config: &IForestConfig, x: &[f64]) -> f64 {
        let mut total = 0.0;
        let mut ranges = vec![0.0; 2 * self.dims];
        for (t, &root) in self.roots.iter().enumerate() {
            ranges.copy_from_slice(&self.boxes[t * 2 * self.dims..(t + 1) * 2 * self.dims]);
            let mut node = self.nodes[root as usize];
            let mut depth = 0.0;
            let mut cut_off = false;
            while node.left != 0 {
                let f = usize::from(node.feature);
                let (lo, hi) = (ranges[2 * f], ranges[2 * f + 1]);
                // A value further outside the node's range than the range is wide would, more
                // likely than not, be cut off by this node's split had it been in the sample
                // (a uniform cut between it and the far end): isolated here. Without this, a
                // row far out of range scores like the sample's edge rows.
                if x[f] > hi + (hi - lo) || x[f] < lo - (hi - lo) {
                    cut_off = true;
                    break;
                }
                let next = if x[f] < node.at {
                    ranges[2 * f + 1] = node.at;
                    node.left
                } else {
                    ranges[2 * f] = node.at;
                    node.left + 1
                };
                node = self.nodes[next as usize];
                depth += 1.0;
            }
            let copies_of_another = node.point != NO_POINT && {
                let at = node.point as usize * self.dims;
                self.points[at..at + self.dims] != *x
            };
            total += if cut_off || copies_of_another {
                depth + 1.0
            } else {
                depth + average_path(f64::from(node.size))
            };
        }
        let sample = config
            .sample
            .min(self.window.len() / self.dims.max(1))
            .max(2) as f64;
        let mean = total / self.roots.len().max(1) as f64;
        2f64.powf(-mean / average_path(sample))
    }
}

impl MultiDetector for IsolationForest {
    type Config = IForestConfig;

    fn new(config: &IForestConfig, dims: usize) -> Self {
        Self {
            n: 0,
            dims,
            window: VecDeque::new(),
            nodes: Vec::new(),
            roots: Vec::new(),
            points: Vec::new(),
            boxes: Vec::new(),
            growths: 0,
            since_growth: 0,
            calibrator: ScoreCalibrator::new(config.calibration),
        }
    }

    fn n(&self) -> u64 {
        self.n
    }

    fn assess(
        &self,
        config: &IForestConfig,
        stats: &FeatureStats,
        x: &[f64],
        shares: &mut [f64],
    ) -> Option<MultiAssessment> {
        if self.roots.is_empty() || self.calibrator.len() < 30 {
            return None;
        }
        let score = self.score(config, x);
        for (j, share) in shares.iter_mut().enumerate() {
            *share = ((x[j] - stats.mean(j)) / stats.std(j)).abs();
        }
        Some(MultiAssessment {
            score,
            p_value: self.calibrator.p_value(score),
        })
    }

    fn learn(&mut self, config: &IForestConfig, _stats: &FeatureStats, x: &[f64]) {
        self.n += 1;
        if !self.roots.is_empty() {
            let score = self.score(config, x);
            self.calibrator.learn(score);
        }
        self.window.extend(x);
        while self.window.len() > config.window * self.dims {
            self.window.pop_front();
        }
        self.since_growth += 1;
        // The first forest grows once a sample's worth of rows is in; then every `refit` rows.
        let first = self.roots.is_empty()
            && self.window.len() >= config.sample.min(config.window) * self.dims;
        if first || (!self.roots.is_empty() && self.since_growth >= config.refit) {
            self.grow(config);
        }
    }

    fn rebuild(&mut self) {
        self.calibrator.rebuild();
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.window.capacity() * 8
            + self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.roots.capacity() * 4
            + (self.points.capacity() + self.boxes.capacity()) * 8
            + self.calibrator.size()
    }
}
