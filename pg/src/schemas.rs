//! The `pg_catalog` and `information_schema` schemas in DataFusion's catalog, and the search
//! path that resolves unqualified `pg_*` names to `pg_catalog`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::execution::context::SessionContext;

use weir_sql::system_tables::SystemTables;

use crate::catalog::PgCatalog;
use crate::{information_schema, pg_catalog};

/// Installs the compatibility schemas in `ctx`'s default catalog and returns the catalog view.
///
/// The default schema (`public`) is wrapped so that unqualified `pg_*` names resolve to
/// `pg_catalog`, which PostgreSQL always searches first.
pub fn install(
    ctx: &SessionContext,
    catalog: Arc<weir_engine::catalog::Catalog>,
    system_tables: Arc<SystemTables>,
) -> DfResult<Arc<PgCatalog>> {
    let pg = Arc::new(PgCatalog::new(catalog, system_tables));
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
