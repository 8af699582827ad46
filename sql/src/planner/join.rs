//! Planning joins of two append-only inputs: each input is planned as a stage of its own (one
//! pipeline input with the operators on its rows), and a [`StreamJoin`] consumes both.
//!
//! The time bound that makes an interval or window join is read off `ON`: conjuncts comparing
//! the two inputs' event-time columns (`a.ts BETWEEN b.ts - INTERVAL '5 minutes' AND b.ts +
//! INTERVAL '1 minute'`, `>=`/`<=`/`<`/`>` spellings, or `a.window_end = b.window_end`) bound
//! `a.ts - b.ts` from both sides. The whole `ON` is still evaluated over every joined row; the
//! bound only says when held rows can go.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, JoinType, Operator, logical_plan::Join};
use weir_engine::join::{Interval, JoinKind, JoinSpec, StreamJoin};
use weir_engine::stream_props::{StreamKind, StreamProps};
use weir_engine::view_runtime::PlannedInput;

use super::{PlanContext, Stage, describe_input, physical, unsupported};
use crate::error::Result;

/// Plans `join` over its inputs' stages.
pub(crate) fn plan_join(join: &Join, ctx: &PlanContext<'_>) -> Result<Stage> {
    let kind = match join.join_type {
        JoinType::Inner => JoinKind::Inner,
        JoinType::Left => JoinKind::Left,
        JoinType::Right => JoinKind::Right,
        JoinType::Full => JoinKind::Full,
        other => {
            return Err(unsupported(format!(
                "{other} joins (IN / EXISTS subqueries)"
            )));
        }
    };
    if join.on.is_empty() {
        return Err(unsupported(
            "a join without an equality between the inputs (ON a.k = b.k)",
        ));
    }
    if let Some(input) = lookup_scan(&join.right, ctx) {
        return super::lookup::plan_lookup_join(join, kind, input, ctx);
    }
    let mut sides = Vec::with_capacity(2);
    let mut lines = Vec::new();
    for (name, plan) in [("Left", &join.left), ("Right", &join.right)] {
        let mut stage = super::build(plan, ctx)?;
        stage.flush();
        if !stage.props.is_append_only() {
            return Err(unsupported(
                "a join of an input that updates or deletes rows (an updating view or aggregate; \
                 joins of append-only inputs, such as sources and EMIT ON WINDOW CLOSE views, run)",
            ));
        }
        if stage.inputs.len() != 1 {
            return Err(unsupported(
                "a join whose input is itself a join or a UNION",
            ));
        }
        let time = stage.props.event_time;
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
            time,
        ));
    }
    let left_time = sides[0].1;
    let right_time = sides[1].1;
    let interval = interval(join, left_time, right_time);
    if kind != JoinKind::Inner && interval.is_none() {
        return Err(unsupported(
            "an outer join without a time bound between the inputs' event times (e.g. ON a.k = \
             b.k AND a.ts BETWEEN b.ts - INTERVAL '5 minutes' AND b.ts + INTERVAL '1 minute')",
        ));
    }
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
    let filter = join
        .filter
        .as_ref()
        .map(|f| physical(f, &join.schema, ctx))
        .transpose()?;
    let mut condition: Vec<String> = join
        .on
        .iter()
        .map(|(l, r)| format!("{} = {}", shown(l), shown(r)))
        .collect();
    if let Some(f) = &join.filter {
        condition.push(shown(f));
    }
    let condition = condition.join(" AND ");
    let operator = StreamJoin::try_new(
        JoinSpec {
            view: ctx.view.to_string(),
            kind,
            left_keys,
            right_keys,
            filter,
            left_schema: Arc::new(join.left.schema().as_arrow().clone()),
            right_schema: Arc::new(join.right.schema().as_arrow().clone()),
            output_schema: Arc::new(join.schema.as_arrow().clone()),
            interval,
            condition,
        },
        Arc::clone(&ctx.late_rows),
    )?;
    let mut explain = vec![weir_engine::operator::StreamOperator::describe(&operator)];
    if let Some(i) = interval {
        explain.push(format!(
            "  time bound: left - right event time in [{}, {}]",
            signed(i.lower),
            signed(i.upper)
        ));
    }
    explain.extend(lines.iter().map(|l| super::union::indent(l, "  ")));
    let inputs = sides.into_iter().map(|(input, _)| input).collect();
    Ok(Stage {
        inputs,
        operators: vec![Box::new(operator)],
        pending: Vec::new(),
        window: None,
        aggregated: false,
        closes_windows: false,
        props: StreamProps {
            kind: StreamKind::AppendOnly,
            key: None,
            sealed_by: None,
            seal_span: 0,
            // The left time, which the join's output watermark tracks (bounded joins only).
            event_time: interval.map(|i| i.left_time),
        },
        explain,
    })
}

/// `e` for EXPLAIN: DataFusion's SQL-like display, with fixed intervals written as SQL.
pub(super) fn shown(e: &Expr) -> String {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let side = |x: &Expr| match x {
                Expr::BinaryExpr(b) if b.op == Operator::And || b.op == Operator::Or => {
                    format!("({})", shown(x))
                }
                _ => shown(x),
            };
            format!("{} {op} {}", side(left), side(right))
        }
        Expr::Literal(..) if interval_nanos(e).is_some() => {
            let nanos = interval_nanos(e).unwrap_or_default();
            format!("INTERVAL '{}'", signed(nanos))
        }
        other => other.human_display().to_string(),
    }
}

/// A table joined `FOR SYSTEM_TIME AS OF PROCTIME()`: its scan, the conditions on its own
/// columns DataFusion left above the scan, and for each column the join sees, the table column.
pub(super) struct LookupInput<'p> {
    pub scan: &'p datafusion::logical_expr::TableScan,
    pub conditions: Vec<Expr>,
    pub columns: Vec<usize>,
}

/// The right input as a [`LookupInput`], when it is one (aliases, filters and column-only
/// projections over the table's scan).
fn lookup_scan<'p>(
    plan: &'p datafusion::logical_expr::LogicalPlan,
    ctx: &PlanContext<'_>,
) -> Option<LookupInput<'p>> {
    use datafusion::logical_expr::LogicalPlan;
    match plan {
        LogicalPlan::SubqueryAlias(alias) => lookup_scan(&alias.input, ctx),
        LogicalPlan::Filter(filter) => {
            let mut input = lookup_scan(&filter.input, ctx)?;
            input.conditions.push(filter.predicate.clone());
            Some(input)
        }
        LogicalPlan::Projection(projection) => {
            let mut input = lookup_scan(&projection.input, ctx)?;
            let columns = projection
                .expr
                .iter()
                .map(|e| match e {
                    Expr::Column(c) => projection
                        .input
                        .schema()
                        .index_of_column(c)
                        .ok()
                        .and_then(|i| input.columns.get(i).copied()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            input.columns = columns;
            Some(input)
        }
        LogicalPlan::TableScan(scan)
            if ctx.lookups.iter().any(|t| t == scan.table_name.table()) =>
        {
            let columns = scan
                .projection
                .clone()
                .unwrap_or_else(|| (0..scan.source.schema().fields().len()).collect());
            Some(LookupInput {
                scan,
                conditions: Vec::new(),
                columns,
            })
        }
        _ => None,
    }
}

fn signed(nanos: i64) -> String {
    if nanos < 0 {
        format!("-{}", weir_engine::window::humanize_nanos(-nanos))
    } else {
        weir_engine::window::humanize_nanos(nanos)
    }
}

/// The bound on `left time - right time` that `ON` implies, when it bounds it from both sides
/// (only the inputs' event-time columns count: the watermark says nothing of other columns).
fn interval(join: &Join, left_time: Option<usize>, right_time: Option<usize>) -> Option<Interval> {
    let (left_time, right_time) = (left_time?, right_time?);
    let mut lower: Option<i64> = None;
    let mut upper: Option<i64> = None;
    let mut bound = |op: Operator, c: i64| {
        // left - right `op` c
        match op {
            Operator::GtEq => lower = Some(lower.map_or(c, |l| l.max(c))),
            Operator::Gt => lower = Some(lower.map_or(c + 1, |l| l.max(c + 1))),
            Operator::LtEq => upper = Some(upper.map_or(c, |u| u.min(c))),
            Operator::Lt => upper = Some(upper.map_or(c - 1, |u| u.min(c - 1))),
            Operator::Eq => {
                lower = Some(lower.map_or(c, |l| l.max(c)));
                upper = Some(upper.map_or(c, |u| u.min(c)));
            }
            _ => {}
        }
    };
    let time_of = |e: &Expr| -> Option<(usize, i64)> {
        let (column, offset) = time_offset(e)?;
        let Expr::Column(c) = column else {
            return None;
        };
        if join.left.schema().index_of_column(c).ok() == Some(left_time)
            && join.right.schema().index_of_column(c).is_err()
        {
            return Some((0, offset));
        }
        if join.right.schema().index_of_column(c).ok() == Some(right_time)
            && join.left.schema().index_of_column(c).is_err()
        {
            return Some((1, offset));
        }
        None
    };
    let mut consider = |a: &Expr, op: Operator, b: &Expr| {
        let (Some((sa, oa)), Some((sb, ob))) = (time_of(a), time_of(b)) else {
            return;
        };
        match (sa, sb) {
            // l + oa op r + ob  =>  l - r op ob - oa
            (0, 1) => bound(op, ob - oa),
            // r + oa op l + ob  =>  l - r (swapped op) oa - ob
            (1, 0) => {
                if let Some(swapped) = op.swap() {
                    bound(swapped, oa - ob)
                }
            }
            _ => {}
        }
    };
    for (l, r) in &join.on {
        consider(l, Operator::Eq, r);
    }
    if let Some(filter) = &join.filter {
        for conjunct in split_conjunction(filter) {
            match conjunct {
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => consider(left, *op, right),
                Expr::Between(between) if !between.negated => {
                    consider(&between.expr, Operator::GtEq, &between.low);
                    consider(&between.expr, Operator::LtEq, &between.high);
                }
                _ => {}
            }
        }
    }
    match (lower, upper) {
        (Some(lower), Some(upper)) if lower <= upper => Some(Interval {
            left_time,
            right_time,
            lower,
            upper,
        }),
        _ => None,
    }
}

/// `column`, `column + interval` or `column - interval`, as the column and the offset in
/// nanoseconds.
fn time_offset(e: &Expr) -> Option<(&Expr, i64)> {
    match e {
        Expr::Column(_) => Some((e, 0)),
        Expr::Cast(cast) => time_offset(&cast.expr),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, base) = time_offset(left)?;
            let nanos = interval_nanos(right)?;
            match op {
                Operator::Plus => Some((column, base.checked_add(nanos)?)),
                Operator::Minus => Some((column, base.checked_sub(nanos)?)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A fixed-length interval literal in nanoseconds (months have no fixed length).
fn interval_nanos(e: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = e else {
        return None;
    };
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => i64::from(v.days)
            .checked_mul(86_400_000_000_000)?
            .checked_add(v.nanoseconds),
        ScalarValue::IntervalDayTime(Some(v)) => i64::from(v.days)
            .checked_mul(86_400_000_000_000)?
            .checked_add(i64::from(v.milliseconds).checked_mul(1_000_000)?),
        ScalarValue::DurationNanosecond(Some(v)) => Some(*v),
        ScalarValue::DurationMicrosecond(Some(v)) => v.checked_mul(1_000),
        ScalarValue::DurationMillisecond(Some(v)) => v.checked_mul(1_000_000),
        ScalarValue::DurationSecond(Some(v)) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}
