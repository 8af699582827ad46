//! JSON in queries: the functions of `datafusion-functions-json` (`json_get_str`, `json_get_int`,
//! `json_contains`, …) and PostgreSQL's operators over JSON text (`JSONB` columns hold a value's
//! JSON as written):
//!
//! - `data -> 'key'` (or `-> 0`): the member as JSON text (PostgreSQL's `jsonb`, which clients
//!   read as text), so it can be followed by more `->` / `->>`;
//! - `data ->> 'key'`: the member as SQL text (a JSON string without its quotes);
//! - `data #> '{a,b,0}'` / `data #>> '{a,b,0}'`: the same along a path in PostgreSQL's text-array
//!   spelling (elements that are integers index arrays);
//! - `data ? 'key'`: whether the member exists.
//!
//! `->` and the path operators are planned here, ahead of the crate's own planner (which gives
//! `->` a union type that clients cannot read, and takes a path as one key); `->>` and `?` are the
//! crate's.

use std::sync::Arc;

use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ScalarUDF};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use datafusion_functions_json::udfs::{json_as_text_udf, json_get_json_udf};

/// `state` with the JSON functions and operators.
pub(crate) fn install(mut state: SessionState) -> Result<SessionState> {
    datafusion_functions_json::register_all(&mut state)?;
    // Planners are asked in order: this one before the crate's.
    let mut planners = vec![Arc::new(JsonOperators) as Arc<dyn ExprPlanner>];
    planners.extend(state.expr_planners().iter().cloned());
    Ok(SessionStateBuilder::new_from_existing(state)
        .with_expr_planners(planners)
        .build())
}

#[derive(Debug)]
struct JsonOperators;

impl ExprPlanner for JsonOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        _schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let (function, path): (Arc<ScalarUDF>, bool) = match expr.op {
            BinaryOperator::Arrow => (json_get_json_udf(), false),
            BinaryOperator::HashArrow => (json_get_json_udf(), true),
            BinaryOperator::HashLongArrow => (json_as_text_udf(), true),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let mut args = vec![expr.left];
        match (path, &expr.right) {
            (true, Expr::Literal(ScalarValue::Utf8(Some(text)), _)) => {
                args.extend(path_elements(text));
            }
            _ => args.push(expr.right),
        }
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(function, args),
        )))
    }
}

/// `'{a,b,0}'` as the keys `'a'`, `'b'` and the index `0`.
fn path_elements(text: &str) -> Vec<Expr> {
    let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
    if inner.trim().is_empty() {
        return Vec::new();
    }
    inner
        .split(',')
        .map(|element| {
            let element = element.trim().trim_matches('"');
            match element.parse::<i64>() {
                Ok(index) => Expr::Literal(ScalarValue::Int64(Some(index)), None),
                Err(_) => Expr::Literal(ScalarValue::Utf8(Some(element.to_string())), None),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_keys_and_indexes() {
        let shown: Vec<String> = path_elements("{a, b,0}")
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(shown, vec!["Utf8(\"a\")", "Utf8(\"b\")", "Int64(0)"]);
        assert!(path_elements("{}").is_empty());
    }
}
