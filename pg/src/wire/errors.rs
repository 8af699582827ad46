//! The one place SQLSTATEs exist: error kinds of the SQL layer mapped to PostgreSQL codes.

use pgwire::error::{ErrorInfo, PgWireError};
use weir_sql::{SqlError, SqlErrorKind};

/// The SQLSTATE for an error kind.
pub fn sqlstate(kind: SqlErrorKind) -> &'static str {
    match kind {
        SqlErrorKind::Syntax => "42601",
        SqlErrorKind::UndefinedTable => "42P01",
        SqlErrorKind::UndefinedColumn => "42703",
        SqlErrorKind::DuplicateObject => "42P07",
        SqlErrorKind::FeatureNotSupported => "0A000",
        SqlErrorKind::DependentObjects => "2BP01",
        SqlErrorKind::InvalidParameter => "22023",
        SqlErrorKind::User => "42000",
        SqlErrorKind::External => "58000",
        SqlErrorKind::Storage => "58030",
        SqlErrorKind::DiskFull => "53100",
        SqlErrorKind::UndefinedObject => "42704",
        SqlErrorKind::CantChangeParameter => "55P02",
        SqlErrorKind::CardinalityViolation => "21000",
        SqlErrorKind::DivisionByZero => "22012",
        SqlErrorKind::UndefinedFunction => "42883",
        SqlErrorKind::ObjectFailed => "55000",
        SqlErrorKind::StatementTooComplex => "54001",
        SqlErrorKind::UniqueViolation => "23505",
        SqlErrorKind::NotNullViolation => "23502",
        SqlErrorKind::InFailedTransaction => "25P02",
        SqlErrorKind::WrongObjectType => "42809",
        SqlErrorKind::InvalidConflictTarget => "42P10",
        SqlErrorKind::UndefinedCursor => "34000",
        SqlErrorKind::DuplicateCursor => "42P03",
        SqlErrorKind::NoActiveTransaction => "25P01",
        SqlErrorKind::Internal => "XX000",
    }
}

/// `message` without NUL characters, which would end the C string an ErrorResponse field is
/// and desynchronise the client (values echoed in errors can contain them).
pub fn printable(message: &str) -> String {
    message.replace('\0', "\\0")
}

/// An `ErrorResponse` body for `error`.
pub fn error_info(error: &SqlError) -> ErrorInfo {
    ErrorInfo::new(
        "ERROR".to_owned(),
        sqlstate(error.kind()).to_owned(),
        printable(error.message()),
    )
}

/// `error` as a pgwire error (sent to the client; the connection stays open).
pub fn to_pgwire(error: &SqlError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(error)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(sqlstate(SqlErrorKind::Syntax), "42601");
        assert_eq!(sqlstate(SqlErrorKind::UndefinedTable), "42P01");
    }
}
