//! Scalar subqueries DataFusion cannot decorrelate. Client: psql's `\d table` (correlated
//! subqueries in the select list, such as the collation of each column: `(SELECT c.collname
//! FROM pg_catalog.pg_collation c, pg_catalog.pg_type t WHERE c.oid = a.attcollation AND
//! t.oid = a.atttypid AND a.attcollation <> t.typcollation)`).
//!
//! `(SELECT e FROM … WHERE …)` without aggregation → `(SELECT weir_single_value(e) FROM …)`,
//! an aggregate that keeps PostgreSQL's "more than one row" error; conditions on the outer row
//! alone move into a `CASE` around the subquery.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Query, SelectItem, SetExpr, TableFactor,
};
use weir_sql::error::Result;

use super::{last_part, parse_expr};

/// Rewrites `expr` if it is a scalar subquery of the shape this rule decorrelates.
pub(super) fn rewrite(expr: &mut Expr) -> Result<()> {
    if let Expr::Subquery(query) = expr
        && let Some(wrapped) = single_value(query)?
    {
        *expr = wrapped;
    }
    Ok(())
}

/// Aggregates PostgreSQL counts as aggregating a scalar subquery's select list.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "json_agg",
    "first_value",
    "last_value",
    "weir_single_value",
];

fn is_aggregated(expr: &Expr) -> bool {
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(expr, |e| {
        if let Expr::Function(f) = e
            && last_part(&f.name).is_some_and(|n| AGGREGATES.contains(&n.as_str()))
        {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// `(SELECT e FROM … WHERE …)` without aggregation → `(SELECT weir_single_value(e) FROM …)`, so
/// DataFusion can decorrelate it; the aggregate keeps PostgreSQL's "more than one row" error.
fn single_value(query: &Query) -> Result<Option<Expr>> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(None);
    };
    let plain = select.projection.len() == 1
        && select.distinct.is_none()
        && matches!(&select.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
        && select.having.is_none()
        && query.limit_clause.is_none()
        && query.with.is_none()
        && query.order_by.is_none()
        && !select.from.is_empty();
    let item = match select.projection.first() {
        Some(SelectItem::UnnamedExpr(e)) | Some(SelectItem::ExprWithAlias { expr: e, .. })
            if plain =>
        {
            e
        }
        _ => return Ok(None),
    };
    let mut inner = select.as_ref().clone();
    if !is_aggregated(item) {
        inner.projection = vec![SelectItem::UnnamedExpr(parse_expr(&format!(
            "weir_single_value({item})"
        ))?)];
    }
    // DataFusion decorrelates equality correlations; conditions on the outer row alone become a
    // CASE around the subquery, and `a <> b` is spelled `NOT (a = b)`, which it can pull up.
    // An outer column equal to an inner one can be replaced by it in the other conditions, which
    // turns comparisons like `a.x <> t.y` (not decorrelated) into inner-only filters.
    let names = from_names(&inner);
    let all = inner.selection.take().map(conjuncts).unwrap_or_default();
    let mut substitutions: Vec<(String, Expr)> = Vec::new();
    for c in &all {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = c
        {
            for (outer, inner_side) in [(left, right), (right, left)] {
                if matches!(outer.as_ref(), Expr::CompoundIdentifier(_))
                    && references_only_outer(outer, &names)
                    && matches!(inner_side.as_ref(), Expr::CompoundIdentifier(p) if p.len() >= 2 && names.contains(&p[p.len() - 2].value.to_ascii_lowercase()))
                {
                    substitutions.push((outer.to_string(), inner_side.as_ref().clone()));
                }
            }
        }
    }
    let mut outer_only = Vec::new();
    let mut kept = Vec::new();
    for conjunct in all {
        if references_only_outer(&conjunct, &names) {
            outer_only.push(conjunct);
        } else if matches!(
            &conjunct,
            Expr::BinaryOp {
                op: BinaryOperator::Eq,
                ..
            }
        ) {
            kept.push(conjunct);
        } else {
            let mut c = conjunct;
            let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(&mut c, |e| {
                if let Expr::CompoundIdentifier(_) = e
                    && let Some((_, replacement)) =
                        substitutions.iter().find(|(k, _)| *k == e.to_string())
                {
                    *e = replacement.clone();
                }
                ControlFlow::Continue::<()>(())
            });
            kept.push(c);
        }
    }
    inner.selection = kept.into_iter().reduce(|a, b| Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    });
    let subquery = format!("({inner})");
    if outer_only.is_empty() {
        return Ok(Some(parse_expr(&subquery)?));
    }
    let condition = outer_only
        .iter()
        .map(|c| format!("({c})"))
        .collect::<Vec<_>>()
        .join(" AND ");
    Ok(Some(parse_expr(&format!(
        "CASE WHEN {condition} THEN {subquery} END"
    ))?))
}

fn conjuncts(expr: Expr) -> Vec<Expr> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut out = conjuncts(*left);
            out.extend(conjuncts(*right));
            out
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner)
        }
        other => vec![other],
    }
}

/// Names a subquery's FROM clause binds (aliases, else table names).
fn from_names(select: &datafusion::sql::sqlparser::ast::Select) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut add = |factor: &TableFactor| match factor {
        TableFactor::Table { alias: Some(a), .. }
        | TableFactor::Derived { alias: Some(a), .. }
        | TableFactor::UNNEST { alias: Some(a), .. } => {
            names.insert(a.name.value.to_ascii_lowercase());
        }
        TableFactor::Table {
            name, alias: None, ..
        } => {
            if let Some(n) = last_part(name) {
                names.insert(n);
            }
        }
        _ => {}
    };
    for table in &select.from {
        add(&table.relation);
        for join in &table.joins {
            add(&join.relation);
        }
    }
    names
}

/// True when `expr` reads columns, all qualified by names outside the subquery.
fn references_only_outer(expr: &Expr, inner: &HashSet<String>) -> bool {
    let mut outer = 0;
    let mut other = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(expr, |e| {
        match e {
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                // `t.col` or `schema.t.col`: the relation is the part before the column.
                if inner.contains(&parts[parts.len() - 2].value.to_ascii_lowercase()) {
                    other = true;
                } else {
                    outer += 1;
                }
            }
            Expr::Identifier(_)
            | Expr::Subquery(_)
            | Expr::Exists { .. }
            | Expr::InSubquery { .. } => other = true,
            _ => {}
        }
        ControlFlow::Continue::<()>(())
    });
    outer > 0 && !other
}

#[cfg(test)]
mod tests {
    use super::super::tests::rewritten;

    #[test]
    fn correlated_scalar_subqueries_aggregate_one_value() {
        let sql = rewritten(
            "SELECT (SELECT c.collname FROM pg_collation c WHERE c.oid = a.attcollation AND a.attcollation <> 100) FROM pg_attribute a",
        );
        assert!(
            sql.contains("CASE WHEN (a.attcollation <> 100) THEN (SELECT weir_single_value(c.collname) FROM pg_collation c WHERE c.oid = a.attcollation) END"),
            "{sql}"
        );
        let sql = rewritten("SELECT (SELECT max(x) FROM t WHERE t.k = u.k) FROM u");
        assert!(
            sql.contains("(SELECT max(x) FROM t WHERE t.k = u.k)"),
            "{sql}"
        );
    }
}
