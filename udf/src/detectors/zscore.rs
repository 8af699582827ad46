//! `anomaly_zscore` and `anomaly_ewma`: how many standard deviations a value lies from its
//! baseline.
//!
//! ```sql
//! SELECT sensor_id, ts, temperature,
//!        anomaly_zscore(temperature, window => 600) OVER w AS z,                      -- last 600 rows
//!        anomaly_zscore(temperature, window => INTERVAL '10 minutes') OVER w AS z10m, -- last 10 minutes
//!        anomaly_zscore(temperature, method => 'cumulative') OVER w AS zall,
//!        anomaly_ewma(temperature, half_life => INTERVAL '5 minutes') OVER w AS e
//! FROM readings WINDOW w AS (PARTITION BY sensor_id ORDER BY ts);
//! ```
//!
//! - `method => 'window'` (default): mean and standard deviation of the last `window` rows
//!   (default 600) or of an INTERVAL of event time; O(1) per row, the window's values per key.
//! - `method => 'ewma'` / `anomaly_ewma`: exponentially weighted mean and variance with
//!   `half_life` (rows, or an INTERVAL: time-aware for irregular sampling); three numbers per key.
//! - `method => 'cumulative'`: everything seen (Welford); three numbers per key.
//!
//! score = |x − mean| / σ, p-value two-sided normal; WARNING at 3, CRITICAL at 5 (`warn`,
//! `crit`); band = mean ± warn·σ. A constant baseline has σ = 0: the same value scores 0 and any
//! other value a large finite score.

use serde::{Deserialize, Serialize};

use crate::detectors::moments::{EwMoments, SlidingMoments, Welford, spread_floor};
use crate::keyed::Detector;
use crate::params::{Params, Span};
use crate::result::{Assessment, Direction, normal_two_sided_p};

/// Where the baseline comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A sliding window.
    Window(Span),
    /// Exponential weighting with a half-life.
    Ewma(Span),
    /// Everything seen.
    Cumulative,
}

/// Settings of one call.
#[derive(Debug, Clone, Copy)]
pub struct ZScoreConfig {
    /// The baseline.
    pub method: Method,
}

impl ZScoreConfig {
    /// `anomaly_zscore`'s parameters.
    pub fn from_params(params: &Params) -> datafusion::common::Result<Self> {
        let method = match params.choice("method", &["window", "ewma", "cumulative"], "window")? {
            "ewma" => Method::Ewma(params.span("half_life", Span::Rows(100))?),
            "cumulative" => Method::Cumulative,
            _ => Method::Window(params.span("window", Span::Rows(600))?),
        };
        Ok(Self { method })
    }

    /// `anomaly_ewma`'s parameters.
    pub fn ewma_from_params(params: &Params) -> datafusion::common::Result<Self> {
        let default = if params.time.is_some() {
            Span::Time(300_000_000_000)
        } else {
            Span::Rows(100)
        };
        Ok(Self {
            method: Method::Ewma(params.span("half_life", default)?),
        })
    }
}

/// The per-key baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ZScore {
    /// Sliding window.
    Window(SlidingMoments),
    /// Exponentially weighted.
    Ewma(EwMoments),
    /// Cumulative.
    Cumulative(Welford),
}

impl ZScore {
    /// (n, mean, σ) of the baseline.
    pub fn moments(&self) -> (u64, f64, f64) {
        match self {
            ZScore::Window(m) => (m.stats().n(), m.stats().mean(), m.stats().std()),
            ZScore::Ewma(m) => (m.n(), m.mean(), m.std()),
            ZScore::Cumulative(m) => (m.n(), m.mean(), m.std()),
        }
    }
}

impl Detector for ZScore {
    type Config = ZScoreConfig;

    fn new(config: &ZScoreConfig) -> Self {
        match config.method {
            Method::Window(_) => ZScore::Window(SlidingMoments::default()),
            Method::Ewma(_) => ZScore::Ewma(EwMoments::default()),
            Method::Cumulative => ZScore::Cumulative(Welford::default()),
        }
    }

    fn n(&self) -> u64 {
        self.moments().0
    }

    fn expected(&self, _config: &ZScoreConfig) -> Option<f64> {
        let (n, mean, _) = self.moments();
        (n > 0).then_some(mean)
    }

    fn assess(&self, _config: &ZScoreConfig, x: f64, _ts: i64) -> Option<Assessment> {
        let (n, mean, std) = self.moments();
        if n < 2 {
            return None;
        }
        let spread = spread_floor(std, mean);
        let z = (x - mean) / spread;
        Some(Assessment {
            score: z.abs(),
            p_value: normal_two_sided_p(z),
            expected: mean,
            spread: Some(spread),
            direction: Direction::of(x, mean),
        })
    }

    fn learn(&mut self, config: &ZScoreConfig, x: f64, ts: i64) {
        match (self, config.method) {
            (ZScore::Window(m), Method::Window(span)) => m.add(span, ts, x),
            (ZScore::Ewma(m), Method::Ewma(half_life)) => m.add(half_life, ts, x),
            (ZScore::Cumulative(m), _) => m.add(x),
            // A state always matches its config (both come from one call).
            _ => {}
        }
    }

    fn size(&self) -> usize {
        match self {
            ZScore::Window(m) => m.size(),
            _ => std::mem::size_of::<Self>(),
        }
    }
}
