//! Subqueries in `ORDER BY`, which DataFusion refuses ("In/Exist/SetComparison subquery can only
//! be used in Projection, Filter, …"). Grafana's table list sorts by one:
//!
//! ```sql
//! SELECT … AS "table" FROM information_schema.tables
//! ORDER BY CASE WHEN quote_ident(table_schema) IN (SELECT …) THEN 0 ELSE 1 END, 1
//! ```
//!
//! The sort keys that are not output columns move into the select list under hidden names, and
//! an outer query sorts by them and drops them:
//!
//! ```sql
//! SELECT * EXCLUDE (__weir_order_0) FROM (
//!     SELECT … AS "table", CASE WHEN … IN (SELECT …) THEN 0 ELSE 1 END AS __weir_order_0
//!     FROM information_schema.tables
//! ) AS __weir_ordered ORDER BY __weir_order_0, 1
//! ```
//!
//! A subquery in a select list is something DataFusion (or `apply`) runs. Positions (`1`) and
//! output names stay as they are: they mean the same columns outside. `SELECT DISTINCT` is left
//! alone, since hidden columns would change what is distinct.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, OrderBy, OrderByKind, Query, SelectItem, SetExpr, TableFactor, Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use weir_sql::error::{Result, SqlError, SqlErrorKind};

/// Rewrites `query` as above when its `ORDER BY` holds a subquery.
pub(super) fn hoist_order_subqueries(query: &mut Query) -> Result<()> {
    let Some(OrderBy {
        kind: OrderByKind::Expressions(items),
        ..
    }) = &query.order_by
    else {
        return Ok(());
    };
    if !items.iter().any(|item| has_subquery(&item.expr)) {
        return Ok(());
    }
    let items = items.clone();
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Ok(());
    };
    if select.distinct.is_some() {
        return Ok(());
    }
    let outputs: HashSet<String> = select.projection.iter().filter_map(output_name).collect();
    let mut hidden = Vec::new();
    let mut order = Vec::new();
    for item in items {
        let stays = match &item.expr {
            Expr::Value(v) => matches!(v.value, Value::Number(..)),
            Expr::Identifier(i) => outputs.contains(&i.value.to_ascii_lowercase()),
            _ => false,
        };
        if stays {
            order.push(item.to_string());
            continue;
        }
        let name = format!("__weir_order_{}", hidden.len());
        select.projection.push(SelectItem::ExprWithAlias {
            expr: item.expr.clone(),
            alias: Ident::new(&name),
        });
        let mut moved = item;
        moved.expr = Expr::Identifier(Ident::new(&name));
        order.push(moved.to_string());
        hidden.push(name);
    }
    let limit = query
        .limit_clause
        .take()
        .map(|l| l.to_string())
        .unwrap_or_default();
    query.order_by = None;
    super::name_columns(query);
    // The outer query holds only names and numbers, so any dialect with `EXCLUDE` parses it;
    // the inner query is put back as the AST it is.
    let outer = format!(
        "SELECT * EXCLUDE ({}) FROM (SELECT 1) AS __weir_ordered ORDER BY {} {limit}",
        hidden.join(", "),
        order.join(", ")
    );
    let mut outer = *Parser::new(&GenericDialect {})
        .try_with_sql(&outer)?
        .parse_query()?;
    let SetExpr::Select(outer_select) = outer.body.as_mut() else {
        return Err(SqlError::new(
            SqlErrorKind::Internal,
            "ORDER BY rewrite lost its outer SELECT",
        ));
    };
    let Some(TableFactor::Derived { subquery, .. }) =
        outer_select.from.first_mut().map(|t| &mut t.relation)
    else {
        return Err(SqlError::new(
            SqlErrorKind::Internal,
            "ORDER BY rewrite lost its derived table",
        ));
    };
    std::mem::swap(subquery.as_mut(), query);
    *query = outer;
    Ok(())
}

fn has_subquery(expr: &Expr) -> bool {
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(expr, |e| {
        if matches!(
            e,
            Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. }
        ) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// The (lower-cased) name a select-list item is known by outside, when it has one.
fn output_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_ascii_lowercase()),
        SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.value.to_ascii_lowercase()),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
            parts.last().map(|i| i.value.to_ascii_lowercase())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

    fn rewritten(sql: &str) -> String {
        let mut q = *Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_query())
            .unwrap();
        hoist_order_subqueries(&mut q).unwrap();
        q.to_string()
    }

    #[test]
    fn sort_keys_with_subqueries_move_into_the_select_list() {
        let sql = rewritten(
            "SELECT a AS \"table\" FROM t ORDER BY CASE WHEN s IN (SELECT x FROM u) THEN 0 ELSE 1 END, 1 LIMIT 5",
        );
        assert_eq!(
            sql,
            "SELECT * EXCLUDE (__weir_order_0) FROM (SELECT a AS \"table\", CASE WHEN s IN (SELECT x FROM u) \
             THEN 0 ELSE 1 END AS __weir_order_0 FROM t) AS __weir_ordered ORDER BY __weir_order_0, 1 LIMIT 5"
        );
    }

    #[test]
    fn plain_sorts_and_distinct_are_left_alone() {
        let plain = "SELECT a FROM t ORDER BY a DESC";
        assert_eq!(rewritten(plain), plain);
        let distinct = "SELECT DISTINCT a FROM t ORDER BY (SELECT 1)";
        assert_eq!(rewritten(distinct), distinct);
    }
}
