//! # weir-sql: from SQL text to running pipelines
//!
//! Streaming SQL: Weir's DDL, planning, and the catalog of running objects. It depends on
//! `weir-engine` only; connectors, sinks and function libraries are handed to it through
//! [`Database::builder`], and PostgreSQL's wire, catalogs and client dialect live above it in
//! `weir-pg` (installed as a [`DatabaseExtension`]).
//!
//! ```text
//! SQL text ─▶ parser (Weir DDL on sqlparser) ─▶ WeirStatement
//!    CREATE SOURCE            ─▶ connector validates options ─▶ catalog + SourceTable
//!    CREATE MATERIALIZED VIEW ─▶ DataFusion LogicalPlan (optimized) ─▶ stream planner
//!                                ─▶ ViewPipeline (input + operators) ─▶ engine's ViewRuntime
//!                                ─▶ ViewTable (queryable)
//!    CREATE SINK … FROM view  ─▶ sink connector opens a writer ─▶ spawn_sink on the view's
//!                                change stream (two-phase commit with checkpoints)
//!    CREATE SINK … AS query   ─▶ the query as the sink's own view <sink>_query, then as above
//!    anything else            ─▶ DataFusion over views and system tables
//! ```
//!
//! - [`parser`]: `CREATE SOURCE`, `CREATE MATERIALIZED VIEW … [EMIT ON WINDOW CLOSE]`,
//!   `EXPLAIN CREATE MATERIALIZED VIEW`, `CREATE SINK … FROM view | AS query`, `SHOW SOURCES |
//!   MATERIALIZED VIEWS | SINKS`, `DROP …`, `CHECKPOINT`, `SUBSCRIBE`, `DECLARE`/`FETCH`/`CLOSE`.
//! - `create_source.rs`, `create_view.rs`, `drop.rs`: the DDL statements; `ddl.rs` what they
//!   share: the DDL lock and `IF NOT EXISTS`, object ids, the connector lookup, and
//!   `Publication`, the one rollback path (catalog, query context, persisted definition).
//! - `field_access.rs`: `(expr).field` as a subscript; `unresolved.rs`: a planning error that is
//!   a relation or function the session does not have (42P01 / 42883), found from the statement.
//! - [`function_list`]: `weir_functions`, `SHOW FUNCTIONS`.
//! - `sinks.rs`: `CREATE SINK` (options, format, recovery from the checkpoint, a sink's own
//!   query view).
//! - `create_table.rs`: `CREATE TABLE` (DataFusion plans the columns, key and defaults);
//!   [`dml`]: `INSERT [… ON CONFLICT]`, `UPDATE`, `DELETE`, `COPY … FROM STDIN` and transactions,
//!   turned into a table's changes under its write lock.
//! - [`planner`]: the stream planner; refuses what it cannot run incrementally, naming it.
//!   `planner/over.rs` plans `OVER (PARTITION BY … ORDER BY ts)` onto the engine's OVER operator.
//! - [`functions`]: the ordered list of function libraries (the engine's `FunctionLibrary`);
//!   `named_args.rs` resolves `name => value` arguments when a statement is planned (skipped
//!   ones become NULL = default) and passes a call's ORDER BY column as its event time.
//! - [`tables`]: `TUMBLE(…)` and sources as (unscannable) tables.
//! - [`system_tables`]: the one registry of system tables (name, one-line description, schema,
//!   provider); [`Database::register_system_table`] adds one, and queries, `SHOW`, `pg_catalog`
//!   and the README's list all read it.
//! - [`database`]: [`Database`] (shared) and [`Session`] (per client; `plan_statement_in` /
//!   `execute_plan_in` let a front end plan in its own session state);
//!   [`database::Database::open`] for a durable database in a data directory.
//! - `apply`: subqueries DataFusion cannot turn into joins (psql's `= ANY(outer array)`,
//!   correlations through functions, `IN (…)` in a select list) run per distinct outer tuple.
//! - `cursor_statements.rs`: `SUBSCRIBE` (a view's rows, then its changes, through the engine's
//!   `Subscription`), `DECLARE … CURSOR FOR SUBSCRIBE | query`, `FETCH`, `CLOSE`; [`cursor`]
//!   holds a session's open cursors, which close with their transaction unless `WITH HOLD`.
//! - `explain_analyze.rs`: `EXPLAIN ANALYZE MATERIALIZED VIEW`, the running view's operators
//!   with the figures the engine keeps per operator.
//! - `backfill.rs`: which `CREATE MATERIALIZED VIEW` waits for its view to read its sources'
//!   history (`WITH (background = true)` does not), and the view's progress (`weir_progress`).
//! - `view_maintenance.rs`: `REFRESH MATERIALIZED VIEW` and `DROP INDEX` of a view's key index,
//!   answered by what Weir's views are (always current; the key goes with the view).
//! - [`durable`]: the persisted catalog, replayed at start with each view's checkpointed state,
//!   `CHECKPOINT`, and `weir_checkpoints` / `weir_checkpoint_state`.
//!
//! Invariants: a DDL statement either takes effect in the catalog, the persisted catalog and a
//! running pipeline, or in none of them; views are planned once, so a view's definition means
//! what it meant when it was created. Errors carry a [`error::SqlErrorKind`]; only `weir-pg`
//! turns kinds into SQLSTATEs.

mod apply;
mod backfill;
mod create_source;
pub mod create_table;
mod create_view;
pub mod cursor;
mod cursor_statements;
pub mod database;
mod ddl;
pub mod dml;
mod drop;
pub mod durable;
pub mod error;
mod explain_analyze;
mod field_access;
pub mod function_list;
pub mod functions;
mod json_operators;
mod named_args;
pub mod parser;
pub mod planner;
mod proctime;
mod sinks;
pub mod system_tables;
pub mod tables;
pub mod transaction;
mod unresolved;
mod upsert_table;
mod versioned_rewrite;
mod view_maintenance;

pub use database::{
    Database, DatabaseBuilder, DatabaseExtension, DatabaseOptions, QueryResult, Session,
};
pub use error::{Result, SqlError, SqlErrorKind};
