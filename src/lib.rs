//! The `weir` package's library: how the server assembles a database from the workspace's
//! crates. The SQL layer (`weir-sql`) knows no connector or function crate; this is where
//! Weir's built-in ones are registered, once, for the server, the tests and the benchmarks.
//!
//! ```text
//!  weir (binary: flags, logging, server lifetime) ─▶ weir::database() ─▶ weir-sql DatabaseBuilder
//!        + weir-connectors: sources (datagen, kafka, file) and sinks (kafka, parquet, postgres)
//!        + weir-udf: anomaly detectors, rolling aggregates, lag/lead (a FunctionLibrary)
//! ```

use std::sync::Arc;

use weir_sql::{Database, DatabaseBuilder};

/// A database builder with Weir's built-in connectors, sinks and functions registered:
/// `weir::database().build()` for an in-memory database, `.open(options)` for a durable one.
pub fn database() -> DatabaseBuilder {
    Database::builder()
        .connectors(weir_connectors::builtin_connectors())
        .sinks(weir_connectors::builtin_sinks())
        .functions(Arc::new(weir_udf::WeirFunctions))
}
