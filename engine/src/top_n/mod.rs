//! Top-N per partition: `ROW_NUMBER()`, `RANK()` or `DENSE_RANK()` `OVER (PARTITION BY … ORDER
//! BY …)` filtered to the first N ranks, also serving `DISTINCT ON` and first row per key (N = 1).
//!
//! Partitions are interned with DataFusion's vectorised `GroupValues`; each holds its rows in
//! rank order ([`ranked::Ranked`]). What the operator keeps depends on its input:
//!
//! - **append-only input**: only the rows ranked N or better (a row pushed out can never come
//!   back), and a new row that orders after a full partition's last row is rejected with one
//!   comparison, which is the common case;
//! - **updating input**: every row of the partition, since a deleted leader needs its successor.
//!
//! After each input batch every touched partition's new top N is compared position by position
//! with its top N before the batch: a changed position is an update pair, a new one an insert, a
//! vanished one a delete. Only touched partitions cost anything.
//!
//! **Window Top-N**: when the input is append-only and the partition includes a column that
//! seals (a window column), the operator holds each window's top N and emits it as inserts once
//! the watermark closes the window, then forgets it: append-only output and bounded state.

mod checkpoint;
mod ranked;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt8Array, UInt64Array,
};
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::compute::{cast, filter, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{Row, RowConverter, SortField};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::changes::{Changes, Op};
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};
use crate::late_rows::LateRowLog;
use crate::message::{CheckpointBarrier, Watermark};
use crate::operator::{Collector, StreamOperator};
use crate::time::{nanos_per_unit, timestamp_values};
pub use ranked::RankFunction;
use ranked::{Emitted, Ranked, key_into};

/// The partition set of an input that never seals.
const UNSEALED: i64 = i64::MAX;

/// What a Top-N operator computes.
pub struct TopNSpec {
    /// View name (late-row log).
    pub view: String,
    /// `PARTITION BY` expressions over the input (none: one partition).
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// `ORDER BY` of the ranking.
    pub order_by: Vec<PhysicalSortExpr>,
    /// How ranks are numbered.
    pub function: RankFunction,
    /// Rows ranked `limit` or better are output.
    pub limit: u64,
    /// The input's schema; the output is the input's columns followed by the rank.
    pub input_schema: SchemaRef,
    /// The input's columns and the rank column.
    pub output_schema: SchemaRef,
    /// The input retracts rows, so every row of a partition is kept.
    pub updating_input: bool,
    /// A sealing column of the input among the partition columns, and its span (a row whose
    /// value is `<= watermark + span` never changes): partitions are forgotten once sealed.
    pub seal: Option<(usize, i64)>,
    /// With `seal`: emit each partition once, as inserts, when it seals (`EMIT ON WINDOW
    /// CLOSE`), instead of changes as rows arrive.
    pub emit_at_close: bool,
}

/// The partitions of one sealing value (or of the whole stream).
struct PartitionSet {
    /// Partition key → dense id; None without PARTITION BY (one partition, id 0).
    ids: Option<Box<dyn GroupValues>>,
    partitions: Vec<Ranked>,
}

/// The Top-N operator; see the module docs.
pub struct TopN {
    spec: TopNSpec,
    late: Arc<LateRowLog>,
    sort_rows: RowConverter,
    whole_rows: RowConverter,
    sets: BTreeMap<i64, PartitionSet>,
    watermark: Option<i64>,
    ids: Vec<usize>,
    /// Batches applied (marks partitions touched by the current one).
    batches: u64,
    /// Reused buffer for a row's key.
    key: Vec<u8>,
    /// Bytes of rows held, kept up to date as partitions change (state size is sampled at
    /// every watermark: summing all partitions then would cost more than the work).
    state_bytes: usize,
}

impl TopN {
    /// An empty operator.
    pub fn try_new(spec: TopNSpec, late: Arc<LateRowLog>) -> Result<Self> {
        let sort_fields = spec
            .order_by
            .iter()
            .map(|s| {
                Ok(SortField::new_with_options(
                    s.expr.data_type(&spec.input_schema)?,
                    s.options,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let whole_fields = spec
            .input_schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        if spec.emit_at_close && (spec.updating_input || spec.seal.is_none()) {
            return Err(EngineError::Internal(
                "a Top-N emitted at window close needs append-only, windowed input".into(),
            ));
        }
        Ok(Self {
            sort_rows: RowConverter::new(sort_fields)?,
            whole_rows: RowConverter::new(whole_fields)?,
            spec,
            late,
            sets: BTreeMap::new(),
            watermark: None,
            ids: Vec::new(),
            batches: 0,
            key: Vec::new(),
            state_bytes: 0,
        })
    }

    fn new_set(&self) -> Result<PartitionSet> {
        let ids = if self.spec.partition_by.is_empty() {
            None
        } else {
            let fields = self
                .spec
                .partition_by
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    Ok(datafusion::arrow::datatypes::Field::new(
                        format!("p{i}"),
                        e.data_type(&self.spec.input_schema)?,
                        true,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
            Some(new_group_values(schema, &GroupOrdering::None)?)
        };
        Ok(PartitionSet {
            ids,
            partitions: Vec::new(),
        })
    }

    /// Applies rows (with their ops; None: all inserts), routing them to their sealing value's
    /// partitions; emits the changes unless `emit` is false (restore, or emission at close).
    fn apply(
        &mut self,
        rows: &RecordBatch,
        ops: Option<&UInt8Array>,
        emit: bool,
        out: &mut Collector,
    ) -> Result<()> {
        let Some((column, span)) = self.spec.seal else {
            return self.apply_set(UNSEALED, rows, ops, emit, out);
        };
        let values = rows.column(column);
        let scale = match values.data_type() {
            DataType::Timestamp(unit, _) => nanos_per_unit(*unit),
            _ => 1,
        };
        let values = timestamp_values(values)?;
        if values.null_count() > 0 {
            let nulls = BooleanArray::from_iter(values.iter().map(|v| Some(v.is_none())));
            self.record_late(&filter_record_batch(rows, &nulls)?, "window column is NULL")?;
        }
        let mut distinct: Vec<i64> = values.iter().flatten().collect();
        distinct.sort_unstable();
        distinct.dedup();
        let single = distinct.len() == 1 && values.null_count() == 0;
        for value in distinct {
            let (part, part_ops) = if single {
                (rows.clone(), ops.cloned())
            } else {
                let mask = eq(&values, &Int64Array::new_scalar(value))?;
                let part_ops = match ops {
                    Some(ops) => Some(
                        filter(ops, &mask)?
                            .as_primitive::<datafusion::arrow::datatypes::UInt8Type>()
                            .clone(),
                    ),
                    None => None,
                };
                (filter_record_batch(rows, &mask)?, part_ops)
            };
            let nanos = value.saturating_mul(scale);
            if self
                .watermark
                .is_some_and(|w| nanos <= w.saturating_add(span))
            {
                self.record_late(&part, "window already closed")?;
                continue;
            }
            self.apply_set(nanos, &part, part_ops.as_ref(), emit, out)?;
        }
        Ok(())
    }

    fn record_late(&self, rows: &RecordBatch, reason: &'static str) -> Result<()> {
        if rows.num_rows() > 0 {
            self.late.record(&self.spec.view, rows, reason)?;
        }
        Ok(())
    }

    fn apply_set(
        &mut self,
        set_key: i64,
        rows: &RecordBatch,
        ops: Option<&UInt8Array>,
        emit: bool,
        out: &mut Collector,
    ) -> Result<()> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        if !self.sets.contains_key(&set_key) {
            let set = self.new_set()?;
            self.sets.insert(set_key, set);
        }
        let sorts = self
            .sort_rows
            .convert_columns(&evaluate(self.spec.order_by.iter().map(|s| &s.expr), rows)?)?;
        let wholes = self.whole_rows.convert_columns(rows.columns())?;
        let partition_columns = evaluate(self.spec.partition_by.iter(), rows)?;
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        let (function, limit, updating) = (
            self.spec.function,
            self.spec.limit,
            self.spec.updating_input,
        );
        let Some(set) = self.sets.get_mut(&set_key) else {
            return Err(EngineError::Internal("Top-N partition set vanished".into()));
        };
        match set.ids.as_mut() {
            Some(interner) => interner.intern(&partition_columns, &mut ids)?,
            None => ids.resize(rows.num_rows(), 0),
        }
        if let Some(&max) = ids.iter().max()
            && max >= set.partitions.len()
        {
            set.partitions.resize_with(max + 1, Ranked::default);
        }
        self.batches += 1;
        let batch = self.batches;
        // Touched partitions, each once, with their state bytes before this batch.
        let mut touched: Vec<(usize, usize)> = Vec::new();
        let mut key = std::mem::take(&mut self.key);
        for (i, &id) in ids.iter().enumerate() {
            let op = match ops {
                Some(ops) => Op::from_byte(ops.value(i)).ok_or_else(|| {
                    EngineError::Internal(format!("unknown change op {}", ops.value(i)))
                })?,
                None => Op::Insert,
            };
            let partition = &mut set.partitions[id];
            let sort = sorts.row(i);
            let sort_len = sort.as_ref().len();
            let row_key = key_into(&mut key, sort.as_ref(), wholes.row(i).as_ref());
            if !op.is_retraction()
                && !updating
                && partition.rejects(function, limit, row_key, sort_len)
            {
                continue;
            }
            if partition.touched_in != batch {
                partition.touched_in = batch;
                touched.push((id, partition.bytes()));
            }
            if !partition.dirty && partition.may_change_top(function, limit, row_key, sort_len) {
                partition.dirty = true;
            }
            if op.is_retraction() {
                if !partition.remove(row_key) {
                    return Err(EngineError::Internal(format!(
                        "Top-N received a {op} of a row it does not hold"
                    )));
                }
            } else {
                partition.insert(row_key, sort_len, 1);
            }
        }
        self.key = key;
        self.ids = ids;
        if !updating {
            for &(id, _) in &touched {
                set.partitions[id].prune(function, limit);
            }
        }
        if !emit {
            self.state_bytes = touched
                .iter()
                .fold(self.state_bytes, |total, (id, before)| {
                    (total + set.partitions[*id].bytes()).saturating_sub(*before)
                });
            return Ok(());
        }
        let mut changed: Vec<(Op, Emitted, u64)> = Vec::new();
        for &(id, _) in &touched {
            let partition = &mut set.partitions[id];
            // Rows that changed below a full top leave it as it is.
            if std::mem::take(&mut partition.dirty) {
                partition.refresh_emitted(function, limit, id, &mut changed);
            }
        }
        self.state_bytes = touched
            .iter()
            .fold(self.state_bytes, |total, (id, before)| {
                (total + set.partitions[*id].bytes()).saturating_sub(*before)
            });
        if changed.is_empty() {
            return Ok(());
        }
        let parser = self.whole_rows.parser();
        let ops = UInt8Array::from_iter_values(changed.iter().map(|(op, _, _)| *op as u8));
        let ranks = changed.iter().map(|(_, _, r)| *r).collect();
        let rows = Self::output(
            &self.whole_rows,
            &self.spec.output_schema,
            changed.iter().map(|(_, row, _)| {
                parser.parse(match row {
                    Emitted::Owned(bytes) => bytes,
                    Emitted::At(id, position) => set.partitions[*id].emitted_row(*position),
                })
            }),
            ranks,
        )?;
        out.changes(Changes::try_new(rows, ops)?);
        Ok(())
    }

    /// Output rows: decoded input rows followed by their ranks.
    fn output<'a>(
        whole_rows: &RowConverter,
        output_schema: &SchemaRef,
        rows: impl IntoIterator<Item = Row<'a>>,
        ranks: Vec<u64>,
    ) -> Result<RecordBatch> {
        let mut columns = whole_rows.convert_rows(rows)?;
        let rank_type = output_schema
            .fields()
            .last()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::UInt64);
        columns.push(cast(&UInt64Array::from(ranks), &rank_type)?);
        Ok(RecordBatch::try_new(Arc::clone(output_schema), columns)?)
    }

    /// Forgets the partitions the watermark seals (all of them at the end), first emitting
    /// them as inserts when the operator emits at close.
    fn seal(&mut self, watermark: i64, out: &mut Collector) -> Result<()> {
        let Some((_, span)) = self.spec.seal else {
            return Ok(());
        };
        let first_open = watermark.saturating_add(span).saturating_add(1);
        let open = self.sets.split_off(&first_open);
        let sealed = std::mem::replace(&mut self.sets, open);
        let released: usize = sealed
            .values()
            .flat_map(|s| s.partitions.iter())
            .map(Ranked::bytes)
            .sum();
        self.state_bytes = self.state_bytes.saturating_sub(released);
        if !self.spec.emit_at_close {
            return Ok(());
        }
        let parser = self.whole_rows.parser();
        for set in sealed.values() {
            let mut rows = Vec::new();
            let mut ranks = Vec::new();
            for partition in &set.partitions {
                for (row, rank) in partition.top(self.spec.function, self.spec.limit) {
                    rows.push(parser.parse(row));
                    ranks.push(rank);
                }
            }
            if !rows.is_empty() {
                out.data(Self::output(
                    &self.whole_rows,
                    &self.spec.output_schema,
                    rows,
                    ranks,
                )?);
            }
        }
        Ok(())
    }
}

fn evaluate<'a>(
    exprs: impl Iterator<Item = &'a Arc<dyn PhysicalExpr>>,
    rows: &RecordBatch,
) -> Result<Vec<ArrayRef>> {
    exprs
        .map(|e| Ok(e.evaluate(rows)?.into_array(rows.num_rows())?))
        .collect()
}

impl StreamOperator for TopN {
    fn name(&self) -> String {
        format!("TopN({} <= {})", self.spec.function.name(), self.spec.limit)
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        self.apply(&batch, None, !self.spec.emit_at_close, out)
    }

    fn process_changes(&mut self, changes: Changes, out: &mut Collector) -> Result<()> {
        if changes.is_inserts_only() {
            let (rows, _) = changes.into_parts();
            return self.process_batch(rows, out);
        }
        if !self.spec.updating_input {
            return Err(EngineError::Internal(
                "append-only Top-N received updates".into(),
            ));
        }
        let (rows, ops) = changes.into_parts();
        self.apply(&rows, ops.as_ref(), true, out)
    }

    fn on_watermark(
        &mut self,
        watermark: Watermark,
        out: &mut Collector,
    ) -> Result<Option<Watermark>> {
        if let Watermark::EventTime(w) = watermark {
            self.watermark = Some(self.watermark.map_or(w, |old| old.max(w)));
            self.seal(w, out)?;
        }
        Ok(Some(watermark))
    }

    fn on_end(&mut self, out: &mut Collector) -> Result<()> {
        self.seal(i64::MAX, out)
    }

    /// Every held row with its count. Changes are emitted batch by batch, so downstream already
    /// holds exactly the top N of this state.
    fn snapshot(&mut self, _barrier: CheckpointBarrier) -> Result<OperatorState> {
        self.held_rows()
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        self.restore_rows(state)
    }

    fn state_size(&self) -> usize {
        self.state_bytes
            + self
                .sets
                .values()
                .map(|s| s.ids.as_ref().map_or(0, |ids| ids.size()))
                .sum::<usize>()
    }

    fn partition_key(&self) -> Option<Vec<Arc<dyn PhysicalExpr>>> {
        // Each partition's top depends on its own rows only; without PARTITION BY there is one.
        (!self.spec.partition_by.is_empty()).then(|| self.spec.partition_by.clone())
    }

    fn state_keys(&self, state_rows: &RecordBatch) -> Result<Vec<ArrayRef>> {
        // State rows are the held input rows followed by their count (see checkpoint.rs).
        let width = self.spec.input_schema.fields().len();
        let rows = RecordBatch::try_new(
            Arc::clone(&self.spec.input_schema),
            state_rows.columns()[..width.min(state_rows.num_columns())].to_vec(),
        )?;
        self.spec
            .partition_by
            .iter()
            .map(|e| Ok(e.evaluate(&rows)?.into_array(rows.num_rows())?))
            .collect()
    }

    fn describe(&self) -> String {
        let partition: Vec<String> = self
            .spec
            .partition_by
            .iter()
            .map(|e| e.to_string())
            .collect();
        let order: Vec<String> = self.spec.order_by.iter().map(|s| s.to_string()).collect();
        let keeps = match (self.spec.updating_input, self.spec.seal.is_some()) {
            (true, false) => {
                "state: every row of each partition (an updating input can delete a leader)"
            }
            (true, true) => {
                "state: every row of each open window's partitions (an updating input can delete a leader)"
            }
            (false, false) => "state: the top rows of each partition",
            (false, true) => "state: the top rows of each open window's partitions",
        };
        let keeps = if self.spec.emit_at_close {
            format!("{keeps}; emitted when the window closes")
        } else {
            keeps.to_string()
        };
        format!(
            "TopN: {}() over (partition by [{}] order by [{}]) <= {} ({keeps})",
            self.spec.function.name(),
            partition.join(", "),
            order.join(", "),
            self.spec.limit
        )
    }
}

#[cfg(test)]
mod tests;
