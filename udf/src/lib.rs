//! # weir-udf: Weir's SQL functions
//!
//! Functions Weir adds to DataFusion, as `ScalarUDFImpl` / `AggregateUDFImpl` /
//! `WindowUDFImpl`. The anomaly-detection library (z-score, MAD, EWMA, change points, isolation
//! forest, k-means, voting) lands here with its own issue; [`register`] is the one place the SQL
//! layer calls, so new functions need no wiring elsewhere.

use datafusion::execution::context::SessionContext;

/// Registers every Weir function with `ctx`. (None yet beyond DataFusion's own.)
pub fn register(ctx: &SessionContext) {
    let _ = ctx;
}
