//! Errors of the SQL layer, each with a kind the wire layer maps to a SQLSTATE.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use weir_engine::{EngineError, ErrorKind as EngineKind};

/// What kind of failure, for the wire layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlErrorKind {
    /// The statement does not parse.
    Syntax,
    /// A table, view or source does not exist.
    UndefinedTable,
    /// A column does not exist.
    UndefinedColumn,
    /// A name is taken.
    DuplicateObject,
    /// Something is not supported (in a streaming view, or at all).
    FeatureNotSupported,
    /// Other objects depend on the one being dropped.
    DependentObjects,
    /// Invalid parameter or option value.
    InvalidParameter,
    /// Other user errors.
    User,
    /// Outside failures.
    External,
    /// Checkpoint or catalog storage failed.
    Storage,
    /// The disk is full.
    DiskFull,
    /// A named object other than a relation (a setting, a type, a function) does not exist.
    UndefinedObject,
    /// A server-wide setting cannot be changed by a session.
    CantChangeParameter,
    /// A subquery used as a value returned more than one row.
    CardinalityViolation,
    /// Division by zero while running a query.
    DivisionByZero,
    /// No function of that name (and argument types).
    UndefinedFunction,
    /// The object stopped on an earlier failure (a failed view was queried).
    ObjectFailed,
    /// The statement nests or chains expressions deeper than the server plans.
    StatementTooComplex,
    /// A write would give two rows of a table the same primary key.
    UniqueViolation,
    /// A write would put NULL in a NOT NULL column.
    NotNullViolation,
    /// A statement in a transaction that already failed (until ROLLBACK).
    InFailedTransaction,
    /// The object is of the wrong kind for the statement (INSERT into a view).
    WrongObjectType,
    /// ON CONFLICT names no key of the table.
    InvalidConflictTarget,
    /// No cursor of that name.
    UndefinedCursor,
    /// A cursor of that name is open.
    DuplicateCursor,
    /// The statement needs a transaction block (`DECLARE` without `HOLD`).
    NoActiveTransaction,
    /// Bugs.
    Internal,
}

/// The SQL layer's error.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    kind: SqlErrorKind,
    message: String,
}

impl SqlError {
    /// An error of `kind`.
    pub fn new(kind: SqlErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A syntax error.
    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(SqlErrorKind::Syntax, message)
    }

    /// Its kind.
    pub fn kind(&self) -> SqlErrorKind {
        self.kind
    }

    /// Its message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// PostgreSQL's error for a subquery used as a value that returned several rows (SQLSTATE
/// 21000), as DataFusion carries it out of a function or an operator.
pub fn more_than_one_row() -> DataFusionError {
    DataFusionError::External(Box::new(SqlError::new(
        SqlErrorKind::CardinalityViolation,
        "more than one row returned by a subquery used as an expression",
    )))
}

impl From<EngineError> for SqlError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::DataFusion(d) => d.into(),
            other => {
                let kind = match other.kind() {
                    EngineKind::User => SqlErrorKind::InvalidParameter,
                    EngineKind::AlreadyExists => SqlErrorKind::DuplicateObject,
                    EngineKind::NotFound => SqlErrorKind::UndefinedTable,
                    EngineKind::NotSupported => SqlErrorKind::FeatureNotSupported,
                    EngineKind::DependentObjects => SqlErrorKind::DependentObjects,
                    EngineKind::External => SqlErrorKind::External,
                    EngineKind::Storage => SqlErrorKind::Storage,
                    EngineKind::DiskFull => SqlErrorKind::DiskFull,
                    EngineKind::Failed => SqlErrorKind::ObjectFailed,
                    EngineKind::Internal => SqlErrorKind::Internal,
                };
                Self::new(kind, other.to_string())
            }
        }
    }
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        if let Some(carried) = carried(&e) {
            return Self::new(carried.kind, carried.message.clone());
        }
        if let Some(why) = failed_view(&e) {
            return Self::new(SqlErrorKind::ObjectFailed, why);
        }
        let kind = datafusion_kind(&e);
        let message = match &e {
            DataFusionError::SQL(p, _) => p.to_string(),
            _ => e.to_string(),
        };
        Self::new(kind, message)
    }
}

impl From<datafusion::arrow::error::ArrowError> for SqlError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        Self::new(SqlErrorKind::User, e.to_string())
    }
}

impl From<datafusion::sql::sqlparser::tokenizer::TokenizerError> for SqlError {
    fn from(e: datafusion::sql::sqlparser::tokenizer::TokenizerError) -> Self {
        Self::syntax(e.to_string())
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for SqlError {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        Self::syntax(e.to_string())
    }
}

/// A [`SqlError`] raised inside DataFusion (by a function) as an external error, kept whole.
fn carried(e: &DataFusionError) -> Option<&SqlError> {
    // Through DataFusion's and Arrow's wrappers (an aggregate's error arrives inside an Arrow
    // external error, for instance).
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = current {
        if let Some(sql) = error.downcast_ref::<SqlError>() {
            return Some(sql);
        }
        current = error.source();
    }
    None
}

/// The failure of a view a query read, carried through DataFusion's wrappers.
fn failed_view(e: &DataFusionError) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = current {
        if let Some(EngineError::ViewFailed(why)) = error.downcast_ref::<EngineError>() {
            return Some(why.clone());
        }
        current = error.source();
    }
    None
}

/// The kind of a DataFusion error, by its variant only. Names that do not resolve (42P01, 42883)
/// are told apart by looking at the statement (`unresolved.rs`), never by message text.
fn datafusion_kind(e: &DataFusionError) -> SqlErrorKind {
    match e {
        DataFusionError::SQL(..) => SqlErrorKind::Syntax,
        DataFusionError::SchemaError(s, _) => match s.as_ref() {
            SchemaError::FieldNotFound { .. } => SqlErrorKind::UndefinedColumn,
            _ => SqlErrorKind::User,
        },
        DataFusionError::NotImplemented(_) => SqlErrorKind::FeatureNotSupported,
        DataFusionError::ArrowError(e, _) if matches!(e.as_ref(), ArrowError::DivideByZero) => {
            SqlErrorKind::DivisionByZero
        }
        DataFusionError::Internal(_) => SqlErrorKind::Internal,
        DataFusionError::IoError(_) | DataFusionError::External(_) => SqlErrorKind::External,
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            datafusion_kind(inner)
        }
        _ => SqlErrorKind::User,
    }
}

/// Result with [`SqlError`].
pub type Result<T, E = SqlError> = std::result::Result<T, E>;
