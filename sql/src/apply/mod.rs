//! Subqueries DataFusion cannot turn into joins, evaluated by *apply*: once per distinct tuple of
//! the outer values they read.
//!
//! DataFusion decorrelates the common shapes (`IN`/`EXISTS` conjuncts of a `WHERE`, scalar
//! subqueries correlated by equality). The catalog queries clients send use others:
//!
//! - psql `\d`: `array(select rolname from pg_roles where oid = any(pol.polroles))`, a
//!   correlation through `= ANY(outer array)` under an aggregate;
//! - SQLAlchemy's column reflection: `seqrelid = pg_get_serial_sequence(outer…)::regclass`,
//!   a correlation through function calls, and scalar subqueries inside `CASE`;
//! - Grafana's table list: `x IN (SELECT …)` inside a `CASE` of the select list.
//!
//! Left alone, those fail at physical planning ("does not support logical expression
//! ScalarSubquery"). Here:
//!
//! - `rule.rs`: [`ApplySubqueries`], an optimizer rule run just before DataFusion's
//!   decorrelation (taking the subqueries it would mis-handle: DataFusion "decorrelates" some
//!   into joins that still hold outer references) and again after all rules (taking any left).
//!   It moves each such subquery expression of a `Projection` or `Filter` into an [`ApplyNode`]
//!   below it, which adds one column per subquery (its value, its `EXISTS`, or its `IN` test);
//! - `exec.rs`: `ApplyExec` computes those columns. For each distinct tuple of outer values in a
//!   batch it binds them into the subquery as literals, plans and runs it (cached per tuple), so
//!   a catalog query over 40 attributes runs its sub-select at most 40 times.
//!
//! This is the fallback for small catalog and ad-hoc queries, where a nested loop per distinct
//! outer tuple is cheap; everything DataFusion can join stays a join. Materialized views never
//! use it: the stream planner refuses the extension node, naming it.

mod exec;
mod rule;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DFSchema, DFSchemaRef, Result, internal_datafusion_err};
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{
    Expr, LogicalPlan, Subquery, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

pub use rule::ApplySubqueries;

/// What a subquery contributes to each outer row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ApplyKind {
    /// Its single value (NULL without rows; more than one row is an error).
    Scalar,
    /// Whether it returns a row.
    Exists,
    /// Whether this expression (over the outer row) is among its values, with SQL's NULLs.
    In(Expr),
}

/// One subquery moved out of an expression, and the column that now stands for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppliedSubquery {
    pub kind: ApplyKind,
    pub subquery: Subquery,
    pub column: String,
}

impl AppliedSubquery {
    fn field(&self) -> Field {
        match &self.kind {
            ApplyKind::Scalar => {
                let schema = self.subquery.subquery.schema();
                let data_type = schema
                    .fields()
                    .first()
                    .map_or(DataType::Null, |f| f.data_type().clone());
                Field::new(&self.column, data_type, true)
            }
            ApplyKind::Exists => Field::new(&self.column, DataType::Boolean, false),
            ApplyKind::In(_) => Field::new(&self.column, DataType::Boolean, true),
        }
    }
}

/// The logical node: its input's columns, then one column per applied subquery.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApplyNode {
    input: LogicalPlan,
    subqueries: Vec<AppliedSubquery>,
    schema: DFSchemaRef,
}

impl ApplyNode {
    pub fn try_new(input: LogicalPlan, subqueries: Vec<AppliedSubquery>) -> Result<Self> {
        let added: Vec<Field> = subqueries.iter().map(AppliedSubquery::field).collect();
        let added = DFSchema::from_unqualified_fields(added.into(), HashMap::new())?;
        let schema = Arc::new(input.schema().join(&added)?);
        Ok(Self {
            input,
            subqueries,
            schema,
        })
    }
}

impl PartialOrd for ApplyNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let names = |n: &Self| {
            n.subqueries
                .iter()
                .map(|s| s.column.clone())
                .collect::<Vec<_>>()
        };
        match self.input.partial_cmp(&other.input) {
            Some(Ordering::Equal) => names(self).partial_cmp(&names(other)),
            order => order,
        }
    }
}

impl UserDefinedLogicalNodeCore for ApplyNode {
    fn name(&self) -> &str {
        "Apply"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    /// The `IN` tests, which read the input's columns (so rules that rename columns reach them).
    fn expressions(&self) -> Vec<Expr> {
        self.subqueries
            .iter()
            .filter_map(|s| match &s.kind {
                ApplyKind::In(test) => Some(test.clone()),
                _ => None,
            })
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Apply:")?;
        for s in &self.subqueries {
            let kind = match &s.kind {
                ApplyKind::Scalar => "scalar".to_string(),
                ApplyKind::Exists => "exists".to_string(),
                ApplyKind::In(test) => format!("{test} in"),
            };
            write!(f, " {}={kind} subquery", s.column)?;
        }
        Ok(())
    }

    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let input = inputs
            .pop()
            .ok_or_else(|| internal_datafusion_err!("Apply has one input"))?;
        let mut tests = exprs.into_iter();
        let mut subqueries = self.subqueries.clone();
        for s in &mut subqueries {
            if let ApplyKind::In(test) = &mut s.kind {
                *test = tests
                    .next()
                    .ok_or_else(|| internal_datafusion_err!("Apply lost an IN test"))?;
            }
        }
        Self::try_new(input, subqueries)
    }
}

/// Plans [`ApplyNode`]s; everything else is DataFusion's.
#[derive(Debug)]
struct ApplyPlanner;

#[async_trait]
impl ExtensionPlanner for ApplyPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn datafusion::catalog::Session,
        planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(apply) = node.as_any().downcast_ref::<ApplyNode>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return Err(internal_datafusion_err!("Apply has one input"));
        };
        let state = session
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| {
                internal_datafusion_err!("Apply needs a SessionState to plan its subqueries")
            })?;
        let exec = exec::ApplyExec::try_new(
            Arc::clone(input),
            apply,
            |test| planner.create_physical_expr(test, apply.input.schema(), session, planning_ctx),
            Arc::new(state.clone()),
        )?;
        Ok(Some(Arc::new(exec)))
    }
}

/// DataFusion's physical planner, with [`ApplyNode`] planned.
#[derive(Debug)]
struct WeirQueryPlanner;

#[async_trait]
impl QueryPlanner for WeirQueryPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(ApplyPlanner)])
            .create_physical_plan(plan, session)
            .await
    }
}

/// Adds the apply fallback to a state being built: DataFusion's optimizer rules with
/// [`ApplySubqueries`] just before its decorrelation and again last, and the planner for
/// [`ApplyNode`].
pub fn install(builder: SessionStateBuilder) -> SessionStateBuilder {
    let mut rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = Vec::new();
    let defaults = Optimizer::new().rules;
    let first_decorrelation = defaults
        .iter()
        .position(|r| r.name() == "decorrelate_predicate_subquery")
        .unwrap_or(0);
    for (i, rule) in defaults.into_iter().enumerate() {
        if i == first_decorrelation {
            rules.push(Arc::new(ApplySubqueries::before_decorrelation()));
        }
        rules.push(rule);
    }
    rules.push(Arc::new(ApplySubqueries::leftovers()));
    builder
        .with_optimizer_rules(rules)
        .with_query_planner(Arc::new(WeirQueryPlanner))
}
