//! `anomaly_pca`: correlated inputs judged together, by a streaming principal-component model.
//!
//! ```sql
//! SELECT machine_id, ts,
//!        anomaly_pca(ROW(temperature, pressure, flow), components => 2) OVER w AS r
//! FROM readings WINDOW w AS (PARTITION BY machine_id ORDER BY ts);
//! ```
//!
//! Temperature and pressure that rise together are normal; one rising without the other is
//! not, though neither is unusual on its own. Per key the detector keeps the mean and the
//! covariance of the inputs (cumulative, or exponentially weighted with `half_life` rows: d + d²
//! numbers) and, every `refit` rows, the eigendecomposition of their correlation matrix
//! (linfa-linalg's symmetric eigensolver).
//!
//! With z the standardised row, t = the projections on the first k = `components` principal
//! axes (eigenvalues λ) and r the residual off them:
//!
//! - T² = Σ t²/λ (Hotelling: unusual along the usual directions of variation);
//! - SPE = |r|² (squared prediction error: off the correlation structure);
//! - score = T² + SPE/σ², σ² the mean discarded eigenvalue: the squared Mahalanobis distance of
//!   probabilistic PCA, χ²-distributed with d degrees of freedom for normal data, which gives
//!   the p-value (Wilson–Hilferty).
//!
//! Attribution: input j's part of T² (z_j·Σ t_i·v_ij/λ_i) and of SPE (r_j²/σ²).

use datafusion::common::Result;
use linfa_linalg::eigh::Eigh;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::detectors::moments::spread_floor;
use crate::multivariate::{FeatureStats, MultiAssessment, MultiDetector, chi_squared_upper_p};
use crate::params::{Params, Span};

/// Eigenvalues (of a correlation matrix, which average 1) are floored here, so perfectly
/// correlated inputs give large finite scores rather than infinite ones.
const EIGENVALUE_FLOOR: f64 = 1e-3;

/// Settings of one call.
#[derive(Debug, Clone, Copy)]
pub struct PcaConfig {
    /// Principal axes kept (at most one fewer than the inputs).
    pub components: usize,
    /// Half-life of the covariance in rows (None: everything seen).
    pub half_life: Option<u64>,
    /// Rows between eigendecompositions.
    pub refit: u64,
}

impl PcaConfig {
    /// `anomaly_pca`'s parameters.
    pub fn from_params(params: &Params) -> Result<Self> {
        let components = params.count("components", 2)?.max(1) as usize;
        let half_life = match params.span("half_life", Span::Rows(u64::MAX)) {
            Ok(Span::Rows(u64::MAX)) => None,
            Ok(Span::Rows(rows)) => Some(rows),
            Ok(Span::Time(_)) => {
                return datafusion::common::plan_err!(
                    "anomaly_pca: half_life must be a number of rows"
                );
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            components,
            half_life,
            refit: params.count("refit", 32)?.max(1),
        })
    }
}

/// One key's model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pca {
    n: u64,
    dims: usize,
    mean: Vec<f64>,
    /// Covariance, row-major d × d.
    cov: Vec<f64>,
    /// The model in use: k principal axes (row-major k × d), their eigenvalues, and the mean
    /// discarded eigenvalue.
    axes: Vec<f64>,
    lambdas: Vec<f64>,
    residual: f64,
    since_fit: u64,
}

impl Pca {
    fn std(&self, j: usize) -> f64 {
        spread_floor(self.cov[j * self.dims + j].max(0.0).sqrt(), self.mean[j])
    }

    fn fit(&mut self, config: &PcaConfig) {
        let d = self.dims;
        let std: Vec<f64> = (0..d).map(|j| self.std(j)).collect();
        let correlation =
            Array2::from_shape_fn((d, d), |(a, b)| self.cov[a * d + b] / (std[a] * std[b]));
        let Ok((values, vectors)) = correlation.eigh() else {
            return;
        };
        if values.iter().any(|v| !v.is_finite()) {
            return;
        }
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        let k = config.components.min(d.saturating_sub(1));
        self.axes = order[..k]
            .iter()
            .flat_map(|&c| vectors.column(c).to_vec())
            .collect();
        self.lambdas = order[..k]
            .iter()
            .map(|&c| values[c].max(EIGENVALUE_FLOOR))
            .collect();
        let discarded = &order[k..];
        self.residual = (discarded.iter().map(|&c| values[c].max(0.0)).sum::<f64>()
            / discarded.len().max(1) as f64)
            .max(EIGENVALUE_FLOOR);
        self.since_fit = 0;
    }
}

impl MultiDetector for Pca {
    type Config = PcaConfig;

    fn new(_config: &PcaConfig, dims: usize) -> Self {
        Self {
            n: 0,
            dims,
            mean: vec![0.0; dims],
            cov: vec![0.0; dims * dims],
            axes: Vec::new(),
            lambdas: Vec::new(),
            residual: 1.0,
            since_fit: 0,
        }
    }

    fn n(&self) -> u64 {
        self.n
    }

    fn assess(
        &self,
        _config: &PcaConfig,
        _stats: &FeatureStats,
        x: &[f64],
        shares: &mut [f64],
    ) -> Option<MultiAssessment> {
        let d = self.dims;
        if self.n < 2 {
            return None;
        }
        let z: Vec<f64> = (0..d)
            .map(|j| (x[j] - self.mean[j]) / self.std(j))
            .collect();
        let mut residual = z.clone();
        let mut t2 = 0.0;
        for (axis, &lambda) in self.axes.chunks_exact(d).zip(&self.lambdas) {
            let t: f64 = axis.iter().zip(&z).map(|(v, z)| v * z).sum();
            t2 += t * t / lambda;
            for j in 0..d {
                residual[j] -= t * axis[j];
                shares[j] += (z[j] * t * axis[j] / lambda).abs();
            }
        }
        let mut spe = 0.0;
        for j in 0..d {
            let part = residual[j] * residual[j] / self.residual;
            spe += part;
            shares[j] += part;
        }
        let score = t2 + spe;
        Some(MultiAssessment {
            score,
            p_value: chi_squared_upper_p(score, d as f64),
        })
    }

    fn learn(&mut self, config: &PcaConfig, _stats: &FeatureStats, x: &[f64]) {
        let d = self.dims;
        self.n += 1;
        let cumulative = 1.0 / self.n as f64;
        let alpha = match config.half_life {
            Some(h) => cumulative.max(1.0 - 0.5_f64.powf(1.0 / h as f64)),
            None => cumulative,
        };
        let delta: Vec<f64> = (0..d).map(|j| x[j] - self.mean[j]).collect();
        for (j, m) in self.mean.iter_mut().enumerate() {
            *m += alpha * delta[j];
        }
        // Exponentially weighted covariance; with α = 1/n it is exactly the running population
        // covariance.
        for a in 0..d {
            for b in 0..d {
                let c = &mut self.cov[a * d + b];
                *c = (1.0 - alpha) * (*c + alpha * delta[a] * delta[b]);
            }
        }
        self.since_fit += 1;
        // Early on the covariance changes fast: refit every quarter of the rows seen until that
        // exceeds `refit`.
        if self.since_fit >= config.refit.min(self.n / 4).max(1) {
            self.fit(config);
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + (self.mean.len() + self.cov.len() + self.axes.len() + self.lambdas.len()) * 8
    }
}
