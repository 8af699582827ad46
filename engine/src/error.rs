//! Typed errors of the engine. Each error has a [`ErrorKind`] so the wire layer can map it to a
//! SQLSTATE without the engine knowing about SQLSTATEs.

use datafusion::error::DataFusionError;

/// What kind of failure an error is, for callers that must choose a response (SQLSTATE, retry…).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user asked for something invalid (bad option, unknown object, unsupported construct).
    User,
    /// An object with that name already exists.
    AlreadyExists,
    /// A named object does not exist.
    NotFound,
    /// Something the stream planner cannot run incrementally.
    NotSupported,
    /// An object cannot be dropped because others depend on it.
    DependentObjects,
    /// Something outside Weir failed (file system, broker, network).
    External,
    /// Checkpoint or catalog storage failed (unwritable, missing or damaged files).
    Storage,
    /// The disk (or quota) is full.
    DiskFull,
    /// The object asked for stopped on an earlier failure (a view whose pipeline failed).
    Failed,
    /// A bug in Weir.
    Internal,
}

/// The engine's error type.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Invalid input from the user.
    #[error("{0}")]
    User(String),
    /// Name clash.
    #[error("{0}")]
    AlreadyExists(String),
    /// Unknown object.
    #[error("{0}")]
    NotFound(String),
    /// Not supported in a streaming view.
    #[error("not supported in a streaming view: {0}")]
    NotSupported(String),
    /// Dependent objects block a DROP.
    #[error("{0}")]
    DependentObjects(String),
    /// A failure outside Weir.
    #[error("{0}")]
    External(String),
    /// Checkpoint or catalog storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The disk is full.
    #[error("disk full: {0}")]
    DiskFull(String),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
    /// A view whose pipeline failed was asked for its rows; the message says why it failed.
    #[error("{0}")]
    ViewFailed(String),
    /// An error raised by DataFusion while planning or evaluating.
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    /// An Arrow kernel failed.
    #[error("{0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// A connector's failure, kept as the connector's own typed error (a Kafka, PostgreSQL or
    /// I/O error with its context) together with the kind the connector gives it.
    #[error("{source}")]
    Connector {
        /// What kind of failure the connector says it is.
        kind: ErrorKind,
        /// The connector's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl EngineError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::User(_) => ErrorKind::User,
            EngineError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::NotSupported(_) => ErrorKind::NotSupported,
            EngineError::DependentObjects(_) => ErrorKind::DependentObjects,
            EngineError::External(_) => ErrorKind::External,
            EngineError::Internal(_) => ErrorKind::Internal,
            EngineError::ViewFailed(_) => ErrorKind::Failed,
            EngineError::Storage(_) => ErrorKind::Storage,
            EngineError::DiskFull(_) => ErrorKind::DiskFull,
            EngineError::DataFusion(e) => datafusion_kind(e),
            EngineError::Arrow(_) => ErrorKind::User,
            EngineError::Connector { kind, .. } => *kind,
        }
    }
}

fn datafusion_kind(e: &DataFusionError) -> ErrorKind {
    match e {
        DataFusionError::Internal(_) => ErrorKind::Internal,
        DataFusionError::IoError(_) | DataFusionError::External(_) => ErrorKind::External,
        DataFusionError::NotImplemented(_) => ErrorKind::NotSupported,
        DataFusionError::Context(_, inner) => datafusion_kind(inner),
        DataFusionError::Diagnostic(_, inner) => datafusion_kind(inner),
        _ => ErrorKind::User,
    }
}

/// Result with [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The text of a caught panic's payload (`catch_unwind`), for the error that reports it.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
