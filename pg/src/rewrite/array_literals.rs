//! Array literals written as strings next to `=`, `<>`, `= ANY` and `= ALL`: `'{r,p}'` →
//! `ARRAY['r', 'p']` (numbers stay numbers). PostgreSQL infers the array type from the other
//! side; DataFusion compares a string. Client: psql's `\d` (`pol.polroles = '{0}'` for row
//! security policies) and its `\dt`-style filters (`c.relkind = ANY('{r,p}')`).

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Value};
use weir_sql::error::Result;

use super::parse_expr;

/// Rewrites a string array literal on either side of `=`/`<>`, or the right of `ANY`/`ALL`.
pub(super) fn rewrite(expr: &mut Expr) -> Result<()> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq | BinaryOperator::NotEq,
            right,
        } => {
            if let Some(a) = array_literal(right) {
                **right = a;
            } else if let Some(a) = array_literal(left) {
                **left = a;
            }
        }
        Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } => {
            if let Some(a) = array_literal(right) {
                **right = a;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `'{a,b}'` → `ARRAY['a','b']` (numbers stay numbers).
fn array_literal(expr: &Expr) -> Option<Expr> {
    let Expr::Value(v) = expr else { return None };
    let Value::SingleQuotedString(s) = &v.value else {
        return None;
    };
    let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    let items: Vec<&str> = if inner.trim().is_empty() {
        Vec::new()
    } else {
        inner
            .split(',')
            .map(|i| i.trim().trim_matches('"'))
            .collect()
    };
    let numeric = !items.is_empty() && items.iter().all(|i| i.parse::<i64>().is_ok());
    let rendered: Vec<String> = items
        .iter()
        .map(|i| {
            if numeric {
                (*i).to_string()
            } else {
                format!("'{}'", i.replace('\'', "''"))
            }
        })
        .collect();
    parse_expr(&format!("ARRAY[{}]", rendered.join(", "))).ok()
}

#[cfg(test)]
mod tests {
    use super::super::tests::rewritten;

    #[test]
    fn string_arrays_next_to_comparisons_become_arrays() {
        let sql = rewritten("SELECT x FROM t WHERE pol.polroles = '{0}' AND k = ANY('{r,p}')");
        assert!(
            sql.contains("pol.polroles = ARRAY[0]") && sql.contains("ANY(ARRAY['r', 'p'])"),
            "{sql}"
        );
        let sql = rewritten("SELECT x FROM t WHERE '{}' <> a AND b = '{not an array'");
        assert!(sql.contains("ARRAY[] <> a"), "{sql}");
        assert!(sql.contains("b = '{not an array'"), "{sql}");
    }
}
