//! Planning joins: each input is planned as a stage of its own (one pipeline input with the
//! operators on its rows), and a [`StreamJoin`] consumes both. A join of append-only inputs with
//! a time bound (or an inner join) outputs append-only rows; one over an updating input (a table,
//! an updating view or aggregate), or an outer or anti join without a time bound, retracts.
//!
//! The time bound that makes an interval or window join is read off `ON`: conjuncts comparing
//! the two inputs' event-time columns (`a.ts BETWEEN b.ts - INTERVAL '5 minutes' AND b.ts +
//! INTERVAL '1 minute'`, `>=`/`<=`/`<`/`>` spellings, or `a.window_end = b.window_end`) bound
//! `a.ts - b.ts` from both sides. The whole `ON` is still evaluated over every joined row; the
//! bound only says when held rows can go.

use std::sync::Arc;

use datafusion::logical_expr::{JoinType, logical_plan::Join};
use weir_engine::join::{JoinKind, JoinSpec, StreamJoin, Ttl};
use weir_engine::stream_props::{StreamKind, StreamProps};

use super::join_condition::{condition_text, interval, shown, signed};
use super::join_inputs::{join_exprs, joined_schema, plan_sides};
use super::{PlanContext, Stage, unsupported};
use crate::error::Result;

/// Plans `join` over its inputs' stages.
pub(crate) fn plan_join(join: &Join, ctx: &PlanContext<'_>) -> Result<Stage> {
    let kind = match join.join_type {
        JoinType::Inner => JoinKind::Inner,
        JoinType::Left => JoinKind::Left,
        JoinType::Right => JoinKind::Right,
        JoinType::Full => JoinKind::Full,
        JoinType::LeftSemi if !join.null_aware => JoinKind::Semi,
        JoinType::LeftAnti if !join.null_aware => JoinKind::Anti,
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
    if let Some(input) = super::lookup::lookup_scan(&join.right, ctx) {
        return super::lookup::plan_lookup_join(join, kind, input, ctx);
    }
    if let Some(as_of) = super::versioned_join::versioned_as_of(&join.right, ctx) {
        return super::versioned_join::plan_versioned_join(join, kind, as_of, ctx);
    }
    let (sides, lines) = plan_sides(join, ctx)?;
    let left_time = sides[0].1.event_time;
    let right_time = sides[1].1.event_time;
    let updating = [!sides[0].1.is_append_only(), !sides[1].1.is_append_only()];
    // Rows of an updating input can be retracted at any age, so a time bound releases nothing:
    // the join keeps every row (ON still applies the bound to each pair).
    let bound = interval(join, left_time, right_time);
    let interval = bound.filter(|_| !updating.iter().any(|&u| u));
    // `WITH (state_ttl = …)` bounds a join without a time bound, approximately.
    let ttl = match (interval, ctx.state_ttl) {
        (None, Some(ttl)) => match (left_time, right_time) {
            (Some(left_time), Some(right_time)) => Some(Ttl {
                left_time,
                right_time,
                nanos: i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX),
            }),
            _ => {
                return Err(unsupported(
                    "state_ttl on a join whose inputs' event-time columns are not among the \
                     columns it reads (the TTL counts event time behind the watermark: select \
                     both inputs' WATERMARK columns, e.g. b.date_time AS bid_time, \
                     a.date_time AS created)",
                ));
            }
        },
        _ => None,
    };
    let (left_keys, right_keys, filter) = join_exprs(join, ctx)?;
    let condition = condition_text(join);
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
            joined_schema: joined_schema(join)?,
            interval,
            ttl,
            condition,
            updating,
        },
        Arc::clone(&ctx.late_rows),
    )?;
    let retracts = operator.retracts();
    if interval.is_none() && ttl.is_none() {
        ctx.notices.borrow_mut().push(format!(
            "materialized view \"{}\": the join on {} keeps every row of both inputs, so its \
             state grows without bound; a condition bounding the inputs' event times (e.g. \
             a.ts BETWEEN b.ts - INTERVAL '1 hour' AND b.ts) lets rows go as the watermark passes, \
             and WITH (state_ttl = '1 hour') keeps each row that long (missing later matches)",
            ctx.view,
            join.on
                .iter()
                .map(|(l, r)| format!("{} = {}", shown(l), shown(r)))
                .collect::<Vec<_>>()
                .join(" AND ")
        ));
    }
    let mut explain = vec![weir_engine::operator::StreamOperator::describe(&operator)];
    if let Some(i) = interval {
        explain.push(format!(
            "  time bound: left - right event time in [{}, {}]",
            signed(i.lower),
            signed(i.upper)
        ));
    } else if let Some(i) = bound {
        explain.push(format!(
            "  time bound: left - right event time in [{}, {}], checked per pair; it releases \
             no rows, as an input updates",
            signed(i.lower),
            signed(i.upper)
        ));
    }
    explain.extend(lines.iter().map(|l| super::union::indent(l, "  ")));
    let key = output_key(
        kind,
        &sides[0].1,
        &sides[1].1,
        join.left.schema().fields().len(),
    );
    let inputs = sides.into_iter().map(|(input, _)| input).collect();
    Ok(Stage {
        inputs,
        operators: vec![Box::new(operator)],
        pending: Vec::new(),
        window: None,
        aggregated: false,
        closes_windows: false,
        props: StreamProps {
            kind: if retracts {
                StreamKind::Retract
            } else {
                StreamKind::AppendOnly
            },
            key,
            sealed_by: None,
            seal_span: 0,
            // The left time, which the join's output watermark tracks (bounded joins only).
            event_time: interval.map(|i| i.left_time),
        },
        explain,
    })
}

/// A unique key of the join's rows, when both inputs have one: a joined row is one left row with
/// one right row (or NULLs), so the two keys together identify it. A semi or anti join's rows are
/// left rows, unique on the left key.
fn output_key(
    kind: JoinKind,
    left: &StreamProps,
    right: &StreamProps,
    left_width: usize,
) -> Option<Vec<usize>> {
    let left_key = left.key.clone()?;
    if kind.left_only() {
        return Some(left_key);
    }
    let right_key = right.key.as_ref()?;
    Some(
        left_key
            .into_iter()
            .chain(right_key.iter().map(|k| k + left_width))
            .collect(),
    )
}
