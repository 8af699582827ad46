//! The persisted catalog: every source and view definition, in creation order, rewritten whole
//! (atomically) after each `CREATE` and `DROP`. On start the statements are run again, and views
//! pick their state up from the newest checkpoint by their id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::store::CheckpointStore;
use crate::error::{EngineError, Result};

/// Path of the catalog in the store.
pub const CATALOG_PATH: &str = "catalog.json";
/// Format version of the catalog file.
pub const CATALOG_VERSION: u32 = 1;

/// What a persisted object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// `CREATE SOURCE`.
    Source,
    /// `CREATE MATERIALIZED VIEW`.
    MaterializedView,
    /// `CREATE SINK`.
    Sink,
    /// `CREATE TABLE`.
    Table,
}

/// One persisted definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogObject {
    /// Source or view.
    pub kind: ObjectKind,
    /// Normalised name.
    pub name: String,
    /// Incarnation id (matches checkpoint entries).
    pub id: String,
    /// The statement as the user wrote it.
    pub sql: String,
    /// Options whose defaults depend on when the object was created (a generator's start
    /// time), fixed at creation so running the statement again gives the same object.
    #[serde(default)]
    pub pinned: BTreeMap<String, String>,
}

/// The whole catalog file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// [`CATALOG_VERSION`].
    pub version: u32,
    /// Definitions in creation order.
    pub objects: Vec<CatalogObject>,
}

impl CatalogFile {
    /// Reads the catalog; None when there is none yet.
    pub async fn load(store: &CheckpointStore) -> Result<Option<Self>> {
        let Some(bytes) = store.get_optional(CATALOG_PATH).await? else {
            return Ok(None);
        };
        let file: CatalogFile = serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::Storage(format!(
                "{CATALOG_PATH} in {} is damaged: {e}",
                store.location()
            ))
        })?;
        if file.version != CATALOG_VERSION {
            return Err(EngineError::Storage(format!(
                "{CATALOG_PATH} has version {}, this build reads version {CATALOG_VERSION}",
                file.version
            )));
        }
        Ok(Some(file))
    }

    /// Writes the catalog (atomically).
    pub async fn save(&self, store: &CheckpointStore) -> Result<()> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| EngineError::Internal(format!("cannot encode the catalog: {e}")))?;
        store.put(CATALOG_PATH, text).await
    }
}
