//! The detectors, one per file, each a [`crate::keyed::Detector`] (per-key, prequential,
//! serialisable state).

pub mod cusum;
pub mod diff;
pub mod mad;
pub mod moments;
pub mod order_stat;
pub mod order_statistics;
pub mod page_hinkley;
pub mod seasonal;
pub mod zscore;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod tests;
