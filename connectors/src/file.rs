//! `connector = 'file', path = '…'`: replays newline-delimited JSON from a file, then ends. For
//! tests, demos and replaying captured data; a bounded source, so every window closes at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use tokio::io::AsyncReadExt;
use weir_engine::source::{ConnectorFactory, Source, SourceEvent, SourceProvider, SourceSpec};
use weir_engine::{EngineError, Result};

use crate::json::JsonDecoder;

/// Bytes read from the file per step.
const READ_CHUNK: usize = 1 << 20;

/// The `file` connector.
#[derive(Debug, Clone, Copy)]
pub struct FileConnector;

impl ConnectorFactory for FileConnector {
    fn name(&self) -> &'static str {
        "file"
    }

    fn create_source(&self, spec: &mut SourceSpec) -> Result<Arc<dyn SourceProvider>> {
        let path = PathBuf::from(spec.options.take_required("path")?);
        let batch_size = spec.options.take_parsed::<usize>("batch_size")?.unwrap_or(8192).max(1);
        if let Some(f) = &spec.format
            && !(f.format.eq_ignore_ascii_case("plain") && f.encode.eq_ignore_ascii_case("json"))
        {
            return Err(EngineError::User(format!(
                "the file connector reads FORMAT PLAIN ENCODE JSON, not FORMAT {} ENCODE {}",
                f.format, f.encode
            )));
        }
        let schema = spec.columns.clone().ok_or_else(|| {
            EngineError::User(format!("source \"{}\": a file source needs its columns declared", spec.name))
        })?;
        if !path.is_file() {
            return Err(EngineError::User(format!("file source: no file at '{}'", path.display())));
        }
        Ok(Arc::new(FileProvider { path, schema, batch_size }))
    }
}

/// A defined file source.
#[derive(Debug)]
pub struct FileProvider {
    path: PathBuf,
    schema: SchemaRef,
    batch_size: usize,
}

impl SourceProvider for FileProvider {
    fn connector(&self) -> &str {
        "file"
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn open(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(FileReader {
            path: self.path.clone(),
            file: None,
            decoder: JsonDecoder::try_new(Arc::clone(&self.schema), self.batch_size)?,
            buffer: Vec::new(),
            consumed: 0,
            eof: false,
        }))
    }
}

struct FileReader {
    path: PathBuf,
    /// Opened on first read so `open` stays cheap and synchronous.
    file: Option<tokio::fs::File>,
    decoder: JsonDecoder,
    /// Bytes read but not yet fed to the decoder start at `consumed`.
    buffer: Vec<u8>,
    consumed: usize,
    eof: bool,
}

#[async_trait]
impl Source for FileReader {
    async fn next_event(&mut self, _max_wait: Duration) -> Result<SourceEvent> {
        loop {
            if self.consumed < self.buffer.len() {
                let n = self.decoder.feed(&self.buffer[self.consumed..]).map_err(|e| {
                    EngineError::User(format!("{}: {e}", self.path.display()))
                })?;
                self.consumed += n;
                if self.consumed < self.buffer.len() {
                    // The decoder is full: hand out a batch.
                    if let Some(batch) = self.decoder.flush()? {
                        return Ok(SourceEvent::Data { partition: 0, batch });
                    }
                }
                continue;
            }
            if self.eof {
                if self.decoder.buffered() > 0
                    && let Some(batch) = self.decoder.flush()?
                {
                    return Ok(SourceEvent::Data { partition: 0, batch });
                }
                return Ok(SourceEvent::End);
            }
            let file = match &mut self.file {
                Some(f) => f,
                None => {
                    let f = tokio::fs::File::open(&self.path).await.map_err(|e| {
                        EngineError::External(format!("cannot open '{}': {e}", self.path.display()))
                    })?;
                    self.file.insert(f)
                }
            };
            self.buffer.clear();
            self.consumed = 0;
            self.buffer.resize(READ_CHUNK, 0);
            let n = file.read(&mut self.buffer).await.map_err(|e| {
                EngineError::External(format!("reading '{}': {e}", self.path.display()))
            })?;
            self.buffer.truncate(n);
            if n == 0 {
                self.eof = true;
            }
        }
    }
}
