//! The condition of a join, read: the time bound it puts on the inputs' event times, and its
//! text for EXPLAIN.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, logical_plan::Join};
use weir_engine::join::Interval;

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

pub(super) fn signed(nanos: i64) -> String {
    if nanos < 0 {
        format!("-{}", weir_engine::window::humanize_nanos(-nanos))
    } else {
        weir_engine::window::humanize_nanos(nanos)
    }
}

/// The bound on `left time - right time` that `ON` implies, when it bounds it from both sides
/// (only the inputs' event-time columns count: the watermark says nothing of other columns).
pub(super) fn interval(
    join: &Join,
    left_time: Option<usize>,
    right_time: Option<usize>,
) -> Option<Interval> {
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

/// `ON` for EXPLAIN: the equalities, then the rest.
pub(super) fn condition_text(join: &Join) -> String {
    let mut parts: Vec<String> = join
        .on
        .iter()
        .map(|(l, r)| format!("{} = {}", shown(l), shown(r)))
        .collect();
    if let Some(f) = &join.filter {
        parts.push(shown(f));
    }
    parts.join(" AND ")
}
