//! The outermost SELECT's unnamed expressions get PostgreSQL's column names (`version`,
//! `?column?`, `case`), kept unique, so clients that read columns by name find them. Clients:
//! pgjdbc and psycopg's `DictCursor` read `SELECT version()` as `version`; Grafana's
//! connection test and SQLAlchemy's dialect start-up read `current_schema`, `version`.

use std::collections::HashSet;

use datafusion::sql::sqlparser::ast::{Expr, Ident, Query, SelectItem, SetExpr};

use super::last_part;

/// PostgreSQL's name for an unnamed select-list expression.
fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => None,
        Expr::Function(f) => last_part(&f.name),
        Expr::Cast {
            expr, data_type, ..
        } => match column_name(expr) {
            Some(n) if n != "?column?" => Some(n),
            _ => match expr.as_ref() {
                Expr::Identifier(_) | Expr::CompoundIdentifier(_) => None,
                _ => Some(data_type.to_string().to_ascii_lowercase()),
            },
        },
        Expr::Nested(inner) => column_name(inner),
        Expr::Case { .. } => Some("case".into()),
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Array(_) => Some("array".into()),
        Expr::Trim { .. } => Some("btrim".into()),
        _ => Some("?column?".into()),
    }
}

/// Names the outermost SELECT's unnamed expressions as PostgreSQL does, keeping names unique
/// (DataFusion refuses duplicate output names where PostgreSQL allows them).
pub(in crate::rewrite) fn name_columns(query: &mut Query) {
    name_set_columns(query.body.as_mut());
}

fn name_set_columns(body: &mut SetExpr) {
    let select = match body {
        SetExpr::Select(select) => select,
        SetExpr::SetOperation { left, right, .. } => {
            name_set_columns(left);
            name_set_columns(right);
            return;
        }
        SetExpr::Query(q) => return name_columns(q),
        _ => return,
    };
    let mut taken: HashSet<String> = select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.value.clone()),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                parts.last().map(|i| i.value.clone())
            }
            _ => None,
        })
        .collect();
    for item in select.projection.iter_mut() {
        let SelectItem::UnnamedExpr(expr) = item else {
            continue;
        };
        let Some(base) = column_name(expr) else {
            continue;
        };
        let mut name = base.clone();
        let mut n = 1;
        while taken.contains(&name) {
            n += 1;
            name = format!("{base}_{n}");
        }
        taken.insert(name.clone());
        *item = SelectItem::ExprWithAlias {
            expr: expr.clone(),
            alias: Ident::with_quote('"', name),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::rewritten;

    #[test]
    fn unnamed_expressions_get_postgres_names() {
        let sql = rewritten(
            "SELECT pg_catalog.version(), 1 + 1, NULL, NULL, x, CASE WHEN x THEN 1 END FROM t",
        );
        assert!(
            sql.contains("version() AS \"version\"")
                && sql.contains("1 + 1 AS \"?column?\"")
                && sql.contains("NULL AS \"?column?_2\"")
                && sql.contains("END AS \"case\""),
            "{sql}"
        );
        assert!(sql.contains(", x,"), "columns keep their own names: {sql}");
    }
}
