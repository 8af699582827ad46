//! The rows of a materialized view, as a DataFusion table.
//!
//! Final rows are appended. An updating view's rows that can still change (open windows,
//! updating aggregates) are kept by key in [`LiveRows`], changed in place by each `Changes`, and
//! moved to the final rows when the watermark seals their partition, under one lock so a query
//! never sees a row twice or not at all.
//!
//! In a durable database, final rows a committed checkpoint has written to Parquet segments
//! leave memory: the table holds the segment list plus the rows appended since, and a scan is
//! the union of a Parquet scan of the segments and the in-memory rest. The swap happens under the
//! same lock, so a query sees every final row exactly once.
//!
//! A view with a retention drops final rows once the watermark is far enough past them (see
//! [`retention`]).

mod final_rows;
pub mod retention;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use parking_lot::RwLock;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::union::UnionExec;

use crate::changes::Changes;
use crate::checkpoint::CheckpointStore;
use crate::checkpoint::manifest::FileRef;
use crate::error::{EngineError, Result};
use crate::live_rows::LiveRows;
use crate::stream_props::StreamProps;
use final_rows::FinalRows;
use retention::Retention;

/// Where a durable view's segments are read from.
#[derive(Debug, Clone)]
pub struct SegmentStore {
    /// The store, registered in the session under `url`.
    pub store: CheckpointStore,
    /// URL DataFusion resolves segment paths against.
    pub url: ObjectStoreUrl,
}

/// Final rows have positions `0..memory.end()` in append order: the first `expired_rows` of
/// them retention dropped, the segments hold the next ones, memory the rest.
#[derive(Debug)]
struct Contents {
    /// The oldest final rows kept, in committed Parquet segments (append order).
    segments: Vec<FileRef>,
    /// Final rows retention has dropped (from the front of memory, or from segments).
    expired_rows: usize,
    /// Final rows after the segments.
    memory: FinalRows,
    /// An updating view's rows that can still change (None for append-only views).
    live: Option<LiveRows>,
    /// Rows older than this (nanoseconds) are past the retention: scans leave them out.
    cutoff: Option<i64>,
}

impl Contents {
    fn new(schema: &SchemaRef) -> Self {
        Self {
            segments: Vec::new(),
            expired_rows: 0,
            memory: FinalRows::starting_at(Arc::clone(schema), 0, None),
            live: None,
            cutoff: None,
        }
    }

    /// Final rows still held (in segments or memory), some perhaps awaiting expiry.
    fn final_rows(&self) -> usize {
        self.memory.end() - self.expired_rows
    }
}

/// A view's rows.
#[derive(Debug)]
pub struct ViewTable {
    schema: SchemaRef,
    contents: RwLock<Contents>,
    /// Set in a durable database: committed rows then live in segments, not in memory.
    segment_store: Option<SegmentStore>,
    /// Why the view's pipeline stopped, once it has failed: queries answer with it rather than
    /// with rows that silently stopped changing.
    failure: parking_lot::Mutex<Option<String>>,
    /// Rows change by key until sealed (`contents.live` is set). Fixed when the table is built,
    /// so the append-only path never takes the lock to find out.
    updating: bool,
    /// `WITH (retention = …)`.
    retention: Option<Retention>,
}

impl ViewTable {
    /// An empty view with `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            contents: RwLock::new(Contents::new(&schema)),
            schema,
            segment_store: None,
            failure: parking_lot::Mutex::new(None),
            updating: false,
            retention: None,
        }
    }

    /// Makes the table hold an updating stream's rows: changes apply by key (`props.key`; a
    /// multiset without one) and the watermark seals partitions of `props.sealed_by` into final
    /// rows. Append-only streams keep the plain appending table.
    pub fn updating(mut self, props: &StreamProps) -> Self {
        if !props.is_append_only() {
            self.contents.write().live = Some(LiveRows::new(Arc::clone(&self.schema), props));
            self.updating = true;
        }
        self
    }

    /// Makes the table drop final rows `retention` behind the watermark (set before any row
    /// arrives).
    pub fn retaining(mut self, retention: Option<Retention>) -> Self {
        self.retention = retention;
        let c = self.contents.get_mut();
        c.memory = FinalRows::starting_at(Arc::clone(&self.schema), c.memory.end(), retention);
        self
    }

    /// The view's retention, if it has one.
    pub fn retention(&self) -> Option<Retention> {
        self.retention
    }

    /// An empty view whose committed rows are read from segments in `store`.
    pub fn with_segments(schema: SchemaRef, store: SegmentStore) -> Self {
        Self {
            contents: RwLock::new(Contents::new(&schema)),
            schema,
            segment_store: Some(store),
            failure: parking_lot::Mutex::new(None),
            updating: false,
            retention: None,
        }
    }

    /// Marks the view failed: from now on a query on it is an error saying `why` (the first
    /// failure is kept).
    pub fn mark_failed(&self, why: String) {
        self.failure.lock().get_or_insert(why);
    }

    /// Why the view failed, if it has.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }

    /// Appends final rows.
    pub fn append(&self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = self.conform(batch)?;
        self.contents.write().memory.push(batch)
    }

    /// Applies row-level changes. Inserts are appended; updates and deletes need a keyed view
    /// table, which views whose input retracts rows get (until then they are refused here, so
    /// a retraction can never be dropped silently).
    pub fn apply(&self, changes: Changes) -> Result<()> {
        if self.updating {
            let (rows, ops) = changes.into_parts();
            let rows = self.conform(rows)?;
            let changes = match ops {
                Some(ops) => Changes::try_new(rows, ops)?,
                None => Changes::inserts(rows),
            };
            return match &mut self.contents.write().live {
                Some(live) => live.apply(&changes),
                None => Err(EngineError::Internal(
                    "an updating view lost its live rows".into(),
                )),
            };
        }
        match changes.into_inserts() {
            Some(rows) => self.append(rows),
            None => Err(EngineError::Internal(
                "a view table that keeps only appended rows received updates or deletes".into(),
            )),
        }
    }

    /// True for an updating view (rows change by key until sealed).
    pub fn is_updating(&self) -> bool {
        self.updating
    }

    /// The watermark (nanoseconds) reached the view: partitions it seals become final rows,
    /// which are returned (for readers that want each final row once); final rows past the
    /// retention leave.
    pub fn seal(&self, watermark: i64) -> Result<Vec<RecordBatch>> {
        if !self.updating {
            self.expire(watermark);
            return Ok(Vec::new());
        }
        let mut c = self.contents.write();
        let sealed = match &mut c.live {
            Some(live) => live.seal(watermark)?,
            None => return Ok(Vec::new()),
        };
        Self::append_sealed(&mut c, &sealed)?;
        drop(c);
        self.expire(watermark);
        Ok(sealed)
    }

    /// Applies the retention at `watermark` (also after recovery, with the restored one). Rows
    /// in memory go here when the view has no segments; otherwise checkpoints drop them with
    /// the segments they land in, and until then scans leave them out.
    pub fn expire(&self, watermark: i64) {
        let Some(retention) = self.retention else {
            return;
        };
        // An ended input closes all its windows, but its rows are not thereby old: a view over
        // a finished input keeps what the last event time left it.
        if crate::message::Watermark::is_end_of_input(watermark) {
            return;
        }
        let cutoff = retention.cutoff(watermark);
        let mut c = self.contents.write();
        if c.cutoff.is_some_and(|old| old >= cutoff) {
            return;
        }
        c.cutoff = Some(cutoff);
        if self.segment_store.is_none() {
            let dropped = c.memory.expire_front(cutoff);
            c.expired_rows += dropped;
        }
    }

    /// The current retention cutoff (nanoseconds), once a watermark has set one.
    pub fn cutoff(&self) -> Option<i64> {
        self.contents.read().cutoff
    }

    /// The input ended: every live row is final.
    pub fn seal_all(&self) -> Result<Vec<RecordBatch>> {
        if !self.updating {
            return Ok(Vec::new());
        }
        let mut c = self.contents.write();
        let sealed = match &mut c.live {
            Some(live) => live.seal_all()?,
            None => return Ok(Vec::new()),
        };
        Self::append_sealed(&mut c, &sealed)?;
        Ok(sealed)
    }

    fn append_sealed(c: &mut Contents, sealed: &[RecordBatch]) -> Result<()> {
        for batch in sealed {
            c.memory.push(batch.clone())?;
        }
        Ok(())
    }

    /// All current rows (final first, then provisional by partition), segments read back.
    pub async fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        let (segments, memory, cutoff) = self.parts()?;
        let mut out = Vec::new();
        if let Some(store) = &self.segment_store {
            for segment in &segments {
                for batch in store.store.read_batches(segment).await? {
                    out.push(self.conform(batch)?);
                }
            }
        }
        out.extend(memory);
        self.retained(out, cutoff)
    }

    /// `batches` without rows past the retention `cutoff`.
    fn retained(&self, batches: Vec<RecordBatch>, cutoff: Option<i64>) -> Result<Vec<RecordBatch>> {
        let (Some(retention), Some(cutoff)) = (self.retention, cutoff) else {
            return Ok(batches);
        };
        batches
            .iter()
            .map(|b| Ok(retention.retained(b, cutoff)?.0))
            .collect()
    }

    /// The current rows as a change stream would deliver them: final rows (segments read back)
    /// as inserts, then, when `live`, the rows of an updating view that can still change as
    /// inserts.
    pub async fn snapshot_changes(&self, live: bool) -> Result<Vec<crate::message::Message>> {
        use crate::message::Message;
        let (segments, appended, live, cutoff) = {
            let c = self.contents.read();
            let live = match &c.live {
                Some(rows) if live => rows.partitions()?,
                _ => BTreeMap::new(),
            };
            (c.segments.clone(), c.memory.batches(), live, c.cutoff)
        };
        let mut finals = Vec::new();
        if let Some(store) = &self.segment_store {
            for segment in &segments {
                for batch in store.store.read_batches(segment).await? {
                    finals.push(self.conform(batch)?);
                }
            }
        }
        finals.extend(appended);
        let mut out: Vec<Message> = self
            .retained(finals, cutoff)?
            .into_iter()
            .map(|rows| Message::Changes(Changes::inserts(rows)))
            .collect();
        out.extend(
            live.into_values()
                .map(|rows| Message::Changes(Changes::inserts(rows))),
        );
        Ok(out)
    }

    /// Final rows appended so far, expired ones included: the position after the last one
    /// (checkpoints persist the ones not yet in a segment).
    pub fn appended_rows(&self) -> u64 {
        self.contents.read().memory.end() as u64
    }

    /// Final rows `[from, to)` by position, as zero-copy slices; rows already in segments or
    /// expired are not in memory and cannot be asked for.
    pub fn rows_range(&self, from: usize, to: usize) -> Result<Vec<RecordBatch>> {
        self.contents.read().memory.range(from, to)
    }

    /// For a keyed table: the positions in `rows` whose key has a live row, and those rows.
    pub fn live_versions(&self, rows: &RecordBatch) -> Result<(Vec<usize>, RecordBatch)> {
        let rows = self.conform(rows.clone())?;
        match self
            .contents
            .read()
            .live
            .as_ref()
            .and_then(LiveRows::unsealed)
        {
            Some(keyed) => keyed.live_versions(&rows),
            None => Ok((Vec::new(), RecordBatch::new_empty(Arc::clone(&self.schema)))),
        }
    }

    /// For a keyed table: the current rows with the given keys (one column per key column):
    /// the positions that found one, and those rows in the same order.
    pub fn lookup(
        &self,
        keys: &[datafusion::arrow::array::ArrayRef],
    ) -> Result<(Vec<usize>, RecordBatch)> {
        match self
            .contents
            .read()
            .live
            .as_ref()
            .and_then(LiveRows::unsealed)
        {
            Some(keyed) => keyed.lookup(keys),
            None => Ok((Vec::new(), RecordBatch::new_empty(Arc::clone(&self.schema)))),
        }
    }

    /// Rows that can still change, by partition (what a checkpoint keeps besides final rows).
    pub fn live_partitions(&self) -> Result<BTreeMap<i64, RecordBatch>> {
        match &self.contents.read().live {
            Some(live) => live.partitions(),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Recovery: the view's rows as of a checkpoint (final rows in `segments` after
    /// `expired_rows` that retention dropped, rows that could still change in `live`).
    pub fn restore(
        &self,
        segments: Vec<FileRef>,
        expired_rows: u64,
        live: BTreeMap<i64, RecordBatch>,
    ) -> Result<()> {
        let live = live
            .into_values()
            .map(|b| self.conform(b))
            .collect::<Result<Vec<_>>>()?;
        let mut c = self.contents.write();
        let segment_rows: usize = segments.iter().map(|s| s.rows as usize).sum();
        c.expired_rows = expired_rows as usize;
        c.segments = segments;
        c.memory = FinalRows::starting_at(
            Arc::clone(&self.schema),
            c.expired_rows + segment_rows,
            self.retention,
        );
        match &mut c.live {
            Some(rows) => {
                for batch in live {
                    rows.apply(&Changes::inserts(batch))?;
                }
            }
            None if live.iter().any(|b| b.num_rows() > 0) => {
                return Err(EngineError::Storage(
                    "the checkpoint holds changing rows for a view that only appends".into(),
                ));
            }
            None => {}
        }
        Ok(())
    }

    /// A checkpoint committed `segments` as this view's final rows after the first
    /// `expired_rows` (which retention dropped): the rows they cover leave memory. A table
    /// without a segment store keeps everything in memory.
    pub fn persisted(&self, segments: &[FileRef], expired_rows: u64) -> Result<()> {
        if self.segment_store.is_none() {
            return Ok(());
        }
        let covered =
            expired_rows as usize + segments.iter().map(|s| s.rows as usize).sum::<usize>();
        let mut c = self.contents.write();
        c.memory.drop_before(covered)?;
        c.segments = segments.to_vec();
        c.expired_rows = expired_rows as usize;
        Ok(())
    }

    /// Final rows held in memory (those not yet in a committed segment).
    pub fn memory_rows(&self) -> usize {
        self.contents.read().memory.rows()
    }

    /// The view's schema.
    pub fn schema_ref(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The committed segments, the rows in memory (final, then provisional) and the retention
    /// cutoff, read under one lock so together they hold every row once.
    fn parts(&self) -> Result<(Vec<FileRef>, Vec<RecordBatch>, Option<i64>)> {
        let c = self.contents.read();
        let mut memory = c.memory.batches();
        if let Some(live) = &c.live {
            memory.extend(live.partitions()?.into_values());
        }
        Ok((c.segments.clone(), memory, c.cutoff))
    }

    /// (final rows, provisional rows, open partitions). Final rows past the retention count
    /// until they are physically dropped (at the next checkpoint, or with their chunk).
    pub fn stats(&self) -> (usize, usize, usize) {
        let c = self.contents.read();
        let (live, partitions) = c.live.as_ref().map_or((0, 0), LiveRows::stats);
        (c.final_rows(), live, partitions)
    }

    /// Bytes of the view's rows: `(in memory, in segments)`. Memory counts final rows not yet in
    /// segments and the rows that can still change; segments are the committed Parquet files.
    pub fn bytes(&self) -> (usize, u64) {
        let c = self.contents.read();
        let appended = c.memory.bytes();
        let live = c.live.as_ref().map_or(0, LiveRows::size);
        let segments = c.segments.iter().map(|s| s.size).sum();
        (appended + live, segments)
    }

    /// Re-labels a batch with the view's schema (names and nullability come from the plan).
    fn conform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        if batch.schema() == self.schema {
            return Ok(batch);
        }
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            batch.columns().to_vec(),
        )?)
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        if let Some(why) = self.failure() {
            return Err(datafusion::error::DataFusionError::External(Box::new(
                EngineError::ViewFailed(why),
            )));
        }
        let external = |e: EngineError| datafusion::error::DataFusionError::External(Box::new(e));
        let (segments, batches, cutoff) = self.parts().map_err(external)?;
        // Past the retention: read the time column too, filter, then project it away.
        let filter = match (self.retention, cutoff) {
            (Some(retention), Some(cutoff)) => Some((
                retention
                    .predicate(&self.schema, cutoff)
                    .map_err(external)?,
                retention.column,
            )),
            _ => None,
        };
        let read = match (&filter, projection) {
            (Some((_, time)), Some(p)) if !p.contains(time) => {
                let mut p = p.clone();
                p.push(*time);
                Some(p)
            }
            _ => projection.cloned(),
        };
        let memory: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[batches], self.schema(), read.clone())?;
        let rows = match self.segment_store.as_ref().filter(|_| !segments.is_empty()) {
            None => memory,
            Some(store) => {
                let files: Vec<PartitionedFile> = segments
                    .iter()
                    .map(|s| PartitionedFile::new(s.path.clone(), s.size))
                    .collect();
                let source = Arc::new(ParquetSource::new(self.schema()));
                let config = FileScanConfigBuilder::new(store.url.clone(), source)
                    .with_file_group(FileGroup::new(files))
                    .with_projection_indices(read.clone())?
                    .build();
                let files: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
                UnionExec::try_new(vec![files, memory])?
            }
        };
        let Some((predicate, time)) = filter else {
            return Ok(rows);
        };
        // The predicate names the time column by its place in the full schema; in what was
        // read it sits where the projection put it.
        let read_columns: Vec<usize> =
            read.unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let at = read_columns
            .iter()
            .position(|&c| c == time)
            .ok_or_else(|| external(EngineError::Internal("retention column not read".into())))?;
        let predicate = predicate
            .transform(|e| {
                Ok(match e.as_ref().downcast_ref::<Column>() {
                    Some(c) => Transformed::yes(Arc::new(Column::new(c.name(), at)) as _),
                    None => Transformed::no(e),
                })
            })?
            .data;
        let keep: Option<Vec<usize>> = projection.map(|p| (0..p.len()).collect());
        Ok(Arc::new(
            FilterExecBuilder::new(predicate, rows)
                .apply_projection(keep)?
                .build()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(values: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values))]).unwrap()
    }

    #[test]
    fn changes_apply_by_key_and_the_watermark_seals() -> Result<()> {
        use crate::changes::Op;
        use crate::stream_props::{StreamKind, StreamProps};
        // Column 0 is both the key and the sealing column: each value is its own partition.
        let props = StreamProps {
            kind: StreamKind::Retract,
            key: Some(vec![0]),
            sealed_by: Some(0),
            seal_span: 0,
            event_time: Some(0),
        };
        let t = ViewTable::new(batch(vec![]).schema()).updating(&props);
        t.apply(Changes::inserts(batch(vec![1, 2, 3])))?;
        t.apply(Changes::from_ops(batch(vec![3]), &[Op::Delete])?)?;
        assert_eq!(t.stats(), (0, 2, 2));
        let sealed = t.seal(1)?;
        assert_eq!(sealed.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
        assert_eq!(t.stats(), (1, 1, 1));
        // A retraction of a sealed row is a bug upstream, never silently applied.
        assert!(
            t.apply(Changes::from_ops(batch(vec![1]), &[Op::Delete])?)
                .is_err()
        );
        t.seal_all()?;
        assert_eq!(t.stats(), (2, 0, 0));
        Ok(())
    }

    /// A view with a retention over a long stream: memory stays bounded (whole chunks leave),
    /// and queries see exactly the rows within the retention, whatever they project.
    #[tokio::test]
    async fn retention_bounds_memory_and_queries_see_exactly_the_kept_rows() -> Result<()> {
        use datafusion::arrow::array::TimestampNanosecondArray;
        use datafusion::arrow::datatypes::TimeUnit;
        use datafusion::prelude::SessionContext;

        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]));
        let table = Arc::new(
            ViewTable::new(Arc::clone(&schema)).retaining(Some(Retention {
                column: 1,
                horizon_nanos: 5_000,
            })),
        );
        // 300 000 rows timed by position, 100 per batch, the watermark at the newest.
        for i in 0..3_000i64 {
            let times = i * 100..(i + 1) * 100;
            let rows = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from_iter_values(times.clone())),
                    Arc::new(TimestampNanosecondArray::from_iter_values(times)),
                ],
            )?;
            table.append(rows)?;
            table.seal((i + 1) * 100)?;
        }
        // Kept: times 295 000 .. 300 000. Held: at most those and two chunks of older rows.
        assert!(
            table.memory_rows() < 5_000 + 2 * 65_536,
            "{}",
            table.memory_rows()
        );
        let ctx = SessionContext::new();
        ctx.register_table("v", Arc::clone(&table) as Arc<dyn TableProvider>)?;
        for (sql, expected) in [
            ("SELECT count(*) FROM v", "5000"),
            ("SELECT count(x) FROM v", "5000"),
            ("SELECT min(x) FROM v", "295000"),
            ("SELECT min(t) FROM v", "1970-01-01T00:00:00.000295"),
            (
                "SELECT count(*) FROM (SELECT x FROM v WHERE x % 2 = 0)",
                "2500",
            ),
        ] {
            let batches = ctx.sql(sql).await?.collect().await?;
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .map_err(EngineError::from)?
                .to_string();
            assert!(text.contains(expected), "{sql}: {text}");
        }
        let snapshot: usize = table
            .snapshot()
            .await?
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(snapshot, 5_000);
        Ok(())
    }

    #[test]
    fn rows_range_spans_batches() -> Result<()> {
        let t = ViewTable::new(batch(vec![]).schema());
        t.append(batch(vec![1, 2, 3]))?;
        t.append(batch(vec![4, 5]))?;
        let rows = t.rows_range(2, 5)?;
        let values: Vec<i64> = rows
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(values, vec![3, 4, 5]);
        assert!(t.rows_range(4, 6).is_err());
        Ok(())
    }
}
