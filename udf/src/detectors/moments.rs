//! Running mean and variance three ways, O(1) per value: cumulative (Welford), over a sliding
//! window of rows or event time (Welford with removal), and exponentially weighted (EWMA/EWMV,
//! time-aware for irregular sampling).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::params::Span;

/// Mean and population variance of everything seen (Welford 1962: numerically stable).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Welford {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Welford {
    /// Adds a value.
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Removes a value that was added (the sliding window's retraction).
    pub fn remove(&mut self, x: f64) {
        if self.n <= 1 {
            *self = Welford::default();
            return;
        }
        let old_mean = self.mean;
        self.n -= 1;
        self.mean = (old_mean * (self.n + 1) as f64 - x) / self.n as f64;
        self.m2 -= (x - old_mean) * (x - self.mean);
        if self.m2 < 0.0 {
            self.m2 = 0.0;
        }
    }

    /// Values held.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Their mean.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Sum of squared deviations from the mean.
    pub fn m2(&self) -> f64 {
        self.m2.max(0.0)
    }

    /// Their population standard deviation.
    pub fn std(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.m2 / self.n as f64).max(0.0).sqrt()
        }
    }
}

/// The values inside a sliding window of rows or event time, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ring {
    values: VecDeque<(i64, f64)>,
}

impl Ring {
    /// Appends `x` at `ts`, then drops what fell out of `span`, calling `evicted` for each.
    pub fn push(&mut self, span: Span, ts: i64, x: f64, mut evicted: impl FnMut(f64)) {
        self.values.push_back((ts, x));
        match span {
            Span::Rows(w) => {
                while self.values.len() as u64 > w {
                    if let Some((_, old)) = self.values.pop_front() {
                        evicted(old);
                    }
                }
            }
            Span::Time(width) => {
                let newest = self.values.back().map_or(ts, |v| v.0);
                while self
                    .values
                    .front()
                    .is_some_and(|&(t, _)| t <= newest.saturating_sub(width))
                {
                    if let Some((_, old)) = self.values.pop_front() {
                        evicted(old);
                    }
                }
            }
        }
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values, oldest first.
    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.values.iter().map(|v| v.1)
    }

    /// Approximate bytes held.
    pub fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<(i64, f64)>()
    }
}

/// Mean and variance over a sliding window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SlidingMoments {
    ring: Ring,
    stats: Welford,
    /// Retractions since the statistics were last recomputed from the ring: floating-point
    /// error of add/remove grows with it, so it is reset every window's worth.
    removals: u64,
}

impl SlidingMoments {
    /// Adds `x` at `ts` and drops what left `span`.
    pub fn add(&mut self, span: Span, ts: i64, x: f64) {
        self.stats.add(x);
        let stats = &mut self.stats;
        let mut removed = 0;
        self.ring.push(span, ts, x, |old| {
            stats.remove(old);
            removed += 1;
        });
        self.removals += removed;
        if self.removals > self.ring.len() as u64 + 64 {
            self.recompute();
        }
    }

    fn recompute(&mut self) {
        let mut stats = Welford::default();
        for x in self.ring.values() {
            stats.add(x);
        }
        self.stats = stats;
        self.removals = 0;
    }

    /// The window's statistics.
    pub fn stats(&self) -> &Welford {
        &self.stats
    }

    /// Approximate bytes held.
    pub fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.ring.size()
    }
}

/// Exponentially weighted mean and variance. With a half-life in event time the weight of a
/// value decays with the time elapsed, so irregular sampling is handled.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EwMoments {
    n: u64,
    mean: f64,
    var: f64,
    last_ts: i64,
}

impl EwMoments {
    /// The smoothing factor for a value arriving at `ts`.
    fn alpha(&self, half_life: Span, ts: i64) -> f64 {
        match half_life {
            Span::Rows(h) => 1.0 - (-(std::f64::consts::LN_2) / h as f64).exp(),
            Span::Time(h) => {
                let dt = ts.saturating_sub(self.last_ts).max(0) as f64;
                1.0 - (-(std::f64::consts::LN_2) * dt / h as f64).exp()
            }
        }
    }

    /// Adds `x` at `ts`.
    pub fn add(&mut self, half_life: Span, ts: i64, x: f64) {
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            // Until 1/α values are in, weigh them equally (α = 1/n): the weighted statistics
            // then equal the plain mean and variance, instead of a variance biased towards its
            // initial 0 that would flag normal values right after warm-up.
            let alpha = self.alpha(half_life, ts).max(1.0 / (self.n + 1) as f64);
            let diff = x - self.mean;
            let increment = alpha * diff;
            self.mean += increment;
            self.var = ((1.0 - alpha) * (self.var + diff * increment)).max(0.0);
        }
        self.n += 1;
        self.last_ts = self.last_ts.max(ts);
    }

    /// Values seen.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The weighted mean.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The weighted standard deviation.
    pub fn std(&self) -> f64 {
        self.var.sqrt()
    }
}

/// The smallest spread a detector divides by: a constant signal has spread 0, and any change
/// from it must give a large but finite score, never `inf` or NaN.
pub fn spread_floor(spread: f64, centre: f64) -> f64 {
    spread.max(centre.abs() * 1e-9).max(1e-300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_moments_match_a_recomputation() {
        let mut m = SlidingMoments::default();
        for i in 0..1000 {
            m.add(Span::Rows(10), i, (i % 7) as f64 * 1.5 + 1e6);
        }
        let tail: Vec<f64> = (990..1000).map(|i| (i % 7) as f64 * 1.5 + 1e6).collect();
        let mean = tail.iter().sum::<f64>() / 10.0;
        let var = tail.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 10.0;
        assert!((m.stats().mean() - mean).abs() < 1e-6);
        assert!((m.stats().std() - var.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn time_windows_drop_old_values() {
        let mut m = SlidingMoments::default();
        for i in 0..10 {
            m.add(Span::Time(5), i, i as f64);
        }
        // Values at 5..=9 remain (t > 9 - 5).
        assert_eq!(m.stats().n(), 5);
        assert!((m.stats().mean() - 7.0).abs() < 1e-12);
    }

    #[test]
    fn ewma_starts_as_the_plain_mean_and_variance() {
        let mut ew = EwMoments::default();
        let mut plain = Welford::default();
        for i in 0..5 {
            ew.add(Span::Rows(1000), i, i as f64 * 2.0);
            plain.add(i as f64 * 2.0);
        }
        assert!((ew.mean() - plain.mean()).abs() < 1e-12);
        assert!((ew.std() - plain.std()).abs() < 1e-12);
    }

    #[test]
    fn ewma_of_a_constant_has_no_spread() {
        let mut m = EwMoments::default();
        for i in 0..100 {
            m.add(Span::Rows(10), i, 3.0);
        }
        assert_eq!(m.mean(), 3.0);
        assert_eq!(m.std(), 0.0);
    }
}
