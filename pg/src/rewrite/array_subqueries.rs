//! `ARRAY(SELECT …)` and `generate_subscripts(a, d)` in a select list, which DataFusion does not
//! plan. Client: psql's `\du` (`ARRAY(SELECT b.rolname FROM pg_catalog.pg_auth_members m JOIN
//! pg_catalog.pg_roles b ON …)`), and its `\d` index and constraint queries
//! (`ARRAY(SELECT … FROM unnest(i.indkey) …)`, `generate_subscripts`).

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArguments, GroupByExpr, Query, SelectItem, SetExpr, TableFactor,
};
use weir_sql::error::Result;

use super::{last_part, parse_expr};

/// Rewrites `expr` if it is `ARRAY(subquery)` or `generate_subscripts(array, dim)`.
pub(super) fn rewrite(expr: &mut Expr) -> Result<()> {
    let Expr::Function(f) = expr else {
        return Ok(());
    };
    let name = last_part(&f.name).unwrap_or_default();
    if name == "array"
        && let FunctionArguments::Subquery(query) = &f.args
    {
        *expr = array_subquery(query)?;
    } else if name == "generate_subscripts"
        && let FunctionArguments::List(list) = &f.args
        && let [array, dim] = list.args.as_slice()
    {
        // A set-returning function of the select list, as DataFusion has them: the unnest of
        // the subscripts' array (zipped with other unnests, as PostgreSQL).
        *expr = parse_expr(&format!(
            "unnest(generate_series(array_lower({array}, {dim}), array_upper({array}, {dim})))"
        ))?;
    }
    Ok(())
}

/// `ARRAY(SELECT e FROM unnest(a) x [WHERE f])` → `weir_array_map(a, 'x', 'e', 'f')`;
/// `ARRAY(SELECT e FROM … [ORDER BY …])` → `(SELECT array_agg(e [ORDER BY …]) FROM …)`; other
/// shapes aggregate the subquery's one column.
fn array_subquery(query: &Query) -> Result<Expr> {
    if let SetExpr::Select(select) = query.body.as_ref()
        && let [from] = select.from.as_slice()
        && from.joins.is_empty()
        && let TableFactor::UNNEST {
            alias: Some(alias),
            array_exprs,
            ..
        } = &from.relation
        && let [array] = array_exprs.as_slice()
        && let [SelectItem::UnnamedExpr(item) | SelectItem::ExprWithAlias { expr: item, .. }] =
            select.projection.as_slice()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
    {
        let quote = |s: String| format!("'{}'", s.replace('\'', "''"));
        let filter = select
            .selection
            .as_ref()
            .map(|f| format!(", {}", quote(f.to_string())))
            .unwrap_or_default();
        return parse_expr(&format!(
            "weir_array_map({array}, {}, {}{filter})",
            quote(alias.name.value.clone()),
            quote(item.to_string())
        ));
    }
    if let SetExpr::Select(select) = query.body.as_ref()
        && select.projection.len() == 1
        && select.distinct.is_none()
        && matches!(&select.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
        && query.limit_clause.is_none()
        && query.with.is_none()
        && let SelectItem::UnnamedExpr(item) | SelectItem::ExprWithAlias { expr: item, .. } =
            &select.projection[0]
    {
        let order = match &query.order_by {
            Some(order) => format!(" {order}"),
            None => String::new(),
        };
        let mut inner = select.as_ref().clone();
        inner.projection = vec![SelectItem::UnnamedExpr(parse_expr(&format!(
            "array_agg({item}{order})"
        ))?)];
        // ARRAY(SELECT …) without rows is '{}', where array_agg gives NULL.
        return parse_expr(&format!("coalesce(({inner}), make_array())"));
    }
    parse_expr(&format!(
        "coalesce((SELECT array_agg(weir_array_item) FROM ({query}) AS weir_array(weir_array_item)), make_array())"
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::rewritten;

    #[test]
    fn array_subqueries_aggregate() {
        let sql = rewritten(
            "SELECT ARRAY(SELECT b.rolname FROM r b WHERE b.x = 1 ORDER BY 1) AS m FROM t",
        );
        assert!(
            sql.contains("coalesce((SELECT array_agg(b.rolname ORDER BY 1) FROM r b WHERE b.x = 1), make_array()) AS m"),
            "{sql}"
        );
        let sql =
            rewritten("SELECT ARRAY(SELECT k + 1 FROM unnest(i.indkey) k WHERE k > 0) FROM i");
        assert!(
            sql.contains("weir_array_map(i.indkey, 'k', 'k + 1', 'k > 0')"),
            "{sql}"
        );
    }

    #[test]
    fn generate_subscripts_unnests_a_series() {
        let sql = rewritten("SELECT generate_subscripts(a, 1) FROM t");
        assert!(
            sql.contains("unnest(generate_series(array_lower(a, 1), array_upper(a, 1)))"),
            "{sql}"
        );
    }
}
