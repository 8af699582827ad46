//! Planning `OVER (PARTITION BY … ORDER BY ts)` in a streaming view: a `LogicalPlan::Window`
//! becomes the engine's [`OverWindow`] operator, each call bound to its incremental, per-key
//! form (from the database's function libraries, [`crate::functions::Functions`]).

use std::sync::Arc;

use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use weir_engine::over_window::{OverCall, OverWindow, OverWindowSpec};
use weir_engine::view_runtime::ViewInput;

use super::{PlanContext, Stage, physical, unsupported};
use crate::error::{Result, SqlError, SqlErrorKind};

/// Plans `window` on top of its input's stage.
pub(crate) fn plan_window(
    window: &datafusion::logical_expr::logical_plan::Window,
    ctx: &PlanContext<'_>,
) -> Result<Stage> {
    let mut stage = super::build(&window.input, ctx)?;
    super::refuse_raw_sessions(&stage)?;
    if !stage.props.is_append_only() {
        return Err(unsupported(
            "OVER (…) over updating rows (make the aggregate EMIT ON WINDOW CLOSE)",
        ));
    }
    stage.flush();
    let input_schema = window.input.schema();
    let mut partition: Option<Vec<Expr>> = None;
    let mut order: Option<Expr> = None;
    let mut calls = Vec::with_capacity(window.window_expr.len());
    for expr in &window.window_expr {
        let Expr::WindowFunction(call) = expr.clone().unalias() else {
            return Err(unsupported(format!("window expression {expr}")));
        };
        let name = call.fun.to_string();
        if super::top_n::rank_function(expr).is_some() {
            return Err(unsupported(format!(
                "{name}() OVER (…) without a filter on it: a streaming view keeps the top rows \
                 of each partition, so bound the rank (rn <= N, rn < N or rn = N, ANDed with any \
                 other condition), e.g. SELECT * FROM (SELECT *, {name}() OVER (PARTITION BY k \
                 ORDER BY v DESC) AS rn FROM src) WHERE rn <= 10"
            )));
        }
        let params = &call.params;
        if params.filter.is_some() {
            return Err(unsupported(format!("FILTER on {name} OVER (…)")));
        }
        let [sort] = params.order_by.as_slice() else {
            return Err(unsupported(format!(
                "{name} OVER (…) needs exactly one ORDER BY expression: the event time (e.g. ORDER BY ts)"
            )));
        };
        if !sort.asc {
            return Err(unsupported(format!(
                "{name} OVER (… ORDER BY … DESC): streams are processed in ascending event time"
            )));
        }
        if partition
            .as_ref()
            .is_some_and(|p| p != &params.partition_by)
            || order.as_ref().is_some_and(|o| o != &sort.expr)
        {
            return Err(unsupported(
                "OVER windows with different PARTITION BY or ORDER BY in one query (use one WINDOW w AS (…) for all calls)",
            ));
        }
        partition = Some(params.partition_by.clone());
        order = Some(sort.expr.clone());
        if params.distinct {
            return Err(unsupported(format!("{name}(DISTINCT …) OVER (…)")));
        }
        let args = params
            .args
            .iter()
            .map(|a| physical(a, input_schema, ctx))
            .collect::<Result<Vec<_>>>()?;
        let order_by = physical(&sort.expr, input_schema, ctx)?;
        let window_call = weir_engine::function_library::WindowCall {
            function: &call.fun,
            args: &args,
            frame: &params.window_frame,
            input: input_schema.as_arrow(),
        };
        let Some(function) = ctx.functions.window_function(&window_call, &order_by) else {
            return Err(unsupported(format!(
                "{name}(…) OVER (…) (window functions a streaming view runs incrementally: Weir's anomaly_* and \
                 changepoint_* detectors, anomaly_alert, lag, lead, and count, sum, avg, min, max, stddev, variance over ROWS or RANGE \
                 frames ending at the current row)"
            )));
        };
        let (function, args) = function.map_err(|e| match e {
            datafusion::common::DataFusionError::NotImplemented(m) => unsupported(m),
            other => SqlError::from(other),
        })?;
        calls.push(OverCall { function, args });
    }
    let (Some(partition), Some(order)) = (partition, order) else {
        return Err(unsupported("an empty window"));
    };
    if let [single] = stage.inputs.as_slice() {
        check_event_time(&order, &single.input)?;
    }
    let partition_by = partition
        .iter()
        .map(|e| physical(e, input_schema, ctx))
        .collect::<Result<Vec<Arc<dyn PhysicalExpr>>>>()?;
    let operator = OverWindow::new(
        OverWindowSpec {
            view: ctx.view.to_string(),
            partition_by,
            order_by: physical(&order, input_schema, ctx)?,
            calls,
            output_schema: Arc::new(window.schema.as_arrow().clone()),
            state_ttl: ctx
                .state_ttl
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        },
        Arc::clone(&ctx.late_rows),
    );
    stage
        .explain
        .push(weir_engine::operator::StreamOperator::describe(&operator));
    stage.operators.push(Box::new(operator));
    Ok(stage)
}

/// Rows are released in the order of the watermark, so ORDER BY must be the event time the
/// watermark tracks.
fn check_event_time(order: &Expr, input: &ViewInput) -> Result<()> {
    let ViewInput::Source(source) = input else {
        return Ok(());
    };
    let Some(watermark) = &source.watermark else {
        return Ok(());
    };
    match order {
        Expr::Column(c) if c.name == watermark.column => Ok(()),
        other => Err(SqlError::new(
            SqlErrorKind::FeatureNotSupported,
            format!(
                "not supported in a streaming view: OVER (… ORDER BY {other}); order by the event-time column \"{}\" of source \"{}\" (its WATERMARK column)",
                watermark.column, source.name
            ),
        )),
    }
}
