//! p-values for detectors without a distribution of their own, and the χ² tail for those with
//! one.

use serde::{Deserialize, Serialize};

use crate::detectors::moments::{Ring, spread_floor};
use crate::detectors::order_statistics::OrderStatistics;
use crate::params::Span;

/// The empirical distribution of a detector's recent scores, as p-values.
///
/// Up to its 90th percentile u, p = (#scores ≥ s + 1) / (n + 1). Beyond it the exceedances are
/// modelled as exponential (peaks over threshold with a zero shape): p = P(S ≥ u) ·
/// exp(−(s − u) / mean excess), so a score past everything seen still gets a smaller p-value
/// the larger it is, and severity can reach CRITICAL.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScoreCalibrator {
    window: u64,
    recent: Ring,
    #[serde(skip)]
    sorted: OrderStatistics,
}

impl ScoreCalibrator {
    /// Calibrates by the last `window` scores.
    pub fn new(window: u64) -> Self {
        Self {
            window,
            recent: Ring::default(),
            sorted: OrderStatistics::default(),
        }
    }

    /// Scores held.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// True before the first score.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Adds a score.
    pub fn learn(&mut self, score: f64) {
        if !score.is_finite() {
            return;
        }
        let sorted = &mut self.sorted;
        self.recent
            .push(Span::Rows(self.window.max(1)), 0, score, |old| {
                sorted.remove(old);
            });
        sorted.insert(score);
    }

    /// The p-value of `score`.
    pub fn p_value(&self, score: f64) -> f64 {
        let n = self.sorted.len() as u32;
        if n == 0 {
            return 1.0;
        }
        let at_or_above = |s: f64| f64::from(n - self.sorted.count_less(s));
        let threshold = self.sorted.select((n * 9) / 10).unwrap_or(score);
        let total = f64::from(n) + 1.0;
        if score <= threshold {
            return (at_or_above(score) + 1.0) / total;
        }
        let (tail, tail_sum) = self.sorted.at_or_above(threshold);
        let tail = f64::from(tail);
        let mean_excess = tail_sum / tail.max(1.0) - threshold;
        let scale = spread_floor(mean_excess, threshold);
        (tail + 1.0) / total * (-(score - threshold) / scale).exp()
    }

    /// Rebuilds the sorted index after loading.
    pub fn rebuild(&mut self) {
        self.sorted = OrderStatistics::default();
        for v in self.recent.values() {
            self.sorted.insert(v);
        }
    }

    /// Approximate bytes held.
    pub fn size(&self) -> usize {
        self.recent.size() + self.sorted.bytes()
    }
}

/// The upper tail of a χ² distribution with `k` degrees of freedom at `x`, by the
/// Wilson–Hilferty cube-root normal approximation (within 10 % of the exact tail in the range
/// severity uses, for k ≥ 2).
pub fn chi_squared_upper_p(x: f64, k: f64) -> f64 {
    if x <= 0.0 || k <= 0.0 {
        return 1.0;
    }
    let v = 2.0 / (9.0 * k);
    let z = ((x / k).cbrt() - (1.0 - v)) / v.sqrt();
    crate::result::clamp_p(0.5 * libm::erfc(z / std::f64::consts::SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrated_p_values_fall_with_the_score_past_everything_seen() {
        let mut c = ScoreCalibrator::new(1000);
        for i in 0..1000 {
            c.learn(f64::from(i % 100));
        }
        assert!((c.p_value(50.0) - 0.5).abs() < 0.02, "{}", c.p_value(50.0));
        let (p100, p200, p400) = (c.p_value(100.0), c.p_value(200.0), c.p_value(400.0));
        assert!(
            p100 < 0.1 && p200 < p100 && p400 < p200 && p400 > 0.0,
            "{p100} {p200} {p400}"
        );
        let mut constant = ScoreCalibrator::new(10);
        for _ in 0..20 {
            constant.learn(1.0);
        }
        assert_eq!(constant.len(), 10);
        assert!(constant.p_value(1.0) > 0.9);
        assert!(constant.p_value(2.0).is_finite() && constant.p_value(2.0) < 1e-6);
    }

    #[test]
    fn chi_squared_tails_match_known_quantiles() {
        // χ²(2) upper 5 % point 5.991, χ²(9) 16.919, χ²(9) 0.1 % point 27.877.
        for (x, k, p) in [
            (5.991, 2.0, 0.05),
            (16.919, 9.0, 0.05),
            (27.877, 9.0, 0.001),
        ] {
            let got = chi_squared_upper_p(x, k);
            assert!((got - p).abs() / p < 0.1, "χ²({k}) at {x}: {got} vs {p}");
        }
        assert_eq!(chi_squared_upper_p(0.0, 3.0), 1.0);
    }
}
