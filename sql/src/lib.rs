//! # weir-sql: from SQL text to running pipelines
//!
//! ```text
//! SQL text ─▶ parser (Weir DDL on sqlparser) ─▶ WeirStatement
//!    CREATE SOURCE            ─▶ connector validates options ─▶ catalog + SourceTable
//!    CREATE MATERIALIZED VIEW ─▶ DataFusion LogicalPlan (optimized) ─▶ stream planner
//!                                ─▶ operators ─▶ spawn_pipeline ─▶ ViewTable (queryable)
//!    CREATE SINK … FROM view  ─▶ sink connector opens a writer ─▶ spawn_sink on the view's
//!                                change stream (two-phase commit with checkpoints)
//!    CREATE SINK … AS query   ─▶ the query as the sink's own view <sink>_query, then as above
//!    anything else            ─▶ DataFusion over views and system tables
//! ```
//!
//! - [`parser`]: `CREATE SOURCE`, `CREATE MATERIALIZED VIEW … [EMIT ON WINDOW CLOSE]`,
//!   `EXPLAIN CREATE MATERIALIZED VIEW`, `CREATE SINK … FROM view | AS query`, `SHOW SOURCES |
//!   MATERIALIZED VIEWS | SINKS`, `DROP …`, `CHECKPOINT`.
//! - `create_source.rs`, `create_view.rs`, `drop.rs`: the DDL statements.
//! - `sinks.rs`: `CREATE SINK` (options, format, recovery from the checkpoint, a sink's own
//!   query view) and `weir_sinks`.
//! - [`planner`]: the stream planner; refuses what it cannot run incrementally, naming it.
//!   `planner/over.rs` plans `OVER (PARTITION BY … ORDER BY ts)` onto the engine's OVER operator;
//!   `named_args.rs` resolves `name => value` arguments of Weir's functions (skipped ones become
//!   NULL = default) and passes a call's ORDER BY column as its event time.
//! - [`tables`]: `TUMBLE(…)`, sources as (unscannable) tables, system tables
//!   (`weir_sources`, `weir_views`, `weir_late_rows`).
//! - [`database`]: [`database::Database`] (shared) and [`database::Session`] (per client);
//!   [`database::Database::open`] for a durable database in a data directory.
//! - [`pg`]: PostgreSQL compatibility: `pg_catalog` and `information_schema` derived from the
//!   catalog, catalog/session functions, syntax rewrites, `SET`/`SHOW` and session identity.
//! - `apply`: subqueries DataFusion cannot turn into joins (psql's `= ANY(outer array)`,
//!   correlations through functions, `IN (…)` in a select list) run per distinct outer tuple.
//! - [`durable`]: the persisted catalog, replayed at start with each view's checkpointed state,
//!   `CHECKPOINT`, and `weir_checkpoints` / `weir_checkpoint_state`.
//!
//! Errors carry a [`error::SqlErrorKind`]; only the wire layer turns kinds into SQLSTATEs.

mod apply;
mod create_source;
mod create_view;
pub mod database;
mod drop;
pub mod durable;
pub mod error;
pub mod functions;
mod named_args;
pub mod parser;
pub mod planner;
mod sinks;
pub mod system_tables;
pub mod tables;

pub use database::{
    Database, DatabaseBuilder, DatabaseExtension, DatabaseOptions, QueryResult, Session,
};
pub use error::{Result, SqlError, SqlErrorKind};
