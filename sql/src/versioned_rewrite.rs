//! Keeps the time columns of an event-time temporal join in the plan.
//!
//! `JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.currency = r.currency` loses its clause in the
//! parser (see `parser/temporal.rs`), so nothing in the query reads `o.ts` or the versions' own
//! time, and DataFusion's optimizer would prune both from the join's inputs. This pass adds
//! `AND r.<time> <= o.ts` to the join's `ON`: true of every version the join picks (the one valid
//! at `o.ts` started at or before it), and a reference that keeps both columns.

use std::ops::ControlFlow;

use datafusion::datasource::TableProvider;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Ident, JoinConstraint, JoinOperator, ObjectNamePart, Query, SetExpr,
    TableFactor, Value, VisitMut, VisitorMut,
};
use weir_engine::catalog::Catalog;

use crate::error::{Result, SqlError, SqlErrorKind};

/// Adds the version-time condition to each join `FOR SYSTEM_TIME AS OF column` in `query`;
/// `versioned` lists the inputs so joined and the `AS OF` columns. An `AS OF` column of a
/// source or view other than its event-time column is an error.
pub fn bound_versions(
    query: &mut Query,
    versioned: &[(String, Vec<String>)],
    catalog: &Catalog,
) -> Result<()> {
    if versioned.is_empty() {
        return Ok(());
    }
    let mut visitor = Bounder { versioned, catalog };
    match query.visit(&mut visitor) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The name of a relation as the catalog spells it.
fn relation_name(factor: &TableFactor) -> Option<(String, Ident)> {
    let TableFactor::Table { name, alias, .. } = factor else {
        return None;
    };
    let table = name.0.last().and_then(ObjectNamePart::as_ident)?;
    let catalog_name = if table.quote_style.is_some() {
        table.value.clone()
    } else {
        table.value.to_ascii_lowercase()
    };
    let shown = alias
        .as_ref()
        .map_or_else(|| table.clone(), |a| a.name.clone());
    Some((catalog_name, shown))
}

struct Bounder<'a> {
    versioned: &'a [(String, Vec<String>)],
    catalog: &'a Catalog,
}

impl Bounder<'_> {
    /// The event-time column of the source or view `name`.
    fn time_column(&self, name: &str) -> Option<String> {
        if let Some(source) = self.catalog.source(name) {
            return source.watermark.as_ref().map(|w| w.column.clone());
        }
        let view = self.catalog.view(name)?;
        let index = view.props.event_time?;
        Some(view.table.schema().field(index).name().clone())
    }
}

impl VisitorMut for Bounder<'_> {
    type Break = SqlError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<SqlError> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        for from in &mut select.from {
            // Every relation of this FROM item, by the name the query calls it.
            let mut relations: Vec<(String, Ident)> = Vec::new();
            relations.extend(relation_name(&from.relation));
            relations.extend(from.joins.iter().filter_map(|j| relation_name(&j.relation)));
            for join in &mut from.joins {
                let Some((table_name, qualifier)) = relation_name(&join.relation) else {
                    continue;
                };
                let Some((_, as_of)) = self.versioned.iter().find(|(t, _)| *t == table_name) else {
                    continue;
                };
                let Some(time) = self.time_column(&table_name) else {
                    // No event time: the planner says so.
                    continue;
                };
                if let [left, column] = as_of.as_slice()
                    && let Some((left_table, _)) =
                        relations.iter().find(|(_, shown)| shown.value == *left)
                    && let Some(left_time) = self.time_column(left_table)
                    && left_time != *column
                {
                    return ControlFlow::Break(SqlError::new(
                        SqlErrorKind::FeatureNotSupported,
                        format!(
                            "not supported in a streaming view: FOR SYSTEM_TIME AS OF \
                             {left}.{column}: a version is chosen by the left input's event time, \
                             its WATERMARK column ({left_time}); AS OF another column is not"
                        ),
                    ));
                }
                let bound = Expr::BinaryOp {
                    left: Box::new(Expr::CompoundIdentifier(vec![
                        qualifier,
                        Ident::with_quote('"', time),
                    ])),
                    op: BinaryOperator::LtEq,
                    right: Box::new(match as_of.as_slice() {
                        [column] => Expr::Identifier(Ident::with_quote('"', column)),
                        parts => Expr::CompoundIdentifier(
                            parts.iter().map(|p| Ident::with_quote('"', p)).collect(),
                        ),
                    }),
                };
                if let JoinOperator::Join(JoinConstraint::On(on))
                | JoinOperator::Inner(JoinConstraint::On(on))
                | JoinOperator::Left(JoinConstraint::On(on))
                | JoinOperator::LeftOuter(JoinConstraint::On(on)) = &mut join.join_operator
                {
                    let condition = std::mem::replace(on, Expr::Value(Value::Boolean(true).into()));
                    *on = Expr::BinaryOp {
                        left: Box::new(Expr::Nested(Box::new(condition))),
                        op: BinaryOperator::And,
                        right: Box::new(bound),
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }
}
