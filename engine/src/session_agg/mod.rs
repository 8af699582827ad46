//! The session aggregate: `GROUP BY window_start, window_end, keys…` over `SESSION(src, ts, gap)`.
//!
//! Rows of one key less than `gap` apart share a session, `[first row, last row + gap)`; a row
//! that reaches two sessions merges them. Each batch is sorted by key and time once; the rows
//! of a key then fall into chains of rows closer than the gap, and each chain is one lookup in
//! the [`store::SessionStore`] and one `update_batch` per aggregate over zero-copy slices. Each
//! session holds one DataFusion `Accumulator` per aggregate (any aggregate: merging sessions
//! merges their partial states), so percentiles and distinct counts work as they do in batch.
//!
//! A row is late when it is behind the watermark (less the allowed lateness): sessions close
//! once the watermark passes their end, so only such a row could reach one already emitted.
//! Rows at or after the watermark never do, which is also why closing a session a little after
//! the watermark passes its end (see the store) changes nothing but when it is emitted. Late rows go to `weir_late_rows`.
//!
//! Emission:
//! - `OnWindowClose`: a session is emitted once, as an insert, when the watermark passes its end.
//! - `OnUpdate`: every refresh emits the sessions that changed: inserts for new ones, update
//!   pairs when only values changed, and a delete plus an insert when the session grew (its
//!   `window_start`/`window_end`, part of the row's key, changed) or merged (the absorbed
//!   session's row is deleted). Changes wait for the refresh, except that before a watermark is
//!   passed on they are flushed if one would replace a row with `window_end <= watermark`, so
//!   rows downstream are final once the watermark passes their end.
//!
//! The output watermark is the input's: every later row belongs to a session ending after it,
//! so downstream the watermark holds for `window_end`, not `window_start`.

mod checkpoint;
mod output;
mod store;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::{filter, filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal};

use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};
use crate::late_rows::LateRowLog;
use crate::message::{CheckpointBarrier, Watermark};
use crate::operator::{Collector, StreamOperator};
use crate::time::{nanos_per_unit, timestamp_unit, timestamp_values};
use crate::window::{WINDOW_END, WINDOW_START, humanize_nanos};
use crate::window_agg::{AggregateCall, EmitMode};
use output::ChangeRows;
use store::{EmittedRow, Session, SessionStore};

/// Everything needed to build a [`SessionAggregate`].
#[derive(Debug, Clone)]
pub struct SessionAggregateSpec {
    /// Name of the view (for the late-row log).
    pub view: String,
    /// Group expressions over the input: `window_start` / `window_end` columns and keys.
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The event time of each input row plus `time_shift_nanos` (`SESSION` sets
    /// `window_start` to the time and `window_end` to the time plus the gap).
    pub time: Arc<dyn PhysicalExpr>,
    /// What `time` adds to the event time.
    pub time_shift_nanos: i64,
    /// Its type (a timestamp), which the window columns share.
    pub time_type: DataType,
    /// Aggregates over the input.
    pub aggregates: Vec<AggregateCall>,
    /// Output schema: group columns, then aggregate columns.
    pub output_schema: SchemaRef,
    /// Inactivity that closes a session, in nanoseconds.
    pub gap_nanos: i64,
    /// Allowed lateness: sessions close this long after the watermark passes their end, and
    /// rows that late still join them.
    pub lateness_nanos: i64,
    /// Emission policy.
    pub emit: EmitMode,
}

/// Where an output group column comes from.
#[derive(Debug, Clone, Copy)]
enum GroupColumn {
    Key(usize),
    Start,
    End,
}

/// The session aggregate operator; see the module docs.
pub struct SessionAggregate {
    spec: SessionAggregateSpec,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    layout: Vec<GroupColumn>,
    converter: RowConverter,
    /// Nanoseconds per unit of the time column.
    per: i64,
    store: SessionStore,
    watermark: Option<i64>,
    late: Arc<LateRowLog>,
    /// Columns of partial state per aggregate.
    state_widths: Vec<usize>,
    /// `state_size` is asked after every batch but walks every session: the last answer and
    /// when it was computed.
    size_cache: std::cell::Cell<Option<(Instant, usize)>>,
}

/// How long a computed state size is reused.
const SIZE_CACHE_FOR: Duration = Duration::from_secs(2);

impl std::fmt::Debug for SessionAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAggregate")
            .field("sessions", &self.store.len())
            .finish()
    }
}

impl SessionAggregate {
    /// Builds the operator.
    pub fn try_new(spec: SessionAggregateSpec, late: Arc<LateRowLog>) -> Result<Self> {
        let mut key_exprs = Vec::new();
        let mut key_fields = Vec::new();
        let mut layout = Vec::new();
        for (expr, field) in spec.group_exprs.iter().zip(spec.output_schema.fields()) {
            match expr.as_ref().downcast_ref::<Column>().map(Column::name) {
                Some(WINDOW_START) => layout.push(GroupColumn::Start),
                Some(WINDOW_END) => layout.push(GroupColumn::End),
                _ => {
                    layout.push(GroupColumn::Key(key_exprs.len()));
                    key_exprs.push(Arc::clone(expr));
                    key_fields.push(SortField::new(field.data_type().clone()));
                }
            }
        }
        if key_exprs.is_empty() {
            // Sessions of the whole stream: one constant key.
            key_exprs.push(Arc::new(Literal::new(ScalarValue::Int8(Some(0)))));
            key_fields.push(SortField::new(DataType::Int8));
        }
        let unit = timestamp_unit(&spec.time_type, WINDOW_START)?;
        let state_widths = spec
            .aggregates
            .iter()
            .map(|a| Ok(a.function.state_fields()?.len()))
            .collect::<Result<Vec<usize>>>()?;
        let store = SessionStore::new(spec.gap_nanos);
        Ok(Self {
            converter: RowConverter::new(key_fields)?,
            per: nanos_per_unit(unit),
            spec,
            key_exprs,
            layout,
            store,
            watermark: None,
            late,
            state_widths,
            size_cache: std::cell::Cell::new(None),
        })
    }

    fn new_accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        new_accumulators(&self.spec.aggregates)
    }

    /// Splits off rows that can no longer join an open session (and NULL times) into the
    /// late-row log; returns the rest with their times in nanoseconds.
    fn on_time_rows(&self, batch: RecordBatch) -> Result<(RecordBatch, Vec<i64>)> {
        let n = batch.num_rows();
        let times = self.spec.time.evaluate(&batch)?.into_array(n)?;
        let values = timestamp_values(&times)?;
        let (per, shift) = (self.per, self.spec.time_shift_nanos);
        let nanos: Vec<i64> = values
            .values()
            .iter()
            .map(|v| v.saturating_mul(per).saturating_sub(shift))
            .collect();
        let horizon = self.watermark.unwrap_or(i64::MIN);
        let on_time = BooleanArray::new(
            BooleanBuffer::collect_bool(n, |i| nanos[i] >= horizon),
            values.nulls().cloned(),
        );
        if on_time.true_count() == n {
            return Ok((batch, nanos));
        }
        let nulls = datafusion::arrow::compute::is_null(&values)?;
        self.record_late(&filter_record_batch(&batch, &nulls)?, "event time is NULL")?;
        let too_late = BooleanArray::new(
            BooleanBuffer::collect_bool(n, |i| nanos[i] < horizon),
            values.nulls().cloned(),
        );
        self.record_late(
            &filter_record_batch(&batch, &too_late)?,
            "behind the watermark (its session may be closed)",
        )?;
        let kept = filter(&Int64Array::from(nanos), &on_time)?;
        Ok((
            filter_record_batch(&batch, &on_time)?,
            kept.as_primitive::<Int64Type>().values().to_vec(),
        ))
    }

    fn record_late(&self, batch: &RecordBatch, reason: &'static str) -> Result<()> {
        if batch.num_rows() > 0 {
            self.late.record(&self.spec.view, batch, reason)?;
        }
        Ok(())
    }

    /// Folds on-time rows into their sessions.
    fn fold(&mut self, batch: &RecordBatch, nanos: &[i64]) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys = self
            .key_exprs
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(n))
            .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
        let rows = self.converter.convert_columns(&keys)?;
        // Each row's key slot (one hash lookup per row), then rows ordered by slot and time:
        // integer comparisons, no key bytes compared while sorting.
        let slots: Vec<u32> = (0..n)
            .map(|i| self.store.slot_for(rows.row(i).as_ref()))
            .collect();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by_key(|&i| (slots[i as usize], nanos[i as usize]));
        let times: Vec<i64> = order.iter().map(|&i| nanos[i as usize]).collect();
        let indices = UInt32Array::from(order.clone());
        let mut inputs = Vec::with_capacity(self.spec.aggregates.len());
        for call in &self.spec.aggregates {
            let args = call
                .inputs()
                .iter()
                .map(|e| Ok(take(&e.evaluate(batch)?.into_array(n)?, &indices, None)?))
                .collect::<Result<Vec<ArrayRef>>>()?;
            let keep = match &call.filter {
                Some(f) => Some(take(&f.evaluate(batch)?.into_array(n)?, &indices, None)?),
                None => None,
            };
            inputs.push((args, keep));
        }
        let gap = self.spec.gap_nanos;
        // Reused for every chain's argument slices.
        let mut scratch: Vec<ArrayRef> = Vec::new();
        let mut first = 0;
        while first < n {
            let slot = slots[order[first] as usize];
            let mut end = first + 1;
            while end < n && slots[order[end] as usize] == slot {
                end += 1;
            }
            // Chains of rows closer than the gap within this key's rows.
            let mut chain = first;
            while chain < end {
                let mut last = chain;
                while last + 1 < end && times[last + 1] - times[last] < gap {
                    last += 1;
                }
                let aggregates = &self.spec.aggregates;
                let fresh = || new_accumulators(aggregates);
                let session = self.store.session_for(
                    slot,
                    times[chain],
                    times[last],
                    gap,
                    fresh,
                    merge_sessions,
                )?;
                fold_slice(session, &inputs, chain, last + 1 - chain, &mut scratch)?;
                chain = last + 1;
            }
            first = end;
        }
        Ok(())
    }

    /// The row a session shows now.
    fn current(&self, session: &mut Session) -> Result<EmittedRow> {
        let values = session
            .accumulators
            .iter_mut()
            .map(|a| Ok(a.evaluate()?))
            .collect::<Result<Vec<ScalarValue>>>()?;
        Ok(EmittedRow {
            start: session.start,
            end: session.end,
            values,
        })
    }

    /// `OnUpdate`: the changes of every session merged away or changed since the last flush.
    fn flush(&mut self, out: &mut Collector) -> Result<()> {
        let mut changes = ChangeRows::default();
        for (key, row) in self.store.take_retired() {
            changes.delete(key, row);
        }
        let mut store = std::mem::take(&mut self.store);
        let flushed = store.for_each_dirty(|key, session| {
            let now = self.current(session)?;
            changes.follow(key, session.emitted.replace(now.clone()), now);
            Ok(())
        });
        self.store = store;
        flushed?;
        self.emit(changes, out)
    }

    /// Moves the (lateness-adjusted) watermark to `wm`: flushes pending changes when one
    /// replaces a row the watermark is about to make final (otherwise they wait for the refresh),
    /// then emits the sessions it closes.
    fn advance(&mut self, wm: i64, out: &mut Collector) -> Result<()> {
        self.watermark = Some(wm);
        if matches!(self.spec.emit, EmitMode::OnUpdate { .. }) && self.store.pending_before(wm) {
            self.flush(out)?;
        }
        let mut changes = ChangeRows::default();
        for mut ended in self.store.close_until(wm) {
            let now = self.current(&mut ended.session)?;
            match self.spec.emit {
                EmitMode::OnWindowClose => changes.insert(ended.key, now),
                EmitMode::OnUpdate { .. } => {
                    changes.follow(&ended.key, ended.session.emitted.take(), now);
                }
            }
        }
        self.emit(changes, out)
    }

    fn emit(&self, changes: ChangeRows, out: &mut Collector) -> Result<()> {
        if let Some(changes) = changes.finish(self)? {
            out.changes(changes);
        }
        Ok(())
    }
}

fn new_accumulators(aggregates: &[AggregateCall]) -> Result<Vec<Box<dyn Accumulator>>> {
    aggregates
        .iter()
        .map(|a| Ok(a.function.create_accumulator()?))
        .collect()
}

/// Folds sorted rows `offset..offset + len` into `session`'s accumulators (`slices`: a reused
/// buffer).
fn fold_slice(
    session: &mut Session,
    inputs: &[(Vec<ArrayRef>, Option<ArrayRef>)],
    offset: usize,
    len: usize,
    slices: &mut Vec<ArrayRef>,
) -> Result<()> {
    for (acc, (args, keep)) in session.accumulators.iter_mut().zip(inputs) {
        slices.clear();
        slices.extend(args.iter().map(|a| a.slice(offset, len)));
        if let Some(keep) = keep {
            let keep = keep.slice(offset, len);
            let keep = keep
                .as_boolean_opt()
                .ok_or_else(|| EngineError::Internal("aggregate FILTER is not boolean".into()))?;
            for slice in slices.iter_mut() {
                *slice = filter(slice, keep)?;
            }
        }
        acc.update_batch(slices)?;
    }
    Ok(())
}

/// Folds `other`'s partial states into `survivor`'s accumulators.
fn merge_sessions(survivor: &mut Session, mut other: Session) -> Result<()> {
    for (acc, absorbed) in survivor
        .accumulators
        .iter_mut()
        .zip(other.accumulators.iter_mut())
    {
        let state = absorbed
            .state()?
            .iter()
            .map(|v| Ok(v.to_array()?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        acc.merge_batch(&state)?;
    }
    Ok(())
}

impl StreamOperator for SessionAggregate {
    fn name(&self) -> String {
        "session aggregate".into()
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Collector) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let (batch, nanos) = self.on_time_rows(batch)?;
        self.fold(&batch, &nanos)
    }

    fn on_watermark(
        &mut self,
        watermark: Watermark,
        out: &mut Collector,
    ) -> Result<Option<Watermark>> {
        let Watermark::EventTime(wm) = watermark else {
            return Ok(Some(watermark));
        };
        // Sessions close (and rows become late) `lateness` behind the watermark.
        let wm = wm.saturating_sub(self.spec.lateness_nanos);
        if self.watermark.is_some_and(|w| w >= wm) {
            return Ok(None);
        }
        self.advance(wm, out)?;
        Ok(Some(Watermark::EventTime(wm)))
    }

    fn tick_interval(&self) -> Option<Duration> {
        match self.spec.emit {
            EmitMode::OnUpdate { refresh } => Some(refresh),
            EmitMode::OnWindowClose => None,
        }
    }

    fn on_tick(&mut self, out: &mut Collector) -> Result<()> {
        match self.spec.emit {
            EmitMode::OnUpdate { .. } => self.flush(out),
            EmitMode::OnWindowClose => Ok(()),
        }
    }

    fn before_barrier(&mut self, _barrier: CheckpointBarrier, out: &mut Collector) -> Result<()> {
        self.on_tick(out)
    }

    fn on_end(&mut self, out: &mut Collector) -> Result<()> {
        self.advance(i64::MAX, out)
    }

    fn snapshot(&mut self, _barrier: CheckpointBarrier) -> Result<OperatorState> {
        self.snapshot_sessions()
    }

    fn partition_key(&self) -> Option<Vec<Arc<dyn PhysicalExpr>>> {
        // A key's sessions depend only on that key's rows, so keys can go to different shards;
        // sessions of the whole stream (the constant key) cannot be split.
        let whole_stream = matches!(self.key_exprs.as_slice(), [only] if only.as_ref().downcast_ref::<Literal>().is_some());
        (!whole_stream).then(|| self.key_exprs.clone())
    }

    fn state_keys(&self, state_rows: &RecordBatch) -> Result<Vec<ArrayRef>> {
        // State rows are `keys…, start, end, partial states…` (see checkpoint.rs).
        crate::shards::state_columns(state_rows, 0..self.key_exprs.len())
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        self.restore_sessions(state)
    }

    fn state_size(&self) -> usize {
        if let Some((at, size)) = self.size_cache.get()
            && at.elapsed() < SIZE_CACHE_FOR
        {
            return size;
        }
        let size = self.store.size();
        self.size_cache.set(Some((Instant::now(), size)));
        size
    }

    fn describe(&self) -> String {
        let (keys, aggs, emit) = crate::window_agg::describe_parts(
            &self.spec.group_exprs,
            &self.spec.aggregates,
            self.spec.emit,
            self.spec.lateness_nanos,
        );
        format!(
            "SessionAggregate: group by [{keys}] aggregates [{aggs}] gap={} emit {emit}",
            humanize_nanos(self.spec.gap_nanos)
        )
    }
}

/// A nullable field for checkpointed state columns.
fn state_field(name: String, data_type: &DataType) -> Field {
    Field::new(name, data_type.clone(), true)
}

/// The schema of checkpointed sessions.
fn state_schema(columns: &[ArrayRef]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .enumerate()
            .map(|(i, c)| state_field(format!("c{i}"), c.data_type()))
            .collect::<Vec<_>>(),
    ))
}
