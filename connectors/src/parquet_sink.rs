//! `CREATE SINK … WITH (connector = 'parquet', path = '…')`: a view's final rows as Parquet
//! files, partitioned by a column, rolled by size and age, published exactly once.
//!
//! ```text
//!  rows ─▶ per-partition buffers (in memory, and in each checkpoint)
//!          │ pre-commit N: buffers past file.max_bytes or file.max_age are encoded to
//!          │   _pending/<sink id>/<N>/<partition>/part-<sink id>-<N>-<k>.parquet
//!          └ commit (manifest N durable): each pending file renamed to <partition>/part-…
//! ```
//!
//! Readers only ever see whole files: a file is complete before it is renamed into place, and
//! renames within a local file system are atomic. On recovery from checkpoint N the files of
//! `_pending/<id>/<N>` that are still there are renamed (the crash came between manifest and
//! commit), other pending directories of the sink are deleted (files of a checkpoint that never
//! completed; their rows are produced again), and the buffers are restored from the checkpoint.
//! Final names are deterministic, so finishing a commit twice is harmless.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::ConnectorError;
use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tracing::info;
use weir_engine::checkpoint::OperatorState;
use weir_engine::error::{EngineError, Result};
use weir_engine::sink::{ChangeBatch, ChangeOp, SinkFactory, SinkFormat, SinkSpec, SinkWriter};
use weir_engine::source_metrics::now_millis;

/// Directory of files written but not yet published.
const PENDING: &str = "_pending";

/// Rows of one partition waiting to become a file.
struct Buffer {
    batches: Vec<RecordBatch>,
    bytes: usize,
    since: Instant,
}

/// The Parquet sink's writer.
struct ParquetSinkWriter {
    store: Arc<dyn ObjectStore>,
    id: String,
    schema: SchemaRef,
    partition_by: Option<usize>,
    max_bytes: usize,
    max_age: Duration,
    buffers: BTreeMap<String, Buffer>,
    /// Files of the last pre-commit, pending → final.
    pending: Vec<(Path, Path)>,
    rows_since_commit: u64,
    /// Files rolled by size so far (part of their names).
    rolled: u64,
    /// The view is final: the next pre-commit writes every buffer out.
    input_ended: bool,
}

impl ParquetSinkWriter {
    /// Each row's partition directory (`column=value`), or "" without partitioning.
    fn partition_names(&self, rows: &RecordBatch) -> Result<Vec<String>> {
        let Some(i) = self.partition_by else {
            return Ok(vec![String::new(); rows.num_rows()]);
        };
        let column = rows.column(i);
        let name = self.schema.field(i).name();
        // Timestamps partition by UTC day.
        let column: ArrayRef = match column.data_type() {
            DataType::Timestamp(_, _) => cast(&cast(column, &DataType::Date32)?, &DataType::Utf8)?,
            _ => cast(column, &DataType::Utf8)?,
        };
        let text = column.as_string::<i32>();
        Ok((0..text.len())
            .map(|r| {
                let value = if text.is_null(r) {
                    "__null__".to_string()
                } else {
                    text.value(r).replace(['/', '\\'], "_")
                };
                format!("{name}={value}")
            })
            .collect())
    }

    fn buffer(&mut self, partition: String, rows: RecordBatch) {
        let buffer = self.buffers.entry(partition).or_insert_with(|| Buffer {
            batches: Vec::new(),
            bytes: 0,
            since: Instant::now(),
        });
        buffer.bytes += rows.get_array_memory_size();
        buffer.batches.push(rows);
    }

    /// Encodes `batches` as one file under `dir` (pending); returns (staged, final) paths.
    async fn stage(
        &self,
        dir: &str,
        partition: &str,
        name: &str,
        batches: Vec<RecordBatch>,
    ) -> Result<(Path, Path)> {
        let bytes = encode(Arc::clone(&self.schema), batches).await?;
        let relative = if partition.is_empty() {
            name.to_string()
        } else {
            format!("{partition}/{name}")
        };
        let staged = Path::from(format!("{dir}/{relative}"));
        self.store
            .put(&staged, PutPayload::from(bytes))
            .await
            .map_err(storage)?;
        Ok((staged, Path::from(relative)))
    }

    /// Deletes every file under `prefix`.
    async fn delete_under(&self, prefix: &Path) -> Result<()> {
        let files: Vec<_> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(storage)?;
        for file in files {
            self.store.delete(&file.location).await.map_err(storage)?;
        }
        Ok(())
    }

    /// Renames `_pending/<id>/<epoch>/…` files still there into place.
    async fn publish(&self, epoch: u64) -> Result<usize> {
        let prefix = Path::from(format!("{PENDING}/{}/{epoch}", self.id));
        let files: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(storage)?;
        let n = files.len();
        for file in files {
            let relative = file
                .location
                .as_ref()
                .strip_prefix(&format!("{prefix}/"))
                .map(str::to_string)
                .ok_or_else(|| ConnectorError::bug("pending file outside its directory"))?;
            self.store
                .rename(&file.location, &Path::from(relative))
                .await
                .map_err(storage)?;
        }
        Ok(n)
    }
}

fn storage(e: object_store::Error) -> EngineError {
    ConnectorError::ObjectStore(e).into()
}

/// Rows as one Parquet file (zstd), encoded off the async runtime.
async fn encode(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema, Some(properties))
            .map_err(ConnectorError::Parquet)?;
        for batch in &batches {
            writer.write(batch).map_err(ConnectorError::Parquet)?;
        }
        writer.close().map_err(ConnectorError::Parquet)?;
        Ok(out)
    })
    .await
    .map_err(|source| ConnectorError::Task {
        what: "Parquet encoding",
        source,
    })?
}

#[async_trait]
impl SinkWriter for ParquetSinkWriter {
    async fn write(&mut self, changes: &ChangeBatch) -> Result<()> {
        if changes.op != ChangeOp::Upsert {
            return Err(ConnectorError::bug("a Parquet sink got an update or a delete").into());
        }
        let rows = &changes.rows;
        let names = self.partition_names(rows)?;
        let mut groups: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            groups.entry(name.as_str()).or_default().push(i as u32);
        }
        if groups.len() == 1 {
            self.buffer(names[0].clone(), rows.clone());
        } else {
            for (name, indices) in groups {
                let part = take_record_batch(rows, &UInt32Array::from(indices))?;
                self.buffer(name.to_string(), part);
            }
        }
        self.rows_since_commit += rows.num_rows() as u64;
        // Partitions past the size limit become files now (published with the next checkpoint;
        // until then their rows are also in the checkpoint's buffers or in that file).
        let full: Vec<String> = self
            .buffers
            .iter()
            .filter(|(_, b)| b.bytes >= self.max_bytes)
            .map(|(k, _)| k.clone())
            .collect();
        for partition in full {
            let Some(buffer) = self.buffers.get(&partition) else {
                continue;
            };
            self.rolled += 1;
            let name = format!(
                "part-{}-{}-{:06}.parquet",
                self.id,
                now_millis(),
                self.rolled
            );
            let dir = format!("{PENDING}/{}/open", self.id);
            let file = self
                .stage(&dir, &partition, &name, buffer.batches.clone())
                .await?;
            self.buffers.remove(&partition);
            self.pending.push(file);
        }
        Ok(())
    }

    async fn pre_commit(&mut self, epoch: u64) -> Result<OperatorState> {
        // Epoch 0 (no checkpoints) and the end of input are named by the clock instead.
        let name_epoch = if epoch == 0 || epoch == u64::MAX {
            now_millis() as u64
        } else {
            epoch
        };
        // A retry after a failed write starts this epoch's directory over.
        let dir = format!("{PENDING}/{}/{name_epoch}", self.id);
        self.delete_under(&Path::from(dir.clone())).await?;
        // Files staged for a checkpoint that failed were never published: they join this one.
        let mut pending = Vec::new();
        for (staged, target) in std::mem::take(&mut self.pending) {
            let moved = Path::from(format!("{dir}/{target}"));
            match self.store.rename(&staged, &moved).await {
                Ok(()) => {}
                Err(e) => {
                    self.pending.push((staged, target));
                    return Err(storage(e));
                }
            }
            pending.push((moved, target));
        }
        let due: Vec<String> = self
            .buffers
            .iter()
            .filter(|(_, b)| self.input_ended || b.since.elapsed() >= self.max_age)
            .map(|(k, _)| k.clone())
            .collect();
        for (k, partition) in due.iter().enumerate() {
            let Some(buffer) = self.buffers.get(partition) else {
                continue;
            };
            let name = format!("part-{}-{name_epoch:020}-{k:05}.parquet", self.id);
            match self
                .stage(&dir, partition, &name, buffer.batches.clone())
                .await
            {
                Ok(file) => pending.push(file),
                Err(e) => {
                    self.pending = pending;
                    return Err(e);
                }
            }
        }
        for partition in &due {
            self.buffers.remove(partition);
        }
        self.pending = pending;
        // The checkpoint keeps the rows still buffered, and which pending files to publish.
        let batches: Vec<RecordBatch> = self
            .buffers
            .values()
            .flat_map(|b| b.batches.clone())
            .collect();
        let batch = if batches.is_empty() {
            Vec::new()
        } else {
            vec![concat_batches(&self.schema, &batches)?]
        };
        Ok(OperatorState {
            schema: (!batch.is_empty()).then(|| Arc::clone(&self.schema)),
            batches: batch,
            values: BTreeMap::from([("publish_epoch".to_string(), name_epoch as i64)]),
        })
    }

    async fn commit(&mut self) -> Result<()> {
        for (staged, target) in &self.pending {
            match self.store.rename(staged, target).await {
                Ok(()) => {}
                // Renamed by an earlier attempt of this commit.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage(e)),
            }
        }
        self.pending.clear();
        self.rows_since_commit = 0;
        Ok(())
    }

    async fn recover(&mut self, state: OperatorState) -> Result<()> {
        let epoch = state.values.get("publish_epoch").map(|e| *e as u64);
        if let Some(epoch) = epoch {
            let published = self.publish(epoch).await?;
            if published > 0 {
                info!(
                    epoch,
                    files = published,
                    "Parquet sink: published the files a crash left pending"
                );
            }
        }
        // Anything else pending belongs to a checkpoint that never completed.
        self.delete_under(&Path::from(format!("{PENDING}/{}", self.id)))
            .await?;
        for batch in state.batches {
            let names = self.partition_names(&batch)?;
            let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
            for (i, name) in names.into_iter().enumerate() {
                groups.entry(name).or_default().push(i as u32);
            }
            for (name, indices) in groups {
                let part = take_record_batch(&batch, &UInt32Array::from(indices))?;
                self.buffer(name, part);
            }
        }
        Ok(())
    }

    fn pending_rows(&self) -> u64 {
        // Buffered rows are in the checkpoint; files become due with time, so a pre-commit is
        // worth it whenever anything is buffered.
        self.rows_since_commit
            + self
                .buffers
                .values()
                .map(|b| b.batches.len() as u64)
                .sum::<u64>()
    }

    fn input_ended(&mut self) {
        self.input_ended = true;
    }

    fn unpublished_rows(&self) -> u64 {
        self.buffers
            .values()
            .flat_map(|b| &b.batches)
            .map(|b| b.num_rows() as u64)
            .sum()
    }
}

/// The `parquet` sink connector.
#[derive(Debug, Clone, Copy)]
pub struct ParquetSinkConnector;

#[async_trait]
impl SinkFactory for ParquetSinkConnector {
    fn name(&self) -> &'static str {
        "parquet"
    }

    async fn open_sink(&self, spec: &mut SinkSpec) -> Result<Box<dyn SinkWriter>> {
        if !matches!(spec.encode.as_str(), "" | "parquet") {
            return Err(EngineError::User(format!(
                "the Parquet sink writes Parquet, not {} (leave out FORMAT … ENCODE …)",
                spec.encode.to_ascii_uppercase()
            )));
        }
        if spec.format != SinkFormat::Plain {
            return Err(EngineError::User(
                "Parquet sinks are append-only: FORMAT PLAIN (final rows only)".into(),
            ));
        }
        let options = &mut spec.options;
        let path = options.take_required("path")?;
        let partition_by = match options.take("partition_by") {
            Some(column) => Some(spec.schema.index_of(column.trim()).map_err(|_| {
                EngineError::User(format!(
                    "partition_by column \"{}\" is not a column of sink \"{}\"",
                    column.trim(),
                    spec.name
                ))
            })?),
            None => None,
        };
        let max_bytes = options
            .take_parsed::<usize>("file.max_bytes")?
            .unwrap_or(64 << 20);
        let max_age = options
            .take_duration("file.max_age")?
            .unwrap_or(Duration::from_secs(60));
        std::fs::create_dir_all(&path)
            .map_err(|e| EngineError::User(format!("Parquet sink path \"{path}\": {e}")))?;
        let store = LocalFileSystem::new_with_prefix(&path)
            .map_err(|e| EngineError::User(format!("Parquet sink path \"{path}\": {e}")))?;
        Ok(Box::new(ParquetSinkWriter {
            store: Arc::new(store),
            id: spec.id.clone(),
            schema: Arc::clone(&spec.schema),
            partition_by,
            max_bytes,
            max_age,
            buffers: BTreeMap::new(),
            pending: Vec::new(),
            rows_since_commit: 0,
            rolled: 0,
            input_ended: false,
        }))
    }
}
