//! The optimizer rule that hands subqueries DataFusion left in place to an [`ApplyNode`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::logical_expr::expr::{Exists, InSubquery};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::{conjunction, split_conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    BinaryExpr, Expr, Extension, Filter, LogicalPlan, Operator, Projection, Subquery,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::{AppliedSubquery, ApplyKind, ApplyNode};

/// Moves subqueries DataFusion would fail on into [`ApplyNode`]s. Installed twice: just before
/// DataFusion's decorrelation rules, taking what they would mis-handle (judged conservatively by
/// [`joinable`]), and after all rules, taking whatever subquery expression is still left.
#[derive(Debug)]
pub struct ApplySubqueries {
    /// Leave subqueries [`joinable`] judges DataFusion turns into joins (the early run).
    trust_decorrelation: bool,
}

impl ApplySubqueries {
    /// The run before DataFusion's decorrelation.
    pub fn before_decorrelation() -> Self {
        Self {
            trust_decorrelation: true,
        }
    }

    /// The run after every other rule.
    pub fn leftovers() -> Self {
        Self {
            trust_decorrelation: false,
        }
    }

    /// Whether this subquery expression goes to an `ApplyNode`; `top` is a whole conjunct of a
    /// `WHERE`, the one place DataFusion turns `IN`/`EXISTS` into joins.
    fn takes(&self, expr: &Expr, top: bool) -> bool {
        match expr {
            Expr::Exists(Exists { subquery, .. })
            | Expr::InSubquery(InSubquery { subquery, .. }) => {
                !(self.trust_decorrelation && top && joinable(subquery))
            }
            Expr::ScalarSubquery(s) => {
                let correlated = !s.outer_ref_columns.is_empty();
                correlated && !(self.trust_decorrelation && joinable(s))
            }
            _ => false,
        }
    }

    fn takes_any(&self, expr: &Expr, top: bool) -> bool {
        if matches!(expr, Expr::Exists(_) | Expr::InSubquery(_)) && top {
            return self.takes(expr, true);
        }
        expr.exists(|e| Ok(self.takes(e, false))).unwrap_or(false)
    }
}

impl OptimizerRule for ApplySubqueries {
    fn name(&self) -> &str {
        if self.trust_decorrelation {
            "weir_apply_subqueries"
        } else {
            "weir_apply_leftover_subqueries"
        }
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        match plan {
            LogicalPlan::Projection(p) if p.expr.iter().any(|e| self.takes_any(e, false)) => {
                self.rewrite_projection(p)
            }
            LogicalPlan::Filter(f)
                if split_conjunction(&f.predicate)
                    .iter()
                    .any(|c| self.takes_any(c, true)) =>
            {
                self.rewrite_filter(f)
            }
            other => Ok(Transformed::no(other)),
        }
    }
}

/// Whether DataFusion's decorrelation turns this subquery into a join correctly: uncorrelated,
/// or correlated only through `inner = outer` conjuncts of its filters, with no nested subquery.
/// Anything else (`oid = ANY(outer.arr)`, `x = f(outer.y)`, outer columns in a select list or a
/// table function's arguments) is applied instead.
fn joinable(subquery: &Subquery) -> bool {
    if subquery.outer_ref_columns.is_empty() {
        return true;
    }
    let mut joinable = true;
    let _ = subquery.subquery.apply(|node| {
        for expr in node.expressions() {
            let nested = expr.exists(|e| {
                Ok(matches!(
                    e,
                    Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
                ))
            });
            if nested.unwrap_or(true) {
                joinable = false;
            }
        }
        match node {
            LogicalPlan::Filter(f) => {
                if split_conjunction(&f.predicate)
                    .iter()
                    .any(|c| c.contains_outer() && !is_outer_equality(c))
                {
                    joinable = false;
                }
            }
            other => {
                if other.expressions().iter().any(Expr::contains_outer) {
                    joinable = false;
                }
            }
        }
        Ok(if joinable {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    joinable
}

/// `inner_expr = outer_column` (either way round, casts allowed on the outer side).
fn is_outer_equality(conjunct: &Expr) -> bool {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = conjunct
    else {
        return false;
    };
    let is_outer_column = |e: &Expr| match e.clone().unalias_nested().data {
        Expr::OuterReferenceColumn(..) => true,
        Expr::Cast(c) => matches!(*c.expr, Expr::OuterReferenceColumn(..)),
        Expr::TryCast(c) => matches!(*c.expr, Expr::OuterReferenceColumn(..)),
        _ => false,
    };
    (is_outer_column(left) && !right.contains_outer())
        || (is_outer_column(right) && !left.contains_outer())
}

impl ApplySubqueries {
    /// `SELECT …, (subquery) …` → `SELECT …, __weir_apply_N …` over `Apply(input)`, output names kept.
    fn rewrite_projection(&self, projection: Projection) -> Result<Transformed<LogicalPlan>> {
        let Projection { expr, input, .. } = projection;
        let mut subqueries = Vec::new();
        let names = NamePreserver::new_for_projection();
        let expr = expr
            .into_iter()
            .map(|e| {
                let saved = names.save(&e);
                Ok(saved.restore(self.extract(e, &mut subqueries)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let apply = apply_plan(Arc::unwrap_or_clone(input), subqueries)?;
        Ok(Transformed::yes(LogicalPlan::Projection(
            Projection::try_new(expr, Arc::new(apply))?,
        )))
    }

    /// `WHERE … (subquery) …` → the filter over `Apply(input)`, then the input's columns only.
    /// Conjuncts DataFusion joins stay as they are.
    fn rewrite_filter(&self, filter: Filter) -> Result<Transformed<LogicalPlan>> {
        let Filter {
            predicate, input, ..
        } = filter;
        let columns: Vec<Expr> = input
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        let mut subqueries = Vec::new();
        let conjuncts = split_conjunction_owned(predicate)
            .into_iter()
            .map(|c| {
                if self.takes_any(&c, true) {
                    self.extract(c, &mut subqueries)
                } else {
                    Ok(c)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let predicate =
            conjunction(conjuncts).unwrap_or(Expr::Literal(ScalarValue::Boolean(Some(true)), None));
        let apply = apply_plan(Arc::unwrap_or_clone(input), subqueries)?;
        let filter = LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(apply))?);
        Ok(Transformed::yes(LogicalPlan::Projection(
            Projection::try_new(columns, Arc::new(filter))?,
        )))
    }

    /// Replaces each subquery expression in `expr` by a reference to the column that will hold it.
    /// A subquery's own nested subqueries stay inside it: they are planned when it runs.
    fn extract(&self, expr: Expr, out: &mut Vec<AppliedSubquery>) -> Result<Expr> {
        let transformed = expr.transform_down(|e| {
            if !self.takes(&e, false) {
                return Ok(Transformed::no(e));
            }
            let (kind, subquery, negated) = match e {
                Expr::ScalarSubquery(s) => (ApplyKind::Scalar, s, false),
                Expr::Exists(Exists { subquery, negated }) => {
                    (ApplyKind::Exists, subquery, negated)
                }
                Expr::InSubquery(InSubquery {
                    expr,
                    subquery,
                    negated,
                }) => (ApplyKind::In(*expr), subquery, negated),
                other => return Ok(Transformed::no(other)),
            };
            let column = fresh_column();
            out.push(AppliedSubquery {
                kind,
                subquery,
                column: column.clone(),
            });
            let reference = Expr::Column(Column::from_name(column));
            let replaced = if negated {
                Expr::Not(Box::new(reference))
            } else {
                reference
            };
            Ok(Transformed::new(replaced, true, TreeNodeRecursion::Jump))
        })?;
        Ok(transformed.data)
    }
}

/// Column names unique in the process, so nested applies never collide.
fn fresh_column() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("__weir_apply_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn apply_plan(input: LogicalPlan, subqueries: Vec<AppliedSubquery>) -> Result<LogicalPlan> {
    Ok(LogicalPlan::Extension(Extension {
        node: Arc::new(ApplyNode::try_new(input, subqueries)?),
    }))
}
