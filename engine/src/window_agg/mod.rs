//! The window aggregate: `GROUP BY window_start, window_end, keys…` over tumbling, hopping or
//! cumulating windows (or no window at all, for an updating `GROUP BY`), computed with DataFusion's `GroupsAccumulator`s.
//!
//! State is one [`GroupState`] per open window (keyed by window end, which unlike the start is
//! unique for cumulating windows too): DataFusion's
//! `GroupValues` interns the group keys of whole batches to dense group ids, and one
//! `GroupsAccumulator` per aggregate updates all groups of a batch at once. A window's state is
//! dropped when its final rows are emitted. Inside one window's state `window_start` and
//! `window_end` are constants, so they are not interned: only the other keys are, and the window
//! columns are added back as constants on output. That halves the bytes per group of a
//! `GROUP BY key, window_start, window_end` and lets a single primitive key use DataFusion's
//! specialised primitive hash table.
//!
//! Emission:
//! - `OnUpdate` (the default): every `refresh` interval, the groups each window took rows for
//!   since its last refresh are evaluated and compared with what they last emitted: new groups go
//!   out as inserts, groups whose values changed as update pairs, unchanged groups not at all.
//!   When the watermark passes the window's end its last changes go out the same way, and the
//!   window's rows are sealed downstream (the output stream is keyed by the group columns and
//!   sealed by the window column). Pending changes are flushed before every checkpoint barrier,
//!   so at a barrier the output equals the state and recovery recomputes "last emitted" from the
//!   state instead of checkpointing it. The cost of a refresh is proportional to the groups it
//!   touched, not to the window ([`settled`]).
//! - `OnWindowClose`: only final rows, as inserts, and a window's state is one set of
//!   accumulators evaluated once.
//!
//! Rows whose window is already closed are late: they are not folded into anything, but
//! counted and kept in the late-row log (`weir_late_rows`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, sort_to_indices, take, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, TimeUnit};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

mod checkpoint;
mod panes;
mod partial_states;
mod settled;
#[cfg(test)]
mod tests;
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};
use crate::late_rows::LateRowLog;
use crate::message::{CheckpointBarrier, Watermark};
use crate::operator::{Collector, StreamOperator};
use crate::time::{nanos_per_unit, timestamp_unit, timestamp_values};
use crate::window::{WINDOW_END, WINDOW_START, WindowSpec};

/// Where an output group column comes from.
#[derive(Debug, Clone, Copy)]
enum GroupColumn {
    /// The `i`-th interned key.
    Key(usize),
    /// The window's start, a constant within one window's state.
    WindowStart,
    /// The window's end.
    WindowEnd,
}

/// When a window aggregate emits rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    /// Open windows visible with current values, refreshed at this interval; final on close.
    OnUpdate {
        /// How often changed windows are re-emitted.
        refresh: Duration,
    },
    /// Final rows only, once the watermark passes the window end.
    OnWindowClose,
}

/// Which group column identifies the window.
#[derive(Debug, Clone, Copy)]
pub struct WindowKey {
    /// Index of the group expression that is `window_start` or `window_end`.
    pub group_index: usize,
    /// True when that column is `window_end`; `window_start` identifies only fixed-size windows.
    pub is_end: bool,
    /// The windows (tumbling, hopping or cumulating).
    pub spec: WindowSpec,
    /// Hopping windows built from panes of this length (the slide; see [`panes`]): the window
    /// column holds each row's pane, not its windows.
    pub pane: Option<i64>,
}

/// One aggregate with its optional `FILTER (WHERE …)`.
#[derive(Debug, Clone)]
pub struct AggregateCall {
    /// DataFusion's physical aggregate.
    pub function: Arc<AggregateFunctionExpr>,
    /// Optional per-row filter.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

impl AggregateCall {
    /// What the accumulator's `update_batch` takes, in DataFusion's order: the arguments, then
    /// the `ORDER BY` expressions of an ordered aggregate (`first_value(x ORDER BY ts)`).
    pub fn inputs(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        let all = self.function.all_expressions();
        let mut inputs = all.args;
        inputs.extend(all.order_by_exprs);
        inputs
    }
}

/// Everything needed to build a [`WindowAggregate`].
#[derive(Debug, Clone)]
pub struct WindowAggregateSpec {
    /// Name of the view (for the late-row log).
    pub view: String,
    /// Group expressions over the input schema.
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Aggregates over the input schema.
    pub aggregates: Vec<AggregateCall>,
    /// Output schema: group columns, then aggregate columns.
    pub output_schema: SchemaRef,
    /// The window, or None for a non-windowed (updating) aggregate.
    pub window: Option<WindowKey>,
    /// Allowed lateness: windows close this long after the watermark passes their end, and
    /// rows that late still count.
    pub lateness_nanos: i64,
    /// Emission policy.
    pub emit: EmitMode,
}

/// State of one open window.
struct GroupState {
    /// Interns group keys to dense ids (`OnUpdate`: of the rows since the last refresh).
    group_values: Box<dyn GroupValues>,
    /// One accumulator per aggregate, indexed by group id.
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// Changed since the last refresh.
    dirty: bool,
    /// `OnUpdate`: every group as last emitted.
    settled: Option<settled::Settled>,
}

/// The interned key of an aggregate grouped by window columns alone (one group per window).
const WINDOW_ONLY_KEY: &str = "__weir_window";

/// The window aggregate operator.
pub struct WindowAggregate {
    spec: WindowAggregateSpec,
    /// The group expressions that are interned (all but the window columns; a constant when
    /// nothing else is grouped on).
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    key_schema: SchemaRef,
    /// How output group columns are made, in output order.
    layout: Vec<GroupColumn>,
    /// Open windows by end (nanoseconds); one entry keyed 0 when there is no window.
    windows: BTreeMap<i64, GroupState>,
    /// Highest input watermark seen (nanoseconds); windows ending at or before it are closed.
    watermark: Option<i64>,
    late: Arc<LateRowLog>,
    /// Reused buffer of group ids per row.
    group_ids: Vec<usize>,
    /// Columns of partial state per aggregate (`state_fields`), to split checkpointed state.
    state_widths: Vec<usize>,
    /// Panes: complete panes by end, kept until their last window is emitted.
    frozen: BTreeMap<i64, panes::FrozenPane>,
    /// Panes: end of the last window emitted.
    emitted_until: Option<i64>,
}

impl std::fmt::Debug for WindowAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowAggregate")
            .field("windows", &self.windows.len())
            .finish()
    }
}

impl WindowAggregate {
    /// Builds the operator.
    pub fn try_new(spec: WindowAggregateSpec, late: Arc<LateRowLog>) -> Result<Self> {
        let n_groups = spec.group_exprs.len();
        if let Some(w) = spec.window
            && let Some(pane) = w.pane
            && !(matches!(w.spec, WindowSpec::Hop { size, slide, .. }
                    if pane > 0 && slide % pane == 0 && size % pane == 0 && slide < size)
                && spec.emit == EmitMode::OnWindowClose)
        {
            return Err(EngineError::Internal(format!(
                "panes of {} for {} windows emitted {:?}",
                pane,
                w.spec.function(),
                spec.emit
            )));
        }
        if let Some(w) = spec.window
            && (matches!(w.spec, WindowSpec::Session { .. }) || (!w.is_end && !w.spec.fixed_size()))
        {
            return Err(EngineError::Internal(format!(
                "{} windows identified by their {}",
                w.spec.function(),
                if w.is_end { "end" } else { "start" }
            )));
        }
        if n_groups == 0 {
            return Err(EngineError::Internal(
                "window aggregate without group columns".into(),
            ));
        }
        let mut key_exprs = Vec::with_capacity(n_groups);
        let mut key_fields = Vec::with_capacity(n_groups);
        let mut layout = Vec::with_capacity(n_groups);
        for (expr, field) in spec.group_exprs.iter().zip(spec.output_schema.fields()) {
            let window_column = match expr.as_ref().downcast_ref::<Column>() {
                Some(c) if spec.window.is_some() && c.name() == WINDOW_START => {
                    Some(GroupColumn::WindowStart)
                }
                Some(c) if spec.window.is_some() && c.name() == WINDOW_END => {
                    Some(GroupColumn::WindowEnd)
                }
                _ => None,
            };
            match window_column {
                Some(column) => layout.push(column),
                None => {
                    layout.push(GroupColumn::Key(key_exprs.len()));
                    key_exprs.push(Arc::clone(expr));
                    key_fields.push(Arc::clone(field));
                }
            }
        }
        if key_exprs.is_empty() {
            // Only window columns: every row of a window is one group.
            key_exprs.push(Arc::new(Literal::new(ScalarValue::Int8(Some(0)))));
            key_fields.push(Arc::new(Field::new(WINDOW_ONLY_KEY, DataType::Int8, false)));
        }
        let state_widths = spec
            .aggregates
            .iter()
            .map(|a| Ok(a.function.state_fields()?.len()))
            .collect::<Result<Vec<usize>>>()?;
        Ok(Self {
            state_widths,
            spec,
            key_exprs,
            key_schema: Arc::new(Schema::new(key_fields)),
            layout,
            windows: BTreeMap::new(),
            watermark: None,
            late,
            group_ids: Vec::new(),
            frozen: BTreeMap::new(),
            emitted_until: None,
        })
    }

    fn new_state(&self) -> Result<GroupState> {
        Ok(GroupState {
            group_values: new_group_values(Arc::clone(&self.key_schema), &GroupOrdering::None)?,
            accumulators: self.new_accumulators()?,
            dirty: true,
            settled: match self.spec.emit {
                EmitMode::OnUpdate { .. } => Some(self.new_settled()?),
                EmitMode::OnWindowClose => None,
            },
        })
    }

    fn new_accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        self.spec
            .aggregates
            .iter()
            .map(|a| new_accumulator(&a.function))
            .collect()
    }

    /// Window end (nanoseconds) of every row; nulls where the window column is null.
    fn window_ends(&self, batch: &RecordBatch, window: WindowKey) -> Result<Int64Array> {
        let expr = &self.spec.group_exprs[window.group_index];
        let column = expr.evaluate(batch)?.into_array(batch.num_rows())?;
        let unit = timestamp_unit(column.data_type(), "window_start")?;
        let per = nanos_per_unit(unit);
        let values = timestamp_values(&column)?;
        let shift = if window.is_end {
            0
        } else {
            window.pane.unwrap_or(window.spec.max_size())
        };
        Ok(values.unary(|v| v.saturating_mul(per).saturating_add(shift)))
    }

    fn is_closed(&self, end: i64) -> bool {
        self.watermark.is_some_and(|wm| end <= wm)
    }

    /// Interns `keys` into window `end`'s state (created when new); the group ids land in
    /// `self.group_ids`. Returns the window's number of groups.
    fn intern_keys(&mut self, end: i64, keys: &[ArrayRef]) -> Result<usize> {
        if !self.windows.contains_key(&end) {
            let state = self.new_state()?;
            self.windows.insert(end, state);
        }
        let state = window_in(&mut self.windows, end)?;
        state.group_values.intern(keys, &mut self.group_ids)?;
        Ok(state.group_values.len())
    }

    /// Folds the rows of one window into its state.
    fn accumulate(&mut self, end: i64, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys = self
            .key_exprs
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
            .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
        let total_groups = self.intern_keys(end, &keys)?;
        let state = window_in(&mut self.windows, end)?;
        for (call, acc) in self
            .spec
            .aggregates
            .iter()
            .zip(state.accumulators.iter_mut())
        {
            let values = call
                .inputs()
                .iter()
                .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
                .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
            let filter = match &call.filter {
                Some(f) => Some(f.evaluate(batch)?.into_array(batch.num_rows())?),
                None => None,
            };
            let filter = filter.as_ref().and_then(|f| f.as_boolean_opt());
            acc.update_batch(&values, &self.group_ids, filter, total_groups)?;
        }
        state.dirty = true;
        Ok(())
    }

    fn record_late(&self, batch: &RecordBatch, reason: &'static str) -> Result<()> {
        if batch.num_rows() > 0 {
            self.late.record(&self.spec.view, batch, reason)?;
        }
        Ok(())
    }

    /// Final rows of a window, consuming its state.
    fn final_rows(&self, end: i64, mut state: GroupState) -> Result<RecordBatch> {
        let keys = state.group_values.emit(EmitTo::All)?;
        let mut values = Vec::with_capacity(state.accumulators.len());
        for acc in state.accumulators.iter_mut() {
            values.push(acc.evaluate(EmitTo::All)?);
        }
        self.output(end, &keys, values)
    }

    /// Output rows from interned keys and aggregate values, the window columns added back.
    fn output(&self, end: i64, keys: &[ArrayRef], values: Vec<ArrayRef>) -> Result<RecordBatch> {
        let rows = keys.first().map_or(0, |k| k.len());
        let fields = self.spec.output_schema.fields();
        let start = self.spec.window.map_or(end, |w| w.spec.start_of(end));
        let mut columns = Vec::with_capacity(fields.len());
        for (column, field) in self.layout.iter().zip(fields.iter()) {
            columns.push(match *column {
                GroupColumn::Key(i) => Arc::clone(
                    keys.get(i)
                        .ok_or_else(|| EngineError::Internal("missing group key".into()))?,
                ),
                GroupColumn::WindowStart => constant_time(field.data_type(), start, rows)?,
                GroupColumn::WindowEnd => constant_time(field.data_type(), end, rows)?,
            });
        }
        columns.extend(values);
        Ok(RecordBatch::try_new(
            Arc::clone(&self.spec.output_schema),
            columns,
        )?)
    }

    /// Emits final rows of every window in `closed`.
    fn emit_closed(&self, closed: BTreeMap<i64, GroupState>, out: &mut Collector) -> Result<()> {
        for (end, mut state) in closed {
            match self.spec.emit {
                EmitMode::OnWindowClose => out.data(self.final_rows(end, state)?),
                EmitMode::OnUpdate { .. } => out.changes(self.settle(end, &mut state)?),
            }
        }
        Ok(())
    }

    /// Emits what changed in every window that took rows since its last refresh.
    fn refresh(&mut self, out: &mut Collector) -> Result<()> {
        let mut windows = std::mem::take(&mut self.windows);
        let settled = windows
            .iter_mut()
            .filter(|(_, state)| state.dirty)
            .try_for_each(|(&end, state)| {
                out.changes(self.settle(end, state)?);
                Ok(())
            });
        self.windows = windows;
        settled
    }

    /// Output columns holding aggregate values (after the group columns).
    fn value_columns(&self) -> std::ops::Range<usize> {
        self.layout.len()..self.spec.output_schema.fields().len()
    }
}

/// EXPLAIN's parts of a windowed aggregate: group keys, aggregate names and the emission
/// (cadence and allowed lateness), shared with the session aggregate.
pub(crate) fn describe_parts(
    group_exprs: &[Arc<dyn PhysicalExpr>],
    aggregates: &[AggregateCall],
    emit: EmitMode,
    lateness_nanos: i64,
) -> (String, String, String) {
    let keys: Vec<String> = group_exprs.iter().map(|e| e.to_string()).collect();
    let aggs: Vec<String> = aggregates
        .iter()
        .map(|a| a.function.name().to_string())
        .collect();
    let emit = match emit {
        EmitMode::OnUpdate { refresh } => format!("on update (refresh {}ms)", refresh.as_millis()),
        EmitMode::OnWindowClose => "on window close".into(),
    };
    let emit = match lateness_nanos {
        0 => emit,
        lateness => format!(
            "{emit} allowed lateness {}",
            crate::window::humanize_nanos(lateness)
        ),
    };
    (keys.join(", "), aggs.join(", "), emit)
}

/// Each aggregate's columns within flat partial-state columns (`widths` per aggregate; an empty
/// slice for an aggregate past the end, e.g. when there are no columns at all).
fn split_states<'a>(states: &'a [ArrayRef], widths: &[usize]) -> Vec<&'a [ArrayRef]> {
    let mut out = Vec::with_capacity(widths.len());
    let mut at = 0;
    for &w in widths {
        out.push(&states[at.min(states.len())..(at + w).min(states.len())]);
        at += w;
    }
    out
}

/// A column of `rows` copies of the time `nanos`, in the unit and zone of `data_type`.
fn constant_time(data_type: &DataType, nanos: i64, rows: usize) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, zone) = data_type else {
        return Err(EngineError::Internal(format!(
            "window column of type {data_type}"
        )));
    };
    let value = Some(nanos.div_euclid(nanos_per_unit(*unit)));
    let zone = zone.clone();
    let scalar = match unit {
        TimeUnit::Second => ScalarValue::TimestampSecond(value, zone),
        TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(value, zone),
        TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(value, zone),
        TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(value, zone),
    };
    Ok(scalar.to_array_of_size(rows)?)
}

/// A groups accumulator for `function`: its own when it has one, else DataFusion's adapter
/// around per-group `Accumulator`s.
fn new_accumulator(function: &Arc<AggregateFunctionExpr>) -> Result<Box<dyn GroupsAccumulator>> {
    if function.groups_accumulator_supported() {
        Ok(function.create_groups_accumulator()?)
    } else {
        let function = Arc::clone(function);
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
            function.create_accumulator()
        })))
    }
}

impl StreamOperator for WindowAggregate {
    fn name(&self) -> String {
        match self.spec.window {
            Some(_) => "window aggregate".into(),
            None => "aggregate".into(),
        }
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Collector) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let Some(window) = self.spec.window else {
            return self.accumulate(0, &batch);
        };
        let ends = self.window_ends(&batch, window)?;
        if ends.null_count() > 0 {
            let valid = datafusion::arrow::compute::is_not_null(&ends)?;
            let nulls = datafusion::arrow::compute::is_null(&ends)?;
            self.record_late(&filter_record_batch(&batch, &nulls)?, "event time is NULL")?;
            let batch = filter_record_batch(&batch, &valid)?;
            let ends = datafusion::arrow::compute::filter(&ends, &valid)?;
            return self.process_windows(&batch, ends.as_primitive());
        }
        self.process_windows(&batch, &ends)
    }

    fn on_watermark(
        &mut self,
        watermark: Watermark,
        out: &mut Collector,
    ) -> Result<Option<Watermark>> {
        let Watermark::EventTime(wm) = watermark else {
            return Ok(Some(watermark));
        };
        // Windows close (and rows become late) `lateness` behind the watermark.
        let wm = wm.saturating_sub(self.spec.lateness_nanos);
        if self.watermark.is_some_and(|w| w >= wm) {
            return Ok(None);
        }
        let previous = self.watermark.replace(wm);
        let Some(window) = self.spec.window else {
            return Ok(Some(watermark));
        };
        if self.pane().is_some() {
            self.advance_panes(previous, wm, out)?;
        } else {
            // Windows ending at or before wm are complete.
            let open = self.windows.split_off(&wm.saturating_add(1));
            let closed = std::mem::replace(&mut self.windows, open);
            self.emit_closed(closed, out)?;
        }
        // Rows emitted from now on belong to windows ending after wm, so they start after
        // wm - (longest window): that is the event time downstream can rely on for
        // `window_start`.
        Ok(Some(Watermark::EventTime(
            wm.saturating_sub(window.spec.max_size()),
        )))
    }

    fn tick_interval(&self) -> Option<Duration> {
        match self.spec.emit {
            EmitMode::OnUpdate { refresh } => Some(refresh),
            EmitMode::OnWindowClose => None,
        }
    }

    fn on_tick(&mut self, out: &mut Collector) -> Result<()> {
        if self.spec.emit == EmitMode::OnWindowClose {
            return Ok(());
        }
        self.refresh(out)
    }

    fn before_barrier(&mut self, _barrier: CheckpointBarrier, out: &mut Collector) -> Result<()> {
        if self.spec.emit == EmitMode::OnWindowClose {
            return Ok(());
        }
        self.refresh(out)
    }

    fn on_end(&mut self, out: &mut Collector) -> Result<()> {
        if self.pane().is_some() {
            return self.advance_panes(self.watermark, i64::MAX, out);
        }
        let all = std::mem::take(&mut self.windows);
        self.emit_closed(all, out)
    }

    fn snapshot(&mut self, _barrier: CheckpointBarrier) -> Result<OperatorState> {
        self.snapshot_state()
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        self.restore_state(state)
    }

    fn state_size(&self) -> usize {
        self.windows
            .values()
            .map(|s| {
                s.group_values.size()
                    + s.accumulators.iter().map(|a| a.size()).sum::<usize>()
                    + s.settled.as_ref().map_or(0, settled::Settled::size)
            })
            .sum::<usize>()
            + self
                .frozen
                .values()
                .map(panes::FrozenPane::size)
                .sum::<usize>()
    }

    fn partition_key(&self) -> Option<Vec<Arc<dyn PhysicalExpr>>> {
        // Grouped by window columns alone, every row of a window meets in one group: no key
        // to split by.
        let window_only = self.key_schema.fields().len() == 1
            && self.key_schema.field(0).name() == WINDOW_ONLY_KEY;
        (!window_only).then(|| self.key_exprs.clone())
    }

    fn state_keys(&self, state_rows: &RecordBatch) -> Result<Vec<ArrayRef>> {
        // State rows are `window end, keys…, partial states…` (see checkpoint.rs).
        crate::shards::state_columns(state_rows, 1..=self.key_exprs.len())
    }

    fn describe(&self) -> String {
        let (keys, aggs, emit) = describe_parts(
            &self.spec.group_exprs,
            &self.spec.aggregates,
            self.spec.emit,
            self.spec.lateness_nanos,
        );
        let emit = match self.pane() {
            Some(pane) => format!("{emit} from {} panes", crate::window::humanize_nanos(pane)),
            None => emit,
        };
        format!(
            "{}: group by [{keys}] aggregates [{aggs}] emit {emit}",
            if self.spec.window.is_some() {
                "WindowAggregate"
            } else {
                "Aggregate (updating)"
            }
        )
    }
}

impl WindowAggregate {
    /// Splits a batch (no null windows) by window and folds each part in.
    ///
    /// In-order input, and the copies a hopping window makes, put rows of one window in a few
    /// contiguous runs: each run is folded as a zero-copy slice. Shuffled input (many short runs)
    /// is grouped by window with one sort and one `take` first.
    fn process_windows(&mut self, batch: &RecordBatch, ends: &Int64Array) -> Result<()> {
        if let Some(runs) = runs_of(ends.values(), MAX_RUNS) {
            return self.fold_runs(batch, &runs);
        }
        let order = sort_to_indices(ends, None, None)?;
        let sorted = take_record_batch(batch, &order)?;
        let sorted_ends = take(ends, &order, None)?;
        let runs = runs_of(sorted_ends.as_primitive::<Int64Type>().values(), usize::MAX)
            .unwrap_or_default();
        self.fold_runs(&sorted, &runs)
    }

    fn fold_runs(&mut self, batch: &RecordBatch, runs: &[(i64, usize, usize)]) -> Result<()> {
        let pane = self.pane();
        for &(end, offset, len) in runs {
            let part = batch.slice(offset, len);
            let closed = match pane {
                Some(pane) => self.pane_closed(end, pane),
                None => self.is_closed(end),
            };
            if closed {
                self.record_late(&part, "window already closed")?;
                continue;
            }
            if pane.is_some() && self.frozen.contains_key(&end) {
                self.thaw(end)?;
            }
            self.accumulate(end, &part)?;
        }
        Ok(())
    }
}

/// The state of an open window.
fn window_in(windows: &mut BTreeMap<i64, GroupState>, end: i64) -> Result<&mut GroupState> {
    windows
        .get_mut(&end)
        .ok_or_else(|| EngineError::Internal("window state vanished".into()))
}

/// Above this many runs per batch, sorting by window is cheaper than folding run by run.
const MAX_RUNS: usize = 64;

/// Contiguous runs of equal values as `(value, offset, length)`; None past `limit` runs.
fn runs_of(values: &[i64], limit: usize) -> Option<Vec<(i64, usize, usize)>> {
    let mut runs = Vec::new();
    let mut begin = 0;
    for i in 1..=values.len() {
        if i == values.len() || values[i] != values[begin] {
            if runs.len() == limit {
                return None;
            }
            runs.push((values[begin], begin, i - begin));
            begin = i;
        }
    }
    Some(runs)
}
