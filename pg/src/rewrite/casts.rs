//! Casts to PostgreSQL-only types. Clients: psql's `\d` (`c.oid::pg_catalog.regclass`,
//! `'16391'::pg_catalog.oid`), pgjdbc's metadata queries (`::regtype`), Grafana's table list
//! (`::regnamespace`); `::name`/`::"char"` appear throughout psql's catalog queries.
//!
//! - casts to `regclass`/`regtype`/`regnamespace`/`regproc` → OID lookups (`weir_regclass(x)`),
//!   and such a cast followed by `::text` → the object's name (`weir_regclass_name(x)`);
//! - `oid`/`xid`/`cid`/`regrole` → integer, `name`/`"char"`/`bpchar` → text, and a
//!   schema-qualified type (`pg_catalog.int4`) → the type DataFusion knows.

use datafusion::sql::sqlparser::ast::{
    ArrayElemTypeDef, CastKind, DataType, Expr, FunctionArguments,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use weir_sql::error::Result;

use super::{last_part, parse_expr};

/// Rewrites `expr` if it is a cast this rule knows.
pub(super) fn rewrite(expr: &mut Expr) -> Result<()> {
    let Expr::Cast {
        kind,
        expr: inner,
        data_type,
        ..
    } = expr
    else {
        return Ok(());
    };
    let text_target = matches!(
        data_type,
        DataType::Text | DataType::Varchar(_) | DataType::String(_)
    ) || matches!(data_type, DataType::Custom(n, _) if last_part(n).is_some_and(|l| l == "text" || l == "name"));
    if text_target
        && let Expr::Function(f) = inner.as_ref()
        && let Some(reg) =
            last_part(&f.name).and_then(|n| n.strip_prefix("weir_reg").map(str::to_string))
        && !reg.ends_with("_name")
    {
        let args = match &f.args {
            FunctionArguments::List(list) => list
                .args
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        };
        *expr = parse_expr(&format!("weir_reg{reg}_name({args})"))?;
        return Ok(());
    }
    match cast_target(data_type) {
        Some(Target::Reg(reg)) => *expr = parse_expr(&format!("weir_{reg}({inner})"))?,
        Some(Target::Plain(t)) => {
            *data_type = t;
            if *kind == CastKind::DoubleColon {
                *kind = CastKind::Cast;
            }
        }
        None => {}
    }
    Ok(())
}

/// What a cast target means here.
enum Target {
    /// A `reg*` type: resolved by a lookup function.
    Reg(&'static str),
    /// A type DataFusion knows under another spelling.
    Plain(DataType),
}

fn cast_target(data_type: &DataType) -> Option<Target> {
    Some(match data_type {
        DataType::Regclass => Target::Reg("regclass"),
        DataType::Custom(name, modifiers) if modifiers.is_empty() => {
            let last = last_part(name)?;
            match last.as_str() {
                "regclass" => Target::Reg("regclass"),
                "regtype" => Target::Reg("regtype"),
                "regnamespace" => Target::Reg("regnamespace"),
                "regproc" | "regprocedure" => Target::Reg("regproc"),
                "oid" | "xid" | "cid" | "regrole" => Target::Plain(DataType::Int(None)),
                "name" | "char" | "bpchar" | "unknown" => Target::Plain(DataType::Text),
                "int2vector" | "oidvector" => return None,
                other if name.0.len() > 1 => Target::Plain(
                    Parser::new(&PostgreSqlDialect {})
                        .try_with_sql(other)
                        .ok()?
                        .parse_data_type()
                        .ok()?,
                ),
                _ => return None,
            }
        }
        DataType::Array(ArrayElemTypeDef::SquareBracket(inner, size)) => {
            match cast_target(inner)? {
                Target::Plain(t) => Target::Plain(DataType::Array(
                    ArrayElemTypeDef::SquareBracket(Box::new(t), *size),
                )),
                Target::Reg(_) => Target::Plain(DataType::Array(ArrayElemTypeDef::SquareBracket(
                    Box::new(DataType::Int(None)),
                    *size,
                ))),
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::rewritten;

    #[test]
    fn reg_casts_become_lookups_and_names() {
        let sql = rewritten(
            "SELECT c.oid::pg_catalog.regclass::pg_catalog.text, x::regtype, 'pg_class'::regclass FROM t",
        );
        assert!(sql.contains("weir_regclass_name(c.oid)"), "{sql}");
        assert!(
            sql.contains("weir_regtype(x)") && sql.contains("weir_regclass('pg_class')"),
            "{sql}"
        );
    }

    #[test]
    fn pg_only_types_become_plain_types() {
        let sql = rewritten("SELECT '16391'::pg_catalog.oid, n::name, t::pg_catalog.int4");
        assert!(sql.contains("CAST('16391' AS INT)"), "{sql}");
        assert!(sql.contains("CAST(n AS TEXT)"), "{sql}");
        assert!(sql.contains("CAST(t AS INT4)"), "{sql}");
    }
}
