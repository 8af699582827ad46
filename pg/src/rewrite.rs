//! Rewrites of PostgreSQL syntax DataFusion does not plan, applied to the parsed statement before
//! planning. Each rule is a general equivalence, never a match on a client's query text, and
//! lives in its own file with its tests and the clients that need it:
//!
//! - [`operators`]: `OPERATOR(pg_catalog.~)` → `~`, `x COLLATE c` → `x`;
//! - [`casts`]: `reg*` casts → OID lookups or names, `oid`/`name`/`"char"` → integer/text;
//! - [`session_keywords`]: bare `user`, `current_schema`, … → function calls;
//! - [`array_subqueries`]: `ARRAY(SELECT …)` → an aggregate, `generate_subscripts` → unnest;
//! - [`array_literals`]: `'{r,p}'` next to `= ANY` / `=` → `ARRAY[…]`;
//! - [`scalar_subqueries`]: correlated scalar subqueries → aggregates DataFusion decorrelates;
//! - [`from_functions`]: scalar and set-returning functions in FROM as PostgreSQL names them;
//! - [`order_by`]: subqueries in ORDER BY → hidden select-list columns;
//! - [`column_names`]: unnamed select-list expressions get PostgreSQL's column names.
//!
//! `pg_catalog.f(…)` is `f(…)` everywhere. A new rule is a new file here with a `rewrite`
//! function called from [`Rewriter`]; rules see each expression after its children (so nested
//! forms are already rewritten) and each table factor before its children.

mod array_literals;
mod array_subqueries;
mod casts;
mod column_names;
mod from_functions;
mod operators;
mod order_by;
mod scalar_subqueries;
mod session_keywords;

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, Statement, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use weir_sql::error::{Result, SqlError};

use column_names::name_columns;

/// Rewrites `statement` in place; `is_table_function` tells registered table functions
/// (`generate_series`, `tumble`) from scalar functions used in FROM.
pub fn rewrite(statement: &mut Statement, is_table_function: &dyn Fn(&str) -> bool) -> Result<()> {
    let mut rewriter = Rewriter {
        is_table_function,
        error: None,
    };
    let _ = statement.visit(&mut rewriter);
    if let Some(e) = rewriter.error {
        return Err(e);
    }
    if let Statement::Query(query) = statement {
        name_columns(query);
    }
    Ok(())
}

/// Walks a statement applying every rule; the first error stops the walk.
struct Rewriter<'a> {
    is_table_function: &'a dyn Fn(&str) -> bool,
    error: Option<SqlError>,
}

impl Rewriter<'_> {
    fn rewrite_expr(&self, expr: &mut Expr) -> Result<()> {
        if let Expr::Function(f) = expr {
            strip_pg_catalog(&mut f.name);
        }
        operators::rewrite(expr);
        array_literals::rewrite(expr)?;
        session_keywords::rewrite(expr)?;
        array_subqueries::rewrite(expr)?;
        scalar_subqueries::rewrite(expr)?;
        casts::rewrite(expr)
    }

    fn rewrite_table_factor(&self, factor: &mut TableFactor) -> Result<()> {
        from_functions::rewrite(factor, self.is_table_function)
    }
}

/// Parses an expression written in PostgreSQL syntax (rules build their output as text).
pub(super) fn parse_expr(sql: &str) -> Result<Expr> {
    Ok(Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)?
        .parse_expr()?)
}

pub(super) fn parse_query(sql: &str) -> Result<Query> {
    Ok(*Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)?
        .parse_query()?)
}

/// The last part of a name, lowercased unless quoted (None for a function-call part).
pub(super) fn last_part(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(ident) => Some(if ident.quote_style.is_some() {
            ident.value.clone()
        } else {
            ident.value.to_ascii_lowercase()
        }),
        ObjectNamePart::Function(_) => None,
    }
}

/// `pg_catalog.x` → `x`: Weir resolves PostgreSQL's built-in names without the schema.
pub(super) fn strip_pg_catalog(name: &mut ObjectName) {
    if name.0.len() == 2
        && matches!(&name.0[0], ObjectNamePart::Identifier(i) if i.value.eq_ignore_ascii_case("pg_catalog"))
    {
        name.0.remove(0);
    }
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Err(e) = self.rewrite_expr(expr) {
            self.error = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Err(e) = order_by::hoist_order_subqueries(query) {
            self.error = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let Err(e) = self.rewrite_table_factor(factor) {
            self.error = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::Ident;

    /// `sql` after the rewrites (or the parse or rewrite error), for the rules' tests.
    pub(super) fn rewritten(sql: &str) -> String {
        let mut statement = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .unwrap_or_else(|e| Statement::Comment {
                object_type: datafusion::sql::sqlparser::ast::CommentObject::Table,
                object_name: ObjectName::from(vec![Ident::new(e.to_string())]),
                comment: None,
                if_exists: false,
            });
        let known = |f: &str| f == "generate_series";
        match rewrite(&mut statement, &known) {
            Ok(()) => statement.to_string(),
            Err(e) => e.to_string(),
        }
    }
}
