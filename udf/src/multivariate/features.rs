//! Running per-input statistics (mean, σ, range) that multivariate detectors scale rows by, and
//! use to sign attributions.

use serde::{Deserialize, Serialize};

use crate::detectors::moments::{Welford, spread_floor};

/// Running per-input statistics every multivariate detector can scale by.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeatureStats {
    moments: Vec<Welford>,
    min: Vec<f64>,
    max: Vec<f64>,
}

impl FeatureStats {
    /// Empty statistics for `dims` inputs.
    pub(crate) fn new(dims: usize) -> Self {
        Self {
            moments: vec![Welford::default(); dims],
            min: vec![f64::INFINITY; dims],
            max: vec![f64::NEG_INFINITY; dims],
        }
    }

    /// Folds a row in.
    pub(crate) fn learn(&mut self, x: &[f64]) {
        for (j, &v) in x.iter().enumerate() {
            self.moments[j].add(v);
            self.min[j] = self.min[j].min(v);
            self.max[j] = self.max[j].max(v);
        }
    }

    /// Number of inputs.
    pub fn dims(&self) -> usize {
        self.moments.len()
    }

    /// Approximate bytes held.
    pub fn size(&self) -> usize {
        self.moments.capacity() * std::mem::size_of::<Welford>()
            + (self.min.capacity() + self.max.capacity()) * 8
    }

    /// Mean of input `j`.
    pub fn mean(&self, j: usize) -> f64 {
        self.moments[j].mean()
    }

    /// Standard deviation of input `j`, floored so a constant input scales finitely.
    pub fn std(&self, j: usize) -> f64 {
        spread_floor(self.moments[j].std(), self.moments[j].mean())
    }

    /// `x` standardised: (x − mean) / σ per input.
    pub fn standardise(&self, x: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend(
            x.iter()
                .enumerate()
                .map(|(j, &v)| (v - self.mean(j)) / self.std(j)),
        );
    }

    /// `x` scaled to [0, 1] by the range seen so far (values outside it fall outside [0, 1]).
    pub fn min_max(&self, x: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend(x.iter().enumerate().map(|(j, &v)| {
            let range = self.max[j] - self.min[j];
            if range > 0.0 && range.is_finite() {
                (v - self.min[j]) / range
            } else {
                // A constant input so far: its value in the middle, anything else outside.
                0.5 + (v - self.min[j]).signum() * f64::from(u8::from(v != self.min[j]))
            }
        }));
    }
}
