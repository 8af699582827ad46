//! Multivariate detectors: one `ROW(x1, x2, …)` of numeric inputs per row, judged together.
//!
//! ```sql
//! SELECT machine_id, ts,
//!        anomaly_pca(ROW(temperature, pressure, vibration)) OVER w AS r
//! FROM readings WINDOW w AS (PARTITION BY machine_id ORDER BY ts);
//! -- (r).attribution.pressure: pressure's share of the score, negative when it is low
//! ```
//!
//! Every multivariate detector returns the univariate result struct plus
//! `attribution STRUCT<x1 DOUBLE, x2 DOUBLE, …>`: each input's share of `score` (the absolute
//! shares sum to the score, Kinesis-style), signed by the input's direction from its mean. A
//! struct with one field per input, rather than a MAP, so SQL reads `(r).attribution.pressure`
//! directly and every Postgres client can decode it. `expected`, `lower` and `upper` are NULL
//! (there is no single centre); `direction` is that of the input with the largest share.
//!
//! Scores are native to each detector (a distance, a mass, a path length), so severity comes
//! from the p-value instead, on the σ scale the univariate detectors use: `warn => 3` means
//! p ≤ 2.7e-3 and `crit => 5` means p ≤ 5.7e-7. Detectors without a distribution of their own
//! calibrate with [`ScoreCalibrator`] (the empirical distribution of recent scores, with an
//! exponential tail beyond its 90th percentile, so p-values keep falling past the largest score
//! seen).
//!
//! Rows judged anomalous are not learned (nor is their score calibrated), unless
//! `learn_anomalies => true` (the default of `anomaly_kmeans` only, whose clusters must learn
//! new operating modes) or `rebaseline_after` of them came in a row. A row with a NULL or
//! non-finite input gets a NULL result and leaves the state alone.

pub mod hst;
pub mod iforest;
pub mod kmeans;
pub mod pca;

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Builder, NullBufferBuilder, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::{Result, exec_datafusion_err, plan_err};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::detectors::moments::{Ring, Welford, spread_floor};
use crate::detectors::order_stat::OrderStatTree;
use crate::keyed::{KeyedWindowFunction, WindowState};
use crate::params::{Params, Span};
use crate::result::{Assessment, Direction, ResultBuilder, Severity, Thresholds, normal_upper_quantile};

/// The coerced type of a `ROW(…)` input: the same field names, every field DOUBLE.
pub fn coerce_features(function: &str, parameter: &str, t: &DataType) -> Result<DataType> {
    let DataType::Struct(fields) = t else {
        return plan_err!("{function}: {parameter} must be a ROW of numeric inputs, e.g. ROW(temperature, pressure), got {t}");
    };
    if fields.is_empty() {
        return plan_err!("{function}: {parameter} must have at least one input");
    }
    let fields = fields
        .iter()
        .map(|f| {
            if f.data_type().is_numeric() || f.data_type().is_null() {
                Ok(Field::new(f.name(), DataType::Float64, true))
            } else {
                plan_err!("{function}: input {} of {parameter} must be numeric, got {}", f.name(), f.data_type())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DataType::Struct(Fields::from(fields)))
}

/// The result type of a multivariate call whose first argument has type `features`.
pub fn multivariate_result_type(input_fields: &[FieldRef]) -> Result<DataType> {
    let features = match input_fields.first().map(|f| f.data_type()) {
        Some(DataType::Struct(fields)) => fields.clone(),
        _ => Fields::empty(),
    };
    Ok(with_attribution(&features))
}

fn with_attribution(features: &Fields) -> DataType {
    let attribution: Vec<Field> = features.iter().map(|f| Field::new(f.name(), DataType::Float64, true)).collect();
    let mut fields: Vec<FieldRef> = crate::result::result_fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("attribution", DataType::Struct(Fields::from(attribution)), true)));
    DataType::Struct(Fields::from(fields))
}

/// Running per-input statistics every multivariate detector can scale by.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeatureStats {
    moments: Vec<Welford>,
    min: Vec<f64>,
    max: Vec<f64>,
}

impl FeatureStats {
    fn new(dims: usize) -> Self {
        Self { moments: vec![Welford::default(); dims], min: vec![f64::INFINITY; dims], max: vec![f64::NEG_INFINITY; dims] }
    }

    fn learn(&mut self, x: &[f64]) {
        for (j, &v) in x.iter().enumerate() {
            self.moments[j].add(v);
            self.min[j] = self.min[j].min(v);
            self.max[j] = self.max[j].max(v);
        }
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
        out.extend(x.iter().enumerate().map(|(j, &v)| (v - self.mean(j)) / self.std(j)));
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
    sorted: OrderStatTree,
}

impl ScoreCalibrator {
    /// Calibrates by the last `window` scores.
    pub fn new(window: u64) -> Self {
        Self { window, recent: Ring::default(), sorted: OrderStatTree::default() }
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
        self.recent.push(Span::Rows(self.window.max(1)), 0, score, |old| {
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
        let (below, below_sum) = self.sorted.below(threshold);
        let tail = f64::from(n - below);
        let mean_excess = (self.sorted.total() - below_sum) / tail.max(1.0) - threshold;
        let scale = spread_floor(mean_excess, threshold);
        (tail + 1.0) / total * (-(score - threshold) / scale).exp()
    }

    /// Rebuilds the sorted index after loading.
    pub fn rebuild(&mut self) {
        self.sorted = OrderStatTree::default();
        for v in self.recent.values() {
            self.sorted.insert(v);
        }
    }

    /// Approximate bytes held.
    pub fn size(&self) -> usize {
        self.recent.size() + self.sorted.bytes()
    }
}

/// What a multivariate detector says about one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultiAssessment {
    /// Native score, higher = more anomalous, finite.
    pub score: f64,
    /// Tail probability in (0, 1].
    pub p_value: f64,
}

/// One key's state of a multivariate detector. Prequential, like [`crate::keyed::Detector`].
pub trait MultiDetector: Serialize + DeserializeOwned + Debug + Send + 'static {
    /// Constant settings, shared by every key.
    type Config: Debug + Send + Sync + 'static;

    /// Empty state for rows of `dims` inputs.
    fn new(config: &Self::Config, dims: usize) -> Self;
    /// Rows learned.
    fn n(&self) -> u64;
    /// Judges `x` against the state before it, writing each input's non-negative share of the
    /// score into `shares` (any scale: they are normalised to sum to the score); None while the
    /// state cannot judge yet.
    fn assess(&self, config: &Self::Config, stats: &FeatureStats, x: &[f64], shares: &mut [f64]) -> Option<MultiAssessment>;
    /// Folds `x` in; `stats` already include it.
    fn learn(&mut self, config: &Self::Config, stats: &FeatureStats, x: &[f64]);
    /// Rebuilds what is not saved after loading.
    fn rebuild(&mut self) {}
    /// Approximate bytes held.
    fn size(&self) -> usize;
}

/// Settings every multivariate call shares.
#[derive(Debug, Clone)]
pub struct MultiCommon {
    name: &'static str,
    /// WARNING / CRITICAL as σ-equivalents of the p-value.
    thresholds: Thresholds,
    min_samples: u64,
    learn_anomalies: bool,
    rebaseline_after: u64,
    input: usize,
}

impl MultiCommon {
    /// Reads the shared parameters (`warn`, `crit`, `min_samples`, `learn_anomalies`,
    /// `rebaseline_after`).
    pub fn from_params(name: &'static str, params: &Params, min_samples: u64, learn_anomalies: bool) -> Result<Self> {
        let warn = params.positive("warn", 3.0)?;
        let crit = params.positive("crit", 5.0_f64.max(warn))?;
        if crit < warn {
            return plan_err!("{name}: crit ({crit}) must not be below warn ({warn})");
        }
        Ok(Self {
            name,
            thresholds: Thresholds { warn, crit },
            min_samples: params.count("min_samples", min_samples)?,
            learn_anomalies: params.bool("learn_anomalies", learn_anomalies)?,
            rebaseline_after: params.count("rebaseline_after", 60)?,
            input: params.inputs.first().copied().unwrap_or(0),
        })
    }
}

/// A multivariate detector call.
#[derive(Debug)]
pub struct MultiFunction<D: MultiDetector> {
    common: Arc<MultiCommon>,
    config: Arc<D::Config>,
}

impl<D: MultiDetector> MultiFunction<D> {
    /// A call with these settings.
    pub fn new(common: MultiCommon, config: D::Config) -> Self {
        Self { common: Arc::new(common), config: Arc::new(config) }
    }
}

impl<D: MultiDetector> KeyedWindowFunction for MultiFunction<D> {
    fn name(&self) -> &str {
        self.common.name
    }

    fn new_state(&self) -> Box<dyn WindowState> {
        Box::new(MultiState::<D> { common: Arc::clone(&self.common), config: Arc::clone(&self.config), saved: None })
    }

    fn load_state(&self, bytes: &[u8]) -> Result<Box<dyn WindowState>> {
        let mut saved: Option<MultiSaved<D>> = postcard::from_bytes(bytes)
            .map_err(|e| exec_datafusion_err!("{}: checkpointed state does not decode: {e}", self.common.name))?;
        if let Some(saved) = saved.as_mut() {
            saved.detector.rebuild();
        }
        Ok(Box::new(MultiState::<D> { common: Arc::clone(&self.common), config: Arc::clone(&self.config), saved }))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
struct MultiSaved<D: MultiDetector> {
    stats: FeatureStats,
    detector: D,
    streak: u64,
}

/// One key's state; created on the first row, when the number of inputs is known.
#[derive(Debug)]
struct MultiState<D: MultiDetector> {
    common: Arc<MultiCommon>,
    config: Arc<D::Config>,
    saved: Option<MultiSaved<D>>,
}

impl<D: MultiDetector> MultiState<D> {
    fn step(&mut self, x: &[f64], shares: &mut [f64], out: &mut ResultBuilder, attribution: &mut Attribution) {
        let common = &self.common;
        let state = self.saved.get_or_insert_with(|| MultiSaved {
            stats: FeatureStats::new(x.len()),
            detector: D::new(&self.config, x.len()),
            streak: 0,
        });
        let n = state.detector.n();
        shares.fill(0.0);
        let assessment =
            if n < common.min_samples { None } else { state.detector.assess(&self.config, &state.stats, x, shares) };
        let Some(a) = assessment else {
            out.append_warmup(None, n);
            attribution.append_null();
            state.stats.learn(x);
            state.detector.learn(&self.config, &state.stats, x);
            return;
        };
        // Shares → signed attribution summing (in absolute value) to the score.
        let total: f64 = shares.iter().map(|s| s.abs()).sum();
        let mut top: Option<(f64, Option<Direction>)> = None;
        for (j, share) in shares.iter_mut().enumerate() {
            let direction = Direction::of(x[j], state.stats.mean(j));
            let magnitude = if total > 0.0 { share.abs() / total * a.score } else { 0.0 };
            *share = if direction == Some(Direction::Low) { -magnitude } else { magnitude };
            if top.is_none_or(|(m, _)| magnitude > m) {
                top = Some((magnitude, direction));
            }
        }
        let sigma = normal_upper_quantile(a.p_value / 2.0).max(0.0);
        let severity = common.thresholds.severity(sigma);
        let result = Assessment {
            score: a.score,
            p_value: a.p_value,
            expected: f64::NAN,
            spread: None,
            direction: top.and_then(|(_, d)| d),
        };
        out.append(&result, severity, None, n);
        attribution.append(shares);
        if severity != Severity::Normal {
            state.streak += 1;
            let rebaseline = common.rebaseline_after > 0 && state.streak >= common.rebaseline_after;
            if !common.learn_anomalies && !rebaseline {
                return;
            }
        } else {
            state.streak = 0;
        }
        state.stats.learn(x);
        state.detector.learn(&self.config, &state.stats, x);
    }
}

impl<D: MultiDetector> WindowState for MultiState<D> {
    fn evaluate(&mut self, args: &[ArrayRef]) -> Result<ArrayRef> {
        let input = args
            .get(self.common.input)
            .ok_or_else(|| exec_datafusion_err!("{}: missing input column", self.common.name))?;
        let Some(rows) = input.as_struct_opt() else {
            return Err(exec_datafusion_err!("{}: the input must be a ROW, got {}", self.common.name, input.data_type()));
        };
        let columns: Vec<_> = rows
            .columns()
            .iter()
            .map(|c| datafusion::arrow::compute::cast(c, &DataType::Float64))
            .collect::<std::result::Result<_, _>>()?;
        let columns: Vec<_> = columns.iter().map(|c| c.as_primitive::<Float64Type>()).collect();
        let dims = columns.len();
        let mut out = ResultBuilder::with_capacity(rows.len());
        let mut attribution = Attribution::new(rows.fields(), rows.len());
        let (mut x, mut shares) = (vec![0.0; dims], vec![0.0; dims]);
        for i in 0..rows.len() {
            let mut valid = rows.is_valid(i);
            for (j, column) in columns.iter().enumerate() {
                x[j] = column.value(i);
                valid &= column.is_valid(i) && x[j].is_finite();
            }
            if valid && self.saved.as_ref().is_none_or(|s| s.stats.moments.len() == dims) {
                self.step(&x, &mut shares, &mut out, &mut attribution);
            } else {
                out.append_null();
                attribution.append_null();
            }
        }
        out.finish_with(("attribution", attribution.finish()?))
    }

    fn save(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(&self.saved).map_err(|e| exec_datafusion_err!("{}: state does not encode: {e}", self.common.name))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.saved.as_ref().map_or(0, |s| s.detector.size() + s.stats.moments.len() * std::mem::size_of::<Welford>() * 2)
    }
}

/// The `attribution` column: one DOUBLE per input.
struct Attribution {
    fields: Fields,
    columns: Vec<Float64Builder>,
    validity: NullBufferBuilder,
}

impl Attribution {
    fn new(features: &Fields, rows: usize) -> Self {
        let fields: Vec<Field> = features.iter().map(|f| Field::new(f.name(), DataType::Float64, true)).collect();
        Self {
            fields: Fields::from(fields),
            columns: features.iter().map(|_| Float64Builder::with_capacity(rows)).collect(),
            validity: NullBufferBuilder::new(rows),
        }
    }

    fn append(&mut self, shares: &[f64]) {
        for (column, &share) in self.columns.iter_mut().zip(shares) {
            column.append_value(share);
        }
        self.validity.append_non_null();
    }

    fn append_null(&mut self) {
        for column in &mut self.columns {
            column.append_null();
        }
        self.validity.append_null();
    }

    fn finish(mut self) -> Result<ArrayRef> {
        let columns: Vec<ArrayRef> = self.columns.iter_mut().map(|c| Arc::new(c.finish()) as ArrayRef).collect();
        let len = self.validity.len();
        Ok(Arc::new(if self.fields.is_empty() {
            StructArray::new_empty_fields(len, self.validity.finish())
        } else {
            StructArray::try_new(self.fields, columns, self.validity.finish())?
        }))
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
        assert!(p100 < 0.1 && p200 < p100 && p400 < p200 && p400 > 0.0, "{p100} {p200} {p400}");
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
        for (x, k, p) in [(5.991, 2.0, 0.05), (16.919, 9.0, 0.05), (27.877, 9.0, 0.001)] {
            let got = chi_squared_upper_p(x, k);
            assert!((got - p).abs() / p < 0.1, "χ²({k}) at {x}: {got} vs {p}");
        }
        assert_eq!(chi_squared_upper_p(0.0, 3.0), 1.0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod shared_tests;
