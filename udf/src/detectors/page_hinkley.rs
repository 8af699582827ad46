//! `changepoint_page_hinkley`: the Page–Hinkley drift test, with river's semantics and
//! defaults (`delta => 0.005`, `lambda => 50`, `alpha => 0.9999`, 30 values of warm-up, both
//! directions), so results compare with river's `drift.PageHinkley`.
//!
//! ```sql
//! SELECT ts, changepoint_page_hinkley(price, lambda => 20) OVER (ORDER BY ts) AS drift FROM ticks;
//! ```
//!
//! With m the running mean (including x): S⁺ = α·S⁺ + (x − m − δ), S⁻ = α·S⁻ + (x − m + δ);
//! score = max(S⁺ − min S⁺, max S⁻ − S⁻), in the input's unit. An alarm (WARNING) at `lambda`,
//! CRITICAL at `crit` (default 2·lambda); after an alarm the test restarts. The statistic has no
//! closed-form null distribution, so `p_value` is a scale, not a probability: 2.7e-3 (the
//! WARNING p of every other detector) at `lambda`, falling geometrically above it.

use serde::{Deserialize, Serialize};

use crate::keyed::Detector;
use crate::params::Params;
use crate::result::{Assessment, Direction, clamp_p};

/// The p-value every detector reports at its WARNING threshold (≈ 3σ two-sided).
const WARNING_P: f64 = 2.7e-3;

/// Settings of one call.
#[derive(Debug, Clone, Copy)]
pub struct PageHinkleyConfig {
    /// Magnitude of change tolerated.
    pub delta: f64,
    /// Decision threshold.
    pub lambda: f64,
    /// Fading factor of the sums.
    pub alpha: f64,
}

impl PageHinkleyConfig {
    /// `changepoint_page_hinkley`'s parameters.
    pub fn from_params(params: &Params) -> datafusion::common::Result<Self> {
        let alpha = params.positive("alpha", 0.9999)?;
        if alpha > 1.0 {
            return datafusion::common::plan_err!(
                "changepoint_page_hinkley: alpha must be in (0, 1], got {alpha}"
            );
        }
        Ok(Self {
            delta: params.f64("delta", 0.005)?,
            lambda: params.positive("lambda", 50.0)?,
            alpha,
        })
    }
}

/// The test's state for one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageHinkley {
    n: u64,
    mean: f64,
    up: f64,
    up_min: f64,
    down: f64,
    down_max: f64,
}

impl Default for PageHinkley {
    fn default() -> Self {
        Self {
            n: 0,
            mean: 0.0,
            up: 0.0,
            up_min: f64::INFINITY,
            down: 0.0,
            down_max: f64::NEG_INFINITY,
        }
    }
}

impl PageHinkley {
    fn after(&self, config: &PageHinkleyConfig, x: f64) -> PageHinkley {
        let n = self.n + 1;
        let mean = self.mean + (x - self.mean) / n as f64;
        let up = config.alpha * self.up + (x - mean - config.delta);
        let down = config.alpha * self.down + (x - mean + config.delta);
        PageHinkley {
            n,
            mean,
            up,
            up_min: self.up_min.min(up),
            down,
            down_max: self.down_max.max(down),
        }
    }
}

impl Detector for PageHinkley {
    type Config = PageHinkleyConfig;
    const CHANGE_DETECTOR: bool = true;

    fn new(_config: &PageHinkleyConfig) -> Self {
        PageHinkley::default()
    }

    fn n(&self) -> u64 {
        self.n
    }

    fn expected(&self, _config: &PageHinkleyConfig) -> Option<f64> {
        (self.n > 0).then_some(self.mean)
    }

    fn assess(&self, config: &PageHinkleyConfig, x: f64, _ts: i64) -> Option<Assessment> {
        let next = self.after(config, x);
        let rise = next.up - next.up_min;
        let fall = next.down_max - next.down;
        let score = rise.max(fall).max(0.0);
        let direction = Direction::of(rise, fall);
        Some(Assessment {
            score,
            p_value: clamp_p(WARNING_P.powf(score / config.lambda)),
            expected: self.mean,
            spread: None,
            direction,
        })
    }

    fn learn(&mut self, config: &PageHinkleyConfig, x: f64, _ts: i64) {
        *self = self.after(config, x);
    }

    fn restart(&mut self) {
        *self = PageHinkley::default();
    }
}
