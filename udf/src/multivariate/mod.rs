//! Multivariate detectors: one `ROW(x1, x2, …)` of numeric inputs per row, judged together.
//!
//! ```sql
//! SELECT machine_id, ts,
//!        anomaly_pca(ROW(temperature, pressure, vibration)) OVER w AS r
//! FROM readings WINDOW w AS (PARTITION BY machine_id ORDER BY ts);
//! -- r['attribution']['pressure']: pressure's share of the score, negative when it is low
//! ```
//!
//! Every multivariate detector returns the univariate result struct plus
//! `attribution STRUCT<x1 DOUBLE, x2 DOUBLE, …>`: each input's share of `score` (the absolute
//! shares sum to the score, Kinesis-style), signed by the input's direction from its mean. A
//! struct with one field per input, rather than a MAP, so SQL reads `r['attribution']['pressure']`
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

pub mod calibration;
pub mod features;
pub mod hst;
pub mod iforest;
pub mod kmeans;
pub mod pca;

pub use calibration::{ScoreCalibrator, chi_squared_upper_p};
pub use features::FeatureStats;

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, NullBufferBuilder, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::{Result, exec_datafusion_err, plan_err};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::keyed::{KeyedWindowFunction, WindowState};
use crate::params::Params;
use crate::result::{
    Assessment, Direction, ResultBuilder, Severity, Thresholds, normal_upper_quantile,
};

/// The coerced type of a `ROW(…)` input: the same field names, every field DOUBLE.
pub fn coerce_features(function: &str, parameter: &str, t: &DataType) -> Result<DataType> {
    let DataType::Struct(fields) = t else {
        return plan_err!(
            "{function}: {parameter} must be a ROW of numeric inputs, e.g. ROW(temperature, pressure), got {t}"
        );
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
                plan_err!(
                    "{function}: input {} of {parameter} must be numeric, got {}",
                    f.name(),
                    f.data_type()
                )
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
    let attribution: Vec<Field> = features
        .iter()
        .map(|f| Field::new(f.name(), DataType::Float64, true))
        .collect();
    let mut fields: Vec<FieldRef> = crate::result::result_fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(
        "attribution",
        DataType::Struct(Fields::from(attribution)),
        true,
    )));
    DataType::Struct(Fields::from(fields))
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
    fn assess(
        &self,
        config: &Self::Config,
        stats: &FeatureStats,
        x: &[f64],
        shares: &mut [f64],
    ) -> Option<MultiAssessment>;
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
    pub fn from_params(
        name: &'static str,
        params: &Params,
        min_samples: u64,
        learn_anomalies: bool,
    ) -> Result<Self> {
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
        Self {
            common: Arc::new(common),
            config: Arc::new(config),
        }
    }
}

impl<D: MultiDetector> KeyedWindowFunction for MultiFunction<D> {
    fn name(&self) -> &str {
        self.common.name
    }

    fn new_state(&self) -> Box<dyn WindowState> {
        Box::new(MultiState::<D> {
            common: Arc::clone(&self.common),
            config: Arc::clone(&self.config),
            saved: None,
        })
    }

    fn load_state(&self, bytes: &[u8]) -> Result<Box<dyn WindowState>> {
        let mut saved: Option<MultiSaved<D>> = postcard::from_bytes(bytes).map_err(|e| {
            exec_datafusion_err!(
                "{}: checkpointed state does not decode: {e}",
                self.common.name
            )
        })?;
        if let Some(saved) = saved.as_mut() {
            saved.detector.rebuild();
        }
        Ok(Box::new(MultiState::<D> {
            common: Arc::clone(&self.common),
            config: Arc::clone(&self.config),
            saved,
        }))
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
    fn step(
        &mut self,
        x: &[f64],
        shares: &mut [f64],
        out: &mut ResultBuilder,
        attribution: &mut Attribution,
    ) {
        let common = &self.common;
        let state = self.saved.get_or_insert_with(|| MultiSaved {
            stats: FeatureStats::new(x.len()),
            detector: D::new(&self.config, x.len()),
            streak: 0,
        });
        let n = state.detector.n();
        shares.fill(0.0);
        let assessment = if n < common.min_samples {
            None
        } else {
            state.detector.assess(&self.config, &state.stats, x, shares)
        };
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
            let magnitude = if total > 0.0 {
                share.abs() / total * a.score
            } else {
                0.0
            };
            *share = if direction == Some(Direction::Low) {
                -magnitude
            } else {
                magnitude
            };
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
            return Err(exec_datafusion_err!(
                "{}: the input must be a ROW, got {}",
                self.common.name,
                input.data_type()
            ));
        };
        let columns: Vec<_> = rows
            .columns()
            .iter()
            .map(|c| datafusion::arrow::compute::cast(c, &DataType::Float64))
            .collect::<std::result::Result<_, _>>()?;
        let columns: Vec<_> = columns
            .iter()
            .map(|c| c.as_primitive::<Float64Type>())
            .collect();
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
            if valid && self.saved.as_ref().is_none_or(|s| s.stats.dims() == dims) {
                self.step(&x, &mut shares, &mut out, &mut attribution);
            } else {
                out.append_null();
                attribution.append_null();
            }
        }
        out.finish_with(("attribution", attribution.finish()?))
    }

    fn save(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(&self.saved)
            .map_err(|e| exec_datafusion_err!("{}: state does not encode: {e}", self.common.name))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .saved
                .as_ref()
                .map_or(0, |s| s.detector.size() + s.stats.size())
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
        let fields: Vec<Field> = features
            .iter()
            .map(|f| Field::new(f.name(), DataType::Float64, true))
            .collect();
        Self {
            fields: Fields::from(fields),
            columns: features
                .iter()
                .map(|_| Float64Builder::with_capacity(rows))
                .collect(),
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
        let columns: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| Arc::new(c.finish()) as ArrayRef)
            .collect();
        let len = self.validity.len();
        Ok(Arc::new(if self.fields.is_empty() {
            StructArray::new_empty_fields(len, self.validity.finish())
        } else {
            StructArray::try_new(self.fields, columns, self.validity.finish())?
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod shared_tests;
