//! Planning processing-time temporal joins: `JOIN t FOR SYSTEM_TIME AS OF PROCTIME() ON s.k =
//! t.k` against a table (or any keyed view). The stream is the pipeline's one input; the table is
//! looked up by its primary key, which `ON` must equate in full (as Flink requires), so each
//! stream row meets at most one table row.

use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, logical_plan::Join};
use weir_engine::join::JoinKind;
use weir_engine::join::lookup::{LookupJoin, LookupSpec};

use super::join_condition::{condition_text, shown};
use super::{PlanContext, Stage, physical, unsupported};
use crate::error::{Result, SqlError, SqlErrorKind};

/// A table joined `FOR SYSTEM_TIME AS OF PROCTIME()`: its scan, the conditions on its own
/// columns DataFusion left above the scan, and for each column the join sees, the table column.
pub(super) struct LookupInput<'p> {
    pub scan: &'p datafusion::logical_expr::TableScan,
    pub conditions: Vec<Expr>,
    pub columns: Vec<usize>,
}

/// The right input as a [`LookupInput`], when it is one (aliases, filters and column-only
/// projections over the table's scan).
pub(super) fn lookup_scan<'p>(
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

/// Plans `join`, whose right input is a table joined `FOR SYSTEM_TIME AS OF PROCTIME()`.
pub(super) fn plan_lookup_join(
    join: &Join,
    kind: JoinKind,
    input: LookupInput<'_>,
    ctx: &PlanContext<'_>,
) -> Result<Stage> {
    let LookupInput {
        scan,
        conditions,
        columns: projected,
    } = input;
    let name = scan.table_name.table();
    if !matches!(kind, JoinKind::Inner | JoinKind::Left) {
        return Err(unsupported(format!(
            "a RIGHT or FULL join FOR SYSTEM_TIME AS OF table \"{name}\" (the table's side is \
             looked up, not streamed: use INNER or LEFT)"
        )));
    }
    let entry = ctx
        .catalog
        .views()
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| {
            SqlError::new(
                SqlErrorKind::UndefinedTable,
                format!("FOR SYSTEM_TIME AS OF: table \"{name}\" not found"),
            )
        })?;
    let key = match &entry.props.key {
        Some(key) if !key.is_empty() && !entry.props.is_append_only() => key.clone(),
        _ => {
            return Err(unsupported(format!(
                "FOR SYSTEM_TIME AS OF \"{name}\", which has no primary key (temporal joins look \
                 rows up by key: a table with a PRIMARY KEY, an upsert source, or a keyed view)"
            )));
        }
    };
    let table = Arc::clone(&entry.table);
    // Each key column of the table, equated with a stream expression.
    let mut by_key: Vec<Option<&Expr>> = vec![None; key.len()];
    for (l, r) in &join.on {
        let column = match r {
            Expr::Column(c) => Some(c),
            Expr::Cast(cast) => match cast.expr.as_ref() {
                Expr::Column(c) => Some(c),
                _ => None,
            },
            _ => None,
        };
        let full = column
            .and_then(|c| join.right.schema().index_of_column(c).ok())
            .and_then(|i| projected.get(i).copied());
        match full.and_then(|f| key.iter().position(|&k| k == f)) {
            Some(at) => by_key[at] = Some(l),
            None => {
                return Err(unsupported(format!(
                    "a temporal join whose ON equates {} (ON must equate exactly the primary key \
                     of \"{name}\"; other conditions go after it)",
                    shown(r)
                )));
            }
        }
    }
    let keys = by_key
        .iter()
        .map(|e| match e {
            Some(e) => physical(e, join.left.schema(), ctx),
            None => Err(unsupported(format!(
                "a temporal join that does not equate every primary-key column of \"{name}\""
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let table_filter = match conjunction(scan.filters.iter().cloned().chain(conditions)) {
        Some(f) => {
            let schema = DFSchema::try_from_qualified_schema(
                scan.table_name.clone(),
                &scan.source.schema(),
            )?;
            Some(physical(&f, &schema, ctx)?)
        }
        None => None,
    };
    let filter = join
        .filter
        .as_ref()
        .map(|f| physical(f, &join.schema, ctx))
        .transpose()?;

    let mut stage = super::build(&join.left, ctx)?;
    stage.flush();
    if !stage.props.is_append_only() {
        return Err(unsupported(
            "a temporal join of an input that updates or deletes rows",
        ));
    }
    if stage.inputs.len() != 1 {
        return Err(unsupported(
            "a temporal join whose stream is itself a join or a UNION",
        ));
    }
    let operator = LookupJoin::try_new(LookupSpec {
        kind,
        keys,
        table,
        table_name: name.to_string(),
        table_filter,
        table_columns: projected,
        filter,
        output_schema: Arc::new(join.schema.as_arrow().clone()),
        condition: condition_text(join),
    })?;
    stage
        .explain
        .push(weir_engine::operator::StreamOperator::describe(&operator));
    stage.operators.push(Box::new(operator));
    // Stream columns keep their places (the table's follow), and each stream row meets at most
    // one table row: the stream's key, sealing and event-time columns stay what they were.
    Ok(stage)
}
