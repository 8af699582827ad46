//! Rewrites of PostgreSQL syntax DataFusion does not plan, applied to the parsed statement before
//! planning. Each rule is a general equivalence, never a match on a client's query text:
//!
//! - `OPERATOR(pg_catalog.~)` → `~` (any schema-qualified operator), `x COLLATE c` → `x`;
//! - `pg_catalog.f(…)` → `f(…)`, `pg_catalog.text` → `text`, `oid`/`name`/`"char"` → integer/text;
//! - casts to `regclass`/`regtype`/`regnamespace`/`regproc` → OID lookups, and such a cast
//!   followed by `::text` → the object's name;
//! - bare `user`, `current_user`, `session_user`, `current_role`, `current_catalog`,
//!   `current_schema` → function calls (they are keywords in PostgreSQL, never columns);
//! - `ARRAY(SELECT e FROM …)` → `(SELECT array_agg(e) FROM …)`;
//! - array literals written as strings (`'{r,p}'`) next to `= ANY` / `=` → `ARRAY[…]`;
//! - a scalar function in FROM (`FROM string_to_array(…) s`) → a one-row derived table, and a
//!   set-returning function aliased without column names (`generate_series(…) AS i`) → its one
//!   column named after the alias, as PostgreSQL names it;
//! - the outermost SELECT's unnamed expressions get PostgreSQL's column names (`version`,
//!   `?column?`) so clients that read columns by name find them.

mod order_by;

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, FunctionArguments, Ident, ObjectName, ObjectNamePart,
    Query, SelectItem, SetExpr, Statement, TableAlias, TableAliasColumnDef, TableFactor, Value,
    VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use weir_sql::error::{Result, SqlError};

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

struct Rewriter<'a> {
    is_table_function: &'a dyn Fn(&str) -> bool,
    error: Option<SqlError>,
}

fn parse_expr(sql: &str) -> Result<Expr> {
    Ok(Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)?
        .parse_expr()?)
}

fn parse_query(sql: &str) -> Result<Query> {
    Ok(*Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)?
        .parse_query()?)
}

fn last_part(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(ident) => Some(if ident.quote_style.is_some() {
            ident.value.clone()
        } else {
            ident.value.to_ascii_lowercase()
        }),
        ObjectNamePart::Function(_) => None,
    }
}

fn strip_pg_catalog(name: &mut ObjectName) {
    if name.0.len() == 2
        && matches!(&name.0[0], ObjectNamePart::Identifier(i) if i.value.eq_ignore_ascii_case("pg_catalog"))
    {
        name.0.remove(0);
    }
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
        DataType::Array(datafusion::sql::sqlparser::ast::ArrayElemTypeDef::SquareBracket(
            inner,
            size,
        )) => match cast_target(inner)? {
            Target::Plain(t) => Target::Plain(DataType::Array(
                datafusion::sql::sqlparser::ast::ArrayElemTypeDef::SquareBracket(
                    Box::new(t),
                    *size,
                ),
            )),
            Target::Reg(_) => Target::Plain(DataType::Array(
                datafusion::sql::sqlparser::ast::ArrayElemTypeDef::SquareBracket(
                    Box::new(DataType::Int(None)),
                    *size,
                ),
            )),
        },
        _ => return None,
    })
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

const SESSION_KEYWORDS: &[&str] = &[
    "user",
    "current_user",
    "session_user",
    "current_role",
    "current_catalog",
    "current_schema",
];

impl Rewriter<'_> {
    fn rewrite_expr(&self, expr: &mut Expr) -> Result<()> {
        match expr {
            Expr::Collate { expr: inner, .. } => *expr = (**inner).clone(),
            Expr::BinaryOp {
                op: BinaryOperator::PGCustomBinaryOperator(parts),
                ..
            } => {
                if let Some(op) = custom_operator(parts)
                    && let Expr::BinaryOp { op: current, .. } = expr
                {
                    *current = op;
                }
            }
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
            Expr::Identifier(Ident {
                value,
                quote_style: None,
                ..
            }) if SESSION_KEYWORDS.contains(&value.to_ascii_lowercase().as_str()) => {
                *expr = parse_expr(&format!("{}()", value.to_ascii_lowercase()))?;
            }
            Expr::Function(f) => {
                strip_pg_catalog(&mut f.name);
                let name = last_part(&f.name).unwrap_or_default();
                if SESSION_KEYWORDS.contains(&name.as_str())
                    && matches!(f.args, FunctionArguments::None)
                {
                    *expr = parse_expr(&format!("{name}()"))?;
                } else if name == "array"
                    && let FunctionArguments::Subquery(query) = &f.args
                {
                    *expr = array_subquery(query)?;
                } else if name == "generate_subscripts"
                    && let FunctionArguments::List(list) = &f.args
                    && let [array, dim] = list.args.as_slice()
                {
                    // A set-returning function of the select list, as DataFusion has them: the
                    // unnest of the subscripts' array (zipped with other unnests, as PostgreSQL).
                    *expr = parse_expr(&format!(
                        "unnest(generate_series(array_lower({array}, {dim}), array_upper({array}, {dim})))"
                    ))?;
                }
            }
            Expr::Subquery(query) => {
                if let Some(wrapped) = single_value(query)? {
                    *expr = wrapped;
                }
            }
            Expr::Cast {
                kind,
                expr: inner,
                data_type,
                ..
            } => {
                let text_target = matches!(
                    data_type,
                    DataType::Text | DataType::Varchar(_) | DataType::String(_)
                ) || matches!(data_type, DataType::Custom(n, _) if last_part(n).is_some_and(|l| l == "text" || l == "name"));
                if text_target
                    && let Expr::Function(f) = inner.as_ref()
                    && let Some(reg) = last_part(&f.name)
                        .and_then(|n| n.strip_prefix("weir_reg").map(str::to_string))
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
            }
            _ => {}
        }
        Ok(())
    }

    fn rewrite_table_factor(&self, factor: &mut TableFactor) -> Result<()> {
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
                            datafusion::sql::sqlparser::ast::FunctionArg::Unnamed(
                                datafusion::sql::sqlparser::ast::FunctionArgExpr::Expr(e),
                            ) => Some(e.clone()),
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
                if (self.is_table_function)(&function) {
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

/// True when a function argument reads a column (so it is not a constant).
fn reads_columns(arg: &datafusion::sql::sqlparser::ast::FunctionArg) -> bool {
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
        && matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty())
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
        && matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty())
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
pub(super) fn name_columns(query: &mut Query) {
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
    use super::*;

    fn rewritten(sql: &str) -> String {
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

    #[test]
    fn psql_describe_syntax() {
        let sql = rewritten(
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default",
        );
        assert_eq!(
            sql,
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname ~ '^(t)$'"
        );
        let sql = rewritten(
            "SELECT pg_catalog.format_type(a.atttypid, NULL), c.oid::pg_catalog.regclass::pg_catalog.text FROM t",
        );
        assert!(
            sql.contains("format_type(a.atttypid, NULL) AS \"format_type\""),
            "{sql}"
        );
        assert!(sql.contains("weir_regclass_name(c.oid)"), "{sql}");
        let sql = rewritten("SELECT '16391'::pg_catalog.oid, x::regtype, 'pg_class'::regclass");
        assert!(sql.contains("CAST('16391' AS INT)"), "{sql}");
        assert!(
            sql.contains("weir_regtype(x)") && sql.contains("weir_regclass('pg_class')"),
            "{sql}"
        );
    }

    #[test]
    fn session_keywords_and_array_forms() {
        let sql = rewritten(
            "SELECT user, current_user, x FROM t WHERE pol.polroles = '{0}' AND k = ANY('{r,p}')",
        );
        assert!(
            sql.contains("AS \"user\"") && sql.contains("AS \"current_user\""),
            "{sql}"
        );
        assert!(
            sql.contains("pol.polroles = ARRAY[0]") && sql.contains("ANY(ARRAY['r', 'p'])"),
            "{sql}"
        );
        let sql = rewritten(
            "SELECT ARRAY(SELECT b.rolname FROM r b WHERE b.x = 1 ORDER BY 1) AS m FROM t",
        );
        assert!(
            sql.contains("coalesce((SELECT array_agg(b.rolname ORDER BY 1) FROM r b WHERE b.x = 1), make_array()) AS m"),
            "{sql}"
        );
    }

    #[test]
    fn functions_in_from() {
        let sql =
            rewritten("SELECT s[i] FROM generate_series(1, 2) AS i, string_to_array('a,b', ',') s");
        assert!(sql.contains("generate_series(1, 2) AS i (i)"), "{sql}");
        assert!(
            sql.contains("(SELECT string_to_array('a,b', ',') AS \"s\") s"),
            "{sql}"
        );
        let sql = rewritten("SELECT pg_catalog.version(), 1 + 1, NULL, NULL");
        assert!(
            sql.contains("version() AS \"version\"") && sql.contains("NULL AS \"?column?_2\""),
            "{sql}"
        );
    }
}
