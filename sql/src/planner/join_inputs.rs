//! What every join planner needs first: each input planned as a stage of its own (one
//! pipeline input with the operators on its rows alone), and the `ON` equalities and the rest
//! of `ON` as physical expressions.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::logical_plan::Join;
use datafusion::physical_expr::PhysicalExpr;
use weir_engine::stream_props::StreamProps;
use weir_engine::view_runtime::PlannedInput;

use super::{PlanContext, describe_input, physical, unsupported};
use crate::error::Result;

/// A join's inputs, each planned as one pipeline input, with their stream properties.
pub(super) type JoinInputs = Vec<(PlannedInput, StreamProps)>;

/// Key expressions over one input's rows.
type KeyExprs = Vec<Expr>;

/// A physical expression.
type Expr = Arc<dyn PhysicalExpr>;

/// Each input of `join` planned as a stage of its own (one pipeline input with the operators on
/// its rows alone) with its stream properties, and the EXPLAIN lines of both.
pub(super) fn plan_sides(join: &Join, ctx: &PlanContext<'_>) -> Result<(JoinInputs, Vec<String>)> {
    let mut sides = Vec::with_capacity(2);
    let mut lines = Vec::new();
    for (name, plan) in [("Left", &join.left), ("Right", &join.right)] {
        let mut stage = super::build(plan, ctx)?;
        stage.flush();
        if stage.inputs.len() != 1 {
            return Err(unsupported(
                "a join whose input is itself a join or a UNION",
            ));
        }
        let props = stage.props.clone();
        let Some(single) = stage.inputs.pop() else {
            return Err(unsupported("a join input without a source or view"));
        };
        lines.push(format!("{name}: {}", describe_input(&single.input)));
        lines.extend(stage.explain.iter().map(|l| super::union::indent(l, "  ")));
        let mut operators = single.operators;
        operators.extend(stage.operators);
        sides.push((
            PlannedInput {
                input: single.input,
                operators,
            },
            props,
        ));
    }
    Ok((sides, lines))
}

/// Left columns, then right columns: the rows the rest of `ON` is evaluated over.
pub(super) fn joined_schema(join: &Join) -> Result<SchemaRef> {
    Ok(Arc::new(
        join.left
            .schema()
            .join(join.right.schema())?
            .as_arrow()
            .clone(),
    ))
}

/// The key expressions over each input (the `ON` equalities) and the rest of `ON`, over a
/// joined row of both inputs' columns.
pub(super) fn join_exprs(
    join: &Join,
    ctx: &PlanContext<'_>,
) -> Result<(KeyExprs, KeyExprs, Option<Expr>)> {
    let left_keys = join
        .on
        .iter()
        .map(|(l, _)| physical(l, join.left.schema(), ctx))
        .collect::<Result<Vec<_>>>()?;
    let right_keys = join
        .on
        .iter()
        .map(|(_, r)| physical(r, join.right.schema(), ctx))
        .collect::<Result<Vec<_>>>()?;
    // The rest of ON sees both inputs' columns, whatever the join outputs.
    let joined = join.left.schema().join(join.right.schema())?;
    let filter = join
        .filter
        .as_ref()
        .map(|f| physical(f, &joined, ctx))
        .transpose()?;
    Ok((left_keys, right_keys, filter))
}
