//! `anomaly_hst`: half-space trees (Tan, Ting & Liu, IJCAI 2011), the cheap streaming
//! multivariate detector: O(trees × height) per row, no distance computations.
//!
//! ```sql
//! SELECT machine_id, ts,
//!        anomaly_hst(ROW(temperature, pressure, vibration), trees => 10, height => 8, window => 250) OVER w AS r
//! FROM readings WINDOW w AS (PARTITION BY machine_id ORDER BY ts);
//! ```
//!
//! Each tree halves the (min-max scaled) input space at random: every node splits one random
//! input at a random point of its range, down to `height`. Rows are counted into the nodes they
//! fall through ("latest" mass); every `window` learned rows the latest masses become the
//! reference masses and counting starts over. A row is scored by the reference mass of the
//! nodes it reaches, weighted by depth: rows in regions the last window rarely visited score
//! high. score = 1 − mass / maximum mass, in [0, 1]; a row beyond the range seen (by more than
//! 15 % of it) scores 1. The first window is warm-up.
//!
//! Inputs are scaled to [0, 1] by the key's running min and max (the design point: Kinesis makes
//! users normalise by hand). The p-value comes from the key's recent scores
//! ([`crate::multivariate::ScoreCalibrator`]). Trees have no per-input decomposition, so the
//! attribution splits the score by how far each input is from its mean, in σ.
//!
//! Per key: trees × (2^(height+1) − 1) nodes of a split and two counters (10 × 511 × 16 bytes
//! ≈ 80 KB at the defaults); the tree shapes come from `seed`, so every key and every replay
//! grows the same trees.

use datafusion::common::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::multivariate::{FeatureStats, MultiAssessment, MultiDetector, ScoreCalibrator};
use crate::params::Params;

/// Splits stay this far (as a fraction of the node's range) from its ends, as in river.
const PADDING: f64 = 0.15;

/// Settings of one call.
#[derive(Debug, Clone, Copy)]
pub struct HstConfig {
    trees: usize,
    height: u32,
    window: u32,
    seed: u64,
    calibration: u64,
}

impl HstConfig {
    /// `anomaly_hst`'s parameters.
    pub fn from_params(params: &Params) -> Result<Self> {
        let trees = params.count("trees", 10)?;
        let height = params.count("height", 8)?;
        let window = params.count("window", 250)?;
        if !(1..=1000).contains(&trees)
            || !(1..=20).contains(&height)
            || !(1..=1_000_000).contains(&window)
        {
            return datafusion::common::plan_err!(
                "anomaly_hst: trees must be in 1..=1000 (got {trees}), height in 1..=20 (got {height}), window in 1..=1000000 (got {window})"
            );
        }
        Ok(Self {
            trees: trees as usize,
            height: height as u32,
            window: window as u32,
            seed: params.count("seed", 42)?,
            calibration: params.count("calibration", 2000)?.max(100),
        })
    }

    fn nodes_per_tree(&self) -> usize {
        (1usize << (self.height + 1)) - 1
    }
}

/// One key's forest. Nodes of tree t are `t * nodes_per_tree ..`, heap-ordered (children of i
/// are 2i + 1 and 2i + 2); leaves have no split.
#[derive(Debug, Serialize, Deserialize)]
pub struct HalfSpaceTrees {
    n: u64,
    /// Input each internal node splits.
    feature: Vec<u16>,
    /// Where it splits (in scaled units).
    split: Vec<f32>,
    reference: Vec<u32>,
    latest: Vec<u32>,
    /// Learned rows in the current window.
    in_window: u32,
    /// True once a window has completed (there is a reference to score against).
    has_reference: bool,
    calibrator: ScoreCalibrator,
}

impl HalfSpaceTrees {
    fn grow(config: &HstConfig, dims: usize) -> (Vec<u16>, Vec<f32>) {
        let per_tree = config.nodes_per_tree();
        let internal = per_tree / 2;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut feature = vec![0u16; config.trees * per_tree];
        let mut split = vec![0f32; config.trees * per_tree];
        for t in 0..config.trees {
            // Depth-first, each node splitting the range its ancestors left it.
            let mut stack: Vec<(usize, Vec<(f64, f64)>)> = vec![(0, vec![(0.0, 1.0); dims])];
            while let Some((node, ranges)) = stack.pop() {
                if node >= internal {
                    continue;
                }
                let on = rng.random_range(0..dims.max(1));
                let (a, b) = ranges[on];
                let at = rng.random_range((a + PADDING * (b - a))..=(b - PADDING * (b - a)));
                feature[t * per_tree + node] = on as u16;
                split[t * per_tree + node] = at as f32;
                let mut left = ranges.clone();
                left[on].1 = at;
                let mut right = ranges;
                right[on].0 = at;
                stack.push((2 * node + 2, right));
                stack.push((2 * node + 1, left));
            }
        }
        (feature, split)
    }

    /// Calls `visit(depth, node)` along the path of scaled row `u` in tree `t`; stops when it
    /// returns false.
    fn walk(
        &self,
        config: &HstConfig,
        t: usize,
        u: &[f64],
        mut visit: impl FnMut(u32, usize) -> bool,
    ) {
        let per_tree = config.nodes_per_tree();
        let internal = per_tree / 2;
        let base = t * per_tree;
        let mut node = 0;
        for depth in 0..=config.height {
            if !visit(depth, base + node) || node >= internal {
                return;
            }
            let f = usize::from(self.feature[base + node]);
            node = if u[f] < f64::from(self.split[base + node]) {
                2 * node + 1
            } else {
                2 * node + 2
            };
        }
    }

    fn score(&self, config: &HstConfig, u: &[f64]) -> f64 {
        // The trees partition the range seen so far; a row beyond it (by more than the split
        // padding) lies where no reference row ever was: zero mass, the top score. Without
        // this, it would share the edge cell of the last rows near the range's end.
        if u.iter().any(|&v| !(-PADDING..=1.0 + PADDING).contains(&v)) {
            return 1.0;
        }
        let size_limit = 0.1 * f64::from(config.window);
        let mut mass = 0.0;
        for t in 0..config.trees {
            self.walk(config, t, u, |depth, node| {
                let r = f64::from(self.reference[node]);
                mass += r * f64::from(1u32 << depth);
                r >= size_limit
            });
        }
        let max = config.trees as f64 * f64::from(config.window) * config.nodes_per_tree() as f64;
        (1.0 - mass / max).clamp(0.0, 1.0)
    }
}

impl MultiDetector for HalfSpaceTrees {
    type Config = HstConfig;

    fn new(config: &HstConfig, dims: usize) -> Self {
        let (feature, split) = Self::grow(config, dims);
        let nodes = feature.len();
        Self {
            n: 0,
            feature,
            split,
            reference: vec![0; nodes],
            latest: vec![0; nodes],
            in_window: 0,
            has_reference: false,
            calibrator: ScoreCalibrator::new(config.calibration),
        }
    }

    fn n(&self) -> u64 {
        self.n
    }

    fn assess(
        &self,
        config: &HstConfig,
        stats: &FeatureStats,
        x: &[f64],
        shares: &mut [f64],
    ) -> Option<MultiAssessment> {
        if !self.has_reference || self.calibrator.len() < 30 {
            return None;
        }
        let mut u = Vec::with_capacity(x.len());
        stats.min_max(x, &mut u);
        let score = self.score(config, &u);
        for (j, share) in shares.iter_mut().enumerate() {
            *share = ((x[j] - stats.mean(j)) / stats.std(j)).abs();
        }
        Some(MultiAssessment {
            score,
            p_value: self.calibrator.p_value(score),
        })
    }

    fn learn(&mut self, config: &HstConfig, stats: &FeatureStats, x: &[f64]) {
        self.n += 1;
        let mut u = Vec::with_capacity(x.len());
        stats.min_max(x, &mut u);
        if self.has_reference {
            let score = self.score(config, &u);
            self.calibrator.learn(score);
        }
        for t in 0..config.trees {
            let mut path = [0usize; 21];
            let mut len = 0;
            self.walk(config, t, &u, |_, node| {
                path[len] = node;
                len += 1;
                true
            });
            for &node in &path[..len] {
                self.latest[node] += 1;
            }
        }
        self.in_window += 1;
        if self.in_window >= config.window {
            std::mem::swap(&mut self.reference, &mut self.latest);
            self.latest.fill(0);
            self.in_window = 0;
            self.has_reference = true;
        }
    }

    fn rebuild(&mut self) {
        self.calibrator.rebuild();
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.feature.len() * (2 + 4 + 4 + 4) + self.calibrator.size()
    }
}
