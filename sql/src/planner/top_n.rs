//! Planning Top-N, `DISTINCT ON` and first row per key onto the engine's [`TopN`] operator.
//!
//! Two shapes reach it:
//!
//! - `Filter(rank <= N)` over (projections of) `Window(row_number() | rank() | dense_rank()
//!   OVER (PARTITION BY … ORDER BY …))`: the filter's bound on the rank column becomes the
//!   operator's limit; the projections and the whole filter are then applied to its output, so
//!   other conditions (`rn >= 2`, `rn = 3`, filters on other columns) keep their meaning.
//! - `Aggregate(GROUP BY k: first_value(x ORDER BY …), …)`, which is what DataFusion makes of
//!   `SELECT DISTINCT ON (k) … ORDER BY k, …`: the first row of each group, i.e. `row_number()
//!   = 1`, projected to the aggregate's columns.

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::common::{Column as LogicalColumn, ScalarValue};
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment, WindowFunction};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, SortExpr};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use weir_engine::stateless::Step;
use weir_engine::stream_props::{StreamKind, StreamProps};
use weir_engine::top_n::{RankFunction, TopN, TopNSpec};
use weir_engine::window::{WINDOW_END, WINDOW_START};

use super::{PlanContext, Stage, physical, refuse_volatile_over_updates, unsupported};
use crate::error::Result;

/// The ranking function a window expression calls, if it is one.
pub(crate) fn rank_function(expr: &Expr) -> Option<(RankFunction, WindowFunction)> {
    let Expr::WindowFunction(call) = expr.clone().unalias() else {
        return None;
    };
    let function = match call.fun.to_string().to_ascii_lowercase().as_str() {
        "row_number" => RankFunction::RowNumber,
        "rank" => RankFunction::Rank,
        "dense_rank" => RankFunction::DenseRank,
        _ => return None,
    };
    Some((function, *call))
}

/// Plans `filter` as a Top-N when it bounds a ranking window function below it; None when it
/// is an ordinary filter.
pub(crate) fn plan_rank_filter(
    filter: &datafusion::logical_expr::logical_plan::Filter,
    ctx: &PlanContext<'_>,
) -> Result<Option<Stage>> {
    // The projections and aliases between the filter and the window, top down.
    let mut path = Vec::new();
    let mut node = filter.input.as_ref();
    let window = loop {
        match node {
            LogicalPlan::Projection(p) => {
                path.push(node);
                node = &p.input;
            }
            LogicalPlan::SubqueryAlias(a) => {
                path.push(node);
                node = &a.input;
            }
            LogicalPlan::Window(w) => break w,
            _ => return Ok(None),
        }
    };
    let [expr] = window.window_expr.as_slice() else {
        return Ok(None);
    };
    let Some((function, call)) = rank_function(expr) else {
        return Ok(None);
    };
    let rank_index = window.input.schema().fields().len();
    let conjuncts = split_conjunction(&filter.predicate);
    let bounds: Vec<Option<(u64, bool)>> = conjuncts
        .iter()
        .map(|c| {
            let (column, limit, exact) = rank_bound(c)?;
            let index = filter.input.schema().index_of_column(column).ok()?;
            (window_index(filter.input.as_ref(), index)? == rank_index).then_some((limit, exact))
        })
        .collect();
    let Some(limit) = bounds.iter().flatten().map(|(limit, _)| *limit).min() else {
        return Ok(None);
    };
    // What the operator guarantees need not be checked again: `rank <= limit` (and `rank = 1`
    // when the limit is 1); other conditions (`rn = 3`, `rn >= 2`, other columns) remain.
    let remaining = conjuncts
        .into_iter()
        .zip(&bounds)
        .filter(|(_, bound)| !matches!(bound, Some((l, exact)) if *l == limit && (!exact || limit <= 1)))
        .map(|(c, _)| c.clone())
        .collect::<Vec<_>>();
    let params = &call.params;
    if params.filter.is_some() || params.distinct || !params.args.is_empty() {
        return Err(unsupported(format!(
            "{}(…) with arguments, DISTINCT or FILTER",
            function.name()
        )));
    }
    let mut stage = plan(
        &window.input,
        &params.partition_by,
        &params.order_by,
        function,
        limit,
        Arc::new(window.schema.as_arrow().clone()),
        ctx,
    )?;
    // Keyed by partition and position when every position is unique (ROW_NUMBER) and the
    // partition is made of plain columns.
    let partition_columns: Option<Vec<usize>> = params
        .partition_by
        .iter()
        .map(|e| match e {
            Expr::Column(c) => window.input.schema().index_of_column(c).ok(),
            _ => None,
        })
        .collect();
    stage.props.key = match (function, partition_columns) {
        (RankFunction::RowNumber, Some(mut columns)) => {
            if limit > 1 {
                columns.push(rank_index);
            }
            Some(columns)
        }
        _ => None,
    };
    for node in path.iter().rev() {
        if let LogicalPlan::Projection(p) = node {
            refuse_volatile_over_updates(&stage, &p.expr)?;
            let exprs = p
                .expr
                .iter()
                .map(|e| physical(e, p.input.schema(), ctx))
                .collect::<Result<Vec<_>>>()?;
            stage.push(Step::Project {
                exprs,
                schema: Arc::new(p.schema.as_arrow().clone()),
            });
        }
    }
    if let Some(predicate) = conjunction(remaining) {
        stage.push(Step::Filter(physical(
            &predicate,
            filter.input.schema(),
            ctx,
        )?));
    }
    Ok(Some(stage))
}

/// The position in the window's output that column `index` of `plan`'s output passes through
/// from, following plain column references down projections and aliases.
fn window_index(plan: &LogicalPlan, index: usize) -> Option<usize> {
    match plan {
        LogicalPlan::Window(_) => Some(index),
        LogicalPlan::SubqueryAlias(a) => window_index(&a.input, index),
        LogicalPlan::Projection(p) => match p.expr.get(index)?.clone().unalias_nested().data {
            Expr::Column(c) => window_index(&p.input, p.input.schema().index_of_column(&c).ok()?),
            _ => None,
        },
        _ => None,
    }
}

/// `column <= n` and its spellings (`<`, `=`, flipped): the column, the largest rank kept and
/// whether the condition is an equality.
fn rank_bound(expr: &Expr) -> Option<(&LogicalColumn, u64, bool)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
        return None;
    };
    let (column, op, value) = match (column_of(left), literal_of(right)) {
        (Some(c), Some(v)) => (c, *op, v),
        _ => (column_of(right)?, op.swap()?, literal_of(left)?),
    };
    let limit = match op {
        Operator::LtEq | Operator::Eq => value,
        Operator::Lt => value - 1,
        _ => return None,
    };
    Some((
        column,
        u64::try_from(limit.max(0)).ok()?,
        op == Operator::Eq,
    ))
}

fn column_of(expr: &Expr) -> Option<&LogicalColumn> {
    match expr {
        Expr::Column(c) => Some(c),
        Expr::Cast(c) => column_of(&c.expr),
        Expr::TryCast(c) => column_of(&c.expr),
        _ => None,
    }
}

fn literal_of(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value
        .cast_to(&datafusion::arrow::datatypes::DataType::Int64)
        .ok()?
    {
        ScalarValue::Int64(Some(v)) => Some(v),
        _ => None,
    }
}

/// Plans `aggregate` as the first row of each group when every aggregate is `first_value` (or
/// every one `last_value`) with the same ORDER BY: what `DISTINCT ON` becomes. None otherwise.
pub(crate) fn plan_first_rows(
    aggregate: &datafusion::logical_expr::Aggregate,
    ctx: &PlanContext<'_>,
) -> Result<Option<Stage>> {
    let Some(order) = first_row_order(aggregate) else {
        return Ok(None);
    };
    let input_schema = aggregate.input.schema();
    let mut rows_schema: Vec<_> = input_schema.as_arrow().fields().iter().cloned().collect();
    rows_schema.push(Arc::new(datafusion::arrow::datatypes::Field::new(
        "__weir_rank",
        datafusion::arrow::datatypes::DataType::UInt64,
        false,
    )));
    let mut stage = plan(
        &aggregate.input,
        &aggregate.group_expr,
        &order,
        RankFunction::RowNumber,
        1,
        Arc::new(datafusion::arrow::datatypes::Schema::new(rows_schema)),
        ctx,
    )?;
    let mut exprs: Vec<Arc<dyn PhysicalExpr>> = aggregate
        .group_expr
        .iter()
        .map(|e| physical(e, input_schema, ctx))
        .collect::<Result<_>>()?;
    let mut args = Vec::with_capacity(aggregate.aggr_expr.len());
    for e in &aggregate.aggr_expr {
        let Expr::AggregateFunction(f) = e.clone().unalias() else {
            return Err(unsupported(format!("aggregate {e}")));
        };
        exprs.push(physical(&f.params.args[0], input_schema, ctx)?);
        args.push(f.params.args[0].clone());
    }
    // The groups are the key. `DISTINCT ON (k) k, …` selects `first_value(k)` rather than the
    // group column itself, so the key points at such a value where there is one: the group
    // columns are then free to be projected away.
    let groups = aggregate.group_expr.len();
    let key = aggregate
        .group_expr
        .iter()
        .enumerate()
        .map(|(i, g)| args.iter().position(|a| a == g).map_or(i, |j| groups + j))
        .collect();
    let props = StreamProps {
        key: Some(key),
        ..stage.props.project(&exprs)
    };
    stage.push(Step::Project {
        exprs,
        schema: Arc::new(aggregate.schema.as_arrow().clone()),
    });
    stage.props = props;
    Ok(Some(stage))
}

/// True when `plan` is an aggregate [`plan_first_rows`] plans.
pub(crate) fn is_first_rows(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Aggregate(a) if first_row_order(a).is_some())
}

/// The ORDER BY that picks each group's row, when `aggregate` only takes first (or only last)
/// values under one ordering.
fn first_row_order(aggregate: &datafusion::logical_expr::Aggregate) -> Option<Vec<SortExpr>> {
    if aggregate
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return None;
    }
    let mut order: Option<(bool, Vec<SortExpr>)> = None;
    for e in &aggregate.aggr_expr {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = e.clone().unalias()
        else {
            return None;
        };
        let last = match func.name() {
            "first_value" => false,
            "last_value" => true,
            _ => return None,
        };
        if params.args.len() != 1
            || params.distinct
            || params.filter.is_some()
            || params.order_by.is_empty()
            || matches!(params.null_treatment, Some(NullTreatment::IgnoreNulls))
        {
            return None;
        }
        match &order {
            Some((l, o)) if *l != last || *o != params.order_by => return None,
            _ => order = Some((last, params.order_by)),
        }
    }
    let (last, order) = order?;
    Some(if last {
        order
            .into_iter()
            .map(|s| SortExpr {
                asc: !s.asc,
                nulls_first: !s.nulls_first,
                ..s
            })
            .collect()
    } else {
        order
    })
}

/// The Top-N operator over `input`'s stage; the stage's output is `input`'s columns followed by
/// the rank (`output_schema`).
fn plan(
    input: &LogicalPlan,
    partition_by: &[Expr],
    order_by: &[SortExpr],
    function: RankFunction,
    limit: u64,
    output_schema: datafusion::arrow::datatypes::SchemaRef,
    ctx: &PlanContext<'_>,
) -> Result<Stage> {
    let mut stage = super::build(input, ctx)?;
    super::refuse_raw_sessions(&stage)?;
    stage.flush();
    let input_schema = input.schema();
    let partition = partition_by
        .iter()
        .map(|e| physical(e, input_schema, ctx))
        .collect::<Result<Vec<_>>>()?;
    let order = order_by
        .iter()
        .map(|s| {
            Ok(PhysicalSortExpr {
                expr: physical(&s.expr, input_schema, ctx)?,
                options: SortOptions {
                    descending: !s.asc,
                    nulls_first: s.nulls_first,
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let updating_input = !stage.props.is_append_only();
    // A partition column that seals: the window of raw TUMBLE/HOP rows, or the sealing column
    // of a windowed aggregate's output.
    let column_index = |name: &str| {
        partition_by.iter().find_map(|e| match e {
            Expr::Column(c) if c.name == name => input_schema.index_of_column(c).ok(),
            _ => None,
        })
    };
    let seal = match (stage.window, stage.props.sealed_by) {
        (Some(window), _) => column_index(WINDOW_END)
            .map(|i| (i, 0))
            .or_else(|| column_index(WINDOW_START).map(|i| (i, -window.max_size()))),
        (None, Some(column)) => partition_by
            .iter()
            .any(|e| matches!(e, Expr::Column(c) if input_schema.index_of_column(c).ok() == Some(column)))
            .then_some((column, stage.props.seal_span)),
        (None, None) => None,
    };
    let emit_at_close = ctx.emit_on_window_close;
    if emit_at_close && (seal.is_none() || updating_input) {
        return Err(unsupported(
            "EMIT ON WINDOW CLOSE on a Top-N whose PARTITION BY has no window column of an append-only input \
             (partition by window_start or window_end of TUMBLE(…), HOP(…) or an EMIT ON WINDOW CLOSE aggregate)",
        ));
    }
    let operator = TopN::try_new(
        TopNSpec {
            view: ctx.view.to_string(),
            partition_by: partition,
            order_by: order,
            function,
            limit,
            input_schema: Arc::new(input_schema.as_arrow().clone()),
            output_schema,
            updating_input,
            seal,
            emit_at_close,
        },
        Arc::clone(&ctx.late_rows),
    )?;
    stage
        .explain
        .push(weir_engine::operator::StreamOperator::describe(&operator));
    stage.operators.push(Box::new(operator));
    stage.window = None;
    stage.closes_windows |= emit_at_close;
    stage.props = StreamProps {
        kind: if emit_at_close {
            StreamKind::AppendOnly
        } else {
            StreamKind::Retract
        },
        key: None,
        sealed_by: seal.map(|(column, _)| column),
        seal_span: seal.map_or(0, |(_, span)| span),
        event_time: seal.map(|(column, _)| column),
    };
    Ok(stage)
}
