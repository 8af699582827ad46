//! PostgreSQL's composite field access, `(expr).field`: how users read one field of a function
//! that returns a row, such as `(anomaly_zscore(x) OVER w).severity`. DataFusion plans field
//! access only as a subscript with a string (`expr['severity']`), so each `.field` after a
//! parenthesised expression or a subscript becomes that subscript before planning. Names fold
//! to lower case unless quoted, as PostgreSQL folds them. Qualified column names (`t.c`) are
//! compound identifiers, not field access, and are left alone.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, Expr, Query, Statement, Subscript, Value, VisitMut, VisitorMut,
};

/// Rewrites every `(expr).field` in `statement`.
pub(crate) fn rewrite_field_access(statement: &mut Statement) {
    let _ = statement.visit(&mut FieldAccess);
}

/// Same, for a query (a view's defining query).
pub(crate) fn rewrite_field_access_in_query(query: &mut Query) {
    let _ = query.visit(&mut FieldAccess);
}

struct FieldAccess;

impl VisitorMut for FieldAccess {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundFieldAccess { access_chain, .. } = expr {
            for access in access_chain.iter_mut() {
                if let AccessExpr::Dot(Expr::Identifier(field)) = access {
                    let name = match field.quote_style {
                        Some(_) => field.value.clone(),
                        None => field.value.to_ascii_lowercase(),
                    };
                    *access = AccessExpr::Subscript(Subscript::Index {
                        index: Expr::value(Value::SingleQuotedString(name)),
                    });
                }
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statements = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
            Ok(s) => s,
            Err(e) => return format!("parse error: {e}"),
        };
        for s in &mut statements {
            rewrite_field_access(s);
        }
        statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn field_of_a_parenthesised_expression_becomes_a_subscript() {
        assert_eq!(
            rewritten(
                "SELECT (anomaly_zscore(x) OVER (PARTITION BY k ORDER BY ts)).Severity FROM t"
            ),
            "SELECT (anomaly_zscore(x) OVER (PARTITION BY k ORDER BY ts))['severity'] FROM t"
        );
        assert_eq!(
            rewritten("SELECT (r).\"Score\", (r).a.b FROM t"),
            "SELECT (r)['Score'], (r)['a']['b'] FROM t"
        );
    }

    #[test]
    fn qualified_names_and_subscripts_stay() {
        assert_eq!(
            rewritten("SELECT t.a, s.t.a, r['x'] FROM s.t"),
            "SELECT t.a, s.t.a, r['x'] FROM s.t"
        );
    }
}
