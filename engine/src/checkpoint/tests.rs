//! Checkpoint tests: the window aggregate's state round trip, the coordinator's commits, a full
//! disk, and recovery falling back past damaged checkpoints.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use futures::stream::BoxStream;

use super::CheckpointCoordinator;
use super::catalog_file::{CatalogFile, CatalogObject, ObjectKind};
use super::recovery::recover;
use super::state::{CheckpointReport, OperatorState, ViewState};
use super::store::CheckpointStore;
use crate::error::{EngineError, Result};
use crate::pipeline::PipelineStatus;
use crate::view_table::ViewTable;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]))
}

fn batch(values: Vec<i64>) -> RecordBatch {
    RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(values))]).unwrap()
}

/// A local store whose writes fail with "no space left on device" while `full` is set.
#[derive(Debug)]
struct FullDisk {
    inner: LocalFileSystem,
    full: AtomicBool,
}

impl std::fmt::Display for FullDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FullDisk({})", self.inner)
    }
}

impl FullDisk {
    fn check(&self) -> datafusion::object_store::Result<()> {
        if self.full.load(Ordering::Relaxed) {
            let io =
                std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
            return Err(datafusion::object_store::Error::Generic {
                store: "test",
                source: Box::new(io),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FullDisk {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> datafusion::object_store::Result<PutResult> {
        self.check()?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> datafusion::object_store::Result<Box<dyn MultipartUpload>> {
        self.check()?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> datafusion::object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, datafusion::object_store::Result<Path>>,
    ) -> BoxStream<'static, datafusion::object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> BoxStream<'static, datafusion::object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> datafusion::object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> datafusion::object_store::Result<()> {
        self.check()?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// One view registered with the coordinator; `step` plays the pipeline's part of a barrier.
struct FakePipeline {
    table: Arc<ViewTable>,
    reports: tokio::sync::mpsc::UnboundedSender<CheckpointReport>,
}

impl FakePipeline {
    fn new(coordinator: &CheckpointCoordinator) -> Self {
        let table = Arc::new(ViewTable::new(schema()));
        let link = coordinator.register(
            "v",
            "id-1",
            Vec::new(),
            0,
            Arc::clone(&table),
            Arc::new(PipelineStatus::default()),
        );
        Self {
            table,
            reports: link.reports,
        }
    }

    /// Appends rows, then reports barrier `epoch` with operator state `state_rows`.
    fn step(&self, epoch: u64, rows: Vec<i64>, state_rows: Vec<i64>) {
        self.table.append(batch(rows)).unwrap();
        let state = OperatorState {
            schema: Some(schema()),
            batches: vec![batch(state_rows)],
            values: BTreeMap::new(),
        };
        self.reports
            .send(CheckpointReport::Operator {
                epoch,
                stage: 1,
                name: "op".into(),
                state,
            })
            .unwrap();
        let view = ViewState {
            appended_rows: self.table.appended_rows(),
            ..ViewState::default()
        };
        self.reports
            .send(CheckpointReport::View { epoch, state: view })
            .unwrap();
    }
}

fn values(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect()
}

async fn segment_values(
    store: &CheckpointStore,
    segments: &[super::manifest::FileRef],
) -> Vec<i64> {
    let mut out = Vec::new();
    for s in segments {
        out.extend(values(&store.read_batches(s).await.unwrap()));
    }
    out
}

#[tokio::test]
async fn a_full_disk_fails_the_checkpoint_and_keeps_the_last_good_one() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(FullDisk {
        inner: LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
        full: AtomicBool::new(false),
    });
    let store = CheckpointStore::new(Arc::clone(&disk) as Arc<dyn ObjectStore>, "test");
    let coordinator = CheckpointCoordinator::new(store.clone(), None, Duration::from_secs(5));
    let pipeline = FakePipeline::new(&coordinator);

    pipeline.step(1, vec![1, 2], vec![10]);
    coordinator.checkpoint().await?;

    disk.full.store(true, Ordering::Relaxed);
    pipeline.step(2, vec![3], vec![20]);
    let error = coordinator
        .checkpoint()
        .await
        .expect_err("the disk is full");
    assert!(matches!(error, EngineError::DiskFull(_)), "{error}");
    assert!(error.to_string().contains("no space left"), "{error}");
    let history = coordinator.history();
    assert!(history.last().and_then(|r| r.error.as_deref()).is_some());

    // The last good checkpoint is intact and is what a restart would load.
    let recovered = recover(&store).await?.expect("a checkpoint");
    assert_eq!(recovered.manifest.epoch, 1);
    assert_eq!(
        segment_values(&store, &recovered.views["v"].segments).await,
        vec![1, 2]
    );

    // Space again: the next checkpoint also persists the rows the failed one could not.
    disk.full.store(false, Ordering::Relaxed);
    pipeline.step(3, vec![4], vec![30]);
    coordinator.checkpoint().await?;
    let recovered = recover(&store).await?.expect("a checkpoint");
    assert_eq!(recovered.manifest.epoch, 3);
    let view = &recovered.views["v"];
    assert_eq!(
        segment_values(&store, &view.segments).await,
        vec![1, 2, 3, 4]
    );
    assert_eq!(values(&view.restore.operators[&1].batches), vec![30]);
    Ok(())
}

#[tokio::test]
async fn recovery_falls_back_past_damaged_checkpoints() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::local(dir.path())?;
    let coordinator = CheckpointCoordinator::new(store.clone(), None, Duration::from_secs(5));
    let pipeline = FakePipeline::new(&coordinator);
    pipeline.step(1, vec![1], vec![10]);
    coordinator.checkpoint().await?;
    pipeline.step(2, vec![2], vec![20]);
    coordinator.checkpoint().await?;
    pipeline.step(3, vec![3], vec![30]);
    coordinator.checkpoint().await?;
    // Epoch 1 was cleaned up once 3 committed; 2 stays as the fallback.
    assert_eq!(store.manifest_epochs().await?, vec![3, 2]);

    // A flipped byte in epoch 3's operator state (same size): the checksum catches it.
    let state = dir
        .path()
        .join(format!("checkpoints/{:020}/id-1/op-1.parquet", 3));
    let mut bytes = std::fs::read(&state).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&state, bytes).unwrap();
    let recovered = recover(&store).await?.expect("a checkpoint");
    assert_eq!(recovered.manifest.epoch, 2);
    assert_eq!(
        values(&recovered.views["v"].restore.operators[&1].batches),
        vec![20]
    );

    // A half-written manifest (as if cut off) is skipped too.
    std::fs::write(
        dir.path()
            .join("checkpoints/manifest-00000000000000000004.json"),
        b"{\"version\": 1, \"ep",
    )
    .unwrap();
    assert_eq!(recover(&store).await?.map(|r| r.manifest.epoch), Some(2));

    // A missing state file makes its checkpoint unusable.
    std::fs::remove_file(
        dir.path()
            .join(format!("checkpoints/{:020}/id-1/op-1.parquet", 2)),
    )
    .unwrap();
    assert!(recover(&store).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn the_catalog_round_trips_and_an_unwritable_directory_is_a_clear_error() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::local(dir.path())?;
    assert!(CatalogFile::load(&store).await?.is_none());
    let file = CatalogFile {
        version: super::catalog_file::CATALOG_VERSION,
        objects: vec![CatalogObject {
            kind: ObjectKind::Source,
            name: "s".into(),
            id: "1-0".into(),
            sql: "CREATE SOURCE s …".into(),
            pinned: [("start_time".to_string(), "2026-01-01T00:00:00Z".to_string())].into(),
        }],
    };
    file.save(&store).await?;
    assert_eq!(CatalogFile::load(&store).await?, Some(file));

    // A data directory below a regular file cannot be created: the error says which and why.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let error = CheckpointStore::local(&blocker.join("data")).expect_err("not a directory");
    assert!(matches!(error, EngineError::Storage(_)), "{error}");
    assert!(
        error.to_string().contains("cannot create data directory"),
        "{error}"
    );
    Ok(())
}

/// Retention through checkpoints: whole segments past the cutoff leave the manifest, a
/// compaction leaves expired rows behind, and positions stay consistent (the segments always end
/// at the view's last final row), through many epochs and a recovery.
#[tokio::test]
async fn retention_drops_segments_and_compacts_expired_rows_away() -> Result<()> {
    use crate::message::Watermark;
    use crate::view_table::SegmentStore;
    use crate::view_table::retention::Retention;
    use datafusion::arrow::array::TimestampNanosecondArray;
    use datafusion::arrow::datatypes::TimeUnit;
    use datafusion::execution::object_store::ObjectStoreUrl;

    let timed = Arc::new(Schema::new(vec![Field::new(
        "t",
        DataType::Timestamp(TimeUnit::Nanosecond, None),
        false,
    )]));
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::local(dir.path())?;
    let coordinator = CheckpointCoordinator::new(store.clone(), None, Duration::from_secs(5));
    let retention = Retention {
        column: 0,
        horizon_nanos: 175,
    };
    let segments = SegmentStore {
        store: store.clone(),
        url: ObjectStoreUrl::parse("weir-test://").unwrap(),
    };
    let table =
        Arc::new(ViewTable::with_segments(Arc::clone(&timed), segments).retaining(Some(retention)));
    let link = coordinator.register(
        "v",
        "id-1",
        Vec::new(),
        0,
        Arc::clone(&table),
        Arc::new(PipelineStatus::default()),
    );
    let mut compacted = false;
    for epoch in 1..=40u64 {
        // Ten rows timed by their position, then the watermark at the newest.
        let first = (epoch as i64 - 1) * 10;
        let rows = TimestampNanosecondArray::from_iter_values(first..first + 10);
        table.append(RecordBatch::try_new(Arc::clone(&timed), vec![Arc::new(rows)]).unwrap())?;
        let watermark = first + 10;
        table.seal(watermark)?;
        let state = OperatorState {
            schema: None,
            batches: Vec::new(),
            values: BTreeMap::new(),
        };
        link.reports
            .send(CheckpointReport::Operator {
                epoch,
                stage: 1,
                name: "op".into(),
                state,
            })
            .unwrap();
        let view = ViewState {
            appended_rows: table.appended_rows(),
            watermark: Some(Watermark::EventTime(watermark)),
            ..ViewState::default()
        };
        link.reports
            .send(CheckpointReport::View { epoch, state: view })
            .unwrap();
        coordinator.checkpoint().await?;

        let recovered = recover(&store).await?.expect("a checkpoint");
        let view = &recovered.views["v"];
        let expired = view.entry.view.expired_rows as i64;
        let mut kept = Vec::new();
        for s in &view.segments {
            for b in store.read_batches(s).await? {
                kept.extend(
                    b.column(0)
                        .as_any()
                        .downcast_ref::<TimestampNanosecondArray>()
                        .unwrap()
                        .values()
                        .iter()
                        .copied(),
                );
            }
        }
        // Rows are timed by position, so what is kept is exactly the positions after the
        // expired ones, up to the last row appended; nothing kept is older than the cutoff
        // by more than a segment, nothing newer ever goes.
        assert_eq!(
            kept,
            (expired..watermark).collect::<Vec<_>>(),
            "epoch {epoch}"
        );
        assert!(
            expired <= retention.cutoff(watermark).max(0),
            "epoch {epoch}"
        );
        assert!(view.segments.len() <= 17, "epoch {epoch}");
        compacted |= view.segments.len() == 1 && expired > 0 && epoch > 17;
        assert_eq!(table.memory_rows(), 0);
    }
    assert!(
        compacted,
        "a compaction happened and left expired rows behind"
    );
    let recovered = recover(&store).await?.expect("a checkpoint");
    let view = &recovered.views["v"];
    assert!(view.entry.view.expired_rows >= 400 - 175 - 10 * 17);

    // A restart restores positions: the next rows are persisted after the kept ones.
    let restored = ViewTable::with_segments(
        timed,
        SegmentStore {
            store: store.clone(),
            url: ObjectStoreUrl::parse("weir-test://").unwrap(),
        },
    )
    .retaining(Some(retention));
    restored.restore(
        view.segments.clone(),
        view.entry.view.expired_rows,
        BTreeMap::new(),
    )?;
    assert_eq!(restored.appended_rows(), 400);
    Ok(())
}
