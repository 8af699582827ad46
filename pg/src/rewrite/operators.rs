//! Schema-qualified operators and collations: `a OPERATOR(pg_catalog.~) b` → `a ~ b`,
//! `x COLLATE "C"` → `x` (Weir compares strings bytewise). Client: psql's `\d`, `\dt`, `\df`
//! pattern filters (`c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default`).

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr};

/// Rewrites a `COLLATE` or an `OPERATOR(schema.op)` this rule knows.
pub(super) fn rewrite(expr: &mut Expr) {
    match expr {
        Expr::Collate { expr: inner, .. } => *expr = (**inner).clone(),
        Expr::BinaryOp {
            op: op @ BinaryOperator::PGCustomBinaryOperator(_),
            ..
        } => {
            if let BinaryOperator::PGCustomBinaryOperator(parts) = op
                && let Some(plain) = custom_operator(parts)
            {
                *op = plain;
            }
        }
        _ => {}
    }
}

fn custom_operator(parts: &[String]) -> Option<BinaryOperator> {
    Some(match parts.last()?.as_str() {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        ">" => BinaryOperator::Gt,
        "<=" => BinaryOperator::LtEq,
        ">=" => BinaryOperator::GtEq,
        "||" => BinaryOperator::StringConcat,
        "+" => BinaryOperator::Plus,
        "-" => BinaryOperator::Minus,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::rewritten;

    #[test]
    fn psql_pattern_filters() {
        let sql = rewritten(
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default",
        );
        assert_eq!(
            sql,
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname ~ '^(t)$'"
        );
    }
}
