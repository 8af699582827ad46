//! Planning event-time temporal joins: `JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON
//! o.currency = r.currency`. The right input is a history of versions (a source or an
//! append-only view with an event time: each row is its key's version from its time on; or a
//! table over an upsert topic with a WATERMARK, joined on its primary key); each
//! left row joins the version valid at its `AS OF` time, which must be the left input's event
//! time (its WATERMARK column), so that the watermark says when every version that could apply
//! has arrived.

use std::sync::Arc;

use datafusion::common::Column;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::logical_plan::Join;
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use weir_engine::join::JoinKind;
use weir_engine::join::versioned::{VersionedJoin, VersionedSpec};
use weir_engine::stream_props::{StreamKind, StreamProps};

use super::join_condition::condition_text;
use super::join_inputs::{join_exprs, joined_schema, plan_sides};
use super::{PlanContext, Stage, unsupported};
use crate::error::Result;

/// The `AS OF` column's name (qualifier first) when `plan` (a join's right input) reads an input
/// joined `FOR SYSTEM_TIME AS OF column`.
pub(super) fn versioned_as_of<'c>(
    plan: &LogicalPlan,
    ctx: &'c PlanContext<'_>,
) -> Option<&'c [String]> {
    match plan {
        LogicalPlan::TableScan(scan) => ctx
            .versioned
            .iter()
            .find(|(table, _)| table == scan.table_name.table())
            .map(|(_, column)| column.as_slice()),
        LogicalPlan::SubqueryAlias(_) | LogicalPlan::Filter(_) | LogicalPlan::Projection(_) => plan
            .inputs()
            .first()
            .and_then(|input| versioned_as_of(input, ctx)),
        _ => None,
    }
}

/// Plans `join`, whose right input is joined `FOR SYSTEM_TIME AS OF as_of`.
pub(super) fn plan_versioned_join(
    join: &Join,
    kind: JoinKind,
    as_of: &[String],
    ctx: &PlanContext<'_>,
) -> Result<Stage> {
    let shown = as_of.join(".");
    // A semi join (an inner join whose right columns go unused) is an inner join here: each
    // left row joins at most one version.
    if !matches!(kind, JoinKind::Inner | JoinKind::Left | JoinKind::Semi) {
        return Err(unsupported(format!(
            "a RIGHT, FULL or anti join FOR SYSTEM_TIME AS OF {shown} (each left row joins one \
             version: use INNER or LEFT)"
        )));
    }
    let column = match as_of {
        [name] => Column::new_unqualified(name),
        [qualifier, name] => Column::new(Some(qualifier.as_str()), name),
        _ => {
            return Err(unsupported(format!(
                "FOR SYSTEM_TIME AS OF {shown}: name the left input's event-time column (o.ts)"
            )));
        }
    };
    let as_of_index = join.left.schema().maybe_index_of_column(&column);
    let (sides, lines) = plan_sides(join, ctx)?;
    let (left, right) = (&sides[0].1, &sides[1].1);
    // The versions' time first: without it the left time is not kept either.
    let Some(right_time) = right.event_time else {
        return Err(unsupported(format!(
            "FOR SYSTEM_TIME AS OF {shown} against an input without an event time: versions by \
             event time come from an append-only source with a WATERMARK (each row its key's \
             version from its time on) or a table over an upsert topic with a WATERMARK; a \
             table's current rows are joined FOR SYSTEM_TIME AS OF PROCTIME()"
        )));
    };
    let Some(left_time) = left.event_time.filter(|_| left.is_append_only()) else {
        return Err(unsupported(format!(
            "FOR SYSTEM_TIME AS OF {shown} over a left input without an event time (a source's \
             WATERMARK column, kept by the query) or one that updates rows"
        )));
    };
    if as_of_index != Some(left_time) {
        let time = join
            .left
            .schema()
            .fields()
            .get(left_time)
            .map_or_else(String::new, |f| f.name().clone());
        return Err(unsupported(format!(
            "FOR SYSTEM_TIME AS OF {shown}: a version is chosen by the left input's event time, \
             its WATERMARK column ({time}); AS OF another column is not"
        )));
    }
    let (left_keys, right_keys, filter) = join_exprs(join, ctx)?;
    if !right.is_append_only() {
        // Versions are per join key: a table's rows are versions of its primary key only.
        let joined_on: Option<Vec<usize>> = right_keys
            .iter()
            .map(|k| {
                k.as_ref()
                    .downcast_ref::<PhysicalColumn>()
                    .map(PhysicalColumn::index)
            })
            .collect();
        let mut joined_on = joined_on.unwrap_or_default();
        joined_on.sort_unstable();
        joined_on.dedup();
        let mut key = right.key.clone().unwrap_or_default();
        key.sort_unstable();
        if key.is_empty() || joined_on != key {
            return Err(unsupported(format!(
                "FOR SYSTEM_TIME AS OF {shown} against an input that updates rows, joined on \
                 other columns than its primary key: each of its rows is a version of its key, \
                 so join it on exactly its primary key columns"
            )));
        }
    }
    let operator = VersionedJoin::try_new(
        VersionedSpec {
            view: ctx.view.to_string(),
            kind,
            left_keys,
            right_keys,
            filter,
            left_schema: Arc::new(join.left.schema().as_arrow().clone()),
            right_schema: Arc::new(join.right.schema().as_arrow().clone()),
            output_schema: Arc::new(join.schema.as_arrow().clone()),
            joined_schema: joined_schema(join)?,
            left_time,
            right_time,
            condition: condition_text(join),
        },
        Arc::clone(&ctx.late_rows),
    )?;
    let mut explain = vec![weir_engine::operator::StreamOperator::describe(&operator)];
    explain.extend(lines.iter().map(|l| super::union::indent(l, "  ")));
    Ok(Stage {
        inputs: sides.into_iter().map(|(input, _)| input).collect(),
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
            // Left columns come first: the left time is the output's event time.
            event_time: Some(left_time),
        },
        explain,
    })
}
