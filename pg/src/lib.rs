//! # weir-pg: Weir's PostgreSQL front end
//!
//! Everything that exists only because clients speak PostgreSQL: the wire protocol, the
//! `pg_catalog` and `information_schema` schemas psql, Grafana, drivers and BI tools read, the
//! functions they call, rewrites of PostgreSQL syntax DataFusion does not plan, and session
//! statements (`SET`, `SHOW`, `BEGIN`, …). Streaming SQL itself (Weir's DDL, planning, the
//! catalog of running objects) is `weir-sql`'s; this crate only translates.
//!
//! ```text
//!  socket ─▶ wire::serve_connection (frames checked) ─▶ pgwire ─▶ wire handlers
//!         ─▶ PgSession: session statements │ rewrite ─▶ weir_sql::Session ─▶ DataFusion
//!                                           (in a state carrying SessionInfo and the session's
//!                                            catalog functions; pg_catalog.* read PgCatalog)
//!         ◀─ wire::encode (Arrow ─▶ PostgreSQL text/binary) ◀─ QueryResult
//!            errors: SqlErrorKind ─▶ SQLSTATE in wire/errors.rs, nowhere else
//! ```
//!
//! - [`PgFrontend`] / [`PgSession`] (`session.rs`): installs the schemas and functions when the
//!   database is built (before persisted views are restored); one session per connection.
//! - [`wire`]: the protocol adapter (simple and extended query, start-up, frames, encoding,
//!   SQLSTATEs); [`auth`]: trust or SCRAM-SHA-256 users, TLS.
//! - [`catalog`]: relations with stable OIDs, derived on every query from Weir's catalog and
//!   system-table registry; [`types`]: built-in types and the Arrow mapping; [`table`]: catalog
//!   tables computed per scan; [`pg_catalog`], [`information_schema`]: the tables.
//! - [`functions`]: `version()`, `current_setting`, `format_type`, `pg_get_viewdef`, …;
//!   [`subqueries`]: `weir_single_value` / `weir_array_map`, which the rewrites call.
//! - [`rewrite`]: the client-compatibility rewrites, one rule each, naming the client that
//!   needs it; [`session_statements`] and [`settings`]: `SET`/`SHOW`/`RESET`, transactions,
//!   identity.
//!
//! Extension points: a new client rewrite is a rule in [`rewrite`]; a new catalog table is a
//! [`table::CatalogTable`] registered in [`pg_catalog`] or [`information_schema`]; Weir's own
//! system tables appear here by themselves (they are read from `weir_sql`'s registry).

pub mod auth;
pub mod catalog;
pub mod functions;
pub mod identifier;
pub mod information_schema;
pub mod pg_catalog;
mod pg_index;
pub mod rewrite;
mod schemas;
mod session;
pub mod session_statements;
pub mod settings;
pub mod subqueries;
pub mod table;
pub mod types;
pub mod wire;

pub use session::{PgFrontend, PgSession};
