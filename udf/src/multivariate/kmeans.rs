//! `anomaly_kmeans`: distance to the nearest of k cluster centres, learned by mini-batch k-means
//! (linfa-clustering's incremental `KMeans::fit_with`, Sculley 2010).
//!
//! ```sql
//! SELECT machine_id, ts,
//!        anomaly_kmeans(ROW(spindle_load, feed_rate, vibration), k => 4, batch => 256) OVER w AS r
//! FROM readings WINDOW w AS (PARTITION BY machine_id ORDER BY ts);
//! ```
//!
//! For machines with a few operating modes (idle, cutting, ramping), each a cluster: a row far
//! from every mode is anomalous. Every `batch` rows one mini-batch update moves the k centres
//! (the first batch seeds them with k-means++ from `seed`); until then the key is warming up.
//! Rows are scaled to [0, 1] by the key's running range, each batch by the range at its end (a
//! key's first rows scaled by the range of a handful of values would fix the centres badly, as
//! their counts grow). Unlike the other detectors it learns rows judged anomalous by default
//! (`learn_anomalies => true`): a cluster model meets a new operating mode as distant rows, and
//! must learn them to make the mode a cluster.
//!
//! score = Euclidean distance (in scaled units) to the nearest centre; p-value from the key's last
//! `calibration` scores ([`crate::multivariate::ScoreCalibrator`]); attribution = each input's
//! part of the squared distance.

use datafusion::common::{Result, plan_datafusion_err};
use linfa::DatasetBase;
use linfa::ParamGuard;
use linfa::traits::FitWith;
use linfa_clustering::{IncrKMeansError, KMeans, KMeansValidParams};
use linfa_nn::distance::L2Dist;
use ndarray::Array2;
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::multivariate::{FeatureStats, MultiAssessment, MultiDetector, ScoreCalibrator};
use crate::params::Params;

/// Settings of one call.
#[derive(Debug, Clone)]
pub struct KMeansConfig {
    params: KMeansValidParams<f64, Xoshiro256Plus, L2Dist>,
    batch: usize,
    calibration: u64,
}

impl KMeansConfig {
    /// `anomaly_kmeans`'s parameters.
    pub fn from_params(params: &Params) -> Result<Self> {
        let k = params.count("k", 4)?;
        let batch = params.count("batch", 256)?;
        if k == 0 || batch < k {
            return datafusion::common::plan_err!(
                "anomaly_kmeans: k ({k}) must be at least 1 and batch ({batch}) at least k"
            );
        }
        let seed = params.count("seed", 42)?;
        let checked = KMeans::params_with_rng(k as usize, Xoshiro256Plus::seed_from_u64(seed))
            .tolerance(1e-5)
            .check()
            .map_err(|e| plan_datafusion_err!("anomaly_kmeans: {e}"))?;
        Ok(Self {
            params: checked,
            batch: batch as usize,
            calibration: params.count("calibration", 2000)?.max(100),
        })
    }
}

/// One key's clusters.
#[derive(Debug, Serialize, Deserialize)]
pub struct KMeansDetector {
    n: u64,
    dims: usize,
    model: Option<KMeans<f64, L2Dist>>,
    /// Rows of the next mini-batch, row-major.
    pending: Vec<f64>,
    calibrator: ScoreCalibrator,
}

impl KMeansDetector {
    /// Squared distance per input to the nearest centre, and the distance.
    fn nearest(&self, z: &[f64], parts: &mut [f64]) -> Option<f64> {
        let centroids = self.model.as_ref()?.centroids();
        let mut best: Option<(f64, usize)> = None;
        for (c, centre) in centroids.rows().into_iter().enumerate() {
            let d2: f64 = centre.iter().zip(z).map(|(c, z)| (z - c) * (z - c)).sum();
            if best.is_none_or(|(b, _)| d2 < b) {
                best = Some((d2, c));
            }
        }
        let (d2, c) = best?;
        for (j, part) in parts.iter_mut().enumerate() {
            let diff = z[j] - centroids[[c, j]];
            *part = diff * diff;
        }
        Some(d2.sqrt())
    }

    fn update(&mut self, config: &KMeansConfig, stats: &FeatureStats) {
        let rows = self.pending.len() / self.dims.max(1);
        // Scaled now, by what is known at the end of the batch, not row by row as they came:
        // the first rows of a key would otherwise be scaled by a range of a handful of values.
        let mut batch = Vec::with_capacity(self.pending.len());
        let mut scaled = Vec::with_capacity(self.dims);
        for row in self.pending.chunks_exact(self.dims) {
            scale(stats, row, &mut scaled);
            batch.extend_from_slice(&scaled);
        }
        self.pending.clear();
        let Ok(records) = Array2::from_shape_vec((rows, self.dims), batch) else {
            return;
        };
        let dataset = DatasetBase::from(records);
        self.model = match config.params.fit_with(self.model.take(), &dataset) {
            Ok(model) | Err(IncrKMeansError::NotConverged(model)) => Some(model),
            // Only invalid parameters fail, and they were checked when the call was planned.
            Err(e) => {
                tracing::warn!(error = %e, "anomaly_kmeans: mini-batch update failed; keeping the previous centres");
                None
            }
        };
    }
}

fn scale(stats: &FeatureStats, x: &[f64], out: &mut Vec<f64>) {
    stats.min_max(x, out);
}

impl MultiDetector for KMeansDetector {
    type Config = KMeansConfig;

    fn new(config: &KMeansConfig, dims: usize) -> Self {
        Self {
            n: 0,
            dims,
            model: None,
            pending: Vec::with_capacity(config.batch * dims),
            calibrator: ScoreCalibrator::new(config.calibration),
        }
    }

    fn n(&self) -> u64 {
        self.n
    }

    fn assess(
        &self,
        _config: &KMeansConfig,
        stats: &FeatureStats,
        x: &[f64],
        shares: &mut [f64],
    ) -> Option<MultiAssessment> {
        if self.calibrator.len() < 30 {
            return None;
        }
        let mut z = Vec::with_capacity(x.len());
        scale(stats, x, &mut z);
        let score = self.nearest(&z, shares)?;
        Some(MultiAssessment {
            score,
            p_value: self.calibrator.p_value(score),
        })
    }

    fn learn(&mut self, config: &KMeansConfig, stats: &FeatureStats, x: &[f64]) {
        self.n += 1;
        let mut z = Vec::with_capacity(x.len());
        scale(stats, x, &mut z);
        let mut parts = vec![0.0; self.dims];
        if let Some(score) = self.nearest(&z, &mut parts) {
            self.calibrator.learn(score);
        }
        self.pending.extend_from_slice(x);
        if self.pending.len() >= config.batch * self.dims {
            self.update(config, stats);
        }
    }

    fn rebuild(&mut self) {
        self.calibrator.rebuild();
    }

    fn size(&self) -> usize {
        let model = self
            .model
            .as_ref()
            .map_or(0, |m| m.centroids().len() * 8 + m.cluster_count().len() * 8);
        std::mem::size_of::<Self>() + model + self.pending.capacity() * 8 + self.calibrator.size()
    }
}
