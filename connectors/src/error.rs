//! The connectors' errors: each failure typed, with the library error it came from as its
//! source, and a kind (user error, outside failure, storage, bug) the engine and the wire
//! layer act on. They reach the engine as [`EngineError::Connector`], kind and source intact.
//!
//! Invalid options and malformed definitions stay [`EngineError::User`] messages: their text is
//! the whole of what the user needs, and the engine's option parser reports them the same way.

use std::path::PathBuf;

use rdkafka::error::KafkaError;
use weir_engine::{EngineError, ErrorKind};

/// A failure inside a connector.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A Kafka client call failed.
    #[error("Kafka: {0}")]
    Kafka(#[source] KafkaError),
    /// The broker did not answer a metadata request.
    #[error("cannot reach the Kafka broker at {bootstrap}: {source}")]
    KafkaUnreachable {
        /// The bootstrap servers asked.
        bootstrap: String,
        /// The client's error.
        source: KafkaError,
    },
    /// A produced record was not delivered (the delivery report's reason).
    #[error("Kafka delivery failed: {0}")]
    KafkaDelivery(String),
    /// The PostgreSQL server refused or the connection failed (the server's message and
    /// SQLSTATE when it sent one).
    #[error("PostgreSQL: {message}")]
    Postgres {
        /// The server's message, or the client's.
        message: String,
        /// The client's error.
        source: tokio_postgres::Error,
    },
    /// A file could not be opened or read.
    #[error("{action} '{}': {source}", path.display())]
    File {
        /// "cannot open" or "reading".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The object store of a Parquet sink failed.
    #[error("Parquet sink storage: {0}")]
    ObjectStore(#[source] object_store::Error),
    /// Encoding a Parquet file failed.
    #[error("Parquet writer: {0}")]
    Parquet(#[source] datafusion::parquet::errors::ParquetError),
    /// A blocking task of the connector was cancelled or panicked.
    #[error("{what} task: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Why it did not finish.
        source: tokio::task::JoinError,
    },
    /// A thread of the connector could not be started.
    #[error("cannot start a {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A connector's checkpointed state does not have the shape it writes.
    #[error("{0}")]
    CorruptState(&'static str),
    /// A connector broke one of its own invariants.
    #[error("{0}")]
    Bug(String),
}

impl ConnectorError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ConnectorError::Kafka(_)
            | ConnectorError::KafkaUnreachable { .. }
            | ConnectorError::KafkaDelivery(_)
            | ConnectorError::Postgres { .. }
            | ConnectorError::File { .. }
            | ConnectorError::ObjectStore(_) => ErrorKind::External,
            ConnectorError::CorruptState(_) => ErrorKind::Storage,
            ConnectorError::Parquet(_)
            | ConnectorError::Task { .. }
            | ConnectorError::Thread { .. }
            | ConnectorError::Bug(_) => ErrorKind::Internal,
        }
    }

    /// A bug: `what` went wrong that the connector's own code should have prevented.
    pub fn bug(what: impl Into<String>) -> Self {
        ConnectorError::Bug(what.into())
    }
}

impl From<ConnectorError> for EngineError {
    fn from(e: ConnectorError) -> Self {
        EngineError::Connector {
            kind: e.kind(),
            source: Box::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_errors_keep_their_kind_and_text() {
        let e: EngineError =
            ConnectorError::CorruptState("Kafka sink state has an unexpected shape").into();
        assert_eq!(e.kind(), ErrorKind::Storage);
        assert_eq!(e.to_string(), "Kafka sink state has an unexpected shape");
        let e: EngineError = ConnectorError::Kafka(KafkaError::Canceled).into();
        assert_eq!(e.kind(), ErrorKind::External);
        assert!(e.to_string().starts_with("Kafka: "), "{e}");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e: EngineError = ConnectorError::File {
            action: "cannot open",
            path: PathBuf::from("/x.csv"),
            source: io,
        }
        .into();
        assert_eq!(e.kind(), ErrorKind::External);
        assert_eq!(e.to_string(), "cannot open '/x.csv': gone");
        assert!(std::error::Error::source(&e).is_some());
    }
}
