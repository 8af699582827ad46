//! Event-time temporal joins: `JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.currency =
//! r.currency`. The right input is a history of versions: each of its rows is its key's version
//! from the row's event time on. A left row joins the version of its key valid at the left row's
//! event time (the newest with a time at or before it), or none (`LEFT`: NULL-padded).
//!
//! The right input may also be a table that updates by key (a table over an upsert topic with a
//! WATERMARK, joined on its primary key): an insert or an update's new row is its key's version
//! from its time on; an update's old row says nothing more; a delete ends the key's versions
//! from the newest time the right input has shown (a tombstone carries no time of its own), so
//! left rows from then on join nothing (`LEFT`: NULL-padded) until a new version starts.
//!
//! A left row waits until the watermark (the slower input's: the merge forwards the minimum)
//! passes its time, so every version that could apply has arrived; then it is joined, once,
//! and the output is append-only with the left row's time. Versions a left row still to come can
//! use are kept: per key, the newest one before the watermark and any after it. Older ones are
//! dropped as the watermark passes the next (their rows are rewritten away once the dropped
//! outnumber the kept). Rows of either input behind the watermark are late: a late version
//! would have changed rows already out, so both go to the late-row log.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, not};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::JoinKind;
use super::keys::JoinKeys;
use super::output::gather_or_null;
use super::side::Position;
use crate::changes::Changes;
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};
use crate::late_rows::LateRowLog;
use crate::message::{CheckpointBarrier, Watermark};
use crate::operator::{Collector, StreamOperator};
use crate::time::{nanos_per_unit, timestamp_values};

mod history;
mod state;
#[cfg(test)]
mod tests;

/// Dropped versions below this many stay in their batches (rewriting costs more than they do).
const REWRITE_AFTER: usize = if cfg!(test) { 8 } else { 1 << 16 };

/// What an event-time temporal join computes.
pub struct VersionedSpec {
    /// The view (for the late-row log).
    pub view: String,
    /// `Inner` or `Left` (or `Semi`: an inner join whose right columns are not used).
    pub kind: JoinKind,
    /// Key expressions over each input's rows, in pairs (the right's name its versions' key).
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The rest of `ON`, over a joined row (left columns, then right).
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub left_schema: SchemaRef,
    pub right_schema: SchemaRef,
    /// Left columns, then right columns (nullable for `LEFT`; none for `Semi`).
    pub output_schema: SchemaRef,
    /// Left columns, then right columns: what the rest of `ON` is evaluated over.
    pub joined_schema: SchemaRef,
    /// The left input's event-time column (the `AS OF` column).
    pub left_time: usize,
    /// The right input's event-time column: when each version starts.
    pub right_time: usize,
    /// Text of the condition for EXPLAIN.
    pub condition: String,
}

/// A left row's time or a version's start, in nanoseconds (NULL: `i64::MIN`, late).
fn times(rows: &RecordBatch, column: usize) -> Result<Vec<i64>> {
    let column = rows.column(column);
    let per = match column.data_type() {
        datafusion::arrow::datatypes::DataType::Timestamp(unit, _) => nanos_per_unit(*unit),
        other => {
            return Err(EngineError::Internal(format!(
                "a temporal join's time column is {other}"
            )));
        }
    };
    Ok(timestamp_values(column)?
        .iter()
        .map(|v| v.map_or(i64::MIN, |v| v.saturating_mul(per)))
        .collect())
}

/// An event-time temporal join; see the module docs.
pub struct VersionedJoin {
    spec: VersionedSpec,
    keys: JoinKeys,
    /// Left rows waiting for the watermark to pass their time.
    waiting: Vec<RecordBatch>,
    /// Batches of versions (a version's `Position::seq` indexes this).
    batches: Vec<RecordBatch>,
    /// Per key id: its versions kept, oldest first.
    versions: Vec<Vec<Version>>,
    /// Keys with versions at or after the watermark (older ones may become droppable).
    unsettled: Vec<u32>,
    unsettled_flag: Vec<bool>,
    kept: usize,
    dropped: usize,
    /// Bytes of `batches` (kept as they change: state size is read at every watermark).
    batch_bytes: usize,
    watermark: Option<i64>,
    /// The newest time of a version so far: when a delete takes effect.
    clock: i64,
    late: Arc<LateRowLog>,
}

/// One of a key's versions: from `start` on, the row at `at`, or none if `ends` (the row at `at`
/// is then the one deleted).
#[derive(Debug, Clone, Copy)]
struct Version {
    start: i64,
    at: Position,
    ends: bool,
}

impl VersionedJoin {
    /// Builds the join (inner or left).
    pub fn try_new(spec: VersionedSpec, late: Arc<LateRowLog>) -> Result<Self> {
        if !matches!(spec.kind, JoinKind::Inner | JoinKind::Left | JoinKind::Semi) {
            return Err(EngineError::NotSupported(
                "an event-time temporal join other than INNER or LEFT".into(),
            ));
        }
        if spec.left_keys.len() != spec.right_keys.len() || spec.left_keys.is_empty() {
            return Err(EngineError::Internal(
                "a join needs pairs of key expressions".into(),
            ));
        }
        let keys = JoinKeys::try_new(&spec.left_keys, &spec.left_schema)?;
        Ok(Self {
            spec,
            keys,
            waiting: Vec::new(),
            batches: Vec::new(),
            versions: Vec::new(),
            unsettled: Vec::new(),
            unsettled_flag: Vec::new(),
            kept: 0,
            dropped: 0,
            batch_bytes: 0,
            watermark: None,
            clock: i64::MIN,
            late,
        })
    }

    /// Rows of `rows` (of input `side`) at or after the watermark; the others are logged late.
    fn on_time(&self, side: usize, rows: RecordBatch) -> Result<RecordBatch> {
        let column = if side == 0 {
            self.spec.left_time
        } else {
            self.spec.right_time
        };
        let wm = self.watermark.unwrap_or(i64::MIN);
        let times = times(&rows, column)?;
        if times.iter().all(|&t| t >= wm && t != i64::MIN) {
            return Ok(rows);
        }
        let on_time = BooleanArray::from(
            times
                .iter()
                .map(|&t| t >= wm && t != i64::MIN)
                .collect::<Vec<_>>(),
        );
        let reason = if side == 0 {
            "behind the watermark of a temporal join (or without a time)"
        } else {
            "a version behind the watermark of a temporal join (rows it would have changed are out)"
        };
        self.late.record(
            &self.spec.view,
            &filter_record_batch(&rows, &not(&on_time)?)?,
            reason,
        )?;
        Ok(filter_record_batch(&rows, &on_time)?)
    }

    /// Joins the waiting left rows older than `until` and emits them.
    fn emit_ready(&mut self, until: i64, out: &mut Collector) -> Result<()> {
        let mut ready = Vec::new();
        let mut still = Vec::new();
        for rows in std::mem::take(&mut self.waiting) {
            let times = times(&rows, self.spec.left_time)?;
            if times.iter().all(|&t| t < until) {
                ready.push(rows);
                continue;
            }
            let mask = BooleanArray::from(times.iter().map(|&t| t < until).collect::<Vec<_>>());
            ready.push(filter_record_batch(&rows, &mask)?);
            let rest = filter_record_batch(&rows, &not(&mask)?)?;
            if rest.num_rows() > 0 {
                still.push(rest);
            }
        }
        self.waiting = still;
        let ready: Vec<RecordBatch> = ready.into_iter().filter(|b| b.num_rows() > 0).collect();
        if ready.is_empty() {
            return Ok(());
        }
        let rows = concat_batches(&self.spec.left_schema, &ready)?;
        for start in (0..rows.num_rows()).step_by(super::OUTPUT_ROWS) {
            let part = rows.slice(start, (rows.num_rows() - start).min(super::OUTPUT_ROWS));
            self.join_rows(&part, out)?;
        }
        Ok(())
    }

    /// Joins left rows with the versions valid at their times.
    fn join_rows(&mut self, rows: &RecordBatch, out: &mut Collector) -> Result<()> {
        let ids = self.keys.ids(&self.spec.left_keys, rows)?;
        let times = times(rows, self.spec.left_time)?;
        let mut found: Vec<Option<Position>> = ids
            .iter()
            .zip(&times)
            .map(|(&id, &t)| {
                let list = self.versions.get(id as usize)?;
                let valid = list.partition_point(|v| v.start <= t);
                let version = list.get(valid.checked_sub(1)?)?;
                (!version.ends).then_some(version.at)
            })
            .collect();
        let left = self.spec.kind == JoinKind::Left;
        let mut joined = self.assemble(rows, &found)?;
        if let Some(filter) = &self.spec.filter {
            let mask = filter.evaluate(&joined)?.into_array(joined.num_rows())?;
            let mask = mask
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| EngineError::Internal("a join condition is not boolean".into()))?;
            let passes = |i: usize| mask.is_valid(i) && mask.value(i);
            // A version that fails the rest of ON is no match (not a reason to use an older one).
            if (0..mask.len()).any(|i| found[i].is_some() && !passes(i)) {
                for (i, f) in found.iter_mut().enumerate() {
                    if !passes(i) {
                        *f = None;
                    }
                }
                joined = self.assemble(rows, &found)?;
            }
        }
        if !left {
            let matched = BooleanArray::from(found.iter().map(Option::is_some).collect::<Vec<_>>());
            joined = filter_record_batch(&joined, &matched)?;
        }
        let width = self.spec.output_schema.fields().len();
        out.data(RecordBatch::try_new(
            Arc::clone(&self.spec.output_schema),
            joined.columns()[..width].to_vec(),
        )?);
        Ok(())
    }

    /// Left rows beside their versions (NULL where there is none), in the joined schema.
    fn assemble(&self, rows: &RecordBatch, found: &[Option<Position>]) -> Result<RecordBatch> {
        let right = gather_or_null(&self.spec.right_schema, &self.batches, found)?;
        Ok(RecordBatch::try_new(
            Arc::clone(&self.spec.joined_schema),
            rows.columns().iter().cloned().chain(right).collect(),
        )?)
    }
}

impl StreamOperator for VersionedJoin {
    fn name(&self) -> String {
        "TemporalJoin".into()
    }

    fn reads_inputs(&self) -> bool {
        true
    }

    fn process_batch(&mut self, _batch: RecordBatch, _out: &mut Collector) -> Result<()> {
        Err(EngineError::Internal(
            "a join received rows without their input".into(),
        ))
    }

    fn process_input(
        &mut self,
        input: usize,
        changes: Changes,
        _out: &mut Collector,
    ) -> Result<()> {
        if input == 1 && !changes.is_inserts_only() {
            return self.apply_changes(&changes);
        }
        let Some(rows) = changes.into_inserts() else {
            return Err(EngineError::Internal(
                "an append-only temporal join input retracted a row".into(),
            ));
        };
        match input {
            0 => {
                let rows = self.on_time(0, rows)?;
                if rows.num_rows() > 0 {
                    self.waiting.push(rows);
                }
                Ok(())
            }
            1 => self.add_versions(rows),
            _ => Err(EngineError::Internal(format!(
                "a join has no input {input}"
            ))),
        }
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
        self.emit_ready(wm, out)?;
        self.settle(wm)?;
        Ok(Some(watermark))
    }

    fn on_end(&mut self, out: &mut Collector) -> Result<()> {
        // No version can still come: every waiting row joins what there is.
        self.emit_ready(i64::MAX, out)
    }

    fn snapshot(&mut self, _barrier: CheckpointBarrier) -> Result<OperatorState> {
        state::snapshot(self)
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        state::restore(self, state)
    }

    fn state_size(&self) -> usize {
        // Waiting rows are bounded by the watermark delay; the rest is kept as it changes.
        let waiting: usize = self
            .waiting
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        let lists = self.kept * std::mem::size_of::<Version>()
            + self.versions.len() * std::mem::size_of::<Vec<Version>>();
        waiting + self.batch_bytes + lists + self.keys.size()
    }

    fn describe(&self) -> String {
        format!(
            "TemporalJoin: {} on {}, each left row with the version valid at its event time \
             (keeps left rows until the watermark passes them, and per key the versions still \
             valid at or after the watermark)",
            if self.spec.kind == JoinKind::Left {
                "left"
            } else {
                "inner"
            },
            self.spec.condition
        )
    }
}
