//! `changepoint_cusum`: two-sided CUSUM (Page 1954) on standardised values, for small
//! persistent shifts of level that a z-score misses.
//!
//! ```sql
//! SELECT line_id, ts, changepoint_cusum(pressure, k => 0.5, h => 5) OVER w AS shift
//! FROM readings WINDOW w AS (PARTITION BY line_id ORDER BY ts);
//! ```
//!
//! Each value is standardised against a baseline (`baseline => 'ewma'` with `half_life`,
//! default 69 rows ≈ α = 0.01, or `'cumulative'`): z = (x − mean) / σ. Two sums accumulate the
//! drift beyond the slack `k` (in σ): g⁺ = max(0, g⁺ + z − k), g⁻ = max(0, g⁻ − z − k).
//! score = max(g⁺, g⁻); an alarm (WARNING) at `h` (default 5), CRITICAL at `crit` (default
//! 2h); after an alarm the detector starts over (baseline, sums and warm-up), as a new segment
//! begins at a change point, so one shift gives one alarm. `direction` says which
//! sum fired (HIGH: a step up). The p-value is Siegmund's approximation for the tail of a
//! reflected random walk with drift −k: p ≈ 2·exp(−2k·score).

use serde::{Deserialize, Serialize};

use crate::detectors::moments::{EwMoments, Welford, spread_floor};
use crate::keyed::Detector;
use crate::params::{Params, Span};
use crate::result::{Assessment, Direction, clamp_p};

/// Settings of one call.
#[derive(Debug, Clone, Copy)]
pub struct CusumConfig {
    /// Slack in σ.
    pub k: f64,
    /// EWMA half-life of the baseline; None: cumulative baseline.
    pub half_life: Option<Span>,
    /// The sums start once the baseline holds this many values.
    pub warm: u64,
}

impl CusumConfig {
    /// `changepoint_cusum`'s parameters.
    pub fn from_params(params: &Params) -> datafusion::common::Result<Self> {
        let half_life = match params.choice("baseline", &["ewma", "cumulative"], "ewma")? {
            "cumulative" => None,
            _ => Some(params.span("half_life", Span::Rows(69))?),
        };
        Ok(Self {
            k: params.f64("k", 0.5)?.max(0.0),
            half_life,
            warm: params.count("min_samples", 30)?,
        })
    }
}

/// The baseline and the two sums of one key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cusum {
    ewma: EwMoments,
    cumulative: Welford,
    up: f64,
    down: f64,
}

impl Cusum {
    fn baseline(&self, config: &CusumConfig) -> (u64, f64, f64) {
        match config.half_life {
            Some(_) => (self.ewma.n(), self.ewma.mean(), self.ewma.std()),
            None => (
                self.cumulative.n(),
                self.cumulative.mean(),
                self.cumulative.std(),
            ),
        }
    }

    /// The sums after `x`, with the baseline's mean.
    fn sums(&self, config: &CusumConfig, x: f64) -> Option<(f64, f64, f64)> {
        let (n, mean, std) = self.baseline(config);
        if n < 2 {
            return None;
        }
        let z = (x - mean) / spread_floor(std, mean);
        Some((
            (self.up + z - config.k).max(0.0),
            (self.down - z - config.k).max(0.0),
            mean,
        ))
    }
}

impl Detector for Cusum {
    type Config = CusumConfig;
    const CHANGE_DETECTOR: bool = true;

    fn new(_config: &CusumConfig) -> Self {
        Cusum::default()
    }

    fn n(&self) -> u64 {
        self.ewma.n().max(self.cumulative.n())
    }

    fn expected(&self, config: &CusumConfig) -> Option<f64> {
        let (n, mean, _) = self.baseline(config);
        (n > 0).then_some(mean)
    }

    fn assess(&self, config: &CusumConfig, x: f64, _ts: i64) -> Option<Assessment> {
        let (up, down, mean) = self.sums(config, x)?;
        let score = up.max(down);
        // The sum that grew more says which way the level moved.
        let direction = Direction::of(up, down);
        Some(Assessment {
            score,
            p_value: clamp_p(2.0 * (-2.0 * config.k.max(0.05) * score).exp()),
            expected: mean,
            spread: None,
            direction,
        })
    }

    fn learn(&mut self, config: &CusumConfig, x: f64, ts: i64) {
        if self.n() >= config.warm
            && let Some((up, down, _)) = self.sums(config, x)
        {
            self.up = up;
            self.down = down;
        }
        match config.half_life {
            Some(half_life) => self.ewma.add(half_life, ts, x),
            None => self.cumulative.add(x),
        }
    }

    fn restart(&mut self) {
        *self = Cusum::default();
    }
}
