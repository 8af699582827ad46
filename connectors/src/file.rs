//! `connector = 'file', path = '…'`: replays a file of records, one per line (`ENCODE JSON`, the
//! default, or `ENCODE CSV`), then ends. For tests, demos and replaying captured data; a bounded
//! source, so every window closes at the end. A line that does not decode is a bad record
//! (`weir_source_errors`, with its line number as the offset) like a bad Kafka message.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConnectorError;
use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use tokio::io::AsyncReadExt;
use weir_engine::checkpoint::SourcePosition;
use weir_engine::source::{
    ConnectorFactory, ReaderContext, Source, SourceEvent, SourceProvider, SourceSpec,
};
use weir_engine::{EngineError, Result};

use crate::format::{FormatConfig, RecordBuffer, RecordDecoder, decode_records, decoded_span};

/// Bytes read from the file per step.
const READ_CHUNK: usize = 1 << 20;

/// The `file` connector.
#[derive(Debug, Clone, Copy)]
pub struct FileConnector;

#[async_trait]
impl ConnectorFactory for FileConnector {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn create_source(&self, spec: &mut SourceSpec) -> Result<Arc<dyn SourceProvider>> {
        let path = PathBuf::from(spec.options.take_required("path")?);
        let batch_size = spec
            .options
            .take_parsed::<usize>("batch_size")?
            .unwrap_or(8192)
            .clamp(1, 1 << 20);
        let format = FormatConfig::from_spec(spec.format.as_ref(), &mut spec.options)?;
        if format.is_binary() {
            return Err(EngineError::User(format!(
                "source \"{}\": a file is read as lines of text (ENCODE JSON or CSV); binary \
                 records such as Avro need a transport that frames them, like Kafka",
                spec.name
            )));
        }
        let schema = spec.columns.clone().ok_or_else(|| {
            EngineError::User(format!(
                "source \"{}\": a file source needs its columns declared",
                spec.name
            ))
        })?;
        if !path.is_file() {
            return Err(EngineError::User(format!(
                "file source: no file at '{}'",
                path.display()
            )));
        }
        Ok(Arc::new(FileProvider {
            path,
            schema,
            batch_size,
            format,
        }))
    }
}

/// A defined file source.
#[derive(Debug)]
pub struct FileProvider {
    path: PathBuf,
    schema: SchemaRef,
    batch_size: usize,
    format: FormatConfig,
}

impl SourceProvider for FileProvider {
    fn connector(&self) -> &str {
        "file"
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn open(&self, context: ReaderContext) -> Result<Box<dyn Source>> {
        let context_resume = context.resume.clone();
        Ok(Box::new(FileReader {
            path: self.path.clone(),
            file: None,
            decoder: self
                .format
                .decoder(Arc::clone(&self.schema), self.batch_size)?,
            batch_size: self.batch_size,
            context,
            chunk: Vec::new(),
            consumed: 0,
            partial: Vec::new(),
            records: RecordBuffer::default(),
            line_numbers: Vec::new(),
            line: 0,
            delivered: context_resume_line(&context_resume),
            skip_through: context_resume_line(&context_resume),
            eof: false,
        }))
    }
}

struct FileReader {
    path: PathBuf,
    /// Opened on first read so `open` stays cheap and synchronous.
    file: Option<tokio::fs::File>,
    decoder: Box<dyn RecordDecoder>,
    batch_size: usize,
    context: ReaderContext,
    /// The last chunk read; lines before `consumed` are taken.
    chunk: Vec<u8>,
    consumed: usize,
    /// The start of a line cut by the end of the previous chunk.
    partial: Vec<u8>,
    records: RecordBuffer,
    /// 1-based line number of each buffered record.
    line_numbers: Vec<i64>,
    line: i64,
    /// Lines up to this one have been delivered (the reader's position).
    delivered: i64,
    /// Recovery: lines up to this one were delivered before the checkpoint and are skipped.
    skip_through: i64,
    eof: bool,
}

/// The line a resumed reader continues after.
fn context_resume_line(resume: &Option<SourcePosition>) -> i64 {
    resume
        .as_ref()
        .and_then(|p| p.offsets.get(&0).copied())
        .unwrap_or(0)
}

impl FileReader {
    /// Buffers one line (without its newline); blank lines are skipped.
    fn push_line(&mut self, line: &[u8]) {
        self.line += 1;
        if self.line <= self.skip_through {
            return;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.iter().all(u8::is_ascii_whitespace) {
            self.records.push(line);
            self.line_numbers.push(self.line);
        }
    }

    /// Takes whole lines from the current chunk until the batch is full.
    fn take_lines(&mut self) {
        while self.records.len() < self.batch_size && self.consumed < self.chunk.len() {
            let rest = &self.chunk[self.consumed..];
            let Some(end) = rest.iter().position(|b| *b == b'\n') else {
                self.partial.extend_from_slice(rest);
                self.consumed = self.chunk.len();
                return;
            };
            let chunk = std::mem::take(&mut self.chunk);
            if self.partial.is_empty() {
                self.push_line(&chunk[self.consumed..self.consumed + end]);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&chunk[self.consumed..self.consumed + end]);
                self.push_line(&line);
            }
            self.chunk = chunk;
            self.consumed += end + 1;
        }
    }

    /// Decodes the buffered lines into an event (bad lines go to the error log).
    fn decode_buffered(&mut self) -> Result<Option<SourceEvent>> {
        if self.records.is_empty() {
            return Ok(None);
        }
        let decoded = decode_records(self.decoder.as_mut(), &self.records)?;
        let lines = &self.line_numbers;
        let bad = decoded.bad_records(&self.records, |i| (Some(0), lines.get(i).copied(), None));
        let span = decoded_span(0, lines);
        let offsets: ArrayRef = Arc::new(Int64Array::from(std::mem::take(&mut self.line_numbers)));
        let offsets = decoded
            .keep_good(offsets)?
            .as_primitive::<Int64Type>()
            .clone();
        self.records.clear();
        self.delivered = self.line;
        self.context.reject(Some(0), span, bad)?;
        self.context
            .metrics
            .update(0, |m| m.offset = Some(self.line + 1));
        Ok(Some(SourceEvent::Data {
            partition: 0,
            batch: decoded.batch,
            offsets: Some(offsets),
        }))
    }
}

#[async_trait]
impl Source for FileReader {
    async fn next_event(&mut self, _max_wait: Duration) -> Result<SourceEvent> {
        loop {
            self.take_lines();
            if self.records.len() >= self.batch_size
                && let Some(event) = self.decode_buffered()?
            {
                return Ok(event);
            }
            if self.eof {
                if !self.partial.is_empty() {
                    let last = std::mem::take(&mut self.partial);
                    self.push_line(&last);
                }
                return Ok(self.decode_buffered()?.unwrap_or(SourceEvent::End));
            }
            let file = match &mut self.file {
                Some(f) => f,
                None => {
                    let f = tokio::fs::File::open(&self.path).await.map_err(|source| {
                        ConnectorError::File {
                            action: "cannot open",
                            path: self.path.clone(),
                            source,
                        }
                    })?;
                    self.file.insert(f)
                }
            };
            self.chunk.resize(READ_CHUNK, 0);
            let n = file
                .read(&mut self.chunk)
                .await
                .map_err(|source| ConnectorError::File {
                    action: "reading",
                    path: self.path.clone(),
                    source,
                })?;
            self.chunk.truncate(n);
            self.consumed = 0;
            if n == 0 {
                self.eof = true;
            }
        }
    }

    fn position(&self) -> Option<SourcePosition> {
        Some(SourcePosition {
            offsets: [(0, self.delivered)].into(),
        })
    }
}
