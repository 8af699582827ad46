//! Sources: the traits connectors implement, and the task that runs one source reader for a
//! pipeline, deriving watermarks from the source's `WATERMARK FOR` expression.
//!
//! A source definition (`CREATE SOURCE`) is a [`SourceProvider`]; every pipeline reading it opens
//! its own [`Source`] reader (as every Flink job and RisingWave view has its own reader), so views
//! are independent and deterministic for deterministic connectors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::error::{EngineError, Result};
use crate::message::{Message, Watermark};
use crate::time::max_nanos;
use crate::watermark::WatermarkTracker;

/// What a source reader returns.
#[derive(Debug)]
pub enum SourceEvent {
    /// Rows from one partition of the source, in the source's declared schema.
    Data {
        /// Partition (split) the rows came from; watermarks are tracked per partition.
        partition: u32,
        /// The rows.
        batch: RecordBatch,
    },
    /// Nothing arrived within the wait; the source is alive.
    Idle,
    /// The source is exhausted (bounded sources only).
    End,
}

/// One reader of a source.
#[async_trait]
pub trait Source: Send {
    /// The next rows, waiting at most about `max_wait`.
    async fn next_event(&mut self, max_wait: Duration) -> Result<SourceEvent>;
}

/// A defined source: validates its options once, then opens readers for pipelines.
pub trait SourceProvider: Send + Sync + std::fmt::Debug {
    /// Connector name (`datagen`, `file`, …).
    fn connector(&self) -> &str;
    /// The schema every reader produces.
    fn schema(&self) -> SchemaRef;
    /// Opens a new reader.
    fn open(&self) -> Result<Box<dyn Source>>;
}

/// The `WATERMARK FOR col AS expr` of a source.
#[derive(Debug, Clone)]
pub struct WatermarkSpec {
    /// The event-time column.
    pub column: String,
    /// Expression over a source batch giving the watermark candidate of each row.
    pub expr: Arc<dyn PhysicalExpr>,
    /// The expression as the user wrote it, for SHOW and EXPLAIN.
    pub text: String,
}

/// Runtime settings of a source reader task.
#[derive(Debug, Clone)]
pub struct SourceTaskConfig {
    /// Source name, for logs.
    pub name: String,
    /// How watermarks are derived, if the source has event time.
    pub watermark: Option<WatermarkSpec>,
    /// A partition with no data for this long stops holding back the watermark.
    pub idle_timeout: Duration,
}

/// Runs `source` until it ends or the pipeline goes away, sending data and watermarks to `tx`.
pub async fn run_source(
    config: SourceTaskConfig,
    mut source: Box<dyn Source>,
    tx: mpsc::Sender<Message>,
) -> Result<()> {
    let mut tracker = WatermarkTracker::default();
    let mut last_data = Instant::now();
    let mut emitted: Option<Watermark> = None;
    let poll = config.idle_timeout.min(Duration::from_millis(200)).max(Duration::from_millis(10));
    loop {
        let event = source.next_event(poll).await?;
        match event {
            SourceEvent::Data { partition, batch } => {
                last_data = Instant::now();
                let candidate = match &config.watermark {
                    Some(spec) => {
                        let values = spec.expr.evaluate(&batch)?.into_array(batch.num_rows())?;
                        max_nanos(&values)?
                    }
                    None => None,
                };
                if batch.num_rows() > 0 && tx.send(Message::Data(batch)).await.is_err() {
                    return Ok(());
                }
                tracker.observe(partition, candidate);
            }
            SourceEvent::Idle => {
                if last_data.elapsed() >= config.idle_timeout {
                    tracker.mark_all_idle();
                }
            }
            SourceEvent::End => {
                debug!(source = %config.name, "source ended");
                let _ = tx.send(Message::Watermark(Watermark::MAX)).await;
                let _ = tx.send(Message::End).await;
                return Ok(());
            }
        }
        let current = tracker.current();
        if let Some(wm) = current
            && emitted != Some(wm)
        {
            emitted = Some(wm);
            if tx.send(Message::Watermark(wm)).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Spawns [`run_source`] and logs its failure.
pub fn spawn_source(
    config: SourceTaskConfig,
    source: Box<dyn Source>,
    tx: mpsc::Sender<Message>,
    on_error: impl FnOnce(EngineError) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let name = config.name.clone();
        if let Err(e) = run_source(config, source, tx).await {
            warn!(source = %name, error = %e, "source failed");
            on_error(e);
        }
    })
}

/// `FORMAT … ENCODE …` of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatSpec {
    /// `PLAIN` (later `UPSERT`).
    pub format: String,
    /// `JSON`, `CSV`, …
    pub encode: String,
}

/// What `CREATE SOURCE` hands a connector.
#[derive(Debug)]
pub struct SourceSpec {
    /// Source name.
    pub name: String,
    /// Declared columns; None when the statement declared none (the connector decides).
    pub columns: Option<SchemaRef>,
    /// `WITH (…)` options left after the generic ones; the connector takes what it knows.
    pub options: crate::options::Options,
    /// `FORMAT … ENCODE …`, if given.
    pub format: Option<FormatSpec>,
}

/// Builds source providers for one connector name.
pub trait ConnectorFactory: Send + Sync {
    /// The `connector = '…'` value.
    fn name(&self) -> &'static str;
    /// Validates `spec` (taking its options) and returns the source definition.
    fn create_source(&self, spec: &mut SourceSpec) -> Result<Arc<dyn SourceProvider>>;
}
