//! `ApplyExec`: computes an [`ApplyNode`]'s subquery columns, one subquery run per distinct
//! tuple of outer values.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, new_empty_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result, ScalarValue, exec_err, plan_datafusion_err};
use datafusion::execution::TaskContext;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::expr::{Exists, InSubquery};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Subquery};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    SendableRecordBatchStream, collect,
};
use futures::StreamExt;

use super::{ApplyKind, ApplyNode};

/// One subquery, ready to bind and run.
#[derive(Debug)]
struct Prepared {
    kind: ApplyKind,
    plan: Arc<LogicalPlan>,
    /// The outer columns it reads, with their index in the input.
    outer: Vec<(Column, usize)>,
    /// For `IN`: the tested expression over the input.
    test: Option<Arc<dyn PhysicalExpr>>,
    data_type: DataType,
}

/// What a subquery returned for one tuple of outer values.
enum Outcome {
    Scalar(ScalarValue),
    Exists(bool),
    In {
        values: HashSet<ScalarValue>,
        has_null: bool,
    },
}

#[derive(Debug)]
pub struct ApplyExec {
    input: Arc<dyn ExecutionPlan>,
    subqueries: Arc<Vec<Prepared>>,
    /// Plans the bound subqueries at run time (with the statement's functions and settings).
    state: Arc<SessionState>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl ApplyExec {
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        node: &ApplyNode,
        mut plan_test: impl FnMut(&Expr) -> Result<Arc<dyn PhysicalExpr>>,
        state: Arc<SessionState>,
    ) -> Result<Self> {
        let input_schema = node.input.schema();
        let mut subqueries = Vec::with_capacity(node.subqueries.len());
        for s in &node.subqueries {
            let outer = outer_columns(&s.subquery)
                .into_iter()
                .map(|c| {
                    let index = input_schema.index_of_column(&c).map_err(|_| {
                        plan_datafusion_err!(
                            "a subquery refers to {c}, which is not available where it is used"
                        )
                    })?;
                    Ok((c, index))
                })
                .collect::<Result<Vec<_>>>()?;
            let test = match &s.kind {
                ApplyKind::In(test) => Some(plan_test(test)?),
                _ => None,
            };
            let data_type = match &s.kind {
                ApplyKind::In(test) => test.get_type(input_schema)?,
                _ => s.subquery.subquery.schema().field(0).data_type().clone(),
            };
            subqueries.push(Prepared {
                kind: s.kind.clone(),
                plan: Arc::clone(&s.subquery.subquery),
                outer,
                test,
                data_type,
            });
        }
        let schema = Arc::new(node.schema.as_arrow().clone());
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        Ok(Self {
            input,
            subqueries: Arc::new(subqueries),
            state,
            schema,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for ApplyExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ApplyExec: subqueries={}", self.subqueries.len())
    }
}

impl ExecutionPlan for ApplyExec {
    fn name(&self) -> &str {
        "ApplyExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let mut recursion = TreeNodeRecursion::Continue;
        for test in self.subqueries.iter().filter_map(|s| s.test.as_ref()) {
            recursion = f(test)?;
            if recursion == TreeNodeRecursion::Stop {
                break;
            }
        }
        Ok(recursion)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(input) = children.pop() else {
            return exec_err!("ApplyExec has one child");
        };
        Ok(Arc::new(Self {
            input,
            subqueries: Arc::clone(&self.subqueries),
            state: Arc::clone(&self.state),
            schema: Arc::clone(&self.schema),
            properties: Arc::clone(&self.properties),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let applier = Applier {
            subqueries: Arc::clone(&self.subqueries),
            state: Arc::clone(&self.state),
            schema: Arc::clone(&self.schema),
            cache: (0..self.subqueries.len()).map(|_| HashMap::new()).collect(),
        };
        let stream =
            futures::stream::try_unfold((input, applier), |(mut input, mut applier)| async move {
                match input.next().await {
                    None => Ok(None),
                    Some(batch) => {
                        let out = applier.apply(batch?).await?;
                        Ok(Some((out, (input, applier))))
                    }
                }
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        )))
    }
}

/// One partition's evaluation, with its per-subquery cache of outcomes by outer tuple.
struct Applier {
    subqueries: Arc<Vec<Prepared>>,
    state: Arc<SessionState>,
    schema: SchemaRef,
    cache: Vec<HashMap<Option<OwnedRow>, Arc<Outcome>>>,
}

impl Applier {
    async fn apply(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let mut columns = batch.columns().to_vec();
        for i in 0..self.subqueries.len() {
            let outcomes = self.outcomes(i, &batch).await?;
            columns.push(self.column(i, &batch, &outcomes)?);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// Each row's outcome of subquery `i`, running it once per outer tuple not seen before.
    async fn outcomes(&mut self, i: usize, batch: &RecordBatch) -> Result<Vec<Arc<Outcome>>> {
        let subqueries = Arc::clone(&self.subqueries);
        let sub = &subqueries[i];
        let keys: Vec<ArrayRef> = sub
            .outer
            .iter()
            .map(|(_, index)| Arc::clone(batch.column(*index)))
            .collect();
        // Uncorrelated (no keys): one outcome, under the key None.
        let rows = if keys.is_empty() {
            None
        } else {
            let fields = keys
                .iter()
                .map(|k| SortField::new(k.data_type().clone()))
                .collect();
            Some(RowConverter::new(fields)?.convert_columns(&keys)?)
        };
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let key = rows.as_ref().map(|rows| rows.row(row).owned());
            if let Some(outcome) = self.cache[i].get(&key) {
                out.push(Arc::clone(outcome));
                continue;
            }
            let values = keys
                .iter()
                .map(|k| ScalarValue::try_from_array(k, row))
                .collect::<Result<Vec<_>>>()?;
            let outcome = Arc::new(self.run(sub, &values).await?);
            self.cache[i].insert(key, Arc::clone(&outcome));
            out.push(outcome);
        }
        Ok(out)
    }

    /// Binds `values` into the subquery, plans and runs it.
    async fn run(&self, sub: &Prepared, values: &[ScalarValue]) -> Result<Outcome> {
        let bound = bind_outer(&sub.plan, &sub.outer, values)?;
        // Two rows are enough to know a scalar subquery returned too many; one to know one exists.
        let limit = match sub.kind {
            ApplyKind::Scalar => Some(2),
            ApplyKind::Exists => Some(1),
            ApplyKind::In(_) => None,
        };
        let bound = match limit {
            Some(n) => LogicalPlanBuilder::from(bound).limit(0, Some(n))?.build()?,
            None => bound,
        };
        let physical = self.state.create_physical_plan(&bound).await?;
        let batches = collect(physical, self.state.task_ctx()).await?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        match &sub.kind {
            ApplyKind::Exists => Ok(Outcome::Exists(rows > 0)),
            ApplyKind::Scalar => match (rows, batches.iter().find(|b| b.num_rows() > 0)) {
                (0, _) | (_, None) => Ok(Outcome::Scalar(ScalarValue::try_from(&sub.data_type)?)),
                (1, Some(batch)) => Ok(Outcome::Scalar(ScalarValue::try_from_array(
                    batch.column(0),
                    0,
                )?)),
                _ => Err(crate::error::more_than_one_row()),
            },
            ApplyKind::In(_) => {
                let mut values = HashSet::new();
                let mut has_null = false;
                for batch in &batches {
                    // Compared in the tested expression's type.
                    let column = cast(batch.column(0), &sub.data_type)?;
                    for row in 0..column.len() {
                        let value = ScalarValue::try_from_array(&column, row)?;
                        if value.is_null() {
                            has_null = true;
                        } else {
                            values.insert(value);
                        }
                    }
                }
                Ok(Outcome::In { values, has_null })
            }
        }
    }

    /// The output column of subquery `i` for this batch.
    fn column(&self, i: usize, batch: &RecordBatch, outcomes: &[Arc<Outcome>]) -> Result<ArrayRef> {
        let sub = &self.subqueries[i];
        match &sub.kind {
            ApplyKind::Scalar => {
                if outcomes.is_empty() {
                    return Ok(new_empty_array(&sub.data_type));
                }
                let values = outcomes.iter().map(|o| match o.as_ref() {
                    Outcome::Scalar(v) => v.clone(),
                    _ => ScalarValue::Null,
                });
                let array = ScalarValue::iter_to_array(values)?;
                Ok(cast(
                    &array,
                    self.schema.field(batch.num_columns() + i).data_type(),
                )?)
            }
            ApplyKind::Exists => Ok(Arc::new(
                outcomes
                    .iter()
                    .map(|o| Some(matches!(o.as_ref(), Outcome::Exists(true))))
                    .collect::<BooleanArray>(),
            )),
            ApplyKind::In(_) => {
                let Some(test) = &sub.test else {
                    return exec_err!("an IN subquery lost its tested expression");
                };
                let tested = test.evaluate(batch)?.into_array(batch.num_rows())?;
                let mut out = Vec::with_capacity(outcomes.len());
                for (row, outcome) in outcomes.iter().enumerate() {
                    let Outcome::In { values, has_null } = outcome.as_ref() else {
                        out.push(None);
                        continue;
                    };
                    let value = ScalarValue::try_from_array(&tested, row)?;
                    // SQL: x IN (empty) is false even for NULL x; otherwise NULL wins over false.
                    out.push(if values.is_empty() && !has_null {
                        Some(false)
                    } else if value.is_null() {
                        None
                    } else if values.contains(&value) {
                        Some(true)
                    } else if *has_null {
                        None
                    } else {
                        Some(false)
                    });
                }
                Ok(Arc::new(BooleanArray::from(out)))
            }
        }
    }
}

/// The outer columns a subquery reads, in the order of its `outer_ref_columns`.
fn outer_columns(subquery: &Subquery) -> Vec<Column> {
    let mut out: Vec<Column> = Vec::new();
    for e in &subquery.outer_ref_columns {
        if let Expr::OuterReferenceColumn(_, c) = e
            && !out.contains(c)
        {
            out.push(c.clone());
        }
    }
    out
}

/// The subquery with its outer references to `outer` replaced by `values` as literals, nested
/// subqueries included (their lists of outer references forget the bound ones).
fn bind_outer(
    plan: &LogicalPlan,
    outer: &[(Column, usize)],
    values: &[ScalarValue],
) -> Result<LogicalPlan> {
    let bound = |c: &Column| outer.iter().position(|(o, _)| o == c);
    let forget = |s: &mut Subquery| {
        s.outer_ref_columns
            .retain(|e| !matches!(e, Expr::OuterReferenceColumn(_, c) if bound(c).is_some()));
    };
    let rewritten = plan.clone().transform_up_with_subqueries(|node| {
        // A derived table that read the outer row (`FROM generate_series(1, o.n)`) is a plain
        // one once bound; DataFusion plans no Subquery node.
        let node = match node {
            LogicalPlan::Subquery(mut s) => {
                forget(&mut s);
                if s.outer_ref_columns.is_empty() {
                    Arc::unwrap_or_clone(s.subquery)
                } else {
                    LogicalPlan::Subquery(s)
                }
            }
            other => other,
        };
        node.map_expressions(|e| {
            e.transform_up(|e| match e {
                Expr::OuterReferenceColumn(field, c) => match bound(&c) {
                    Some(i) => {
                        let Some(value) = values.get(i) else {
                            return exec_err!("an outer reference has no bound value");
                        };
                        let value = value.cast_to(field.data_type())?;
                        Ok(Transformed::yes(Expr::Literal(value, None)))
                    }
                    None => Ok(Transformed::no(Expr::OuterReferenceColumn(field, c))),
                },
                Expr::ScalarSubquery(mut s) => {
                    forget(&mut s);
                    Ok(Transformed::yes(Expr::ScalarSubquery(s)))
                }
                Expr::Exists(Exists {
                    mut subquery,
                    negated,
                }) => {
                    forget(&mut subquery);
                    Ok(Transformed::yes(Expr::Exists(Exists { subquery, negated })))
                }
                Expr::InSubquery(InSubquery {
                    expr,
                    mut subquery,
                    negated,
                }) => {
                    forget(&mut subquery);
                    Ok(Transformed::yes(Expr::InSubquery(InSubquery {
                        expr,
                        subquery,
                        negated,
                    })))
                }
                other => Ok(Transformed::no(other)),
            })
        })
    })?;
    Ok(rewritten.data)
}
