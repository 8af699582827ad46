//! `anomaly_mad`: the modified z-score (Iglewicz & Hoaglin) on an exact sliding median and
//! median absolute deviation. Robust: a few outliers in the window move neither.
//!
//! ```sql
//! SELECT sensor_id, ts,
//!        anomaly_mad(temperature, window => 600) OVER w AS mad,
//!        anomaly_mad(temperature, window => INTERVAL '10 minutes', warn => 4) OVER w AS mad10m
//! FROM readings WINDOW w AS (PARTITION BY sensor_id ORDER BY ts);
//! ```
//!
//! score = 0.6745·|x − median| / MAD; WARNING at 3.5, CRITICAL at 5. The window (default 600
//! rows, or an INTERVAL) is kept in order ([`OrderStatistics`]: a sorted vector, or a treap for
//! windows past 8,192 values): the median is two rank lookups and the MAD a k-th-smallest
//! search over the two sorted runs of deviations either side of the median, O(log² W) rank
//! lookups per row instead of GreptimeDB's O(W) recomputation.
//!
//! When more than half the window is one value (quantised sensors), MAD is 0; the score then
//! uses the mean absolute deviation around the median (× 1.2533, its normal-consistent factor),
//! and only a window with no spread at all falls back to the finite floor every detector uses.

use serde::{Deserialize, Serialize};

use crate::detectors::moments::{Ring, spread_floor};
use crate::detectors::order_statistics::OrderStatistics;
use crate::keyed::Detector;
use crate::params::{Params, Span};
use crate::result::{Assessment, Direction, normal_two_sided_p};

/// 0.6745 = Φ⁻¹(0.75): MAD / 0.6745 estimates σ for normal data.
const MAD_TO_SIGMA: f64 = 0.674_489_750_196_081_7;
/// √(π/2): mean absolute deviation × this estimates σ for normal data.
const MEAN_AD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;

/// Settings of one call.
#[derive(Debug, Clone, Copy)]
pub struct MadConfig {
    /// The window.
    pub window: Span,
}

impl MadConfig {
    /// `anomaly_mad`'s parameters.
    pub fn from_params(params: &Params) -> datafusion::common::Result<Self> {
        Ok(Self {
            window: params.span("window", Span::Rows(600))?,
        })
    }
}

/// The window of one key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Mad {
    ring: Ring,
    /// The ring's values in order; rebuilt from the ring after loading a checkpoint.
    #[serde(skip)]
    tree: OrderStatistics,
}

impl Mad {
    /// Median of the window.
    pub fn median(&self) -> Option<f64> {
        let n = self.tree.len() as u32;
        if n == 0 {
            return None;
        }
        let lo = self.tree.select((n - 1) / 2)?;
        let hi = self.tree.select(n / 2)?;
        Some(lo + (hi - lo) / 2.0)
    }

    /// Median absolute deviation from `median`.
    pub fn mad(&self, median: f64) -> Option<f64> {
        let n = self.tree.len() as u32;
        if n == 0 {
            return None;
        }
        let lo = self.kth_deviation(median, (n - 1) / 2)?;
        let hi = self.kth_deviation(median, n / 2)?;
        Some(lo + (hi - lo) / 2.0)
    }

    /// The k-th smallest |x − m| (0-based). Deviations below m, read downwards, and above m,
    /// read upwards, are two sorted runs; binary-search how many of the k+1 smallest come
    /// from the lower run.
    fn kth_deviation(&self, m: f64, k: u32) -> Option<f64> {
        let below = self.tree.count_less(m);
        let above = self.tree.len() as u32 - below;
        let lower = |i: u32| self.tree.select(below - 1 - i).map(|v| m - v);
        let upper = |j: u32| self.tree.select(below + j).map(|v| v - m);
        let take = k + 1;
        let (mut lo, mut hi) = (take.saturating_sub(above), take.min(below));
        while lo < hi {
            let i = lo + (hi - lo) / 2;
            let j = take - i;
            if j > 0 && upper(j - 1)? > lower(i)? {
                lo = i + 1;
            } else {
                hi = i;
            }
        }
        let (i, j) = (lo, take - lo);
        let from_lower = if i > 0 { lower(i - 1) } else { None };
        let from_upper = if j > 0 { upper(j - 1) } else { None };
        match (from_lower, from_upper) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Mean absolute deviation from `m` (only needed when the MAD is 0).
    fn mean_abs_deviation(&self, m: f64) -> f64 {
        let n = self.tree.len();
        if n == 0 {
            return 0.0;
        }
        let (below, below_sum) = self.tree.below(m);
        let (above, above_sum) = self.tree.at_or_above(m);
        ((m * f64::from(below) - below_sum) + (above_sum - m * f64::from(above))).max(0.0)
            / n as f64
    }
}

impl Detector for Mad {
    type Config = MadConfig;

    fn new(_config: &MadConfig) -> Self {
        Mad::default()
    }

    fn n(&self) -> u64 {
        self.ring.len() as u64
    }

    fn expected(&self, _config: &MadConfig) -> Option<f64> {
        self.median()
    }

    fn assess(&self, _config: &MadConfig, x: f64, _ts: i64) -> Option<Assessment> {
        if self.tree.len() < 3 {
            return None;
        }
        let median = self.median()?;
        let mad = self.mad(median)?;
        let sigma = if mad > 0.0 {
            mad / MAD_TO_SIGMA
        } else {
            spread_floor(self.mean_abs_deviation(median) * MEAN_AD_TO_SIGMA, median)
        };
        let z = (x - median) / sigma;
        Some(Assessment {
            score: z.abs(),
            p_value: normal_two_sided_p(z),
            expected: median,
            spread: Some(sigma),
            direction: Direction::of(x, median),
        })
    }

    fn learn(&mut self, config: &MadConfig, x: f64, ts: i64) {
        self.tree.insert(x);
        let tree = &mut self.tree;
        self.ring.push(config.window, ts, x, |old| {
            tree.remove(old);
        });
    }

    fn rebuild(&mut self) {
        self.tree = OrderStatistics::default();
        for x in self.ring.values() {
            self.tree.insert(x);
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.ring.size() + self.tree.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(values: &[f64]) -> Mad {
        let config = MadConfig {
            window: Span::Rows(values.len() as u64),
        };
        let mut mad = Mad::default();
        for (i, &v) in values.iter().enumerate() {
            mad.learn(&config, v, i as i64);
        }
        mad
    }

    fn reference(values: &[f64]) -> (f64, f64) {
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            (v[(n - 1) / 2] + v[n / 2]) / 2.0
        };
        let m = median(&mut values.to_vec());
        let mut deviations: Vec<f64> = values.iter().map(|x| (x - m).abs()).collect();
        (m, median(&mut deviations))
    }

    #[test]
    fn median_and_mad_are_exact() {
        let mut seed = 11u64;
        for len in [1usize, 2, 3, 4, 5, 10, 11, 64, 101] {
            let values: Vec<f64> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((seed >> 40) % 17) as f64 - 5.0
                })
                .collect();
            let mad = window(&values);
            let (m, d) = reference(&values);
            assert_eq!(mad.median(), Some(m), "median of {values:?}");
            assert_eq!(mad.mad(m), Some(d), "mad of {values:?}");
        }
    }

    #[test]
    fn quantised_data_falls_back_to_mean_absolute_deviation() {
        let mut values = vec![5.0; 80];
        values.extend([6.0; 20]);
        let mad = window(&values);
        let config = MadConfig {
            window: Span::Rows(100),
        };
        let a = mad
            .assess(&config, 6.0, 100)
            .map(|a| a.score)
            .unwrap_or(f64::NAN);
        assert!(a.is_finite() && a > 1.0 && a < 10.0, "score {a}");
    }
}
