//! `anomaly_diff`: any univariate detector on the change between a value and the value `lag`
//! rows before it. Rate-of-change faults (a sensor jumping within its normal range) hide from
//! detectors on the raw value; on UCR-135 a rolling MAD on the first difference is the best
//! simple detector measured (anomaly.md §4.3).
//!
//! ```sql
//! SELECT ts, anomaly_diff(flow, inner => 'mad', window => 512) OVER (ORDER BY ts) AS d FROM pump;
//! ```
//!
//! `inner => 'mad'` (default) | `'zscore'` | `'ewma'`, with that detector's parameters
//! (`window`, `method`, `half_life`); `lag => 1`. `expected` and the band are in the input's
//! unit: the previous value plus the expected change.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::detectors::mad::{Mad, MadConfig};
use crate::detectors::zscore::{ZScore, ZScoreConfig};
use crate::keyed::Detector;
use crate::params::Params;
use crate::result::{Assessment, Direction};

/// The detector applied to the differences.
#[derive(Debug, Clone, Copy)]
pub enum InnerConfig {
    /// `anomaly_mad`.
    Mad(MadConfig),
    /// `anomaly_zscore` / `anomaly_ewma`.
    ZScore(ZScoreConfig),
}

/// Settings of one call.
#[derive(Debug, Clone, Copy)]
pub struct DiffConfig {
    /// Rows between the values compared.
    pub lag: usize,
    /// The inner detector.
    pub inner: InnerConfig,
}

impl DiffConfig {
    /// `anomaly_diff`'s parameters.
    pub fn from_params(params: &Params) -> datafusion::common::Result<Self> {
        let lag = params.count("lag", 1)?.max(1) as usize;
        let inner = match params.choice("inner", &["mad", "zscore", "ewma"], "mad")? {
            "zscore" => InnerConfig::ZScore(ZScoreConfig::from_params(params)?),
            "ewma" => InnerConfig::ZScore(ZScoreConfig::ewma_from_params(params)?),
            _ => InnerConfig::Mad(MadConfig::from_params(params)?),
        };
        Ok(Self { lag, inner })
    }
}

/// The inner detector's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Inner {
    /// MAD.
    Mad(Mad),
    /// z-score.
    ZScore(ZScore),
}

/// The last `lag` values and the inner detector of one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Diff {
    history: VecDeque<f64>,
    inner: Inner,
}

impl Diff {
    fn inner_assess(&self, config: &DiffConfig, d: f64, ts: i64) -> Option<Assessment> {
        match (&self.inner, &config.inner) {
            (Inner::Mad(m), InnerConfig::Mad(c)) => m.assess(c, d, ts),
            (Inner::ZScore(z), InnerConfig::ZScore(c)) => z.assess(c, d, ts),
            _ => None,
        }
    }
}

impl Detector for Diff {
    type Config = DiffConfig;

    fn new(config: &DiffConfig) -> Self {
        let inner = match &config.inner {
            InnerConfig::Mad(c) => Inner::Mad(Mad::new(c)),
            InnerConfig::ZScore(c) => Inner::ZScore(ZScore::new(c)),
        };
        Diff {
            history: VecDeque::with_capacity(config.lag + 1),
            inner,
        }
    }

    fn n(&self) -> u64 {
        match &self.inner {
            Inner::Mad(m) => m.n(),
            Inner::ZScore(z) => z.n(),
        }
    }

    fn expected(&self, _config: &DiffConfig) -> Option<f64> {
        self.history.back().copied()
    }

    fn assess(&self, config: &DiffConfig, x: f64, ts: i64) -> Option<Assessment> {
        if self.history.len() < config.lag {
            return None;
        }
        let before = *self.history.front()?;
        let a = self.inner_assess(config, x - before, ts)?;
        let expected = before + a.expected;
        Some(Assessment {
            expected,
            direction: Direction::of(x, expected),
            ..a
        })
    }

    fn learn(&mut self, config: &DiffConfig, x: f64, ts: i64) {
        if self.history.len() == config.lag
            && let Some(before) = self.history.pop_front()
        {
            match (&mut self.inner, &config.inner) {
                (Inner::Mad(m), InnerConfig::Mad(c)) => m.learn(c, x - before, ts),
                (Inner::ZScore(z), InnerConfig::ZScore(c)) => z.learn(c, x - before, ts),
                _ => {}
            }
        }
        self.history.push_back(x);
    }

    fn learn_clipped(&mut self, config: &DiffConfig, x: f64, clipped: f64, ts: i64) {
        // The inner detector learns the clipped change; the history keeps the real value.
        self.learn(config, clipped, ts);
        if let Some(last) = self.history.back_mut() {
            *last = x;
        }
    }

    fn rebuild(&mut self) {
        if let Inner::Mad(m) = &mut self.inner {
            m.rebuild();
        }
    }

    fn size(&self) -> usize {
        self.history.capacity() * 8
            + match &self.inner {
                Inner::Mad(m) => m.size(),
                Inner::ZScore(z) => z.size(),
            }
    }
}
