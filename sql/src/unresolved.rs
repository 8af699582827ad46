//! Why planning failed, when the reason is a name: a relation or a function the statement uses
//! that the session does not have. DataFusion reports both as plain planning errors; instead of
//! reading its message text, Weir looks at the statement and the session's catalog, so the
//! answer is PostgreSQL's (42P01 `relation "x" does not exist`, 42883 for a function) however
//! DataFusion words it.

use std::ops::ControlFlow;

use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr, ObjectNamePart, Visit, Visitor};

use crate::error::{SqlError, SqlErrorKind};

/// The error for a statement DataFusion could not plan: a name that does not resolve when that
/// is the reason, DataFusion's own error otherwise.
pub(crate) fn planning_error(
    state: &SessionState,
    statement: &DfStatement,
    error: DataFusionError,
) -> SqlError {
    if !is_plan_error(&error) {
        return error.into();
    }
    if let Some(relation) = missing_relation(state, statement) {
        return SqlError::new(
            SqlErrorKind::UndefinedTable,
            format!("relation \"{relation}\" does not exist"),
        );
    }
    let message = SqlError::from(error).message().to_string();
    if missing_function(state, statement).is_some() {
        return SqlError::new(SqlErrorKind::UndefinedFunction, message);
    }
    SqlError::new(SqlErrorKind::User, message)
}

/// A planning error (possibly with a diagnostic or context around it).
fn is_plan_error(error: &DataFusionError) -> bool {
    match error {
        DataFusionError::Plan(_) => true,
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            is_plan_error(inner)
        }
        _ => false,
    }
}

/// The first relation the statement reads that is neither a table nor a table function.
fn missing_relation(state: &SessionState, statement: &DfStatement) -> Option<String> {
    let references = state.resolve_table_references(statement).ok()?;
    references.into_iter().find_map(|reference| {
        let name = reference.table();
        if reference.schema().is_none() && state.table_functions().contains_key(name) {
            return None;
        }
        let exists = state
            .schema_for_ref(reference.clone())
            .map(|schema| schema.table_exist(name))
            .unwrap_or(false);
        (!exists).then(|| reference.to_string())
    })
}

/// The first function the statement calls that the session has under no name.
fn missing_function(state: &SessionState, statement: &DfStatement) -> Option<String> {
    let DfStatement::Statement(statement) = statement else {
        return None;
    };
    let mut calls = FunctionNames(Vec::new());
    let _ = statement.visit(&mut calls);
    calls.0.into_iter().find(|name| {
        !(state.scalar_functions().contains_key(name)
            || state.aggregate_functions().contains_key(name)
            || state.window_functions().contains_key(name)
            || state.table_functions().contains_key(name))
    })
}

/// Names of the functions a statement calls, lower-cased, without their schema.
struct FunctionNames(Vec<String>);

impl Visitor for FunctionNames {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr
            && let Some(ObjectNamePart::Identifier(name)) = f.name.0.last()
        {
            self.0.push(name.value.to_ascii_lowercase());
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;
    use datafusion::sql::parser::DFParser;

    use super::*;

    async fn error_of(sql: &str) -> SqlError {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let statement = match DFParser::parse_sql(sql) {
            Ok(mut s) => s.pop_front(),
            Err(e) => return SqlError::syntax(e.to_string()),
        };
        let Some(statement) = statement else {
            return SqlError::syntax("empty");
        };
        match state.statement_to_plan(statement.clone()).await {
            Ok(_) => SqlError::new(SqlErrorKind::Internal, "planned"),
            Err(e) => planning_error(&state, &statement, e),
        }
    }

    #[tokio::test]
    async fn names_that_do_not_resolve_get_postgres_kinds() {
        let e = error_of("SELECT * FROM nowhere").await;
        assert_eq!(e.kind(), SqlErrorKind::UndefinedTable);
        assert_eq!(e.message(), "relation \"nowhere\" does not exist");
        let e = error_of("WITH t AS (SELECT 1 AS a) SELECT * FROM t JOIN elsewhere ON true").await;
        assert_eq!(e.message(), "relation \"elsewhere\" does not exist");
        let e = error_of("SELECT no_such_function(1)").await;
        assert_eq!(e.kind(), SqlErrorKind::UndefinedFunction);
        let e = error_of("SELECT pg_catalog.no_such_function(1)").await;
        assert_eq!(e.kind(), SqlErrorKind::UndefinedFunction);
    }

    #[tokio::test]
    async fn other_planning_errors_stay_user_errors() {
        let e = error_of("SELECT 1 AS a UNION SELECT 1, 2").await;
        assert_eq!(e.kind(), SqlErrorKind::User);
        let e = error_of("WITH t AS (SELECT 1 AS a) SELECT b FROM t").await;
        assert_ne!(e.kind(), SqlErrorKind::UndefinedTable);
    }
}
