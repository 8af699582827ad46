//! Bare `user`, `current_user`, `session_user`, `current_role`, `current_catalog` and
//! `current_schema` → function calls: they are keywords in PostgreSQL, never columns, and
//! DataFusion would look for a column. Clients: SQLAlchemy and psycopg (`SELECT current_schema()`
//! and `current_user`), pgjdbc (`SELECT current_schema`), psql's `\conninfo` (`current_user`).

use datafusion::sql::sqlparser::ast::{Expr, FunctionArguments, Ident};
use weir_sql::error::Result;

use super::{last_part, parse_expr};

const SESSION_KEYWORDS: &[&str] = &[
    "user",
    "current_user",
    "session_user",
    "current_role",
    "current_catalog",
    "current_schema",
];

/// Rewrites `expr` if it is a bare session keyword (as an identifier or a call without
/// parentheses).
pub(super) fn rewrite(expr: &mut Expr) -> Result<()> {
    let keyword = match expr {
        Expr::Identifier(Ident {
            value,
            quote_style: None,
            ..
        }) => value.to_ascii_lowercase(),
        Expr::Function(f) if matches!(f.args, FunctionArguments::None) => {
            last_part(&f.name).unwrap_or_default()
        }
        _ => return Ok(()),
    };
    if SESSION_KEYWORDS.contains(&keyword.as_str()) {
        *expr = parse_expr(&format!("{keyword}()"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::rewritten;

    #[test]
    fn keywords_become_calls_named_as_postgres_names_them() {
        let sql = rewritten("SELECT user, current_user, x FROM t");
        assert!(
            sql.contains("AS \"user\"") && sql.contains("AS \"current_user\""),
            "{sql}"
        );
        let sql = rewritten("SELECT \"user\" FROM t");
        assert_eq!(
            sql, "SELECT \"user\" FROM t",
            "a quoted name stays a column"
        );
    }
}
