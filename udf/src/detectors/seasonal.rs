//! `anomaly_seasonal`: an online per-phase baseline for periodic signals (daily load, hourly
//! cycles, a machine's recipe loop), with the residual scored by an inner detector.
//!
//! ```sql
//! SELECT line_id, ts,
//!        anomaly_seasonal(power, period => INTERVAL '1 day', bins => 96) OVER w AS r
//! FROM meters WINDOW w AS (PARTITION BY line_id ORDER BY ts);
//! ```
//!
//! The period (an INTERVAL of event time, or a number of rows) is cut into `bins` phases
//! (default 24; for a period in rows, one phase per row up to 1,024). Each phase keeps an
//! exponentially weighted mean (`smoothing => 0.1`); a value's residual against its phase's mean
//! is scored by `inner => 'mad'` (default, with `window`) or `'zscore'`. `expected` and the band
//! are in the input's unit: the phase's mean plus the inner detector's. A phase seen for the
//! first time falls back to the mean of the phases seen so far. O(bins) numbers per key plus the
//! inner detector's state.

use serde::{Deserialize, Serialize};

use crate::detectors::mad::{Mad, MadConfig};
use crate::detectors::zscore::{ZScore, ZScoreConfig};
use crate::keyed::Detector;
use crate::params::{Params, Span};
use crate::result::{Assessment, Direction};

/// Settings of one call.
#[derive(Debug, Clone, Copy)]
pub struct SeasonalConfig {
    /// The period.
    pub period: Span,
    /// Phases per period.
    pub bins: usize,
    /// Weight of a new value in its phase's mean.
    pub smoothing: f64,
    /// The residual's detector.
    pub inner: SeasonalInner,
}

/// The detector applied to residuals.
#[derive(Debug, Clone, Copy)]
pub enum SeasonalInner {
    /// `anomaly_mad`.
    Mad(MadConfig),
    /// `anomaly_zscore`.
    ZScore(ZScoreConfig),
}

impl SeasonalConfig {
    /// `anomaly_seasonal`'s parameters.
    pub fn from_params(params: &Params) -> datafusion::common::Result<Self> {
        let default_period = if params.time.is_some() {
            Span::Time(86_400_000_000_000)
        } else {
            Span::Rows(24)
        };
        let period = params.span("period", default_period)?;
        let bins = match period {
            Span::Rows(n) => n.min(1024) as usize,
            Span::Time(_) => params.count("bins", 24)?.clamp(1, 100_000) as usize,
        };
        let smoothing = params.positive("smoothing", 0.1)?;
        if smoothing > 1.0 {
            return datafusion::common::plan_err!(
                "anomaly_seasonal: smoothing must be in (0, 1], got {smoothing}"
            );
        }
        let inner = match params.choice("inner", &["mad", "zscore"], "mad")? {
            "zscore" => SeasonalInner::ZScore(ZScoreConfig::from_params(params)?),
            _ => SeasonalInner::Mad(MadConfig::from_params(params)?),
        };
        Ok(Self {
            period,
            bins,
            smoothing,
            inner,
        })
    }

    fn phase(&self, ts: i64, row: u64) -> usize {
        match self.period {
            Span::Rows(n) => (row % n.max(1)) as usize % self.bins.max(1),
            Span::Time(p) => {
                let offset = ts.rem_euclid(p.max(1)) as i128;
                ((offset * self.bins as i128) / p.max(1) as i128) as usize
            }
        }
    }
}

/// Per-phase means and the residual detector of one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seasonal {
    /// Mean per phase (NaN: not seen yet).
    means: Vec<f64>,
    /// Values seen (the phase of a period in rows).
    rows: u64,
    mad: Option<Mad>,
    zscore: Option<ZScore>,
}

impl Seasonal {
    /// The phase's mean, or the mean of the phases seen so far.
    fn baseline(&self, phase: usize) -> Option<f64> {
        match self.means.get(phase) {
            Some(m) if m.is_finite() => Some(*m),
            _ => {
                let seen: Vec<f64> = self
                    .means
                    .iter()
                    .copied()
                    .filter(|m| m.is_finite())
                    .collect();
                (!seen.is_empty()).then(|| seen.iter().sum::<f64>() / seen.len() as f64)
            }
        }
    }
}

impl Detector for Seasonal {
    type Config = SeasonalConfig;

    fn new(config: &SeasonalConfig) -> Self {
        let (mad, zscore) = match &config.inner {
            SeasonalInner::Mad(c) => (Some(Mad::new(c)), None),
            SeasonalInner::ZScore(c) => (None, Some(ZScore::new(c))),
        };
        Seasonal {
            means: vec![f64::NAN; config.bins.max(1)],
            rows: 0,
            mad,
            zscore,
        }
    }

    fn n(&self) -> u64 {
        self.mad
            .as_ref()
            .map(|m| m.n())
            .or(self.zscore.as_ref().map(|z| z.n()))
            .unwrap_or(0)
    }

    fn expected(&self, config: &SeasonalConfig) -> Option<f64> {
        self.baseline(config.phase(0, self.rows))
    }

    fn assess(&self, config: &SeasonalConfig, x: f64, ts: i64) -> Option<Assessment> {
        let base = self.baseline(config.phase(ts, self.rows))?;
        let residual = x - base;
        let a = match (&config.inner, &self.mad, &self.zscore) {
            (SeasonalInner::Mad(c), Some(m), _) => m.assess(c, residual, ts),
            (SeasonalInner::ZScore(c), _, Some(z)) => z.assess(c, residual, ts),
            _ => None,
        }?;
        let expected = base + a.expected;
        Some(Assessment {
            expected,
            direction: Direction::of(x, expected),
            ..a
        })
    }

    fn learn(&mut self, config: &SeasonalConfig, x: f64, ts: i64) {
        let phase = config.phase(ts, self.rows);
        if let Some(base) = self.baseline(phase) {
            let residual = x - base;
            match (&config.inner, &mut self.mad, &mut self.zscore) {
                (SeasonalInner::Mad(c), Some(m), _) => m.learn(c, residual, ts),
                (SeasonalInner::ZScore(c), _, Some(z)) => z.learn(c, residual, ts),
                _ => {}
            }
        }
        if let Some(mean) = self.means.get_mut(phase) {
            *mean = if mean.is_finite() {
                *mean + config.smoothing * (x - *mean)
            } else {
                x
            };
        }
        self.rows += 1;
    }

    fn rebuild(&mut self) {
        if let Some(m) = &mut self.mad {
            m.rebuild();
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.means.capacity() * 8
            + self.mad.as_ref().map_or(0, Mad::size)
            + self.zscore.as_ref().map_or(0, ZScore::size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_normal_for_the_day_but_wrong_for_its_hour_is_flagged() {
        let config = SeasonalConfig {
            period: Span::Rows(24),
            bins: 24,
            smoothing: 0.1,
            inner: SeasonalInner::Mad(MadConfig {
                window: Span::Rows(200),
            }),
        };
        let mut s = Seasonal::new(&config);
        let mut seed = 3u64;
        let value = |i: u64, seed: &mut u64| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            100.0 * ((i % 24) as f64 / 24.0 * std::f64::consts::TAU).sin()
                + ((*seed >> 33) as f64 / (1u64 << 31) as f64)
        };
        for i in 0..24 * 20 {
            let x = value(i, &mut seed);
            s.learn(&config, x, i as i64);
        }
        // −100 is within the cycle's range, but far from the phase it arrives in (mean ≈ 0).
        let next = s.rows;
        let normal = s
            .assess(&config, value(next, &mut seed), next as i64)
            .map(|a| a.score)
            .unwrap_or(f64::NAN);
        let wrong = s
            .assess(&config, -100.0, next as i64)
            .map(|a| a.score)
            .unwrap_or(f64::NAN);
        assert!(normal < 3.5, "normal {normal}");
        assert!(wrong > 20.0, "wrong {wrong}");
    }
}
