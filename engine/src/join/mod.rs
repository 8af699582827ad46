//! Streaming equi-joins: of append-only inputs, optionally bounded in time (interval joins, and
//! window joins, which are interval joins on `window_end` with a zero-width interval), with
//! append-only output; and joins whose output retracts ([`retracting`]).
//!
//! Each input's rows are held ([`side::JoinSide`]) under one shared key table, so a key id found
//! for a row of either side indexes both sides' row lists. A batch from one input is probed
//! against the other side's rows with its keys (vectorised: matched row pairs gathered with
//! `take`/`interleave`), the rest of `ON` is evaluated over the joined rows, and the batch is
//! then held for rows of the other input still to come.
//!
//! With a time bound (`left.t - right.t` within `[lower, upper]`), rows of the other input yet
//! to come are on time (at or after the watermark), so a held left row can match none once the
//! watermark passes `t - lower` (a right row, `t + upper`): it leaves, and if its side is
//! preserved (`LEFT`/`RIGHT`/`FULL`) and it never joined, it is emitted NULL-padded then. Rows
//! arriving behind the watermark are late and go to the late-row log. Without a bound every row
//! is held for good (EXPLAIN says so), and outer joins emit their padded rows at once and
//! retract them when a match arrives; so do joins of inputs that update ([`retracting`]).

mod keys;
pub mod lookup;
mod output;
mod retracting;
#[cfg(test)]
mod retracting_tests;
mod side;
mod state;
#[cfg(test)]
mod tests;
pub mod versioned;

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use crate::changes::Changes;
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};
use crate::late_rows::LateRowLog;
use crate::message::{CheckpointBarrier, Watermark};
use crate::operator::{Collector, StreamOperator};
use crate::time::timestamp_values;
use keys::JoinKeys;
use output::take_rows;
pub use side::TimeBound;
use side::{JoinSide, Position};

/// Joined rows go out in batches of at most this many.
const OUTPUT_ROWS: usize = 8192;

/// Which inputs' rows appear even without a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Matched pairs only.
    Inner,
    /// Every left row.
    Left,
    /// Every right row.
    Right,
    /// Every row of both.
    Full,
    /// Left rows with a match, once each (`IN (SELECT …)`, `EXISTS`): left columns only.
    Semi,
    /// Left rows that never find a match (`NOT EXISTS`), once they cannot any more.
    Anti,
}

impl JoinKind {
    /// Rows of input `side` (0 left, 1 right) appear unmatched.
    pub fn preserves(self, side: usize) -> bool {
        matches!(
            (self, side),
            (JoinKind::Left | JoinKind::Full | JoinKind::Anti, 0)
                | (JoinKind::Right | JoinKind::Full, 1)
        )
    }

    /// Only the left input's columns come out.
    pub fn left_only(self) -> bool {
        matches!(self, JoinKind::Semi | JoinKind::Anti)
    }

    fn name(self) -> &'static str {
        match self {
            JoinKind::Inner => "inner",
            JoinKind::Left => "left",
            JoinKind::Right => "right",
            JoinKind::Full => "full",
            JoinKind::Semi => "semi",
            JoinKind::Anti => "anti",
        }
    }
}

/// `left.time - right.time` lies within `[lower, upper]` (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// The left input's event-time column.
    pub left_time: usize,
    /// The right input's event-time column.
    pub right_time: usize,
    pub lower: i64,
    pub upper: i64,
}

/// How long a join without a time bound keeps rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// The left input's event-time column.
    pub left_time: usize,
    /// The right input's event-time column.
    pub right_time: usize,
    /// Nanoseconds behind the watermark.
    pub nanos: i64,
}

/// What a join computes.
pub struct JoinSpec {
    /// The view (for the late-row log).
    pub view: String,
    pub kind: JoinKind,
    /// Key expressions over each input's rows, in pairs.
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The rest of `ON`, over a joined row (left columns, then right).
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub left_schema: SchemaRef,
    pub right_schema: SchemaRef,
    /// Left columns, then right columns (the left's alone for semi and anti joins).
    pub output_schema: SchemaRef,
    /// Left columns, then right columns: what the rest of `ON` is evaluated over.
    pub joined_schema: SchemaRef,
    /// The time bound, for an interval or window join.
    pub interval: Option<Interval>,
    /// `WITH (state_ttl = …)` on a join without a time bound: rows leave this long (event time)
    /// behind the watermark, and a match arriving later is missed.
    pub ttl: Option<Ttl>,
    /// Text of the condition for EXPLAIN.
    pub condition: String,
    /// Which inputs update or delete rows (their rows can be retracted).
    pub updating: [bool; 2],
}

impl JoinSpec {
    /// The join's output retracts rows: an input does, or an outer or anti join has no time
    /// bound (its unmatched rows come out at once and are taken back when a match arrives).
    pub fn retracts(&self) -> bool {
        self.updating.iter().any(|&u| u)
            || (self.interval.is_none() && (self.kind.preserves(0) || self.kind.preserves(1)))
    }
}

/// A streaming join; see the module docs.
pub struct StreamJoin {
    spec: JoinSpec,
    /// See [`JoinSpec::retracts`].
    retracting: bool,
    /// Retractions of rows already gone under the TTL.
    ttl_misses: u64,
    keys: JoinKeys,
    sides: [JoinSide; 2],
    watermark: Option<i64>,
    emitted_watermark: Option<i64>,
    late: Arc<LateRowLog>,
}

impl StreamJoin {
    /// Builds the join.
    pub fn try_new(spec: JoinSpec, late: Arc<LateRowLog>) -> Result<Self> {
        if spec.left_keys.len() != spec.right_keys.len() || spec.left_keys.is_empty() {
            return Err(EngineError::Internal(
                "a join needs pairs of key expressions".into(),
            ));
        }
        let retracting = spec.retracts();
        if retracting && spec.interval.is_some() {
            // Rows of an updating input can be retracted at any age: none may leave by time.
            return Err(EngineError::Internal(
                "a time bound on a join whose output retracts".into(),
            ));
        }
        let keys = JoinKeys::try_new(&spec.left_keys, &spec.left_schema)?;
        let bound = |column: usize, reach: i64| TimeBound { column, reach };
        let ttl = |time: fn(&Ttl) -> usize| spec.ttl.map(|t| bound(time(&t), t.nanos));
        let sides = [
            JoinSide::new(
                Arc::clone(&spec.left_schema),
                spec.interval
                    .map(|i| bound(i.left_time, i.lower.saturating_neg()))
                    .or_else(|| ttl(|t| t.left_time)),
            ),
            JoinSide::new(
                Arc::clone(&spec.right_schema),
                spec.interval
                    .map(|i| bound(i.right_time, i.upper))
                    .or_else(|| ttl(|t| t.right_time)),
            ),
        ];
        Ok(Self {
            spec,
            retracting,
            ttl_misses: 0,
            keys,
            sides,
            watermark: None,
            emitted_watermark: None,
            late,
        })
    }

    /// The output retracts rows (see [`JoinSpec::retracts`]).
    pub fn retracts(&self) -> bool {
        self.retracting
    }

    /// Key ids of `rows` of input `side` ([`keys::NO_KEY`] where a key column is NULL).
    fn key_ids(&mut self, side: usize, rows: &RecordBatch) -> Result<Vec<u32>> {
        let exprs = if side == 0 {
            &self.spec.left_keys
        } else {
            &self.spec.right_keys
        };
        self.keys.ids(exprs, rows)
    }

    /// Rows of `rows` at or after the watermark; the others go to the late-row log.
    fn on_time(&self, side: usize, rows: RecordBatch) -> Result<RecordBatch> {
        // Only a time bound in ON makes a row late; a TTL only says how long rows are kept.
        let (Some(bound), Some(wm), Some(_)) =
            (self.sides[side].bound, self.watermark, self.spec.interval)
        else {
            return Ok(rows);
        };
        let times = rows.column(bound.column);
        let unit = match times.data_type() {
            datafusion::arrow::datatypes::DataType::Timestamp(unit, _) => *unit,
            _ => return Ok(rows),
        };
        let per = crate::time::nanos_per_unit(unit);
        let values = timestamp_values(times)?;
        let on_time: BooleanArray = values
            .iter()
            .map(|v| Some(v.is_none_or(|v| v.saturating_mul(per) >= wm)))
            .collect();
        if on_time.true_count() == rows.num_rows() {
            return Ok(rows);
        }
        let late = filter_record_batch(&rows, &datafusion::arrow::compute::not(&on_time)?)?;
        self.late
            .record(&self.spec.view, &late, "behind the watermark of a join")?;
        Ok(filter_record_batch(&rows, &on_time)?)
    }

    /// Joins rows of input `side` with the other input's held rows, then holds them.
    fn probe(&mut self, side: usize, rows: RecordBatch, out: &mut Collector) -> Result<()> {
        let rows = self.on_time(side, rows)?;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let ids = self.key_ids(side, &rows)?;
        let other = 1 - side;
        let mut degrees = vec![0u32; rows.num_rows()];
        let mut probe_rows: Vec<u32> = Vec::new();
        let mut partners: Vec<Position> = Vec::new();
        for (row, &id) in ids.iter().enumerate() {
            if id == u32::MAX {
                continue;
            }
            for &p in self.sides[other].positions(id as usize) {
                probe_rows.push(row as u32);
                partners.push(p);
            }
        }
        for (rows_part, partners_part) in probe_rows
            .chunks(OUTPUT_ROWS)
            .zip(partners.chunks(OUTPUT_ROWS))
        {
            self.emit_pairs(side, &rows, rows_part, partners_part, &mut degrees, out)?;
        }
        // Rows with a NULL key never match: a preserved side's go out now.
        if self.spec.kind.preserves(side) {
            let nulls: Vec<u32> = (0..rows.num_rows() as u32)
                .filter(|&r| ids[r as usize] == u32::MAX)
                .collect();
            if !nulls.is_empty() {
                for &r in &nulls {
                    // Out already: not again when the row leaves.
                    degrees[r as usize] = 1;
                }
                let nulls = take_rows(&rows, &nulls)?;
                out.data(self.padded(side, &nulls)?);
            }
        }
        self.sides[side].push(rows, ids, degrees, Vec::new())?;
        self.maybe_rebuild()
    }

    /// Rebuilds the key table once rows gone leave more behind than the rows held.
    fn maybe_rebuild(&mut self) -> Result<()> {
        let leftovers: usize = self.sides.iter().map(|s| s.leftovers).sum();
        let held: usize = self.sides.iter().map(|s| s.rows).sum();
        if leftovers < held.max(side::REWRITE_AFTER) {
            return Ok(());
        }
        for side in &mut self.sides {
            // Retracted rows are not interned again.
            side.compact(0, true)?;
        }
        self.keys.clear()?;
        for side in 0..2 {
            let chunks: Vec<RecordBatch> = self.sides[side]
                .chunks
                .iter()
                .map(|c| c.rows.clone())
                .collect();
            for (index, rows) in chunks.iter().enumerate() {
                let ids = self.key_ids(side, rows)?;
                if let Some(chunk) = self.sides[side].chunks.get_mut(index) {
                    chunk.keys = ids;
                }
            }
        }
        let keys = self.keys.len();
        for side in &mut self.sides {
            side.reindex(keys);
        }
        Ok(())
    }

    /// The watermark to forward: rows still to come have the left time at least this.
    fn output_watermark(&self, wm: i64) -> i64 {
        let Some(interval) = self.spec.interval else {
            return wm;
        };
        // A joined row pairs a row arriving now (time >= wm) with a held one within the
        // interval; an unmatched left row waits in the left side's held rows.
        let mut out = wm.saturating_add(interval.lower.min(0));
        if self.spec.kind.preserves(0)
            && let Some(oldest) = self.sides[0].oldest_time()
        {
            out = out.min(oldest);
        }
        out
    }
}

impl StreamOperator for StreamJoin {
    fn name(&self) -> String {
        "StreamJoin".into()
    }

    fn reads_inputs(&self) -> bool {
        true
    }

    fn process_batch(&mut self, _batch: RecordBatch, _out: &mut Collector) -> Result<()> {
        Err(EngineError::Internal(
            "a join received rows without their input".into(),
        ))
    }

    fn process_input(&mut self, input: usize, changes: Changes, out: &mut Collector) -> Result<()> {
        if input > 1 {
            return Err(EngineError::Internal(format!(
                "a join has no input {input}"
            )));
        }
        if self.retracting {
            return self.process_changes(input, changes, out);
        }
        match changes.into_inserts() {
            Some(rows) => self.probe(input, rows, out),
            None => Err(EngineError::Internal(
                "an append-only join input retracted a row".into(),
            )),
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
        if self.spec.interval.is_none() {
            // Rows past the TTL leave (an inner join: nothing to emit for them); a held row of
            // any age could still have joined, so there is no time downstream can rely on.
            for side in &mut self.sides {
                side.expire(wm);
            }
            self.maybe_rebuild()?;
            return Ok(None);
        }
        for side in 0..2 {
            let gone = self.sides[side].expire(wm);
            self.emit_unmatched(side, &gone, out)?;
        }
        self.maybe_rebuild()?;
        let forward = self.output_watermark(wm);
        if self.emitted_watermark.is_some_and(|w| w >= forward) {
            return Ok(None);
        }
        self.emitted_watermark = Some(forward);
        Ok(Some(Watermark::EventTime(forward)))
    }

    fn on_end(&mut self, out: &mut Collector) -> Result<()> {
        if self.retracting {
            // Unmatched rows came out when they arrived.
            return Ok(());
        }
        for side in 0..2 {
            let chunks: Vec<side::Chunk> = self.sides[side].chunks.drain(..).collect();
            self.emit_unmatched(side, &chunks, out)?;
        }
        Ok(())
    }

    fn snapshot(&mut self, _barrier: CheckpointBarrier) -> Result<OperatorState> {
        state::snapshot(self)
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        state::restore(self, state)
    }

    fn state_size(&self) -> usize {
        self.sides.iter().map(JoinSide::size).sum::<usize>() + self.keys.size()
    }

    fn describe(&self) -> String {
        let state = match (self.spec.interval, self.spec.ttl) {
            (Some(_), _) => "rows of each input until the watermark passes them".to_string(),
            (None, Some(ttl)) => format!(
                "rows of each input for {} of event time behind the watermark; state_ttl: a \
                 match arriving later is missed",
                crate::window::humanize_nanos(ttl.nanos)
            ),
            (None, None) => "every row of both inputs: state grows without bound".to_string(),
        };
        let output = if self.retracting {
            "; retracts and re-emits rows as its inputs change"
        } else {
            ""
        };
        format!(
            "StreamJoin: {} on {} (keeps {state}{output})",
            self.spec.kind.name(),
            self.spec.condition
        )
    }
}
