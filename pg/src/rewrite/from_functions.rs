//! Functions in FROM as PostgreSQL runs them. Clients: psql's `\d` (`generate_series(0,
//! array_upper(pr.prattrs, 1)) s`, bounds read from the row), pgjdbc's `getPrimaryKeys`
//! (`unnest(i.indkey) AS k`), and scripts that split strings (`FROM string_to_array(…) s`).
//!
//! - a scalar function in FROM → a one-row derived table whose column is named after the alias;
//! - a set-returning function aliased without column names (`generate_series(…) AS i`,
//!   `unnest(a) AS k`) → its one column named after the alias, as PostgreSQL names it;
//! - `generate_series`/`range` with bounds read from the row → the unnest of the array function
//!   of the same name (DataFusion's table function needs constant bounds).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, TableAlias, TableAliasColumnDef, TableFactor,
};
use weir_sql::error::Result;

use super::{last_part, parse_expr, parse_query, strip_pg_catalog};

/// Rewrites `factor`; `is_table_function` tells registered table functions from scalar ones.
pub(super) fn rewrite(
    factor: &mut TableFactor,
    is_table_function: &dyn Fn(&str) -> bool,
) -> Result<()> {
    match factor {
        TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } => {
            strip_pg_catalog(name);
            let function = last_part(name).unwrap_or_default();
            if function == "unnest" {
                let array_exprs = args
                    .args
                    .iter()
                    .filter_map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>();
                let mut alias = alias.clone();
                if let Some(a) = &mut alias
                    && a.columns.is_empty()
                    && array_exprs.len() == 1
                {
                    a.columns
                        .push(TableAliasColumnDef::from_name(a.name.value.clone()));
                }
                *factor = TableFactor::UNNEST {
                    alias,
                    array_exprs,
                    with_offset: false,
                    with_offset_alias: None,
                    with_ordinality: false,
                };
                return Ok(());
            }
            if matches!(function.as_str(), "generate_series" | "range")
                && args.args.iter().any(reads_columns)
            {
                // DataFusion's table function needs constant bounds; bounds read from the row
                // (psql: `generate_series(0, array_upper(pr.prattrs, 1)) s`) unnest the
                // array function of the same name instead.
                let call = format!(
                    "{function}({})",
                    args.args
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let mut alias = alias.clone();
                if let Some(a) = &mut alias
                    && a.columns.is_empty()
                {
                    a.columns
                        .push(TableAliasColumnDef::from_name(a.name.value.clone()));
                }
                *factor = TableFactor::UNNEST {
                    alias,
                    array_exprs: vec![parse_expr(&call)?],
                    with_offset: false,
                    with_offset_alias: None,
                    with_ordinality: false,
                };
                return Ok(());
            }
            if is_table_function(&function) {
                if let Some(alias) = alias
                    && alias.columns.is_empty()
                    && matches!(
                        function.as_str(),
                        "generate_series" | "range" | "generate_subscripts"
                    )
                {
                    alias
                        .columns
                        .push(TableAliasColumnDef::from_name(alias.name.value.clone()));
                }
                return Ok(());
            }
            // A scalar function in FROM is a one-row relation whose column is named after the
            // alias (or the function).
            let column = alias
                .as_ref()
                .map_or_else(|| function.clone(), |a| a.name.value.clone());
            let call = format!(
                "{}({})",
                name,
                args.args
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let subquery = parse_query(&format!(
                "SELECT {call} AS {}",
                Ident::with_quote('"', column.clone())
            ))?;
            *factor = TableFactor::Derived {
                lateral: false,
                subquery: Box::new(subquery),
                alias: Some(alias.clone().unwrap_or_else(|| TableAlias {
                    explicit: true,
                    name: Ident::new(column),
                    columns: Vec::new(),
                    at: None,
                })),
                sample: None,
            };
        }
        TableFactor::UNNEST {
            alias: Some(alias),
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        } if alias.columns.is_empty() && array_exprs.len() == 1 => {
            alias
                .columns
                .push(TableAliasColumnDef::from_name(alias.name.value.clone()));
        }
        _ => {}
    }
    Ok(())
}

/// True when a function argument reads a column (so it is not a constant).
fn reads_columns(arg: &FunctionArg) -> bool {
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(arg, |e| {
        if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

#[cfg(test)]
mod tests {
    use super::super::tests::rewritten;

    #[test]
    fn scalar_functions_become_one_row_tables() {
        let sql = rewritten("SELECT s[1] FROM string_to_array('a,b', ',') s");
        assert!(
            sql.contains("(SELECT string_to_array('a,b', ',') AS \"s\") s"),
            "{sql}"
        );
    }

    #[test]
    fn set_returning_functions_name_their_column_after_the_alias() {
        let sql = rewritten("SELECT i, k FROM generate_series(1, 2) AS i, unnest(a) AS k");
        assert!(sql.contains("generate_series(1, 2) AS i (i)"), "{sql}");
        assert!(sql.contains("UNNEST(a) AS k (k)"), "{sql}");
        let sql = rewritten("SELECT s FROM pr, generate_series(0, array_upper(pr.prattrs, 1)) s");
        assert!(
            sql.contains("UNNEST(generate_series(0, array_upper(pr.prattrs, 1))) s (s)"),
            "{sql}"
        );
    }
}
