//! Window functions as per-key state machines: the one piece both call forms share.
//!
//! A [`KeyedWindowFunction`] is one call (`anomaly_mad(temp, window => 600)`) with its constant
//! arguments bound. It makes a [`WindowState`] per `PARTITION BY` key; the state consumes that
//! key's rows in `ORDER BY` order, one batch at a time, and returns one output per row.
//!
//! - The batch form (DataFusion's `WindowUDFImpl`) makes one state per partition and feeds it
//!   the whole partition once.
//! - The streaming OVER operator (weir-engine) keeps one state per key for the life of the view
//!   and feeds it each key's rows as the watermark passes them, saving the state into
//!   checkpoints with [`WindowState::save`].
//!
//! Because both forms run the same state machine over the same rows in the same order, a
//! streaming view's output equals the same query run in batch.
//!
//! Detectors plug in through [`Detector`]; [`DetectorFunction`] adds what every detector shares:
//! warm-up, thresholds and severity, keeping anomalies out of the baseline (learned clipped to
//! the WARNING band, and in full after a persistent change), NULL handling and the result
//! struct.

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampNanosecondType};
use datafusion::common::{Result, exec_datafusion_err};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::params::Params;
use crate::result::{Assessment, ResultBuilder, Severity, Thresholds};

pub use weir_engine::window_function::{KeyedWindowFunction, WindowState};

/// A univariate detector's state for one key. Prequential: [`Detector::assess`] judges a value
/// against the state before it, [`Detector::learn`] then folds it in.
pub trait Detector: Serialize + DeserializeOwned + Debug + Send + 'static {
    /// Constant settings, shared by every key.
    type Config: Debug + Send + Sync + 'static;

    /// A change detector accumulates evidence from every row and restarts after an alarm,
    /// instead of keeping anomalies out of its baseline.
    const CHANGE_DETECTOR: bool = false;

    /// Empty state.
    fn new(config: &Self::Config) -> Self;
    /// Samples in the state.
    fn n(&self) -> u64;
    /// The baseline centre so far (shown during warm-up).
    fn expected(&self, config: &Self::Config) -> Option<f64>;
    /// Judges `x` at event time `ts` (nanoseconds; the row number without event time), or None
    /// while the state cannot judge yet.
    fn assess(&self, config: &Self::Config, x: f64, ts: i64) -> Option<Assessment>;
    /// Folds `x` into the state.
    fn learn(&mut self, config: &Self::Config, x: f64, ts: i64);
    /// A row judged anomalous: learn it clipped to the WARNING band (`clipped`), so an outlier
    /// moves the baseline no more than a value at the band's edge would. Detectors that also
    /// track the previous value keep the real `x` there.
    fn learn_clipped(&mut self, config: &Self::Config, x: f64, clipped: f64, ts: i64) {
        let _ = x;
        self.learn(config, clipped, ts);
    }
    /// Called after an alarm when [`Detector::CHANGE_DETECTOR`].
    fn restart(&mut self) {}
    /// Rebuilds what is not saved (indexes over saved values) after loading.
    fn rebuild(&mut self) {}
    /// Approximate bytes held.
    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

/// What every detector call shares.
#[derive(Debug, Clone)]
pub struct Common {
    /// Function name (for errors).
    pub name: &'static str,
    /// WARNING / CRITICAL in the detector's native unit.
    pub thresholds: Thresholds,
    /// Rows judged as warm-up until the state holds this many samples.
    pub min_samples: u64,
    /// Learn rows judged anomalous as they are (by default they are learned clipped to the
    /// WARNING band: skipping them outright makes the baseline ever narrower on heavy-tailed
    /// data, flagging more and learning less; on Shuttle that halves PR-AUC).
    pub learn_anomalies: bool,
    /// After this many anomalous rows in a row, accept them as the new normal (0: never).
    pub rebaseline_after: u64,
    /// Argument index of the value.
    pub input: usize,
    /// Argument index of the event time.
    pub time: Option<usize>,
}

impl Common {
    /// Reads the shared parameters.
    pub fn from_params(name: &'static str, params: &Params, warn: f64, crit: f64) -> Result<Self> {
        let warn = params.positive("warn", warn)?;
        let crit = params.positive("crit", crit.max(warn))?;
        if crit < warn {
            return datafusion::common::plan_err!(
                "{name}: crit ({crit}) must not be below warn ({warn})"
            );
        }
        Ok(Self {
            name,
            thresholds: Thresholds { warn, crit },
            min_samples: params.count("min_samples", 30)?,
            learn_anomalies: params.bool("learn_anomalies", false)?,
            rebaseline_after: params.count("rebaseline_after", 60)?,
            input: params.inputs.first().copied().unwrap_or(0),
            time: params.time,
        })
    }
}

/// A detector call: the [`KeyedWindowFunction`] of one `anomaly_*` call.
#[derive(Debug)]
pub struct DetectorFunction<D: Detector> {
    common: Arc<Common>,
    config: Arc<D::Config>,
}

impl<D: Detector> DetectorFunction<D> {
    /// A call with these settings.
    pub fn new(common: Common, config: D::Config) -> Self {
        Self {
            common: Arc::new(common),
            config: Arc::new(config),
        }
    }
}

impl<D: Detector> KeyedWindowFunction for DetectorFunction<D> {
    fn name(&self) -> &str {
        self.common.name
    }

    fn new_state(&self) -> Box<dyn WindowState> {
        Box::new(DetectorState::<D> {
            common: Arc::clone(&self.common),
            config: Arc::clone(&self.config),
            saved: Saved {
                detector: D::new(&self.config),
                streak: 0,
                rows: 0,
            },
        })
    }

    fn load_state(&self, bytes: &[u8]) -> Result<Box<dyn WindowState>> {
        let mut saved: Saved<D> = postcard::from_bytes(bytes).map_err(|e| {
            exec_datafusion_err!(
                "{}: checkpointed state does not decode: {e}",
                self.common.name
            )
        })?;
        saved.detector.rebuild();
        Ok(Box::new(DetectorState::<D> {
            common: Arc::clone(&self.common),
            config: Arc::clone(&self.config),
            saved,
        }))
    }
}

/// What a key's state saves.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(bound = "")]
struct Saved<D: Detector> {
    detector: D,
    /// Anomalous rows in a row (for re-baselining).
    streak: u64,
    /// Rows seen (the time axis of calls without event time).
    rows: i64,
}

#[derive(Debug)]
struct DetectorState<D: Detector> {
    common: Arc<Common>,
    config: Arc<D::Config>,
    saved: Saved<D>,
}

impl<D: Detector> DetectorState<D> {
    fn step(&mut self, x: f64, ts: i64, out: &mut ResultBuilder) {
        let state = &mut self.saved;
        let common = &self.common;
        let n = state.detector.n();
        let assessment = if n < common.min_samples {
            None
        } else {
            state.detector.assess(&self.config, x, ts)
        };
        let Some(a) = assessment else {
            out.append_warmup(state.detector.expected(&self.config), n);
            state.detector.learn(&self.config, x, ts);
            return;
        };
        let severity = common.thresholds.severity(a.score);
        let band = a.spread.map(|s| {
            (
                a.expected - s * common.thresholds.warn,
                a.expected + s * common.thresholds.warn,
            )
        });
        out.append(&a, severity, band, n);
        if D::CHANGE_DETECTOR {
            state.detector.learn(&self.config, x, ts);
            if severity != Severity::Normal {
                state.detector.restart();
            }
            return;
        }
        if severity == Severity::Normal {
            state.streak = 0;
            state.detector.learn(&self.config, x, ts);
            return;
        }
        state.streak += 1;
        let rebaseline = common.rebaseline_after > 0 && state.streak >= common.rebaseline_after;
        match band {
            Some((lower, upper)) if !common.learn_anomalies && !rebaseline => {
                state
                    .detector
                    .learn_clipped(&self.config, x, x.clamp(lower, upper), ts);
            }
            _ => state.detector.learn(&self.config, x, ts),
        }
    }
}

impl<D: Detector> WindowState for DetectorState<D> {
    fn evaluate(&mut self, args: &[ArrayRef]) -> Result<ArrayRef> {
        let input = args
            .get(self.common.input)
            .ok_or_else(|| exec_datafusion_err!("{}: missing input column", self.common.name))?;
        let values = cast(input, &DataType::Float64)?;
        let values = values.as_primitive::<Float64Type>();
        let times = match self.common.time.and_then(|i| args.get(i)) {
            Some(ts) => Some(cast(ts, &DataType::Timestamp(TimeUnit::Nanosecond, None))?),
            None => None,
        };
        let times = times
            .as_ref()
            .map(|t| t.as_primitive::<TimestampNanosecondType>());
        let mut out = ResultBuilder::with_capacity(values.len());
        for i in 0..values.len() {
            let x = values.value(i);
            let ts = match times {
                Some(t) if t.is_null(i) => None,
                Some(t) => Some(t.value(i)),
                None => {
                    self.saved.rows += 1;
                    Some(self.saved.rows)
                }
            };
            match ts {
                Some(ts) if values.is_valid(i) && x.is_finite() => self.step(x, ts, &mut out),
                _ => out.append_null(),
            }
        }
        out.finish()
    }

    fn save(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(&self.saved)
            .map_err(|e| exec_datafusion_err!("{}: state does not encode: {e}", self.common.name))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.saved.detector.size()
    }
}
