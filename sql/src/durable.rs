//! The database's durable side: the persisted catalog, the checkpoint coordinator, and start-up
//! recovery.
//!
//! Start-up with a data directory:
//! 1. read `catalog.json` and the newest intact checkpoint;
//! 2. run every definition again, in creation order: sources come back with their pinned
//!    options, views with their rows, operator state and source positions from the checkpoint
//!    (matched by the view's id, so a view dropped and re-created does not inherit old state);
//! 3. only then start the pipelines, so a view reading another view subscribes before the
//!    upstream produces anything past the checkpoint;
//! 4. take checkpoints every `checkpoint_interval`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use datafusion::arrow::array::{
    ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::execution::object_store::ObjectStoreUrl;
use parking_lot::Mutex;
use tracing::info;
use weir_engine::checkpoint::catalog_file::{CATALOG_VERSION, CatalogFile, CatalogObject};
use weir_engine::checkpoint::recovery::{RecoveredView, recover};
use weir_engine::checkpoint::{CheckpointCoordinator, CheckpointStore, OperatorRecord};
use weir_engine::source_metrics::now_millis;
use weir_engine::view_runtime::PipelineStart;
use weir_engine::view_table::SegmentStore;

use crate::error::Result;

/// Checkpoints and the persisted catalog of a database with a data directory.
pub struct Durability {
    /// The coordinator (also behind `CHECKPOINT`).
    pub coordinator: Arc<CheckpointCoordinator>,
    /// The catalog as persisted; changed under the database's DDL lock only.
    catalog: tokio::sync::Mutex<CatalogFile>,
    /// During start-up: views of the recovered checkpoint, taken as each view is re-created.
    recovered: Mutex<BTreeMap<String, RecoveredView>>,
    /// During start-up: pipelines to start once every object is back (None afterwards).
    held: Mutex<Option<Vec<PipelineStart>>>,
    /// Makes object ids unique within one millisecond.
    next_id: AtomicU64,
    /// The periodic checkpoint task.
    interval: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durability")
            .field("store", &self.coordinator.store().location())
            .finish_non_exhaustive()
    }
}

impl Durability {
    /// Opens a data store: its catalog (empty when new) and newest intact checkpoint.
    pub async fn open(
        store: CheckpointStore,
        checkpoint_timeout: Duration,
    ) -> Result<(Self, Vec<CatalogObject>)> {
        let catalog = CatalogFile::load(&store).await?.unwrap_or(CatalogFile {
            version: CATALOG_VERSION,
            objects: Vec::new(),
        });
        let loading = std::time::Instant::now();
        let recovered = if catalog.objects.is_empty() {
            None
        } else {
            recover(&store).await?
        };
        let loading = loading.elapsed();
        let (manifest, views) = match recovered {
            Some(r) => (Some(r.manifest), r.views),
            None => (None, BTreeMap::new()),
        };
        if manifest.is_none() && !catalog.objects.is_empty() {
            info!(
                objects = catalog.objects.len(),
                "no checkpoint yet: views start from their sources' beginning"
            );
        }
        let objects = catalog.objects.clone();
        let coordinator = CheckpointCoordinator::new(store, manifest.clone(), checkpoint_timeout);
        if let Some(m) = &manifest {
            coordinator.record_recovery(m, loading);
        }
        let durability = Self {
            coordinator: Arc::new(coordinator),
            catalog: tokio::sync::Mutex::new(catalog),
            recovered: Mutex::new(views),
            held: Mutex::new(Some(Vec::new())),
            next_id: AtomicU64::new(0),
            interval: Mutex::new(None),
        };
        Ok((durability, objects))
    }

    /// Where views' segments are read from by queries.
    pub fn segment_store(&self) -> SegmentStore {
        SegmentStore {
            store: self.coordinator.store().clone(),
            url: segment_url(),
        }
    }

    /// A new object id: creation time plus a counter.
    pub fn new_id(&self) -> String {
        format!(
            "{}-{}",
            now_millis(),
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Adds a definition to the persisted catalog.
    pub async fn record(&self, object: CatalogObject) -> Result<()> {
        let mut catalog = self.catalog.lock().await;
        catalog.objects.push(object);
        if let Err(e) = catalog.save(self.coordinator.store()).await {
            catalog.objects.pop();
            return Err(e.into());
        }
        Ok(())
    }

    /// Removes a definition from the persisted catalog.
    pub async fn forget(&self, name: &str) -> Result<()> {
        let mut catalog = self.catalog.lock().await;
        let before = catalog.objects.clone();
        catalog.objects.retain(|o| o.name != name);
        if let Err(e) = catalog.save(self.coordinator.store()).await {
            catalog.objects = before;
            return Err(e.into());
        }
        Ok(())
    }

    /// The recovered state of `view`, if the checkpoint has it for this incarnation.
    pub fn take_recovered(&self, view: &str, id: &str) -> Option<RecoveredView> {
        let mut recovered = self.recovered.lock();
        match recovered.remove(view) {
            Some(r) if r.entry.view_id == id => Some(r),
            _ => None,
        }
    }

    /// Runs `start` now, or once recovery is complete if it is still going on.
    pub fn start_or_hold(&self, start: PipelineStart) {
        let mut held = self.held.lock();
        match held.as_mut() {
            Some(list) => list.push(start),
            None => {
                drop(held);
                start();
            }
        }
    }

    /// Recovery is complete: starts the held pipelines and the periodic checkpoints.
    pub fn release(&self, interval: Duration) {
        let held = self.held.lock().take().unwrap_or_default();
        for start in held {
            start();
        }
        self.recovered.lock().clear();
        *self.interval.lock() = Some(self.coordinator.spawn_interval(interval));
    }
}

impl Drop for Durability {
    fn drop(&mut self) {
        if let Some(task) = self.interval.lock().take() {
            task.abort();
        }
    }
}

/// The URL segments are registered under in DataFusion's object store registry.
fn segment_url() -> ObjectStoreUrl {
    // A constant, well-formed URL: parsing it cannot fail, and the fallback is never used.
    ObjectStoreUrl::parse("weir-data://local")
        .unwrap_or_else(|_| ObjectStoreUrl::local_filesystem())
}

/// Schema of `weir_checkpoints`.
pub fn checkpoints_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("epoch", DataType::UInt64, false),
        Field::new(
            "started_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            false,
        ),
        Field::new("duration_ms", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("written_bytes", DataType::UInt64, false),
        Field::new("views", DataType::UInt64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// Rows of `weir_checkpoints`: the checkpoint recovered from at start (`recovered`, its duration
/// the time loading it took), then the checkpoints taken since, oldest first.
pub fn checkpoints_batch(
    durability: Option<&Durability>,
) -> datafusion::error::Result<RecordBatch> {
    let history = durability
        .map(|d| d.coordinator.history())
        .unwrap_or_default();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            history.iter().map(|r| r.epoch),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(history.iter().map(|r| r.started_at_ms))
                .with_timezone("+00:00"),
        ),
        Arc::new(UInt64Array::from_iter_values(
            history.iter().map(|r| r.duration.as_millis() as u64),
        )),
        Arc::new(UInt64Array::from_iter_values(
            history.iter().map(|r| r.bytes),
        )),
        Arc::new(UInt64Array::from_iter_values(
            history.iter().map(|r| r.written_bytes),
        )),
        Arc::new(UInt64Array::from_iter_values(
            history.iter().map(|r| r.pipelines as u64),
        )),
        Arc::new(StringArray::from_iter_values(history.iter().map(
            |r| match (r.recovered, &r.error) {
                (true, _) => "recovered",
                (false, None) => "committed",
                (false, Some(_)) => "failed",
            },
        ))),
        Arc::new(StringArray::from_iter(
            history.iter().map(|r| r.error.clone()),
        )),
    ];
    Ok(RecordBatch::try_new(checkpoints_schema(), columns)?)
}

/// Schema of `weir_checkpoint_state`.
pub fn checkpoint_state_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("epoch", DataType::UInt64, false),
        Field::new("view", DataType::Utf8, false),
        Field::new("stage", DataType::UInt64, false),
        Field::new("operator", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
    ]))
}

/// Rows of `weir_checkpoint_state`: the state each operator wrote, per committed checkpoint.
pub fn checkpoint_state_batch(
    durability: Option<&Durability>,
) -> datafusion::error::Result<RecordBatch> {
    let history = durability
        .map(|d| d.coordinator.history())
        .unwrap_or_default();
    let rows: Vec<(u64, &OperatorRecord)> = history
        .iter()
        .flat_map(|r| r.operators.iter().map(move |o| (r.epoch, o)))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|(e, _)| *e))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, o)| o.view.clone()),
        )),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|(_, o)| o.stage as u64),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, o)| o.operator.clone()),
        )),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|(_, o)| o.rows),
        )),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|(_, o)| o.bytes),
        )),
    ];
    Ok(RecordBatch::try_new(checkpoint_state_schema(), columns)?)
}
