//! The stream planner: turns DataFusion's optimized `LogicalPlan` of a view's query into a
//! pipeline, or refuses with an error naming the construct it cannot run incrementally. It never
//! falls back to re-running a batch query.
//!
//! Supported shape (bottom up):
//!
//! ```text
//! TableScan(source | append-only view | TUMBLE(…) | HOP(…)) → input (+ window step)
//! Filter / Projection / SubqueryAlias …               → stateless steps (fused)
//! [Aggregate GROUP BY window_start|window_end, keys]  → window aggregate
//!  or [Aggregate GROUP BY keys] without a window      → updating aggregate
//! [Window: f(…) OVER (PARTITION BY k ORDER BY ts)]    → over window (planner/over.rs)
//! Filter / Projection / SubqueryAlias …               → stateless steps (HAVING, output)
//! ```

mod join;
mod join_condition;
mod join_inputs;
mod lookup;
mod over;
mod retention;
mod top_n;
mod union;
mod versioned_join;

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use weir_engine::catalog::Catalog;
use weir_engine::late_rows::LateRowLog;
use weir_engine::operator::StreamOperator;
use weir_engine::retract_agg::{RetractAggregate, RetractAggregateSpec};
use weir_engine::session_agg::{SessionAggregate, SessionAggregateSpec};
use weir_engine::stateless::{StatelessOperator, Step};
use weir_engine::stream_props::{StreamKind, StreamProps};
use weir_engine::view_runtime::{PlannedInput, ViewInput, ViewPipeline};
use weir_engine::view_table::ViewTable;
use weir_engine::window::{WINDOW_END, WINDOW_START, WindowSpec, WindowedTable};
use weir_engine::window_agg::{
    AggregateCall, EmitMode, WindowAggregate, WindowAggregateSpec, WindowKey,
};

use crate::error::{Result, SqlError, SqlErrorKind};
use crate::functions::Functions;
use crate::tables::SourceTable;

/// Settings the planner needs besides the plan.
pub struct PlanContext<'a> {
    /// View name.
    pub view: &'a str,
    /// DataFusion state (execution props, functions).
    pub state: &'a SessionState,
    /// Catalog of sources and views.
    pub catalog: &'a Catalog,
    /// `EMIT ON WINDOW CLOSE`.
    pub emit_on_window_close: bool,
    /// Refresh interval of open windows.
    pub refresh: Duration,
    /// Late-row log.
    pub late_rows: Arc<LateRowLog>,
    /// `WITH (state_ttl = '…')`: OVER-window keys idle this long (event time) are forgotten.
    pub state_ttl: Option<Duration>,
    /// `WITH (allowed_lateness = '…')`: windows stay open this long past the watermark.
    pub allowed_lateness: Duration,
    /// Set when a windowed aggregate took `allowed_lateness` (so a view without one says so).
    pub lateness_applied: std::cell::Cell<bool>,
    /// `WITH (retention = '…')`: final rows leave this long behind the watermark.
    pub retention: Option<Duration>,
    /// Tables joined `FOR SYSTEM_TIME AS OF PROCTIME()`.
    pub lookups: &'a [String],
    /// Inputs joined `FOR SYSTEM_TIME AS OF column`, with the column's name.
    pub versioned: &'a [(String, Vec<String>)],
    /// NOTICEs for the client (state that grows without bound, …).
    pub notices: &'a std::cell::RefCell<Vec<String>>,
    /// The function libraries (incremental forms of `OVER` calls).
    pub functions: &'a Functions,
}

pub(crate) fn unsupported(what: impl Into<String>) -> SqlError {
    SqlError::new(
        SqlErrorKind::FeatureNotSupported,
        format!("not supported in a streaming view: {}", what.into()),
    )
}

/// A partly built pipeline.
pub(crate) struct Stage {
    /// One input, or several merged (`UNION ALL`), each with the operators on its rows alone.
    pub(crate) inputs: Vec<PlannedInput>,
    /// Operators after the inputs merge.
    pub(crate) operators: Vec<Box<dyn StreamOperator>>,
    /// Stateless steps not yet fused into an operator.
    pending: Vec<Step>,
    /// The tumbling window applied, if any (until an aggregate consumes it).
    window: Option<WindowSpec>,
    /// An aggregate has been planned.
    aggregated: bool,
    /// An operator emits each window once, when it closes (`EMIT ON WINDOW CLOSE` is honoured).
    closes_windows: bool,
    /// What the stage's output stream promises (kept in step with every step pushed).
    pub(crate) props: StreamProps,
    pub(crate) explain: Vec<String>,
}

impl Stage {
    /// Adds a stateless step, carrying the stream's key and sealing column through projections.
    pub(crate) fn push(&mut self, step: Step) {
        if let Step::Project { exprs, .. } = &step {
            self.props = self.props.project(exprs);
        }
        self.pending.push(step);
    }

    pub(crate) fn flush(&mut self) {
        if !self.pending.is_empty() {
            let op = StatelessOperator::new(std::mem::take(&mut self.pending));
            self.explain.push(format!(
                "Stateless:\n    {}",
                op.describe().replace("\n  ", "\n    ")
            ));
            self.operators.push(Box::new(op));
        }
    }
}

/// Plans `plan` (already optimized) for view `ctx.view`.
pub fn plan_view(plan: &LogicalPlan, ctx: &PlanContext<'_>) -> Result<ViewPipeline> {
    let mut stage = build(plan, ctx)?;
    refuse_raw_sessions(&stage)?;
    if !ctx.allowed_lateness.is_zero() && !ctx.lateness_applied.get() {
        return Err(unsupported(
            "allowed_lateness without a windowed aggregate (it keeps TUMBLE, HOP, CUMULATE and \
             SESSION windows open past the watermark)",
        ));
    }
    stage.flush();
    if ctx.emit_on_window_close
        && stage.window.is_none()
        && !stage.aggregated
        && !stage.closes_windows
    {
        return Err(unsupported(
            "EMIT ON WINDOW CLOSE needs a windowed aggregate (GROUP BY window_start, … over TUMBLE or HOP)",
        ));
    }
    let schema = Arc::new(plan.schema().as_arrow().clone());
    let mut explain = format!("Pipeline of materialized view {}\n", ctx.view);
    if let [single] = stage.inputs.as_slice() {
        explain.push_str(&format!("  {}\n", describe_input(&single.input)));
    }
    for line in &stage.explain {
        explain.push_str("  ");
        explain.push_str(line);
        explain.push('\n');
    }
    explain.push_str(&format!(
        "  Sink: view {} ({})",
        ctx.view,
        stage.props.describe(&schema)
    ));
    let retention = retention::retention(ctx, &stage.props, &schema)?;
    if let Some(r) = &retention {
        explain.push_str(&format!("\n  {}", r.describe(&schema)));
    }
    Ok(ViewPipeline {
        inputs: stage.inputs,
        operators: stage.operators,
        copies: Vec::new(),
        props: stage.props,
        schema,
        explain,
        retention,
        looked_up: ctx.lookups.to_vec(),
    })
}

/// Makes an `EMIT ON WINDOW CLOSE` aggregate over `HOP` fold each row once, into its pane
/// (`gcd(size, slide)`: the slide when it divides the size), instead of once per window: the
/// stage's window assigner hands out panes, and the aggregate merges `size / pane` panes per
/// window. Only when nothing between the assigner and the aggregate, and nothing in the
/// aggregate but its `GROUP BY` columns, reads the window columns (they hold the pane there).
/// Returns the pane length.
fn hop_panes(stage: &mut Stage, aggregate: &datafusion::logical_expr::Aggregate) -> Option<i64> {
    let Some(WindowSpec::Hop { .. }) = stage.window else {
        return None;
    };
    let at = stage
        .pending
        .iter()
        .position(|s| matches!(s, Step::AssignWindows(_)))?;
    let reads_window = |e: &Arc<dyn PhysicalExpr>| {
        datafusion::physical_expr::utils::collect_columns(e)
            .iter()
            .any(|c| c.name() == WINDOW_START || c.name() == WINDOW_END)
    };
    let untouched = stage.pending[at + 1..].iter().all(|step| match step {
        Step::Filter(predicate) => !reads_window(predicate),
        Step::Project { exprs, .. } => exprs
            .iter()
            .all(|e| e.as_ref().downcast_ref::<Column>().is_some() || !reads_window(e)),
        Step::AssignWindows(_) => false,
    });
    let window_column =
        |e: &Expr| matches!(e, Expr::Column(c) if c.name == WINDOW_START || c.name == WINDOW_END);
    let mentions_window = |e: &Expr| {
        e.column_refs()
            .iter()
            .any(|c| c.name == WINDOW_START || c.name == WINDOW_END)
    };
    let group_ok = aggregate
        .group_expr
        .iter()
        .all(|e| window_column(e) || !mentions_window(e));
    let aggregates_ok = !aggregate.aggr_expr.iter().any(mentions_window);
    if !(untouched && group_ok && aggregates_ok) {
        return None;
    }
    let Step::AssignWindows(assigner) = &stage.pending[at] else {
        return None;
    };
    let panes = assigner.panes()?;
    let pane = panes.spec().max_size();
    stage.pending[at] = Step::AssignWindows(panes);
    Some(pane)
}

/// `allowed_lateness` in nanoseconds, noting that a windowed aggregate took it.
fn lateness_nanos(ctx: &PlanContext<'_>) -> i64 {
    ctx.lateness_applied.set(true);
    i64::try_from(ctx.allowed_lateness.as_nanos()).unwrap_or(i64::MAX)
}

/// Sessions are found by the aggregate that groups by them; rows of `SESSION(…)` that reach
/// anything else would carry each row's own window instead of its session's.
pub(crate) fn refuse_raw_sessions(stage: &Stage) -> Result<()> {
    match stage.window {
        Some(WindowSpec::Session { .. }) => Err(unsupported(
            "SESSION(…) rows without an aggregate over them (sessions are found by GROUP BY window_start, \
             window_end, keys… over SESSION(…))",
        )),
        _ => Ok(()),
    }
}

pub(crate) fn physical(
    expr: &Expr,
    schema: &DFSchema,
    ctx: &PlanContext<'_>,
) -> Result<Arc<dyn PhysicalExpr>> {
    Ok(create_physical_expr(
        expr,
        schema,
        ctx.state.execution_props(),
        &PhysicalPlanningContext::default(),
    )?)
}

pub(crate) fn build(plan: &LogicalPlan, ctx: &PlanContext<'_>) -> Result<Stage> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source)?;
            let mut pending = Vec::new();
            let mut window = None;
            let input = if let Some(source) = provider.downcast_ref::<SourceTable>() {
                let entry = ctx.catalog.source(&source.name).ok_or_else(|| {
                    SqlError::new(
                        SqlErrorKind::UndefinedTable,
                        format!("source \"{}\" not found", source.name),
                    )
                })?;
                ViewInput::Source(entry)
            } else if let Some(table) = provider.downcast_ref::<ViewTable>() {
                view_input(ctx, table)?
            } else if let Some(table) = provider.downcast_ref::<crate::tables::WritableTable>() {
                view_input(ctx, table.rows())?
            } else if let Some(windowed) = provider.downcast_ref::<WindowedTable>() {
                let w = windowed.windowed();
                let input = match ctx.catalog.relation(&w.input) {
                    Some(weir_engine::catalog::Relation::Source(s)) => ViewInput::Source(s),
                    Some(weir_engine::catalog::Relation::View(v)) => {
                        view_input(ctx, v.table.as_ref())?
                    }
                    None => {
                        return Err(SqlError::new(
                            SqlErrorKind::UndefinedTable,
                            format!("relation \"{}\" not found", w.input),
                        ));
                    }
                };
                window = Some(w.assigner.spec());
                pending.push(Step::AssignWindows(w.assigner.clone()));
                input
            } else {
                return Err(unsupported(format!(
                    "reading \"{}\" (only sources, materialized views, TUMBLE(…) and HOP(…) can feed a view)",
                    scan.table_name
                )));
            };
            if scan.fetch.is_some() {
                return Err(unsupported("LIMIT"));
            }
            let table_schema =
                DFSchema::try_from_qualified_schema(scan.table_name.clone(), &provider.schema())?;
            for f in &scan.filters {
                pending.push(Step::Filter(physical(f, &table_schema, ctx)?));
            }
            if let Some(indices) = &scan.projection {
                let full = provider.schema();
                let exprs = indices
                    .iter()
                    .map(|&i| {
                        Arc::new(Column::new(full.field(i).name(), i)) as Arc<dyn PhysicalExpr>
                    })
                    .collect();
                pending.push(Step::Project {
                    exprs,
                    schema: Arc::new(scan.projected_schema.as_arrow().clone()),
                });
            }
            let props = match &input {
                // Rows are timed by the source's WATERMARK column (found in the full schema: the
                // scan's projection follows as a step).
                ViewInput::Source(s) => StreamProps {
                    event_time: s
                        .watermark
                        .as_ref()
                        .and_then(|w| provider.schema().index_of(&w.column).ok()),
                    ..StreamProps::append_only()
                },
                ViewInput::View(v) => v.props.clone(),
            };
            let mut stage = Stage {
                inputs: vec![PlannedInput {
                    input,
                    operators: Vec::new(),
                }],
                operators: Vec::new(),
                pending: Vec::new(),
                window,
                aggregated: false,
                closes_windows: false,
                props,
                explain: Vec::new(),
            };
            for step in pending {
                stage.push(step);
            }
            Ok(stage)
        }
        LogicalPlan::Filter(filter) => {
            if let Some(stage) = top_n::plan_rank_filter(filter, ctx)? {
                return Ok(stage);
            }
            let mut stage = build(&filter.input, ctx)?;
            refuse_volatile_over_updates(&stage, std::slice::from_ref(&filter.predicate))?;
            stage.push(Step::Filter(physical(
                &filter.predicate,
                filter.input.schema(),
                ctx,
            )?));
            Ok(stage)
        }
        LogicalPlan::Projection(projection) => {
            let mut stage = build(&projection.input, ctx)?;
            refuse_volatile_over_updates(&stage, &projection.expr)?;
            let exprs = projection
                .expr
                .iter()
                .map(|e| physical(e, projection.input.schema(), ctx))
                .collect::<Result<Vec<_>>>()?;
            stage.push(Step::Project {
                exprs,
                schema: Arc::new(projection.schema.as_arrow().clone()),
            });
            Ok(stage)
        }
        LogicalPlan::SubqueryAlias(alias) => build(&alias.input, ctx),
        LogicalPlan::Aggregate(aggregate) => plan_aggregate(aggregate, ctx),
        LogicalPlan::Join(join) => join::plan_join(join, ctx),
        LogicalPlan::Window(window) => over::plan_window(window, ctx),
        // `DISTINCT ON (k) … ORDER BY k, ts` sorts its groups by `k`: meaningless for a view's
        // rows, so only the first-row-per-group below it is planned.
        LogicalPlan::Sort(sort) if sort.fetch.is_none() && top_n::is_first_rows(&sort.input) => {
            build(&sort.input, ctx)
        }
        LogicalPlan::Sort(_) => Err(unsupported(
            "ORDER BY (order the rows when you query the view)",
        )),
        LogicalPlan::Limit(_) => Err(unsupported(
            "LIMIT (limit the rows when you query the view)",
        )),
        LogicalPlan::Distinct(_) => Err(unsupported("DISTINCT (use GROUP BY)")),
        LogicalPlan::Union(union) => union::plan_union(union, ctx),
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => Err(unsupported(
            "a view must read a source or another materialized view",
        )),
        other => Err(unsupported(format!(
            "{} in a view's query",
            node_name(other)
        ))),
    }
}

/// One line naming an input for EXPLAIN.
pub(crate) fn describe_input(input: &ViewInput) -> String {
    match input {
        ViewInput::Source(s) => format!(
            "Source: {} (connector {}){}",
            s.name,
            s.provider.connector(),
            s.watermark
                .as_ref()
                .map_or(String::new(), |w| format!(", watermark {}", w.text))
        ),
        ViewInput::View(v) => format!(
            "{}: {} ({})",
            if v.is_table() { "Table" } else { "View" },
            v.name,
            v.props.describe(&v.table.schema_ref())
        ),
    }
}

fn node_name(plan: &LogicalPlan) -> String {
    let text = format!("{}", plan.display());
    text.split(':')
        .next()
        .unwrap_or("this construct")
        .trim()
        .to_string()
}

/// A retraction must reproduce its insert exactly, so a volatile function (`random()`, `now()`)
/// over an updating stream would make deletes miss the rows they delete.
fn refuse_volatile_over_updates(stage: &Stage, exprs: &[Expr]) -> Result<()> {
    if stage.props.is_append_only() {
        return Ok(());
    }
    match exprs.iter().find(|e| e.is_volatile()) {
        Some(e) => Err(unsupported(format!(
            "the volatile expression {} over an updating view (an update must recompute \
             exactly what it replaces)",
            e.clone().unalias()
        ))),
        None => Ok(()),
    }
}

fn view_input(ctx: &PlanContext<'_>, table: &ViewTable) -> Result<ViewInput> {
    let view = ctx
        .catalog
        .views()
        .into_iter()
        .find(|v| std::ptr::eq(v.table.as_ref(), table))
        .ok_or_else(|| {
            SqlError::new(SqlErrorKind::UndefinedTable, "materialized view not found")
        })?;
    // An updating view is read as its change stream; the stages that cannot consume updates
    // (aggregates, OVER windows) refuse it where they are planned.
    Ok(ViewInput::View(view))
}

fn plan_aggregate(
    aggregate: &datafusion::logical_expr::Aggregate,
    ctx: &PlanContext<'_>,
) -> Result<Stage> {
    if let Some(stage) = top_n::plan_first_rows(aggregate, ctx)? {
        return Ok(stage);
    }
    let mut stage = build(&aggregate.input, ctx)?;
    let updating_input = !stage.props.is_append_only();
    if updating_input && stage.window.is_some() {
        return Err(unsupported(
            "TUMBLE(…), HOP(…), CUMULATE(…) or SESSION(…) over an updating view (group by its window columns instead)",
        ));
    }
    if stage.aggregated {
        return Err(unsupported(
            "an aggregate over an aggregate (e.g. COUNT(DISTINCT …) with other aggregates, or nested GROUP BY)",
        ));
    }
    if aggregate
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return Err(unsupported("GROUPING SETS / ROLLUP / CUBE"));
    }
    let pane = if ctx.emit_on_window_close && !updating_input {
        hop_panes(&mut stage, aggregate)
    } else {
        None
    };
    stage.flush();
    let input_schema = aggregate.input.schema();
    let input_arrow = input_schema.as_arrow();
    let mut group_exprs = aggregate
        .group_expr
        .iter()
        .map(|e| physical(e, input_schema, ctx))
        .collect::<Result<Vec<_>>>()?;
    let agg_schema: SchemaRef = Arc::new(aggregate.schema.as_arrow().clone());
    let window = match stage.window {
        Some(spec) => {
            let position = |name: &str| {
                aggregate
                    .group_expr
                    .iter()
                    .position(|e| matches!(e, Expr::Column(c) if c.name == name))
            };
            // The end identifies every kind of window; the start only fixed-size ones.
            let (group_index, is_end) = match (position(WINDOW_END), position(WINDOW_START)) {
                (Some(i), _) => (i, true),
                (None, Some(i)) if spec.fixed_size() => (i, false),
                (None, Some(_)) => {
                    return Err(unsupported(format!(
                        "an aggregate over {}(…) grouped by window_start alone (its windows share \
                         starts: GROUP BY window_start, window_end)",
                        spec.function()
                    )));
                }
                (None, None) => {
                    return Err(unsupported(format!(
                        "an aggregate over {}(…) must GROUP BY window_start or window_end",
                        spec.function()
                    )));
                }
            };
            Some(WindowKey {
                group_index,
                is_end,
                spec,
                pane,
            })
        }
        None => None,
    };
    // The aggregate's output watermark is the input's minus the longest window, so a window's
    // rows are sealed once `window_start <= watermark`, i.e. `window_end <= watermark + size`.
    // A session aggregate passes the watermark on: a session's row is final once its end is.
    let (sealed_by, seal_span) = match &window {
        Some(w) if matches!(w.spec, WindowSpec::Session { .. }) => {
            let end = aggregate
                .group_expr
                .iter()
                .position(|e| matches!(e, Expr::Column(c) if c.name == WINDOW_END));
            (end, 0)
        }
        Some(w) if w.is_end => (Some(w.group_index), w.spec.max_size()),
        Some(w) => (Some(w.group_index), 0),
        None => (None, 0),
    };
    let mut aggregates = Vec::with_capacity(aggregate.aggr_expr.len());
    let planning = PhysicalPlanningContext::default();
    for e in &aggregate.aggr_expr {
        let lowered = LoweredAggregateBuilder::new(
            e,
            input_schema,
            input_arrow,
            ctx.state.execution_props(),
            &planning,
        )
        .build()?;
        // Ordered aggregates (`first_value(x ORDER BY ts)`, `array_agg(x ORDER BY ts)`) order
        // what they keep themselves, so rows may arrive in any order; they cannot retract.
        if !lowered.order_bys.is_empty() && updating_input {
            return Err(unsupported(
                "ORDER BY inside an aggregate call over an updating input (ordered aggregates \
                 cannot retract rows)",
            ));
        }
        aggregates.push(AggregateCall {
            function: lowered.aggregate,
            filter: lowered.filter,
        });
    }
    // A global aggregate (no GROUP BY) is grouped by a hidden constant, dropped afterwards.
    let hidden_key = group_exprs.is_empty();
    let output_schema = if hidden_key {
        group_exprs.push(Arc::new(Literal::new(ScalarValue::Int8(Some(0)))));
        let mut fields = vec![Arc::new(Field::new(
            "__weir_all",
            datafusion::arrow::datatypes::DataType::Int8,
            false,
        ))];
        fields.extend(agg_schema.fields().iter().cloned());
        Arc::new(Schema::new(fields))
    } else {
        Arc::clone(&agg_schema)
    };
    let emit = if ctx.emit_on_window_close {
        if window.is_none() {
            return Err(unsupported(
                "EMIT ON WINDOW CLOSE without a window (GROUP BY window_start over TUMBLE(…) or HOP(…))",
            ));
        }
        EmitMode::OnWindowClose
    } else {
        EmitMode::OnUpdate {
            refresh: ctx.refresh,
        }
    };
    let operator: Box<dyn StreamOperator> = if let Some(WindowKey {
        spec: WindowSpec::Session { gap },
        ..
    }) = window
    {
        // The input keeps the window columns grouped on: `window_start` is the row's time,
        // `window_end` its time plus the gap.
        let (time, time_shift_nanos) = match input_arrow.index_of(WINDOW_START) {
            Ok(i) => (i, 0),
            Err(_) => (input_arrow.index_of(WINDOW_END)?, gap),
        };
        Box::new(SessionAggregate::try_new(
            SessionAggregateSpec {
                view: ctx.view.to_string(),
                group_exprs,
                time: Arc::new(Column::new(input_arrow.field(time).name(), time)),
                time_shift_nanos,
                time_type: input_arrow.field(time).data_type().clone(),
                aggregates,
                output_schema: Arc::clone(&output_schema),
                gap_nanos: gap,
                lateness_nanos: lateness_nanos(ctx),
                emit,
            },
            Arc::clone(&ctx.late_rows),
        )?)
    } else if updating_input {
        // Rows of an updating input come and go: each group's aggregates retract them.
        Box::new(RetractAggregate::try_new(
            RetractAggregateSpec {
                group_exprs,
                aggregates,
                output_schema: Arc::clone(&output_schema),
                refresh: ctx.refresh,
            },
            input_arrow,
        )?)
    } else {
        Box::new(WindowAggregate::try_new(
            WindowAggregateSpec {
                view: ctx.view.to_string(),
                group_exprs,
                aggregates,
                output_schema: Arc::clone(&output_schema),
                window,
                lateness_nanos: if window.is_some() {
                    lateness_nanos(ctx)
                } else {
                    0
                },
                emit,
            },
            Arc::clone(&ctx.late_rows),
        )?)
    };
    let mut line = operator.describe();
    if let Some(spec) = stage.window {
        line.push_str(&format!(" window {} {}", spec.function(), spec.describe()));
    }
    stage.explain.push(line);
    stage.operators.push(operator);
    // The group columns lead the aggregate's output and identify its rows (a global aggregate
    // has one row: the empty key); a windowed aggregate's rows stop changing once the
    // watermark passes their window.
    // Without aggregates (`SELECT DISTINCT`, `GROUP BY` alone) over append-only input a group's
    // row never changes once it exists: the output only ever inserts.
    // (Not sessions: a growing session replaces its row.)
    let is_session = matches!(
        window,
        Some(WindowKey {
            spec: WindowSpec::Session { .. },
            ..
        })
    );
    let inserts_only = aggregate.aggr_expr.is_empty() && !updating_input && !is_session;
    stage.props = StreamProps {
        kind: if emit == EmitMode::OnWindowClose || inserts_only {
            StreamKind::AppendOnly
        } else {
            StreamKind::Retract
        },
        key: Some(if hidden_key {
            Vec::new()
        } else {
            (0..aggregate.group_expr.len()).collect()
        }),
        sealed_by,
        seal_span,
        // A window's rows are timed by the window (its end, or its start when only that is kept).
        event_time: sealed_by,
    };
    if hidden_key {
        let exprs = (1..output_schema.fields().len())
            .map(|i| {
                Arc::new(Column::new(output_schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>
            })
            .collect();
        stage.push(Step::Project {
            exprs,
            schema: agg_schema,
        });
    }
    stage.window = None;
    stage.aggregated = true;
    stage.closes_windows = emit == EmitMode::OnWindowClose;
    Ok(stage)
}
