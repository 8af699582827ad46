//! Where checkpoints live: an `object_store` (the local file system under `--data-dir` by default;
//! any S3-compatible store through the same trait). State is Arrow in Parquet; manifests and the
//! catalog are JSON.
//!
//! ```text
//! catalog.json                                 sources and views, in creation order
//! checkpoints/manifest-<epoch>.json            written last: the checkpoint exists once it does
//! checkpoints/<epoch>/<view id>/op-<stage>.parquet   operator state
//! checkpoints/<epoch>/<view id>/provisional.parquet  open windows' current rows
//! views/<view id>/seg-<epoch>-<n>.parquet      final rows, one segment per checkpoint (merged later)
//! ```

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use futures::TryStreamExt;

use super::manifest::{FileRef, MANIFEST_VERSION, Manifest};
use crate::error::{EngineError, Result};

/// How a file's rows are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// Not at all: operator state is rewritten every checkpoint and read back at restart, where
    /// decoding speed is what counts.
    None,
    /// Snappy: view segments, which are kept.
    Fast,
}

/// Checkpoint storage.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    /// Shown in logs and errors (a directory or a URL).
    location: String,
}

impl CheckpointStore {
    /// A store over `store`, described as `location` in messages.
    pub fn new(store: Arc<dyn ObjectStore>, location: impl Into<String>) -> Self {
        Self {
            store,
            location: location.into(),
        }
    }

    /// A store in a local directory (created if missing). Fails clearly when the directory
    /// cannot be created or written.
    pub fn local(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            storage_error(
                &format!("cannot create data directory {}", dir.display()),
                &e,
            )
        })?;
        let probe = dir.join(".weir-write-test");
        std::fs::write(&probe, b"ok")
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| {
                storage_error(
                    &format!("data directory {} is not writable", dir.display()),
                    &e,
                )
            })?;
        // Automatic clean-up removes a checkpoint's directories with its last file.
        let fs = datafusion::object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| storage_error(&format!("data directory {}", dir.display()), &e))?
            .with_automatic_cleanup(true);
        Ok(Self::new(Arc::new(fs), dir.display().to_string()))
    }

    /// The object store itself (registered with DataFusion so queries read view segments).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// A store at `url`: `s3://bucket[/prefix]` for S3 or an S3-compatible service (credentials,
    /// region and endpoint from the usual `AWS_*` environment variables, e.g. `AWS_ENDPOINT` and
    /// `AWS_ALLOW_HTTP=true` for a local one), or `file:///dir` / a plain path for a directory.
    /// Checks it can write there, so a wrong bucket or credentials fail at start, clearly.
    pub async fn from_url(url: &str) -> Result<Self> {
        let Some(rest) = url.strip_prefix("s3://") else {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            return Self::local(std::path::Path::new(dir));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(EngineError::User(format!(
                "checkpoint URL '{url}' names no bucket (s3://bucket/prefix)"
            )));
        }
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| storage_error(&format!("checkpoint store {url}"), &e))?;
        let store: Arc<dyn ObjectStore> = if prefix.trim_matches('/').is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(
                s3,
                prefix.trim_matches('/'),
            ))
        };
        let this = Self::new(store, url);
        this.put(".weir-write-test", b"ok".to_vec()).await?;
        Ok(this)
    }

    /// Where the store is, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Encodes `batches` as one Parquet file at `path`.
    pub async fn write_batches(
        &self,
        path: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        compress: Compress,
    ) -> Result<FileRef> {
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        let bytes = tokio::task::spawn_blocking(move || encode_parquet(schema, &batches, compress))
            .await
            .map_err(|e| EngineError::Internal(format!("checkpoint encoder stopped: {e}")))??;
        let size = bytes.len() as u64;
        let crc32 = crc32fast::hash(&bytes);
        self.put(path, bytes).await?;
        Ok(FileRef {
            path: path.to_string(),
            size,
            crc32,
            rows,
            max_time: None,
        })
    }

    /// Reads a Parquet file written by [`CheckpointStore::write_batches`], checking its size and
    /// checksum first.
    pub async fn read_batches(&self, file: &FileRef) -> Result<Vec<RecordBatch>> {
        let bytes = self.read_verified(file).await?;
        tokio::task::spawn_blocking(move || decode_parquet(bytes))
            .await
            .map_err(|e| EngineError::Internal(format!("checkpoint decoder stopped: {e}")))?
    }

    /// The bytes of `file`, after checking its size and checksum.
    pub async fn read_verified(&self, file: &FileRef) -> Result<Bytes> {
        let bytes = self.get(&file.path).await?;
        if bytes.len() as u64 != file.size {
            return Err(EngineError::Storage(format!(
                "{}: {} bytes, the manifest says {} (incomplete file)",
                file.path,
                bytes.len(),
                file.size
            )));
        }
        if crc32fast::hash(&bytes) != file.crc32 {
            return Err(EngineError::Storage(format!(
                "{}: checksum mismatch (damaged file)",
                file.path
            )));
        }
        Ok(bytes)
    }

    /// Writes the manifest: the checkpoint is committed when this returns.
    pub async fn commit_manifest(&self, manifest: &Manifest) -> Result<()> {
        let text = serde_json::to_vec_pretty(manifest)
            .map_err(|e| EngineError::Internal(format!("cannot encode a manifest: {e}")))?;
        self.put(&manifest_path(manifest.epoch), text).await
    }

    /// Epochs that have a manifest, newest first.
    pub async fn manifest_epochs(&self) -> Result<Vec<u64>> {
        let prefix = Path::from("checkpoints");
        let listed: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| {
                storage_error(&format!("cannot list checkpoints in {}", self.location), &e)
            })?;
        let mut epochs: Vec<u64> = listed
            .iter()
            .filter_map(|m| m.location.filename())
            .filter_map(|f| {
                f.strip_prefix("manifest-")?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        epochs.sort_unstable_by(|a, b| b.cmp(a));
        Ok(epochs)
    }

    /// Reads and checks the manifest of `epoch`: it parses, has this build's version, and every
    /// file it names exists with the recorded size.
    pub async fn load_manifest(&self, epoch: u64) -> Result<Manifest> {
        let path = manifest_path(epoch);
        let bytes = self.get(&path).await?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::Storage(format!("{path}: not a valid manifest: {e}")))?;
        if manifest.version != MANIFEST_VERSION || manifest.epoch != epoch {
            return Err(EngineError::Storage(format!(
                "{path}: version {} epoch {} (expected version {MANIFEST_VERSION}, epoch {epoch})",
                manifest.version, manifest.epoch
            )));
        }
        for file in manifest.files() {
            let meta = self
                .store
                .head(&Path::from(file.path.as_str()))
                .await
                .map_err(|e| storage_error(&format!("{path}: state file {}", file.path), &e))?;
            if meta.size != file.size {
                return Err(EngineError::Storage(format!(
                    "{path}: state file {} has {} bytes, expected {}",
                    file.path, meta.size, file.size
                )));
            }
        }
        Ok(manifest)
    }

    /// Paths of the files under `prefix`.
    pub async fn list_paths(&self, prefix: &str) -> Result<Vec<String>> {
        let listed: Vec<_> = self
            .store
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await
            .map_err(|e| storage_error(&format!("cannot list {prefix}"), &e))?;
        Ok(listed.into_iter().map(|m| m.location.to_string()).collect())
    }

    /// Deletes the files under `prefix` for which `keep` is false.
    pub async fn delete_unless(&self, prefix: &str, keep: impl Fn(&str) -> bool) -> Result<usize> {
        let listed = self.list_paths(prefix).await?;
        let mut deleted = 0;
        for path in listed {
            if keep(&path) {
                continue;
            }
            match self.store.delete(&Path::from(path.as_str())).await {
                Ok(()) | Err(datafusion::object_store::Error::NotFound { .. }) => deleted += 1,
                Err(e) => return Err(storage_error(&format!("cannot delete {path}"), &e)),
            }
        }
        Ok(deleted)
    }

    /// Writes a small file whole (atomically: readers see the old or the new content).
    pub async fn put(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&Path::from(path), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| storage_error(&format!("cannot write {path} in {}", self.location), &e))
    }

    /// Reads a whole file; `Ok(None)` when it does not exist.
    pub async fn get_optional(&self, path: &str) -> Result<Option<Bytes>> {
        match self.store.get(&Path::from(path)).await {
            Ok(r) => {
                Ok(Some(r.bytes().await.map_err(|e| {
                    storage_error(&format!("cannot read {path}"), &e)
                })?))
            }
            Err(datafusion::object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error(&format!("cannot read {path}"), &e)),
        }
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        self.get_optional(path).await?.ok_or_else(|| {
            EngineError::Storage(format!("{path} is missing from {}", self.location))
        })
    }
}

/// Path of the manifest of `epoch`.
pub fn manifest_path(epoch: u64) -> String {
    format!("checkpoints/manifest-{epoch:020}.json")
}

/// Directory of the state files of `epoch`.
pub fn epoch_dir(epoch: u64) -> String {
    format!("checkpoints/{epoch:020}")
}

fn encode_parquet(
    schema: SchemaRef,
    batches: &[RecordBatch],
    compress: Compress,
) -> Result<Vec<u8>> {
    let compression = match compress {
        Compress::None => Compression::UNCOMPRESSED,
        Compress::Fast => Compression::SNAPPY,
    };
    let props = WriterProperties::builder()
        .set_compression(compression)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props))
        .map_err(|e| EngineError::Internal(format!("cannot encode state as Parquet: {e}")))?;
    for batch in batches {
        writer
            .write(batch)
            .map_err(|e| EngineError::Internal(format!("cannot encode state as Parquet: {e}")))?;
    }
    writer
        .close()
        .map_err(|e| EngineError::Internal(format!("cannot encode state as Parquet: {e}")))?;
    Ok(out)
}

fn decode_parquet(bytes: Bytes) -> Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.with_batch_size(64 * 1024).build())
        .map_err(|e| EngineError::Storage(format!("cannot read checkpoint state: {e}")))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| EngineError::Storage(format!("cannot read checkpoint state: {e}")))
}

/// A storage error with its cause; a full disk is told apart so clients get SQLSTATE 53100.
pub fn storage_error(what: &str, error: &(dyn std::error::Error + 'static)) -> EngineError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut disk_full = false;
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && (io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded)
        {
            disk_full = true;
        }
        cause = e.source();
    }
    if disk_full {
        EngineError::DiskFull(format!("{what}: no space left on device"))
    } else {
        EngineError::Storage(format!("{what}: {error}"))
    }
}
