//! `GROUP BY` over an updating stream: rows come and go, and each group's aggregates follow.
//!
//! Each group has one DataFusion "sliding" `Accumulator` per aggregate: the kind DataFusion's
//! window frames use, with `retract_batch` as the inverse of `update_batch`. A batch of changes
//! is interned to group ids (DataFusion's `GroupValues`, vectorised), ordered by group, and each
//! touched group gets one `update_batch` for its added rows and one `retract_batch` for its
//! retracted rows. Only aggregates whose retraction is exact in any order are accepted
//! ([`RETRACTABLE`]). DataFusion's sliding `min`/`max` assume first-in-first-out retraction,
//! which an updating stream does not give, so `min`/`max` keep every live value with its count
//! instead ([`MultisetExtreme`]).
//!
//! A hidden count of live input rows per group decides whether the group exists. Every
//! `refresh` (and before each checkpoint barrier) the groups touched since the last refresh are
//! evaluated and compared with what was last emitted: a new group is an insert, a changed one
//! an update pair, a group whose last row was retracted a delete. Work is proportional to the
//! touched groups, not to the view.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::changes::{Changes, Op};
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};
use crate::message::CheckpointBarrier;
use crate::multiset_extreme::{Extreme, MultisetExtreme};
use crate::operator::{Collector, StreamOperator};
use crate::window_agg::AggregateCall;

/// Aggregates whose retraction is exact in any order.
pub const RETRACTABLE: &[&str] = &[
    "count",
    "min",
    "max",
    "sum",
    "avg",
    "mean",
    "var",
    "var_samp",
    "var_pop",
    "variance",
    "variance_samp",
    "variance_pop",
    "stddev",
    "stddev_samp",
    "stddev_pop",
];

/// Everything needed to build a [`RetractAggregate`].
#[derive(Debug, Clone)]
pub struct RetractAggregateSpec {
    /// Group expressions over the input schema.
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Aggregates over the input schema, each in [`RETRACTABLE`].
    pub aggregates: Vec<AggregateCall>,
    /// Output schema: group columns, then aggregate columns.
    pub output_schema: SchemaRef,
    /// How often touched groups are emitted.
    pub refresh: Duration,
}

/// One group's state.
struct Group {
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Live input rows.
    rows: i64,
    /// Values last emitted (None: the group is not in the output).
    emitted: Option<Vec<ScalarValue>>,
    dirty: bool,
}

/// The retracting aggregate operator; see the module docs.
pub struct RetractAggregate {
    spec: RetractAggregateSpec,
    /// Per aggregate: `min`/`max` and their argument's type, kept as a multiset of values.
    extremes: Vec<Option<(Extreme, DataType)>>,
    key_schema: SchemaRef,
    ids: Box<dyn GroupValues>,
    groups: Vec<Group>,
    /// Each group's key: (batch in `keys`, row).
    key_at: Vec<(usize, usize)>,
    keys: Vec<Vec<ArrayRef>>,
    dirty: Vec<usize>,
    scratch: Vec<usize>,
}

impl RetractAggregate {
    /// An operator for `spec`; fails on an aggregate outside [`RETRACTABLE`].
    pub fn try_new(spec: RetractAggregateSpec, input: &Schema) -> Result<Self> {
        for call in &spec.aggregates {
            let name = call.function.fun().name().to_ascii_lowercase();
            if !RETRACTABLE.contains(&name.as_str()) || call.function.is_distinct() {
                return Err(EngineError::NotSupported(format!(
                    "{}{} over an updating view (aggregates that can take rows back: {})",
                    name,
                    if call.function.is_distinct() {
                        "(DISTINCT …)"
                    } else {
                        ""
                    },
                    RETRACTABLE.join(", ")
                )));
            }
        }
        let extremes = spec
            .aggregates
            .iter()
            .map(|call| {
                let extreme = match call.function.fun().name().to_ascii_lowercase().as_str() {
                    "min" => Extreme::Min,
                    "max" => Extreme::Max,
                    _ => return Ok(None),
                };
                let arg = call
                    .function
                    .expressions()
                    .first()
                    .cloned()
                    .ok_or_else(|| EngineError::Internal("min/max without an argument".into()))?;
                Ok(Some((extreme, arg.data_type(input)?)))
            })
            .collect::<Result<Vec<_>>>()?;
        let fields = spec
            .group_exprs
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Ok(Field::new(
                    format!("k{i}"),
                    e.data_type(input)?,
                    e.nullable(input)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let key_schema = Arc::new(Schema::new(fields));
        let ids = new_group_values(Arc::clone(&key_schema), &GroupOrdering::None)?;
        Ok(Self {
            spec,
            extremes,
            key_schema,
            ids,
            groups: Vec::new(),
            key_at: Vec::new(),
            keys: Vec::new(),
            dirty: Vec::new(),
            scratch: Vec::new(),
        })
    }

    fn new_group(&self) -> Result<Group> {
        Ok(Group {
            accumulators: self
                .spec
                .aggregates
                .iter()
                .zip(&self.extremes)
                .map(|(a, extreme)| match extreme {
                    Some((which, data_type)) => {
                        Ok(Box::new(MultisetExtreme::try_new(*which, data_type)?)
                            as Box<dyn Accumulator>)
                    }
                    None => a.function.create_sliding_accumulator(),
                })
                .collect::<datafusion::error::Result<_>>()?,
            rows: 0,
            emitted: None,
            dirty: false,
        })
    }

    /// Interns `keys`, creating state (and keeping the key) for groups seen for the first time.
    fn intern(&mut self, keys: &[ArrayRef]) -> Result<Vec<usize>> {
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        self.ids.intern(keys, &mut ids)?;
        let known = self.groups.len();
        if self.ids.len() > known {
            let mut first = vec![u32::MAX; self.ids.len() - known];
            for (row, &id) in ids.iter().enumerate() {
                if id >= known && first[id - known] == u32::MAX {
                    first[id - known] = row as u32;
                }
            }
            let rows = UInt32Array::from(first);
            let taken = keys
                .iter()
                .map(|k| take(k.as_ref(), &rows, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let batch = self.keys.len();
            self.keys.push(taken);
            for i in 0..rows.len() {
                self.key_at.push((batch, i));
                let group = self.new_group()?;
                self.groups.push(group);
            }
        }
        Ok(ids)
    }

    /// Emits what changed in every group touched since the last refresh.
    fn refresh(&mut self, out: &mut Collector) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        // Per output row: the group and the values it shows.
        let mut rows: Vec<(usize, Vec<ScalarValue>)> = Vec::new();
        let mut ops: Vec<u8> = Vec::new();
        for id in dirty {
            // Only a group that lost its last row starts afresh.
            let fresh = match self.groups[id].rows {
                0 => Some(self.new_group()?),
                _ => None,
            };
            let group = &mut self.groups[id];
            group.dirty = false;
            if group.rows < 0 {
                return Err(EngineError::Internal(
                    "retracting aggregate: a group lost more rows than it had".into(),
                ));
            }
            if group.rows == 0 {
                if let Some(old) = group.emitted.take() {
                    rows.push((id, old));
                    ops.push(Op::Delete as u8);
                }
                // A group with no rows starts afresh (this also drops float drift).
                if let Some(fresh) = fresh {
                    group.accumulators = fresh.accumulators;
                }
                continue;
            }
            let now = group
                .accumulators
                .iter_mut()
                .map(|a| a.evaluate())
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            match group.emitted.replace(now.clone()) {
                None => {
                    rows.push((id, now));
                    ops.push(Op::Insert as u8);
                }
                Some(old) if old != now => {
                    rows.push((id, old));
                    rows.push((id, now));
                    ops.extend([Op::UpdateBefore as u8, Op::UpdateAfter as u8]);
                }
                Some(_) => {}
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let batch = self.output(&rows)?;
        out.changes(Changes::try_new(batch, ops.into())?);
        Ok(())
    }

    /// Output rows: each group's key, then the given aggregate values.
    fn output(&self, rows: &[(usize, Vec<ScalarValue>)]) -> Result<RecordBatch> {
        let positions: Vec<(usize, usize)> = rows.iter().map(|(id, _)| self.key_at[*id]).collect();
        let mut columns = Vec::with_capacity(self.spec.output_schema.fields().len());
        for k in 0..self.key_schema.fields().len() {
            let sources: Vec<&dyn Array> = self.keys.iter().map(|b| b[k].as_ref()).collect();
            columns.push(interleave(&sources, &positions)?);
        }
        for a in 0..self.spec.aggregates.len() {
            let values = rows.iter().map(|(_, v)| v[a].clone());
            columns.push(ScalarValue::iter_to_array(values)?);
        }
        // Aggregates may type their output differently in detail (e.g. Decimal precision):
        // the plan's schema names the columns, the accumulators' values fill them.
        let columns = columns
            .into_iter()
            .zip(self.spec.output_schema.fields())
            .map(|(c, f)| match c.data_type() == f.data_type() {
                true => Ok(c),
                false => datafusion::arrow::compute::cast(&c, f.data_type()),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(
            Arc::clone(&self.spec.output_schema),
            columns,
        )?)
    }

    /// The aggregates' argument columns for `rows`, with each aggregate's `FILTER` applied as a
    /// mask (rows it excludes are left out of that aggregate).
    fn arguments(
        &self,
        rows: &RecordBatch,
    ) -> Result<
        Vec<(
            Vec<ArrayRef>,
            Option<datafusion::arrow::array::BooleanArray>,
        )>,
    > {
        self.spec
            .aggregates
            .iter()
            .map(|call| {
                let args = call
                    .function
                    .expressions()
                    .iter()
                    .map(|e| e.evaluate(rows)?.into_array(rows.num_rows()))
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                let mask = match &call.filter {
                    Some(f) => Some(
                        f.evaluate(rows)?
                            .into_array(rows.num_rows())?
                            .as_boolean_opt()
                            .cloned()
                            .ok_or_else(|| {
                                EngineError::Internal("FILTER did not return booleans".into())
                            })?,
                    ),
                    None => None,
                };
                Ok((args, mask))
            })
            .collect()
    }
}

impl StreamOperator for RetractAggregate {
    fn name(&self) -> String {
        "retracting aggregate".into()
    }

    fn partition_key(&self) -> Option<Vec<Arc<dyn PhysicalExpr>>> {
        (!self.spec.group_exprs.is_empty()).then(|| self.spec.group_exprs.clone())
    }

    fn state_keys(&self, state_rows: &RecordBatch) -> Result<Vec<ArrayRef>> {
        // State rows are `keys…, live rows, accumulator states…` (see `snapshot`).
        crate::shards::state_columns(state_rows, 0..self.key_schema.fields().len())
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        self.process_changes(Changes::inserts(batch), out)
    }

    fn process_changes(&mut self, changes: Changes, _out: &mut Collector) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let rows = changes.rows();
        let keys = self
            .spec
            .group_exprs
            .iter()
            .map(|e| e.evaluate(rows)?.into_array(rows.num_rows()))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let ids = self.intern(&keys)?;
        let arguments = self.arguments(rows)?;
        // Rows by group: a stable counting sort of row indices on group id.
        let mut order: Vec<u32> = (0..rows.num_rows() as u32).collect();
        order.sort_by_key(|&r| ids[r as usize]);
        let mut start = 0;
        while start < order.len() {
            let id = ids[order[start] as usize];
            let end = order[start..]
                .iter()
                .position(|&r| ids[r as usize] != id)
                .map_or(order.len(), |n| start + n);
            let run = &order[start..end];
            let (retracted, added): (Vec<u32>, Vec<u32>) = run
                .iter()
                .partition(|&&r| changes.op(r as usize).is_retraction());
            let group = &mut self.groups[id];
            group.rows += added.len() as i64 - retracted.len() as i64;
            for ((args, mask), acc) in arguments.iter().zip(group.accumulators.iter_mut()) {
                let keep = |r: &&u32| {
                    mask.as_ref()
                        .is_none_or(|m| m.is_valid(**r as usize) && m.value(**r as usize))
                };
                for (indices, retract) in [(&added, false), (&retracted, true)] {
                    let indices: UInt32Array = indices.iter().filter(keep).copied().collect();
                    if indices.is_empty() {
                        continue;
                    }
                    let values = args
                        .iter()
                        .map(|a| take(a.as_ref(), &indices, None))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    if retract {
                        acc.retract_batch(&values)?;
                    } else {
                        acc.update_batch(&values)?;
                    }
                }
            }
            if !group.dirty {
                group.dirty = true;
                self.dirty.push(id);
            }
            start = end;
        }
        self.scratch = ids;
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.spec.refresh)
    }

    fn on_tick(&mut self, out: &mut Collector) -> Result<()> {
        self.refresh(out)
    }

    fn before_barrier(&mut self, _barrier: CheckpointBarrier, out: &mut Collector) -> Result<()> {
        self.refresh(out)
    }

    fn on_end(&mut self, out: &mut Collector) -> Result<()> {
        self.refresh(out)
    }

    /// Every live group: its key, its row count, then each aggregate's state. Pending changes
    /// were flushed by `before_barrier`, so "last emitted" is recomputed on restore.
    fn snapshot(&mut self, _barrier: CheckpointBarrier) -> Result<OperatorState> {
        let live: Vec<usize> = (0..self.groups.len())
            .filter(|&id| self.groups[id].rows > 0)
            .collect();
        let mut state = OperatorState::default();
        if live.is_empty() {
            return Ok(state);
        }
        let positions: Vec<(usize, usize)> = live.iter().map(|&id| self.key_at[id]).collect();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for k in 0..self.key_schema.fields().len() {
            let sources: Vec<&dyn Array> = self.keys.iter().map(|b| b[k].as_ref()).collect();
            columns.push(interleave(&sources, &positions)?);
        }
        columns.push(Arc::new(Int64Array::from_iter_values(
            live.iter().map(|&id| self.groups[id].rows),
        )));
        let mut states: Vec<Vec<Vec<ScalarValue>>> = Vec::with_capacity(live.len());
        for &id in &live {
            let group = &mut self.groups[id];
            states.push(
                group
                    .accumulators
                    .iter_mut()
                    .map(|a| a.state())
                    .collect::<datafusion::error::Result<_>>()?,
            );
        }
        let widths: Vec<usize> = states[0].iter().map(Vec::len).collect();
        for (a, width) in widths.iter().enumerate() {
            for f in 0..*width {
                columns.push(ScalarValue::iter_to_array(
                    states.iter().map(|s| s[a][f].clone()),
                )?);
            }
        }
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        state
            .batches
            .push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
        state.schema = Some(schema);
        Ok(state)
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        let n_keys = self.key_schema.fields().len();
        for batch in &state.batches {
            let keys = batch.columns()[..n_keys].to_vec();
            let counts = batch
                .column(n_keys)
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| {
                    EngineError::Storage("checkpointed group counts are not BIGINT".into())
                })?
                .clone();
            let ids = self.intern(&keys)?;
            for (row, &id) in ids.iter().enumerate() {
                let group = &mut self.groups[id];
                group.rows += counts.value(row);
                let mut column = n_keys + 1;
                for acc in group.accumulators.iter_mut() {
                    let width = acc.state()?.len();
                    let states: Vec<ArrayRef> = batch.columns()[column..column + width]
                        .iter()
                        .map(|c| c.slice(row, 1))
                        .collect();
                    acc.merge_batch(&states)?;
                    column += width;
                }
            }
            self.scratch = ids;
        }
        // Downstream holds exactly the restored values (flushed before the barrier).
        for group in self.groups.iter_mut().filter(|g| g.rows > 0) {
            group.emitted = Some(
                group
                    .accumulators
                    .iter_mut()
                    .map(|a| a.evaluate())
                    .collect::<datafusion::error::Result<_>>()?,
            );
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.ids.size()
            + self
                .groups
                .iter()
                .map(|g| g.accumulators.iter().map(|a| a.size()).sum::<usize>())
                .sum::<usize>()
    }

    fn describe(&self) -> String {
        let aggs: Vec<String> = self
            .spec
            .aggregates
            .iter()
            .map(|a| a.function.name().to_string())
            .collect();
        let keys: Vec<String> = self
            .spec
            .group_exprs
            .iter()
            .map(|e| e.to_string())
            .collect();
        format!(
            "RetractingAggregate: group by [{}] aggregates [{}] (refresh {:?}; state per group: \
             its rows' count and each aggregate's retractable accumulator)",
            keys.join(", "),
            aggs.join(", "),
            self.spec.refresh
        )
    }
}
