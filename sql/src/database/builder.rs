//! Building a [`Database`]: what it can read from, write to and compute with is registered
//! from the top (the server registers Weir's built-in connectors and functions), so this crate
//! depends on no connector or function crate.

use std::sync::Arc;
use std::time::Duration;

use weir_engine::function_library::FunctionLibrary;
use weir_engine::sink::SinkFactory;
use weir_engine::source::ConnectorFactory;

use super::{DEFAULT_REFRESH, Database, DatabaseOptions};
use crate::error::Result;

/// Collects connectors, sinks and function libraries, then builds an in-memory database
/// ([`DatabaseBuilder::build`]) or opens a durable one ([`DatabaseBuilder::open`]).
pub struct DatabaseBuilder {
    pub(super) connectors: Vec<Arc<dyn ConnectorFactory>>,
    pub(super) sinks: Vec<Arc<dyn SinkFactory>>,
    pub(super) functions: Vec<Arc<dyn FunctionLibrary>>,
    pub(super) refresh: Duration,
    pub(super) workers: usize,
    pub(super) extensions: Vec<Arc<dyn DatabaseExtension>>,
}

/// Something installed into every database built (the PostgreSQL front end's catalog schemas
/// and functions, say): tables and functions registered before persisted views are restored,
/// so a restored view can use them.
pub trait DatabaseExtension: Send + Sync {
    /// Installs into `db` while it is being built.
    fn install(&self, db: &Database) -> Result<()>;
}

impl std::fmt::Debug for DatabaseBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseBuilder")
            .field(
                "connectors",
                &self.connectors.iter().map(|c| c.name()).collect::<Vec<_>>(),
            )
            .field(
                "sinks",
                &self.sinks.iter().map(|c| c.name()).collect::<Vec<_>>(),
            )
            .field("functions", &self.functions)
            .field("refresh", &self.refresh)
            .field("workers", &self.workers)
            .field("extensions", &self.extensions.len())
            .finish()
    }
}

impl Default for DatabaseBuilder {
    fn default() -> Self {
        Self {
            connectors: Vec::new(),
            sinks: Vec::new(),
            functions: Vec::new(),
            refresh: DEFAULT_REFRESH,
            workers: default_workers(),
            extensions: Vec::new(),
        }
    }
}

impl DatabaseBuilder {
    /// Adds source connectors (`CREATE SOURCE … WITH (connector = '<name>')`).
    pub fn connectors(
        mut self,
        connectors: impl IntoIterator<Item = Arc<dyn ConnectorFactory>>,
    ) -> Self {
        self.connectors.extend(connectors);
        self
    }

    /// Adds sink connectors (`CREATE SINK … WITH (connector = '<name>')`).
    pub fn sinks(mut self, sinks: impl IntoIterator<Item = Arc<dyn SinkFactory>>) -> Self {
        self.sinks.extend(sinks);
        self
    }

    /// Adds a function library; libraries added first answer first.
    pub fn functions(mut self, library: Arc<dyn FunctionLibrary>) -> Self {
        self.functions.push(library);
        self
    }

    /// Adds an extension, installed when the database is built, in the order added.
    pub fn extension(mut self, extension: Arc<dyn DatabaseExtension>) -> Self {
        self.extensions.push(extension);
        self
    }

    /// How often open windows of updating views are refreshed (an in-memory database; a
    /// durable one takes it from [`DatabaseOptions::refresh`]).
    pub fn refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// How many shards a view's keyed operator (a grouped aggregate) runs in, each on its own
    /// task: by default one per core the process may use.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// An in-memory database (for tests and embedding): nothing survives the process.
    pub fn build(self) -> Result<Arc<Database>> {
        Database::build(self, None)
    }

    /// Opens a durable database in `options.data_dir`: the persisted sources and views are
    /// created again, views resume from the newest intact checkpoint, and checkpoints are taken
    /// every `checkpoint_interval`. Returns the database and how many objects the persisted
    /// catalog holds (0: a new data directory).
    pub async fn open(self, options: DatabaseOptions) -> Result<(Arc<Database>, usize)> {
        Database::open(self, options).await
    }
}

/// One worker per core the process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
