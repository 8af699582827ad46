//! What every `CREATE` shares: the DDL lock and `IF NOT EXISTS`, the object's id, the connector
//! lookup, and publishing an object (catalog, query context, persisted definition) with one
//! rollback path. A statement either takes effect everywhere or nowhere: whatever a
//! [`Publication`] did is undone if it is dropped before [`Publication::commit`].

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use tokio::sync::MutexGuard;
use tracing::warn;
use weir_engine::catalog::Catalog;
use weir_engine::checkpoint::catalog_file::{CatalogObject, ObjectKind};
use weir_engine::source_metrics::now_millis;
use weir_engine::view_runtime::ViewCheckpointing;

use crate::database::{Database, Session};
use crate::error::{Result, SqlError, SqlErrorKind};

impl Session {
    /// Takes the DDL lock for creating `name`. `Ok(None)`: `IF NOT EXISTS` and `exists` says the
    /// object is there, so there is nothing to do; otherwise the name must be free.
    pub(crate) async fn begin_create(
        &self,
        name: &str,
        if_not_exists: bool,
        exists: impl FnOnce(&Catalog) -> bool,
    ) -> Result<Option<MutexGuard<'_, ()>>> {
        let guard = self.db.ddl.lock().await;
        if if_not_exists && exists(self.db.catalog.as_ref()) {
            return Ok(None);
        }
        self.db.catalog.ensure_name_free(name)?;
        Ok(Some(guard))
    }

    /// A view's (or table's) part in checkpoints, with what the recovered checkpoint holds for
    /// it, when the database is durable.
    pub(crate) fn view_checkpointing(&self, name: &str, id: &str) -> Option<ViewCheckpointing> {
        self.db.durability.as_ref().map(|d| ViewCheckpointing {
            id: id.to_string(),
            coordinator: Arc::clone(&d.coordinator),
            segments: d.segment_store(),
            recovered: d.take_recovered(name, id),
        })
    }

    /// The id of a new object: the persisted one when replaying the catalog at start-up.
    pub(crate) fn object_id(&self, replay: Option<&CatalogObject>) -> String {
        match (replay, &self.db.durability) {
            (Some(object), _) => object.id.clone(),
            (None, Some(d)) => d.new_id(),
            (None, None) => now_millis().to_string(),
        }
    }
}

/// The connector `name` from a registry of `what`s (sources' or sinks' connectors), or an error
/// listing the ones there are.
pub(crate) fn lookup_connector<'r, T>(
    registry: &'r BTreeMap<&'static str, T>,
    what: &str,
    name: &str,
) -> Result<&'r T> {
    registry.get(name).ok_or_else(|| {
        let known: Vec<&str> = registry.keys().copied().collect();
        SqlError::new(
            SqlErrorKind::InvalidParameter,
            format!("unknown {what} '{name}' (available: {})", known.join(", ")),
        )
    })
}

/// An object being published. Each step records what it did; dropping the publication before
/// [`commit`](Self::commit) undoes them, so an error anywhere leaves no trace of the object.
pub(crate) struct Publication<'a> {
    db: &'a Database,
    name: String,
    in_catalog: bool,
    in_context: bool,
    committed: bool,
}

impl<'a> Publication<'a> {
    /// Starts publishing `name`; nothing is done yet.
    pub(crate) fn new(db: &'a Database, name: &str) -> Self {
        Self {
            db,
            name: name.to_string(),
            in_catalog: false,
            in_context: false,
            committed: false,
        }
    }

    /// Adds the object to the running catalog with `add` (which fails if the name is taken).
    pub(crate) fn add_to_catalog(
        &mut self,
        add: impl FnOnce(&Catalog) -> weir_engine::error::Result<()>,
    ) -> Result<()> {
        add(self.db.catalog.as_ref())?;
        self.in_catalog = true;
        Ok(())
    }

    /// Makes the object queryable under its name.
    pub(crate) fn register_table(&mut self, table: Arc<dyn TableProvider>) -> Result<()> {
        // A bare reference: the name is already normalised (a quoted "MixedCase" keeps its case),
        // and parsing it again as SQL would fold it to lower case.
        self.db
            .ctx
            .register_table(TableReference::bare(self.name.as_str()), table)?;
        self.in_context = true;
        Ok(())
    }

    /// Persists the definition (databases with a data directory), unless it is being replayed
    /// from the persisted catalog already.
    pub(crate) async fn persist(
        &mut self,
        kind: ObjectKind,
        id: &str,
        sql: &str,
        pinned: BTreeMap<String, String>,
        replay: Option<&CatalogObject>,
    ) -> Result<()> {
        let (Some(durability), None) = (&self.db.durability, replay) else {
            return Ok(());
        };
        durability
            .record(CatalogObject {
                kind,
                name: self.name.clone(),
                id: id.to_string(),
                sql: sql.to_string(),
                pinned,
            })
            .await
    }

    /// The object is published: keep everything.
    pub(crate) fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Publication<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.in_context
            && let Err(e) = self
                .db
                .ctx
                .deregister_table(TableReference::bare(self.name.as_str()))
        {
            warn!(object = %self.name, error = %e, "could not take back a table while undoing a CREATE");
        }
        if self.in_catalog {
            self.db.catalog.remove(&self.name);
        }
    }
}
