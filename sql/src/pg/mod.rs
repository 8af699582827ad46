//! PostgreSQL compatibility for clients Weir did not write (psql, Grafana, drivers, BI tools):
//! the `pg_catalog` and `information_schema` schemas, computed from Weir's own catalog on every
//! query; the catalog and session functions they call; rewrites of PostgreSQL syntax DataFusion
//! does not plan; and per-connection run-time parameters.
//!
//! ```text
//! client SQL ─▶ parser ─▶ rewrite (OPERATOR(pg_catalog.~), ::regclass, ARRAY(SELECT …), …)
//!            ─▶ DataFusion, in a per-session state carrying SessionInfo and session functions
//!                 pg_catalog.*  ─▶ CatalogTable rows from PgCatalog (sources 'r', views 'm')
//!                 information_schema.* (PostgreSQL spellings of types)
//! ```
//!
//! - [`catalog`]: relations with stable OIDs; [`types`]: built-in types and the Arrow mapping the
//!   wire layer also uses; [`table`]: catalog tables computed per scan.
//! - [`pg_catalog`], [`information_schema`]: the tables.
//! - [`functions`]: `version()`, `current_setting`, `format_type`, `pg_get_viewdef`, …
//! - [`rewrite`]: syntax rewrites (`order_by.rs`: subqueries in `ORDER BY` move into the select
//!   list); [`settings`]: `SET`/`SHOW`/`RESET` and identity.

pub mod catalog;
pub mod functions;
pub mod identifier;
pub mod information_schema;
pub mod pg_catalog;
pub mod rewrite;
pub mod session_statements;
pub mod settings;
pub mod subqueries;
pub mod table;
pub mod types;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::execution::context::SessionContext;

use self::catalog::PgCatalog;

/// Installs the compatibility schemas in `ctx`'s default catalog and returns the catalog view.
///
/// The default schema (`public`) is wrapped so that unqualified `pg_*` names resolve to
/// `pg_catalog`, which PostgreSQL always searches first.
pub fn install(
    ctx: &SessionContext,
    catalog: Arc<weir_engine::catalog::Catalog>,
) -> DfResult<Arc<PgCatalog>> {
    let pg = Arc::new(PgCatalog::new(catalog));
    let pg_schema = Arc::new(MemorySchemaProvider::new());
    pg_catalog::register(&pg, &pg_schema)?;
    let info_schema = Arc::new(MemorySchemaProvider::new());
    information_schema::register(&pg, &info_schema)?;
    let state = ctx.state();
    let default_catalog = &state.config().options().catalog.default_catalog;
    let default_schema = &state.config().options().catalog.default_schema;
    let Some(target) = ctx.catalog(default_catalog) else {
        return Err(datafusion::error::DataFusionError::Internal(
            "the default catalog is missing".into(),
        ));
    };
    let public = target
        .schema(default_schema)
        .unwrap_or_else(|| Arc::new(MemorySchemaProvider::new()));
    target.register_schema("pg_catalog", Arc::clone(&pg_schema) as _)?;
    target.register_schema("information_schema", info_schema)?;
    target.register_schema(
        default_schema,
        Arc::new(SearchPath {
            public,
            pg_catalog: pg_schema,
        }),
    )?;
    Ok(pg)
}

/// `public`, falling back to `pg_catalog` for catalog names.
#[derive(Debug)]
struct SearchPath {
    public: Arc<dyn SchemaProvider>,
    pg_catalog: Arc<MemorySchemaProvider>,
}

#[async_trait]
impl SchemaProvider for SearchPath {
    fn table_names(&self) -> Vec<String> {
        self.public.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if name.starts_with("pg_")
            && let Some(table) = self.pg_catalog.table(name).await?
        {
            return Ok(Some(table));
        }
        self.public.table(name).await
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.public.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.public.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.public.table_exist(name)
            || (name.starts_with("pg_") && self.pg_catalog.table_exist(name))
    }
}
