//! Named arguments of Weir's functions, resolved before DataFusion plans the statement.
//!
//! `anomaly_mad(temp, crit => 6) OVER w` skips `window` and `warn`. DataFusion's named-argument
//! support requires every parameter up to the last one given, so this pass rewrites the call to
//! positional form, filling skipped parameters with NULL (which Weir's functions read as "the
//! default"), and passes the call's `ORDER BY` column as the trailing `ts` parameter of
//! functions that measure windows and half-lives in event time. Unknown or repeated names are
//! errors that list the valid ones.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, NamedWindowExpr, Query,
    SetExpr, Statement, Value, VisitMut, VisitorMut, WindowSpec, WindowType,
};

use crate::error::{Result, SqlError, SqlErrorKind};
use crate::functions::Functions;

/// Rewrites every call of a Weir function with named parameters in `statement`.
pub fn resolve_named_arguments(statement: &mut Statement, functions: &Functions) -> Result<()> {
    let mut resolver = Resolver {
        functions,
        windows: Vec::new(),
    };
    match statement.visit(&mut resolver) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Same, for a query (a view's defining query).
pub fn resolve_in_query(query: &mut Query, functions: &Functions) -> Result<()> {
    let mut resolver = Resolver {
        functions,
        windows: Vec::new(),
    };
    match query.visit(&mut resolver) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Resolver<'a> {
    /// Which functions take named parameters.
    functions: &'a Functions,
    /// `WINDOW name AS (…)` definitions of the enclosing queries, innermost last.
    windows: Vec<HashMap<String, WindowSpec>>,
}

impl Resolver<'_> {
    fn named_window(&self, name: &str) -> Option<&WindowSpec> {
        self.windows
            .iter()
            .rev()
            .find_map(|w| w.get(&name.to_ascii_lowercase()))
    }

    /// The first `ORDER BY` expression of a call's window.
    fn order_by(&self, over: &WindowType) -> Option<Expr> {
        let mut spec = match over {
            WindowType::WindowSpec(spec) => Some(spec),
            WindowType::NamedWindow(name) => self.named_window(&name.value),
        };
        for _ in 0..8 {
            let s = spec?;
            if let Some(first) = s.order_by.first() {
                return Some(first.expr.clone());
            }
            spec = s
                .window_name
                .as_ref()
                .and_then(|n| self.named_window(&n.value));
        }
        None
    }

    fn rewrite(&self, function: &mut Function) -> Result<()> {
        let name = function.name.to_string().to_ascii_lowercase();
        let Some(params) = self.functions.parameter_names(&name) else {
            return Ok(());
        };
        let FunctionArguments::List(list) = &mut function.args else {
            return Ok(());
        };
        if self.functions.takes_row_input(&name)
            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) = list.args.first_mut()
        {
            name_row_fields(first);
        }
        let event_time = self.functions.takes_event_time(&name);
        let named = list
            .args
            .iter()
            .any(|a| matches!(a, FunctionArg::Named { .. } | FunctionArg::ExprNamed { .. }));
        let fills_event_time = event_time && function.over.is_some();
        if !named && !fills_event_time {
            return Ok(());
        }
        let mut slots: Vec<Option<FunctionArgExpr>> = vec![None; params.len()];
        let mut seen_named = false;
        for (position, arg) in std::mem::take(&mut list.args).into_iter().enumerate() {
            let (slot, value) = match arg {
                FunctionArg::Unnamed(value) => {
                    if seen_named {
                        return Err(invalid(format!(
                            "{name}: a positional argument follows a named one"
                        )));
                    }
                    if position >= params.len() {
                        return Err(invalid(format!(
                            "{name} takes at most {} arguments",
                            params.len()
                        )));
                    }
                    (position, value)
                }
                FunctionArg::Named {
                    name: arg_name,
                    arg,
                    ..
                } => {
                    seen_named = true;
                    (parameter_index(&name, &params, &arg_name.value)?, arg)
                }
                FunctionArg::ExprNamed {
                    name: Expr::Identifier(arg_name),
                    arg,
                    ..
                } => {
                    seen_named = true;
                    (parameter_index(&name, &params, &arg_name.value)?, arg)
                }
                FunctionArg::ExprNamed { name: other, .. } => {
                    return Err(invalid(format!("{name}: {other} is not a parameter name")));
                }
            };
            if slots[slot].replace(value).is_some() {
                return Err(invalid(format!(
                    "{name}: parameter {} given twice",
                    params[slot]
                )));
            }
        }
        if event_time
            && let (Some(last), Some(over)) = (slots.last_mut(), function.over.as_ref())
            && last.is_none()
        {
            *last = self.order_by(over).map(FunctionArgExpr::Expr);
        }
        let used = slots.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
        list.args = slots
            .into_iter()
            .take(used)
            .map(|s| {
                FunctionArg::Unnamed(
                    s.unwrap_or_else(|| FunctionArgExpr::Expr(Expr::Value(Value::Null.into()))),
                )
            })
            .collect();
        Ok(())
    }
}

/// `ROW(temperature, pressure)` (DataFusion's `struct`, whose fields are c0, c1, …) becomes
/// `named_struct('temperature', temperature, 'pressure', pressure)`, so a multivariate
/// detector's attribution names the inputs. Inputs that are not plain columns keep the name
/// `c<i>`.
fn name_row_fields(expr: &mut Expr) {
    let Expr::Function(row) = expr else { return };
    let called = row.name.to_string();
    if !(called.eq_ignore_ascii_case("row") || called.eq_ignore_ascii_case("struct"))
        || row.over.is_some()
    {
        return;
    }
    let FunctionArguments::List(list) = &mut row.args else {
        return;
    };
    let mut named = Vec::with_capacity(list.args.len() * 2);
    for (i, arg) in list.args.iter().enumerate() {
        let FunctionArg::Unnamed(FunctionArgExpr::Expr(value)) = arg else {
            return;
        };
        let field = match value {
            Expr::Identifier(column) => column.value.clone(),
            Expr::CompoundIdentifier(parts) => parts
                .last()
                .map_or_else(|| format!("c{i}"), |p| p.value.clone()),
            _ => format!("c{i}"),
        };
        named.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(
            Value::SingleQuotedString(field).into(),
        ))));
        named.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(value.clone())));
    }
    row.name = datafusion::sql::sqlparser::ast::ObjectName::from(vec![
        datafusion::sql::sqlparser::ast::Ident::new("named_struct"),
    ]);
    list.args = named;
}

fn parameter_index(function: &str, params: &[&'static str], name: &str) -> Result<usize> {
    params
        .iter()
        .position(|p| p.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            invalid(format!(
                "{function} has no parameter {name}; its parameters are: {}",
                params.join(", ")
            ))
        })
}

fn invalid(message: String) -> SqlError {
    SqlError::new(SqlErrorKind::InvalidParameter, message)
}

impl VisitorMut for Resolver<'_> {
    type Break = SqlError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<SqlError> {
        let mut windows = HashMap::new();
        if let SetExpr::Select(select) = query.body.as_ref() {
            for definition in &select.named_window {
                if let NamedWindowExpr::WindowSpec(spec) = &definition.1 {
                    windows.insert(definition.0.value.to_ascii_lowercase(), spec.clone());
                }
            }
        }
        self.windows.push(windows);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<SqlError> {
        self.windows.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<SqlError> {
        if let Expr::Function(function) = expr
            && let Err(e) = self.rewrite(function)
        {
            return ControlFlow::Break(e);
        }
        ControlFlow::Continue(())
    }
}
