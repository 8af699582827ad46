//! Sources: the traits connectors implement, watermarks from the source's `WATERMARK FOR`
//! expression, and rows too far in the future.
//!
//! A source definition (`CREATE SOURCE`) is a [`SourceProvider`]; a [`Source`] reader is opened
//! per pipeline and views at the same position then share one ([`crate::source_group`] runs the
//! readers).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::{self, kernels::cmp, prep_null_mask_filter};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use tokio::sync::mpsc;
use tracing::debug;

use crate::checkpoint::{CheckpointReport, SourcePosition, SourceState};
use crate::error::{EngineError, Result};
use crate::message::CheckpointBarrier;
use crate::source_errors::{BadRecord, BadRecords, Check, CheckedSpan, SourceErrorLog};
use crate::source_metrics::{ReaderMetrics, now_millis};
use crate::time::{max_nanos, nanos_to_unit, timestamp_values};
use crate::window::humanize_nanos;

/// What a source reader returns.
#[derive(Debug)]
pub enum SourceEvent {
    /// Rows from one partition of the source, in the source's declared schema.
    Data {
        /// Partition (split) the rows came from; watermarks are tracked per partition.
        partition: u32,
        /// The rows.
        batch: RecordBatch,
        /// Each row's offset in its partition, for transports that have offsets (so a row
        /// rejected later, e.g. for an event time far in the future, can be traced back).
        offsets: Option<Int64Array>,
    },
    /// These partitions are now assigned to the reader. Each holds the watermark back until it
    /// delivers rows or stays idle for `source.idle_timeout`, so a partition that is slow to
    /// deliver its first rows cannot have its rows declared late by the others.
    Partitions(Vec<u32>),
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

    /// Where the reader is: a reader opened with this position (see [`ReaderContext::resume`])
    /// continues right after the rows delivered so far. None: the connector cannot resume, and a
    /// recovered pipeline reads it from the start.
    fn position(&self) -> Option<SourcePosition> {
        None
    }
}

/// What a reader is given when it is opened: who it reads for and where it reports.
#[derive(Debug, Clone)]
pub struct ReaderContext {
    /// The source's name.
    pub source: String,
    /// Per-partition figures (`weir_source_partitions`), shared with the pipeline.
    pub metrics: Arc<ReaderMetrics>,
    /// Where unreadable records go (`weir_source_errors`).
    pub errors: Arc<SourceErrorLog>,
    /// Skip (log) or fail on an unreadable record.
    pub bad_records: BadRecords,
    /// Recovery: continue from this position instead of the connector's start.
    pub resume: Option<SourcePosition>,
    /// The partitions this reader reads, when a view reads the source with one reader per
    /// worker ([`SourceProvider::partitions`]).
    pub split: Split,
}

/// Which partitions a reader owns: partition `p` belongs to reader `p % count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// This reader.
    pub index: usize,
    /// Readers of the source in the pipeline.
    pub count: usize,
}

impl Split {
    /// The only reader: every partition.
    pub const WHOLE: Split = Split { index: 0, count: 1 };

    /// True when `partition` is this reader's.
    pub fn owns(&self, partition: u32) -> bool {
        partition as usize % self.count.max(1) == self.index
    }
}

impl ReaderContext {
    /// Deals with unreadable records found by a check over `span` (the offsets read, when the
    /// transport has offsets): logs and counts them once per source however many views read
    /// them, or fails with the first one when `bad_records = 'fail'`.
    pub fn reject(
        &self,
        partition: Option<u32>,
        span: Option<CheckedSpan>,
        records: Vec<BadRecord>,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        if self.bad_records == BadRecords::Fail {
            let first = records
                .first()
                .map(|r| r.describe(&self.source))
                .unwrap_or_default();
            return Err(EngineError::User(format!("{first} (bad_records = 'fail')")));
        }
        if let Some(p) = partition {
            self.metrics.update(p, |m| m.errors += records.len() as u64);
        }
        let found = records.len();
        let logged = self.errors.record(&self.source, span, records);
        debug!(source = %self.source, found, logged, "bad records");
        Ok(())
    }
}

/// A defined source: validates its options once, then opens readers for pipelines.
pub trait SourceProvider: Send + Sync + std::fmt::Debug {
    /// Connector name (`datagen`, `file`, …).
    fn connector(&self) -> &str;
    /// The schema every reader produces.
    fn schema(&self) -> SchemaRef;
    /// Opens a new reader.
    fn open(&self, context: ReaderContext) -> Result<Box<dyn Source>>;

    /// Options whose defaults depend on when the source was created (a generator's start time),
    /// with the values chosen: the persisted catalog keeps them so the source comes back the same.
    fn pinned_options(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Something the user should know about the source as created (sent as a NOTICE).
    fn creation_notice(&self) -> Option<String> {
        None
    }

    /// How many partitions the source has, when its readers can split them
    /// ([`ReaderContext::split`]: each reads only the partitions it owns). A view then reads the
    /// source with up to this many readers, one per worker. 1: one reader reads everything.
    fn partitions(&self) -> usize {
        1
    }

    /// True when the offsets a reader gives its rows ([`SourceEvent::Data`]) are positions: a row
    /// at offset `o` of partition `p` comes before position `{p: o + 1}` and at or after `{p: o}`.
    /// Then a reader can stop at another reader's position exactly, and views reading from
    /// different positions can come to share one reader ([`crate::source_group`]).
    fn positions_are_offsets(&self) -> bool {
        false
    }

    /// True when the source has history a new reader works through, and its readers report
    /// where its end was (each partition's high watermark in [`crate::source_metrics`]):
    /// creating a view over it then waits, reporting progress, until the view has read it.
    fn has_backlog(&self) -> bool {
        false
    }
}

/// Field metadata marking a column that holds JSON text (`JSON`/`JSONB`): decoders put a value's
/// JSON there as it was written (objects and arrays included) instead of converting it.
pub const JSON_TYPE_KEY: &str = "weir.type";

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

impl WatermarkSpec {
    /// The highest watermark the rows of `batch` allow.
    ///
    /// The usual `col - INTERVAL …` (or `col + …`, or `col`) only grows with `col`, so it is
    /// evaluated on the latest row alone: timestamp-with-zone arithmetic goes through calendar
    /// code per value, which cost more than the rest of a pass-through pipeline. Any other
    /// expression is evaluated on every row.
    pub fn candidate(&self, batch: &RecordBatch) -> Result<Option<i64>> {
        let rows = match self.monotone_column(batch) {
            Some(index) => match latest_row(batch.column(index))? {
                Some(latest) => batch.slice(latest, 1),
                None => return Ok(None),
            },
            None => batch.clone(),
        };
        let values = self.expr.evaluate(&rows)?.into_array(rows.num_rows())?;
        max_nanos(&values)
    }

    /// The time column's index when the expression is non-decreasing in it and reads nothing else.
    fn monotone_column(&self, batch: &RecordBatch) -> Option<usize> {
        let column_of = |e: &Arc<dyn PhysicalExpr>| {
            e.as_ref()
                .downcast_ref::<Column>()
                .filter(|c| c.name() == self.column)
                .map(Column::index)
        };
        if let Some(index) = column_of(&self.expr) {
            return Some(index);
        }
        let binary = self.expr.as_ref().downcast_ref::<BinaryExpr>()?;
        let shifts = matches!(binary.op(), Operator::Minus | Operator::Plus);
        let constant = binary.right().as_ref().downcast_ref::<Literal>().is_some();
        let index = column_of(binary.left())?;
        (shifts && constant && index < batch.num_columns()).then_some(index)
    }
}

/// Position of the latest non-null time in a timestamp column.
fn latest_row(column: &ArrayRef) -> Result<Option<usize>> {
    let values = timestamp_values(column)?;
    let Some(max) = datafusion::arrow::compute::max(&values) else {
        return Ok(None);
    };
    Ok(values.iter().position(|v| v == Some(max)))
}

/// Runtime settings of a source reader task.
#[derive(Debug, Clone)]
pub struct SourceTaskConfig {
    /// How watermarks are derived, if the source has event time.
    pub watermark: Option<WatermarkSpec>,
    /// A partition with no data for this long stops holding back the watermark.
    pub idle_timeout: Duration,
    /// Rows whose event time is further than this past the wall clock are rejected, so one bad
    /// clock cannot close every window. None: no limit.
    pub max_future: Option<Duration>,
    /// The reader's context (name, metrics, error log).
    pub context: ReaderContext,
    /// Recovery: the watermarks of the checkpoint, so time does not step back.
    pub restore: Option<Box<SourceState>>,
}

/// A source task's link to the checkpoint coordinator.
#[derive(Debug)]
pub struct SourceCheckpointing {
    /// Which of the pipeline's inputs the source is.
    pub input: usize,
    /// Barriers to inject.
    pub barriers: mpsc::Receiver<CheckpointBarrier>,
    /// Where the source reports its state at a barrier.
    pub reports: mpsc::UnboundedSender<CheckpointReport>,
}

/// Splits off rows whose event time is beyond `max_future` past the wall clock and hands them to
/// the bad-record log. Vectorised; the common case (nothing in the future) costs one `max`.
pub(crate) fn reject_future_rows(
    config: &SourceTaskConfig,
    spec: &WatermarkSpec,
    partition: u32,
    batch: RecordBatch,
    offsets: Option<Int64Array>,
) -> Result<RecordBatch> {
    let Some(max_future) = config.max_future else {
        return Ok(batch);
    };
    let Some(column) = batch.column_by_name(&spec.column).cloned() else {
        return Ok(batch);
    };
    let unit = crate::time::timestamp_unit(column.data_type(), &spec.column)?;
    let now_nanos = now_millis().saturating_mul(1_000_000);
    let limit = nanos_to_unit(now_nanos.saturating_add(max_future.as_nanos() as i64), unit);
    let values = timestamp_values(&column)?;
    match compute::max(&values) {
        Some(max) if max > limit => {}
        _ => return Ok(batch),
    }
    let future = cmp::gt(&values, &Int64Array::new_scalar(limit))?;
    // Rows without an event time are not in the future (the window operator accounts for them).
    let future = if future.null_count() > 0 {
        prep_null_mask_filter(&future)
    } else {
        future
    };
    let rejected = compute::filter_record_batch(&batch, &future)?;
    let rejected_offsets = match &offsets {
        Some(o) => Some(compute::filter(o, &future)?),
        None => None,
    };
    let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
    writer.write(&rejected)?;
    writer.finish()?;
    let text = writer.into_inner();
    let message = format!(
        "event time in \"{}\" is more than {} past the wall clock (source.max_future)",
        spec.column,
        humanize_nanos(max_future.as_nanos() as i64)
    );
    let records = text
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(i, line)| {
            let offset = rejected_offsets
                .as_ref()
                .and_then(|o| o.as_primitive_opt::<Int64Type>())
                .map(|o| o.value(i));
            BadRecord::new(line, message.clone()).at(Some(partition as i32), offset, None)
        })
        .collect();
    let span = offsets.as_ref().and_then(|o| {
        Some(CheckedSpan {
            check: Check::FutureTime,
            partition: partition as i32,
            first: compute::min(o)?,
            last: compute::max(o)?,
        })
    });
    config.context.reject(Some(partition), span, records)?;
    Ok(compute::filter_record_batch(
        &batch,
        &compute::not(&future)?,
    )?)
}

/// `FORMAT … ENCODE …` of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatSpec {
    /// `PLAIN` (later `UPSERT`).
    pub format: String,
    /// `JSON`, `CSV`, …
    pub encode: String,
}

/// `INCLUDE partition | offset | key | timestamp | header 'name' [type] [AS column]`: a column
/// filled from the transport's metadata rather than the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludeColumn {
    /// What to include, lower case (`partition`, `offset`, `key`, `timestamp`, `header`).
    pub kind: String,
    /// The header's name, for `header`.
    pub header: Option<String>,
    /// A type asked for (`varchar`, `bytea`), lower case.
    pub data_type: Option<String>,
    /// The column's name, if given.
    pub alias: Option<String>,
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
    /// `INCLUDE …` metadata columns; a connector takes those it supports (any left are an error).
    pub include: Vec<IncludeColumn>,
}

/// Builds source providers for one connector name.
#[async_trait]
pub trait ConnectorFactory: Send + Sync {
    /// The `connector = '…'` value.
    fn name(&self) -> &'static str;
    /// Validates `spec` (taking its options), checks what can be checked (a broker is reachable,
    /// a topic exists) and returns the source definition.
    async fn create_source(&self, spec: &mut SourceSpec) -> Result<Arc<dyn SourceProvider>>;
}
