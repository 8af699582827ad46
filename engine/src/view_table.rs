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

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use parking_lot::RwLock;

use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_plan::union::UnionExec;

use crate::changes::Changes;
use crate::checkpoint::CheckpointStore;
use crate::checkpoint::manifest::FileRef;
use crate::error::{EngineError, Result};
use crate::live_rows::LiveRows;
use crate::stream_props::StreamProps;

/// Appended batches are compacted once this many pile up, so scans stay cheap.
const COMPACT_AFTER_BATCHES: usize = 256;

/// Where a durable view's segments are read from.
#[derive(Debug, Clone)]
pub struct SegmentStore {
    /// The store, registered in the session under `url`.
    pub store: CheckpointStore,
    /// URL DataFusion resolves segment paths against.
    pub url: ObjectStoreUrl,
}

#[derive(Debug, Default)]
struct Contents {
    /// The oldest final rows, in committed Parquet segments (append order).
    segments: Vec<FileRef>,
    /// Rows in `segments`.
    segment_rows: usize,
    /// Final rows after the segments, in arrival order.
    appended: Vec<RecordBatch>,
    /// All final rows, in segments or in memory (kept to avoid summing on every stats query).
    appended_rows: usize,
    /// An updating view's rows that can still change (None for append-only views).
    live: Option<LiveRows>,
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
}

impl ViewTable {
    /// An empty view with `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            contents: RwLock::new(Contents::default()),
            segment_store: None,
            failure: parking_lot::Mutex::new(None),
            updating: false,
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

    /// An empty view whose committed rows are read from segments in `store`.
    pub fn with_segments(schema: SchemaRef, store: SegmentStore) -> Self {
        Self {
            schema,
            contents: RwLock::new(Contents::default()),
            segment_store: Some(store),
            failure: parking_lot::Mutex::new(None),
            updating: false,
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
        let mut c = self.contents.write();
        c.appended_rows += batch.num_rows();
        c.appended.push(batch);
        if c.appended.len() >= COMPACT_AFTER_BATCHES {
            let merged = concat_batches(&self.schema, c.appended.iter())?;
            c.appended = vec![merged];
        }
        Ok(())
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
    /// which are returned (for readers that want each final row once).
    pub fn seal(&self, watermark: i64) -> Result<Vec<RecordBatch>> {
        if !self.updating {
            return Ok(Vec::new());
        }
        let mut c = self.contents.write();
        let sealed = match &mut c.live {
            Some(live) => live.seal(watermark)?,
            None => return Ok(Vec::new()),
        };
        Self::append_sealed(&mut c, &sealed);
        Ok(sealed)
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
        Self::append_sealed(&mut c, &sealed);
        Ok(sealed)
    }

    fn append_sealed(c: &mut Contents, sealed: &[RecordBatch]) {
        for batch in sealed.iter().filter(|b| b.num_rows() > 0) {
            c.appended_rows += batch.num_rows();
            c.appended.push(batch.clone());
        }
    }

    /// All current rows (final first, then provisional by partition), segments read back.
    pub async fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        let (segments, memory) = self.parts()?;
        let mut out = Vec::new();
        if let Some(store) = &self.segment_store {
            for segment in &segments {
                for batch in store.store.read_batches(segment).await? {
                    out.push(self.conform(batch)?);
                }
            }
        }
        out.extend(memory);
        Ok(out)
    }

    /// The current rows as a change stream would deliver them: final rows (segments read back)
    /// as inserts, then, when `live`, the rows of an updating view that can still change as
    /// inserts.
    pub async fn snapshot_changes(&self, live: bool) -> Result<Vec<crate::message::Message>> {
        use crate::message::Message;
        let (segments, appended, live) = {
            let c = self.contents.read();
            let live = match &c.live {
                Some(rows) if live => rows.partitions()?,
                _ => BTreeMap::new(),
            };
            (c.segments.clone(), c.appended.clone(), live)
        };
        let mut out = Vec::new();
        if let Some(store) = &self.segment_store {
            for segment in &segments {
                for batch in store.store.read_batches(segment).await? {
                    out.push(Message::Changes(Changes::inserts(self.conform(batch)?)));
                }
            }
        }
        out.extend(
            appended
                .into_iter()
                .map(|rows| Message::Changes(Changes::inserts(rows))),
        );
        out.extend(
            live.into_values()
                .map(|rows| Message::Changes(Changes::inserts(rows))),
        );
        Ok(out)
    }

    /// Final rows appended so far (checkpoints persist the ones not yet in a segment).
    pub fn appended_rows(&self) -> u64 {
        self.contents.read().appended_rows as u64
    }

    /// Final rows `[from, to)` in append order, as zero-copy slices; rows already in segments
    /// are not in memory and cannot be asked for.
    pub fn rows_range(&self, from: usize, to: usize) -> Result<Vec<RecordBatch>> {
        let c = self.contents.read();
        if to > c.appended_rows || from > to || from < c.segment_rows {
            return Err(crate::error::EngineError::Internal(format!(
                "rows {from}..{to} of a view with {} final rows, {} of them in segments",
                c.appended_rows, c.segment_rows
            )));
        }
        let mut out = Vec::new();
        let mut start = c.segment_rows;
        for batch in &c.appended {
            let end = start + batch.num_rows();
            let lo = from.max(start);
            let hi = to.min(end);
            if lo < hi {
                out.push(batch.slice(lo - start, hi - lo));
            }
            start = end;
        }
        Ok(out)
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

    /// Rows that can still change, by partition (what a checkpoint keeps besides final rows).
    pub fn live_partitions(&self) -> Result<BTreeMap<i64, RecordBatch>> {
        match &self.contents.read().live {
            Some(live) => live.partitions(),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Recovery: the view's rows as of a checkpoint (final rows in `segments`, rows that could
    /// still change in `live`).
    pub fn restore(&self, segments: Vec<FileRef>, live: BTreeMap<i64, RecordBatch>) -> Result<()> {
        let live = live
            .into_values()
            .map(|b| self.conform(b))
            .collect::<Result<Vec<_>>>()?;
        let mut c = self.contents.write();
        c.segment_rows = segments.iter().map(|s| s.rows as usize).sum();
        c.segments = segments;
        c.appended = Vec::new();
        c.appended_rows = c.segment_rows;
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

    /// A checkpoint committed `segments` as this view's final rows (from the first one on): the
    /// rows they cover leave memory. A table without a segment store keeps everything in memory.
    pub fn persisted(&self, segments: &[FileRef]) -> Result<()> {
        if self.segment_store.is_none() {
            return Ok(());
        }
        let covered: usize = segments.iter().map(|s| s.rows as usize).sum();
        let mut c = self.contents.write();
        if covered > c.appended_rows || covered < c.segment_rows {
            return Err(crate::error::EngineError::Internal(format!(
                "segments cover {covered} rows; the view has {} ({} already in segments)",
                c.appended_rows, c.segment_rows
            )));
        }
        let mut drop = covered - c.segment_rows;
        let mut kept = Vec::with_capacity(c.appended.len());
        for batch in std::mem::take(&mut c.appended) {
            if drop >= batch.num_rows() {
                drop -= batch.num_rows();
            } else {
                kept.push(batch.slice(drop, batch.num_rows() - drop));
                drop = 0;
            }
        }
        c.appended = kept;
        c.segments = segments.to_vec();
        c.segment_rows = covered;
        Ok(())
    }

    /// Final rows held in memory (those not yet in a committed segment).
    pub fn memory_rows(&self) -> usize {
        let c = self.contents.read();
        c.appended_rows - c.segment_rows
    }

    /// The view's schema.
    pub fn schema_ref(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The committed segments and the rows in memory (final, then provisional), read under one
    /// lock so together they hold every row once.
    fn parts(&self) -> Result<(Vec<FileRef>, Vec<RecordBatch>)> {
        let c = self.contents.read();
        let mut memory: Vec<RecordBatch> = c.appended.clone();
        if let Some(live) = &c.live {
            memory.extend(live.partitions()?.into_values());
        }
        Ok((c.segments.clone(), memory))
    }

    /// (final rows, provisional rows, open partitions).
    pub fn stats(&self) -> (usize, usize, usize) {
        let c = self.contents.read();
        let (live, partitions) = c.live.as_ref().map_or((0, 0), LiveRows::stats);
        (c.appended_rows, live, partitions)
    }

    /// Bytes of the view's rows: `(in memory, in segments)`. Memory counts final rows not yet in
    /// segments and the rows that can still change; segments are the committed Parquet files.
    pub fn bytes(&self) -> (usize, u64) {
        let c = self.contents.read();
        let appended: usize = c
            .appended
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
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
        let (segments, batches) = self
            .parts()
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let memory: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[batches], self.schema(), projection.cloned())?;
        let Some(store) = self.segment_store.as_ref().filter(|_| !segments.is_empty()) else {
            return Ok(memory);
        };
        let files: Vec<PartitionedFile> = segments
            .iter()
            .map(|s| PartitionedFile::new(s.path.clone(), s.size))
            .collect();
        let source = Arc::new(ParquetSource::new(self.schema()));
        let config = FileScanConfigBuilder::new(store.url.clone(), source)
            .with_file_group(FileGroup::new(files))
            .with_projection_indices(projection.cloned())?
            .build();
        let files: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        UnionExec::try_new(vec![files, memory])
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
