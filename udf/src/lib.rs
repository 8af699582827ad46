//! # weir-udf: Weir's SQL functions
//!
//! Anomaly detection as plain SQL, in two call forms over one implementation:
//!
//! ```text
//!             anomaly_mad(x, window => 600) OVER (PARTITION BY k ORDER BY ts)
//!                                 │
//!                   DetectorUdwf::bind (constant arguments → KeyedWindowFunction)
//!                   ┌─────────────┴──────────────┐
//!      batch: WindowUDFImpl              streaming: weir-engine's OVER operator
//!      one WindowState per partition,    one WindowState per key for the life of the
//!      fed the whole partition           view, fed each key's rows as the watermark
//!                                        passes them; saved into checkpoints
//! ```
//!
//! - [`result`]: the one result struct every detector returns (score, p-value, severity,
//!   band, direction, warm-up, n).
//! - [`keyed`]: implementations of the engine's [`KeyedWindowFunction`] / [`WindowState`] (the
//!   per-key state machine both forms run; the trait lives in `weir_engine::window_function`,
//!   so the engine depends on no function library) and [`keyed::Detector`], the small trait a
//!   detector implements;
//!   [`keyed::DetectorFunction`] adds warm-up, thresholds, severity, not learning anomalies and
//!   re-baselining.
//! - [`detectors`]: z-score (window / EWMA / cumulative), MAD (exact sliding median), first
//!   differences, per-phase seasonal baselines, CUSUM, Page–Hinkley, one file each.
//! - [`multivariate`]: detectors over `ROW(x1, x2, …)`: streaming PCA (T² + SPE), mini-batch
//!   k-means (linfa-clustering), half-space trees, a sliding-window isolation forest; they add
//!   a per-input `attribution` to the result and take severity from calibrated p-values.
//! - [`functions`]: the detectors as `WindowUDFImpl`s with named parameters.
//! - [`aggregate`]: the aggregate form, `anomaly_mad_agg` / `anomaly_zscore_agg`: a group's
//!   most extreme value judged against the group (GROUP BY, streaming window aggregates,
//!   two-phase, sliding frames).
//! - [`vote`]: `anomaly_vote`, a scalar function combining results.
//! - [`alerts`]: `anomaly_alert`, per-key incidents (OPEN / ESCALATE / CLOSE with
//!   `min_duration` and `cooldown`) from per-row results, for sinks.
//! - [`params`]: named, typed, constant parameters.
//! - [`WeirFunctions`]: all of the above as the engine's `FunctionLibrary`, which is how the
//!   SQL layer finds them (it does not depend on this crate).
//! - [`streaming`]: which `OVER` calls a streaming view runs incrementally: the above, plus
//!   `lag` and `lead` ([`lag`]) and [`rolling`] aggregates (count, sum, avg, min, max, stddev, variance over
//!   `ROWS n PRECEDING`, `RANGE INTERVAL … PRECEDING` or from the first row).
//!
//! Invariants: detectors are prequential (a row is scored against the state before it, then
//! learned) and deterministic; scores are finite (a constant baseline gives a large finite
//! score, never `inf`); a NULL or non-finite input gives a NULL result and leaves the state
//! alone.

pub mod aggregate;
pub mod alerts;
pub mod detectors;
pub mod functions;
pub mod keyed;
pub mod lag;
pub mod multivariate;
#[cfg(test)]
mod over_window_tests;
pub mod params;
pub mod result;
pub mod rolling;
pub mod streaming;
pub mod vote;

use datafusion::common::Result;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};

pub use functions::keyed_window_function;
pub use keyed::{KeyedWindowFunction, WindowState};
pub use streaming::streaming_window_function;
pub use weir_engine::function_library::{FunctionLibrary, WindowCall};

/// Weir's functions as one [`FunctionLibrary`], for the server to register when it builds a
/// database.
#[derive(Debug, Default, Clone, Copy)]
pub struct WeirFunctions;

impl FunctionLibrary for WeirFunctions {
    fn register(&self, ctx: &SessionContext) -> Result<()> {
        register(ctx)
    }

    fn parameter_names(&self, name: &str) -> Option<Vec<&'static str>> {
        parameter_names(name)
    }

    fn takes_row_input(&self, name: &str) -> bool {
        takes_row_input(name)
    }

    fn takes_event_time(&self, name: &str) -> bool {
        takes_event_time(name)
    }

    fn window_function(
        &self,
        call: &WindowCall<'_>,
        order_by: &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    ) -> Option<Result<weir_engine::function_library::BoundWindowCall>> {
        streaming_window_function(call, order_by)
    }
}

/// Registers every Weir function with `ctx`.
pub fn register(ctx: &SessionContext) -> Result<()> {
    for function in functions::detector_functions()? {
        ctx.register_udwf(WindowUDF::new_from_impl(function));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(vote::AnomalyVote::try_new()?));
    for function in aggregate::GroupOutlier::all()? {
        ctx.register_udaf(AggregateUDF::new_from_impl(function));
    }
    Ok(())
}

/// The parameter names of Weir function `name`, in order, when it takes named parameters.
/// The SQL layer uses them to fill parameters a named call skips with NULL ("the default").
pub fn parameter_names(name: &str) -> Option<Vec<&'static str>> {
    if name.eq_ignore_ascii_case("anomaly_vote") {
        return Some(vote::VOTE_PARAMS.to_vec());
    }
    if name.eq_ignore_ascii_case("anomaly_mad_agg")
        || name.eq_ignore_ascii_case("anomaly_zscore_agg")
    {
        return Some(aggregate::AGGREGATE_PARAMS.iter().map(|p| p.name).collect());
    }
    let functions = functions::detector_functions().ok()?;
    let function = functions
        .iter()
        .find(|f| datafusion::logical_expr::WindowUDFImpl::name(*f).eq_ignore_ascii_case(name))?;
    Some(function.params().iter().map(|p| p.name).collect())
}

/// True when `name`'s first parameter is a `ROW(x1, x2, …)` of inputs (a multivariate detector).
pub fn takes_row_input(name: &str) -> bool {
    let Ok(functions) = functions::detector_functions() else {
        return false;
    };
    functions.iter().any(|f| {
        datafusion::logical_expr::WindowUDFImpl::name(f).eq_ignore_ascii_case(name)
            && f.params()
                .first()
                .is_some_and(|p| p.kind == params::ParamKind::Features)
    })
}

/// True when `name`'s last parameter is the event time, filled from the call's `ORDER BY`.
pub fn takes_event_time(name: &str) -> bool {
    parameter_names(name).is_some_and(|names| names.last() == Some(&params::TIME.name))
}
