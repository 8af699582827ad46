//! The streaming OVER operator: `f(x, …) OVER (PARTITION BY k ORDER BY ts)` run incrementally.
//!
//! ```text
//!  rows ──▶ pending (until the watermark passes them) ──watermark──▶ ready rows
//!             sorted by (key, ts) ─▶ runs of one key ─▶ each call's per-key WindowState
//!             ─▶ input columns + one column per call, appended to the view
//! ```
//!
//! - A row is final once the watermark reaches its event time; only then is it processed, in
//!   event-time order within its key, so out-of-order input within the watermark gives the
//!   same results as sorted input (and as the same query in batch).
//! - Each key keeps one [`WindowState`] per call: O(state) per key, never a recomputation from
//!   the start. Keys idle for `state_ttl` of event time are dropped.
//! - Rows at or below the watermark when they arrive are late: counted and kept in the late-row
//!   log, not scored.
//! - A call that reads ahead (`lead`, [`KeyedWindowFunction::lookahead`]) makes the operator
//!   hold each key's last rows back in `pending` until their followers arrive (or the stream
//!   ends, or the key idles past `state_ttl`); the watermark passed downstream stays below them.
//! - Checkpoints hold, in one Arrow schema, the per-key states (key in Arrow's row format,
//!   last event time, one binary state per call) and the pending rows.

use std::collections::HashMap;
use std::sync::Arc;

use crate::window_function::{KeyedWindowFunction, WindowState};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, RecordBatch,
    TimestampNanosecondArray, new_null_array,
};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::kernels::cmp::{gt, lt_eq};
use datafusion::arrow::compute::{
    SortColumn, cast, concat, concat_batches, filter, filter_record_batch, is_not_null, is_null,
    lexsort_to_indices, not, take, take_record_batch,
};
use datafusion::arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimeUnit, TimestampNanosecondType,
};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};
use crate::late_rows::LateRowLog;
use crate::message::{CheckpointBarrier, Watermark};
use crate::operator::{Collector, StreamOperator};

/// One window function call of the view.
#[derive(Debug, Clone)]
pub struct OverCall {
    /// The call with its constants bound.
    pub function: Arc<dyn KeyedWindowFunction>,
    /// Its arguments, evaluated over the input rows.
    pub args: Vec<Arc<dyn PhysicalExpr>>,
}

/// What the planner decides.
#[derive(Debug, Clone)]
pub struct OverWindowSpec {
    /// Name of the view (for the late-row log).
    pub view: String,
    /// `PARTITION BY` expressions (none: one key for the whole stream).
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// `ORDER BY` expression: the event time.
    pub order_by: Arc<dyn PhysicalExpr>,
    /// The calls, in output order.
    pub calls: Vec<OverCall>,
    /// Input columns followed by one column per call.
    pub output_schema: SchemaRef,
    /// Keys idle for this much event time are forgotten (nanoseconds).
    pub state_ttl: Option<i64>,
}

#[derive(Debug)]
struct KeyState {
    /// Latest event time seen for the key (for `state_ttl`).
    last_ts: i64,
    /// One state per call.
    calls: Vec<Box<dyn WindowState>>,
}

/// The operator.
pub struct OverWindow {
    spec: OverWindowSpec,
    late: Arc<LateRowLog>,
    /// Rows waiting for the watermark to pass their event time, each batch with its event times
    /// (computed once, on arrival) and their range, so a watermark touches only the batches it
    /// releases.
    pending: Vec<Pending>,
    /// Schema of the input (known from the first batch or a restore).
    input_schema: Option<SchemaRef>,
    /// The latest watermark: rows at or below it are final, and late when they arrive.
    watermark: Option<i64>,
    /// Keys in Arrow's row format (one converter, so encoded keys compare and persist).
    converter: Option<RowConverter>,
    states: HashMap<OwnedRow, KeyState>,
    /// Event time of the last sweep for idle keys.
    last_sweep: i64,
    /// Rows after the current one some call reads (`lead`): each key's last this-many released
    /// rows are held back in `pending` until their followers arrive.
    lookahead: usize,
    /// The watermark last passed downstream (held back below rows held for `lookahead`).
    forwarded: Option<i64>,
}

/// A batch of waiting rows.
struct Pending {
    rows: RecordBatch,
    /// Event times of `rows` (nanoseconds, no NULLs).
    ts: ArrayRef,
    min: i64,
    max: i64,
}

impl Pending {
    fn new(rows: RecordBatch, ts: ArrayRef) -> Option<Pending> {
        let times = ts.as_primitive::<TimestampNanosecondType>();
        let min = datafusion::arrow::compute::min(times)?;
        let max = datafusion::arrow::compute::max(times)?;
        Some(Pending { rows, ts, min, max })
    }
}

impl std::fmt::Debug for OverWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverWindow")
            .field("keys", &self.states.len())
            .field("watermark", &self.watermark)
            .finish()
    }
}

impl OverWindow {
    /// An operator for `spec`.
    pub fn new(spec: OverWindowSpec, late: Arc<LateRowLog>) -> Self {
        let lookahead = spec
            .calls
            .iter()
            .map(|c| c.function.lookahead())
            .max()
            .unwrap_or(0);
        Self {
            spec,
            late,
            pending: Vec::new(),
            input_schema: None,
            watermark: None,
            converter: None,
            lookahead,
            states: HashMap::new(),
            last_sweep: i64::MIN,
            forwarded: None,
        }
    }

    /// Keys with state (for `weir_views` figures and tests).
    pub fn key_count(&self) -> usize {
        self.states.len()
    }

    fn event_times(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let ts = self
            .spec
            .order_by
            .evaluate(batch)?
            .into_array(batch.num_rows())?;
        Ok(cast(&ts, &DataType::Timestamp(TimeUnit::Nanosecond, None))?)
    }

    /// The partition key columns of `batch`. Without `PARTITION BY` (or when the planner folded
    /// a constant one away) every row has the same key: one constant column, so the row
    /// converter still has a column to hold a row count.
    fn keys(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        if self.spec.partition_by.is_empty() {
            let all = BooleanBuffer::new_set(batch.num_rows());
            return Ok(vec![Arc::new(BooleanArray::new(all, None))]);
        }
        self.spec
            .partition_by
            .iter()
            .map(|e| Ok(e.evaluate(batch)?.into_array(batch.num_rows())?))
            .collect()
    }

    fn converter(&mut self, keys: &[ArrayRef]) -> Result<&RowConverter> {
        if self.converter.is_none() {
            let fields = keys
                .iter()
                .map(|k| SortField::new(k.data_type().clone()))
                .collect();
            self.converter = Some(RowConverter::new(fields)?);
        }
        self.converter
            .as_ref()
            .ok_or_else(|| EngineError::Internal("row converter missing".into()))
    }

    /// Processes pending rows with event time ≤ `limit`, in (key, event time) order; at the end
    /// of the stream (`finish`) rows held for `lookahead` are released too.
    fn release(&mut self, limit: i64, finish: bool, out: &mut Collector) -> Result<()> {
        let Some(schema) = self.input_schema.clone() else {
            return Ok(());
        };
        let (mut rows, mut times) = (Vec::new(), Vec::new());
        let mut waiting = Vec::with_capacity(self.pending.len());
        for p in std::mem::take(&mut self.pending) {
            if p.min > limit {
                waiting.push(p);
            } else if p.max <= limit {
                rows.push(p.rows);
                times.push(p.ts);
            } else {
                let ready = lt_eq(&p.ts, &TimestampNanosecondArray::new_scalar(limit))?;
                rows.push(filter_record_batch(&p.rows, &ready)?);
                times.push(filter(&p.ts, &ready)?);
                let wait = not(&ready)?;
                waiting.extend(Pending::new(
                    filter_record_batch(&p.rows, &wait)?,
                    filter(&p.ts, &wait)?,
                ));
            }
        }
        self.pending = waiting;
        if rows.is_empty() {
            return Ok(());
        }
        let ready = concat_batches(&schema, &rows)?;
        let refs: Vec<&dyn Array> = times.iter().map(|t| t.as_ref()).collect();
        let ts = concat(&refs)?;
        self.process_ready(&ready, &ts, finish, out)
    }

    fn process_ready(
        &mut self,
        ready: &RecordBatch,
        ts: &ArrayRef,
        finish: bool,
        out: &mut Collector,
    ) -> Result<()> {
        let keys = self.keys(ready)?;
        let mut sort: Vec<SortColumn> = keys
            .iter()
            .map(|k| SortColumn {
                values: Arc::clone(k),
                options: None,
            })
            .collect();
        sort.push(SortColumn {
            values: Arc::clone(ts),
            options: None,
        });
        let order = lexsort_to_indices(&sort, None)?;
        let sorted = take_record_batch(ready, &order)?;
        let ts = take(ts, &order, None)?;
        let times = ts.as_primitive::<TimestampNanosecondType>();
        let keys = keys
            .iter()
            .map(|k| Ok(take(k, &order, None)?))
            .collect::<Result<Vec<_>>>()?;
        let rows = self.converter(&keys)?.convert_columns(&keys)?;
        let args: Vec<Vec<ArrayRef>> = self
            .spec
            .calls
            .iter()
            .map(|c| {
                c.args
                    .iter()
                    .map(|a| Ok(a.evaluate(&sorted)?.into_array(sorted.num_rows())?))
                    .collect::<Result<_>>()
            })
            .collect::<Result<_>>()?;
        // A key idle past `state_ttl` will not get the followers its held rows wait for.
        let idle_before = self
            .spec
            .state_ttl
            .zip(self.watermark)
            .map(|(ttl, wm)| wm.saturating_sub(ttl));
        let mut outputs: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.spec.calls.len()];
        let (mut emitted, mut held): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
        let n = sorted.num_rows();
        let mut start = 0;
        while start < n {
            let mut end = start + 1;
            while end < n && rows.row(end) == rows.row(start) {
                end += 1;
            }
            let last = times.value(end - 1);
            let len = end - start;
            let emit = if finish || idle_before.is_some_and(|h| last <= h) {
                len
            } else {
                len.saturating_sub(self.lookahead)
            };
            let calls = &self.spec.calls;
            let entry = self
                .states
                .entry(rows.row(start).owned())
                .or_insert_with(|| KeyState {
                    last_ts: i64::MIN,
                    calls: calls.iter().map(|c| c.function.new_state()).collect(),
                });
            entry.last_ts = entry.last_ts.max(last);
            if emit > 0 {
                for (i, state) in entry.calls.iter_mut().enumerate() {
                    // Stateful calls consume only the rows released now; a call that reads
                    // ahead sees the held rows too (and sees them again next time).
                    let width = if calls[i].function.lookahead() > 0 {
                        len
                    } else {
                        emit
                    };
                    let slice: Vec<ArrayRef> =
                        args[i].iter().map(|a| a.slice(start, width)).collect();
                    outputs[i].push(state.evaluate(&slice)?.slice(0, emit));
                }
            }
            // Row bookkeeping only for calls that read ahead: without them every row is emitted.
            if self.lookahead > 0 {
                emitted.extend((start..start + emit).map(|i| i as u32));
                held.extend((start + emit..end).map(|i| i as u32));
            }
            start = end;
        }
        let sorted = if held.is_empty() {
            sorted
        } else {
            // Held rows wait with the rows not yet released (and are checkpointed with them).
            let held = datafusion::arrow::array::UInt32Array::from(held);
            self.pending.extend(Pending::new(
                take_record_batch(&sorted, &held)?,
                take(&ts, &held, None)?,
            ));
            take_record_batch(
                &sorted,
                &datafusion::arrow::array::UInt32Array::from(emitted),
            )?
        };
        if sorted.num_rows() == 0 {
            return Ok(());
        }
        let mut columns = sorted.columns().to_vec();
        let fields = self.spec.output_schema.fields();
        for parts in outputs {
            let refs: Vec<&dyn Array> = parts.iter().map(|p| p.as_ref()).collect();
            let column = concat(&refs)?;
            // Rolling aggregates compute in DOUBLE; the plan may declare their input's type.
            let declared = fields.get(columns.len()).map(|f| f.data_type());
            columns.push(match declared {
                Some(t) if t != column.data_type() => cast(&column, t)?,
                _ => column,
            });
        }
        out.data(RecordBatch::try_new(
            Arc::clone(&self.spec.output_schema),
            columns,
        )?);
        Ok(())
    }

    fn sweep(&mut self, watermark: i64) {
        let Some(ttl) = self.spec.state_ttl else {
            return;
        };
        if watermark.saturating_sub(self.last_sweep) < ttl / 4 {
            return;
        }
        self.last_sweep = watermark;
        let horizon = watermark.saturating_sub(ttl);
        self.states.retain(|_, s| s.last_ts > horizon);
    }

    /// Schema of checkpointed state: per-key columns, then the input's columns for pending rows.
    fn state_schema(&self, input: &Schema) -> SchemaRef {
        let mut fields = vec![
            Field::new(KEY_COLUMN, DataType::Binary, true),
            Field::new(LAST_TS_COLUMN, DataType::Int64, true),
        ];
        fields.extend(
            (0..self.spec.calls.len())
                .map(|i| Field::new(format!("__state_{i}"), DataType::Binary, true)),
        );
        fields.extend(
            input
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        Arc::new(Schema::new(fields))
    }
}

const KEY_COLUMN: &str = "__key";
const LAST_TS_COLUMN: &str = "__last_ts";
const WATERMARK_VALUE: &str = "watermark";

impl StreamOperator for OverWindow {
    fn name(&self) -> String {
        "over window".into()
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Collector) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.input_schema.is_none() {
            self.input_schema = Some(batch.schema());
        }
        let ts = self.event_times(&batch)?;
        if ts.null_count() > 0 {
            self.late.record(
                &self.spec.view,
                &filter_record_batch(&batch, &is_null(&ts)?)?,
                "event time is NULL",
            )?;
        }
        let on_time: BooleanArray = match self.watermark {
            Some(wm) => {
                let wm = TimestampNanosecondArray::new_scalar(wm);
                let late = lt_eq(&ts, &wm)?;
                if late.true_count() > 0 {
                    self.late.record(
                        &self.spec.view,
                        &filter_record_batch(&batch, &late)?,
                        "event time at or below the watermark",
                    )?;
                }
                gt(&ts, &wm)?
            }
            None => is_not_null(&ts)?,
        };
        let keep = filter_record_batch(&batch, &on_time)?;
        if keep.num_rows() > 0 {
            self.pending
                .extend(Pending::new(keep, filter(&ts, &on_time)?));
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Watermark,
        out: &mut Collector,
    ) -> Result<Option<Watermark>> {
        let Watermark::EventTime(wm) = watermark else {
            return Ok(Some(watermark));
        };
        if self.watermark.is_some_and(|w| w >= wm) {
            return Ok(None);
        }
        self.watermark = Some(wm);
        self.release(wm, false, out)?;
        self.sweep(wm);
        // Rows held back for `lead` are still to come: downstream must not think them late.
        let held = self
            .pending
            .iter()
            .filter(|p| p.min <= wm)
            .map(|p| p.min)
            .min();
        let forward = held.map_or(wm, |h| wm.min(h.saturating_sub(1)));
        if self.forwarded.is_some_and(|f| f >= forward) {
            return Ok(None);
        }
        self.forwarded = Some(forward);
        Ok(Some(Watermark::EventTime(forward)))
    }

    fn on_end(&mut self, out: &mut Collector) -> Result<()> {
        self.release(i64::MAX, true, out)
    }

    fn snapshot(&mut self, _barrier: CheckpointBarrier) -> Result<OperatorState> {
        let mut state = OperatorState::default();
        if let Some(wm) = self.watermark {
            state.values.insert(WATERMARK_VALUE.into(), wm);
        }
        let Some(input) = self.input_schema.clone() else {
            return Ok(state);
        };
        let schema = self.state_schema(&input);
        let calls = self.spec.calls.len();
        if !self.states.is_empty() {
            let n = self.states.len();
            let mut key_bytes = Vec::with_capacity(n);
            let mut last = Vec::with_capacity(n);
            let mut blobs: Vec<Vec<Vec<u8>>> = vec![Vec::with_capacity(n); calls];
            for (key, s) in &self.states {
                key_bytes.push(key.as_ref().to_vec());
                last.push(s.last_ts);
                for (i, call) in s.calls.iter().enumerate() {
                    blobs[i].push(call.save()?);
                }
            }
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(BinaryArray::from_iter_values(key_bytes.iter())),
                Arc::new(Int64Array::from(last)),
            ];
            columns.extend(
                blobs
                    .iter()
                    .map(|b| Arc::new(BinaryArray::from_iter_values(b.iter())) as ArrayRef),
            );
            columns.extend(
                input
                    .fields()
                    .iter()
                    .map(|f| new_null_array(f.data_type(), n)),
            );
            state
                .batches
                .push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
        }
        for batch in self.pending.iter().map(|p| &p.rows) {
            let n = batch.num_rows();
            let mut columns: Vec<ArrayRef> = (0..calls + 2)
                .map(|i| new_null_array(schema.field(i).data_type(), n))
                .collect();
            columns.extend(batch.columns().iter().cloned());
            state
                .batches
                .push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
        }
        if !state.batches.is_empty() {
            state.schema = Some(schema);
        }
        Ok(state)
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        self.watermark = state.values.get(WATERMARK_VALUE).copied();
        let calls = self.spec.calls.len();
        let input_columns = self.spec.output_schema.fields().len().saturating_sub(calls);
        let input_schema = Arc::new(Schema::new(
            self.spec.output_schema.fields()[..input_columns].to_vec(),
        ));
        self.input_schema = Some(Arc::clone(&input_schema));
        for batch in &state.batches {
            if batch.num_columns() != calls + 2 + input_columns {
                return Err(EngineError::Internal(
                    "over-window state does not match the view".into(),
                ));
            }
            let keys = batch.column(0);
            let pending = filter_record_batch(batch, &is_null(keys)?)?;
            if pending.num_rows() > 0 {
                let columns = pending.columns()[calls + 2..]
                    .iter()
                    .zip(input_schema.fields())
                    .map(|(c, f)| Ok(cast(c, f.data_type())?))
                    .collect::<Result<Vec<_>>>()?;
                let rows = RecordBatch::try_new(Arc::clone(&input_schema), columns)?;
                let ts = self.event_times(&rows)?;
                self.pending.extend(Pending::new(rows, ts));
            }
            let per_key = filter_record_batch(batch, &is_not_null(keys)?)?;
            if per_key.num_rows() == 0 {
                continue;
            }
            let key_bytes = per_key.column(0).as_binary::<i32>();
            let last = cast(per_key.column(1), &DataType::Int64)?;
            let last = last.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            let empty = self.keys(&RecordBatch::new_empty(Arc::clone(&input_schema)))?;
            let parser = self.converter(&empty)?.parser();
            for row in 0..per_key.num_rows() {
                let key = parser.parse(key_bytes.value(row)).owned();
                let mut states = Vec::with_capacity(calls);
                for (i, call) in self.spec.calls.iter().enumerate() {
                    let blobs = per_key.column(2 + i).as_binary::<i32>();
                    states.push(call.function.load_state(blobs.value(row))?);
                }
                self.states.insert(
                    key,
                    KeyState {
                        last_ts: last.value(row),
                        calls: states,
                    },
                );
            }
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        let keys: usize = self
            .states
            .iter()
            .map(|(k, s)| k.as_ref().len() + 16 + s.calls.iter().map(|c| c.size()).sum::<usize>())
            .sum();
        keys + self
            .pending
            .iter()
            .map(|p| p.rows.get_array_memory_size() + p.ts.get_array_memory_size())
            .sum::<usize>()
    }

    fn describe(&self) -> String {
        let keys: Vec<String> = self
            .spec
            .partition_by
            .iter()
            .map(|e| e.to_string())
            .collect();
        let calls: Vec<String> = self
            .spec
            .calls
            .iter()
            .map(|c| c.function.name().to_string())
            .collect();
        let ttl = self.spec.state_ttl.map_or(String::new(), |t| {
            format!(" state_ttl {}", crate::window::humanize_nanos(t))
        });
        format!(
            "OverWindow: partition by [{}] order by {} calls [{}]{ttl} (rows released in event-time order as the watermark passes them)",
            keys.join(", "),
            self.spec.order_by,
            calls.join(", ")
        )
    }
}
