//! A client following a view's changes (`SUBSCRIBE`, `DECLARE … CURSOR FOR SUBSCRIBE`): the
//! view's current rows as inserts, then every change as the view makes it, each with its op and
//! the view's event time (its watermark) when it was made.
//!
//! A client reads at its own pace, and a slow one must never hold back the view (the fanout
//! waits on full readers, as it must for views reading views). So a pump task takes the view's
//! messages as they come and queues them, already in the output schema, for the client; the
//! queue is bounded by bytes ([`BUFFER_LIMIT_BYTES`]) and a client that falls that far behind
//! loses its subscription with an error saying so, instead of the server its memory.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::{
    ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, new_null_array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::changes::Changes;
use crate::error::{EngineError, Result};
use crate::fanout::{Fanout, ReadMode};
use crate::message::{Message, Watermark};

/// Most bytes of changes queued for a client that has not read them yet.
pub const BUFFER_LIMIT_BYTES: usize = 256 * 1024 * 1024;

/// The op column's name.
pub const OP_COLUMN: &str = "weir_op";
/// The event-time column's name.
pub const TIME_COLUMN: &str = "weir_watermark";

/// Op names, indexed by [`crate::changes::Op`]'s byte.
const OP_NAMES: [&str; 4] = ["insert", "update_before", "update_after", "delete"];
/// The op of a progress row.
const PROGRESS_OP: &str = "progress";

/// What a subscription sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Start with the view's current rows as inserts (otherwise only changes from now on).
    pub snapshot: bool,
    /// Send a `progress` row (no column values) each time the view's event time advances: every
    /// change up to that time has been sent.
    pub progress: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            snapshot: true,
            progress: false,
        }
    }
}

/// The columns a subscription to a view of `view_schema` sends: the op, the view's event time
/// when the change was made, then the view's columns (nullable: progress rows have none).
pub fn output_schema(view_schema: &Schema) -> SchemaRef {
    let mut fields = vec![
        Field::new(OP_COLUMN, DataType::Utf8, false),
        Field::new(
            TIME_COLUMN,
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
    ];
    fields.extend(
        view_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true)),
    );
    Arc::new(Schema::new(fields))
}

/// One client's subscription to a view. Dropping it stops following the view.
#[derive(Debug)]
pub struct Subscription {
    schema: SchemaRef,
    rx: mpsc::UnboundedReceiver<Result<RecordBatch>>,
    buffered: Arc<AtomicUsize>,
    pump: AbortHandle,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl Subscription {
    /// Starts following the view behind `fanout`, named `view` in errors.
    pub async fn start(view: &str, fanout: &Fanout, options: SubscribeOptions) -> Result<Self> {
        Self::start_with_limit(view, fanout, options, BUFFER_LIMIT_BYTES).await
    }

    /// [`Subscription::start`] with at most `limit` bytes queued for the client.
    async fn start_with_limit(
        view: &str,
        fanout: &Fanout,
        options: SubscribeOptions,
        limit: usize,
    ) -> Result<Self> {
        let view_schema = fanout.table().schema_ref();
        let schema = output_schema(&view_schema);
        let (backfill, live) = fanout.subscribe_changes(ReadMode::Changes).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let buffered = Arc::new(AtomicUsize::new(0));
        let pump = Pump {
            view: view.to_string(),
            schema: Arc::clone(&schema),
            options,
            watermark: None,
            tx,
            buffered: Arc::clone(&buffered),
            limit,
        };
        let task = tokio::spawn(pump.run(backfill, live));
        Ok(Self {
            schema,
            rx,
            buffered,
            pump: task.abort_handle(),
        })
    }

    /// The columns sent ([`output_schema`]).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The next rows, waiting for them; None once the view's input has ended and every change
    /// was read.
    pub async fn next(&mut self) -> Option<Result<RecordBatch>> {
        let item = self.rx.recv().await;
        self.taken(item)
    }

    /// The next rows if some are queued now, without waiting. `Some(None)`: the subscription
    /// ended.
    pub fn try_next(&mut self) -> Option<Option<Result<RecordBatch>>> {
        match self.rx.try_recv() {
            Ok(item) => Some(self.taken(Some(item))),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
        }
    }

    fn taken(&self, item: Option<Result<RecordBatch>>) -> Option<Result<RecordBatch>> {
        if let Some(Ok(batch)) = &item {
            self.buffered
                .fetch_sub(batch.get_array_memory_size(), Ordering::Relaxed);
        }
        item
    }
}

/// Takes the view's messages as they come and queues them for the client.
struct Pump {
    view: String,
    schema: SchemaRef,
    options: SubscribeOptions,
    /// The view's event time so far, in microseconds.
    watermark: Option<i64>,
    tx: mpsc::UnboundedSender<Result<RecordBatch>>,
    buffered: Arc<AtomicUsize>,
    /// Most bytes queued.
    limit: usize,
}

impl Pump {
    async fn run(mut self, backfill: Vec<Message>, mut live: mpsc::Receiver<Message>) {
        // The snapshot is the view as of its current event time: its rows carry that time, and
        // with progress rows one follows them.
        self.watermark = backfill.iter().rev().find_map(|m| match m {
            Message::Watermark(Watermark::EventTime(t)) if !Watermark::is_end_of_input(*t) => {
                Some(t.div_euclid(1_000))
            }
            _ => None,
        });
        for message in backfill {
            let flow = match message {
                Message::Changes(_) if !self.options.snapshot => ControlFlow::Continue(()),
                Message::Changes(_) | Message::End => self.forward(message),
                _ => ControlFlow::Continue(()),
            };
            if flow.is_break() {
                return;
            }
        }
        if self.options.progress && self.watermark.is_some() {
            let batch = self.progress_row();
            if self.send(batch).is_break() {
                return;
            }
        }
        loop {
            let Some(message) = live.recv().await else {
                // The fanout dropped its readers without an end: the view failed or was dropped.
                let _ = self.tx.send(Err(EngineError::ViewFailed(format!(
                    "the subscription to \"{}\" ended: the view stopped (it failed or was dropped)",
                    self.view
                ))));
                return;
            };
            if self.forward(message).is_break() {
                return;
            }
        }
    }

    /// Queues what `message` means for the client. Break: the view's input ended (every change
    /// is queued), or the client went away or fell too far behind (and was told).
    fn forward(&mut self, message: Message) -> ControlFlow<()> {
        match message {
            Message::Changes(changes) => {
                if changes.is_empty() {
                    return ControlFlow::Continue(());
                }
                let batch = self.rows(&changes);
                self.send(batch)
            }
            Message::Watermark(Watermark::EventTime(t)) if !Watermark::is_end_of_input(t) => {
                let micros = t.div_euclid(1_000);
                if self.watermark.is_some_and(|w| w >= micros) {
                    return ControlFlow::Continue(());
                }
                self.watermark = Some(micros);
                if self.options.progress {
                    let batch = self.progress_row();
                    return self.send(batch);
                }
                ControlFlow::Continue(())
            }
            Message::End => ControlFlow::Break(()),
            Message::Watermark(_) | Message::Barrier(_) | Message::FromInput(..) => {
                ControlFlow::Continue(())
            }
        }
    }

    fn send(&self, batch: Result<RecordBatch>) -> ControlFlow<()> {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                let _ = self.tx.send(Err(e));
                return ControlFlow::Break(());
            }
        };
        let bytes = batch.get_array_memory_size();
        let queued = self.buffered.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if queued > self.limit {
            let _ = self.tx.send(Err(EngineError::External(format!(
                "the subscription to \"{}\" was ended: the client fell more than {} MiB of \
                 changes behind the view (read faster, or subscribe with fewer rows)",
                self.view,
                self.limit.div_ceil(1 << 20)
            ))));
            return ControlFlow::Break(());
        }
        match self.tx.send(Ok(batch)) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }

    /// `changes` in the output schema: op names looked up by op byte, the event time repeated.
    fn rows(&self, changes: &Changes) -> Result<RecordBatch> {
        let n = changes.num_rows();
        let ops: ArrayRef = match changes.ops() {
            Some(ops) => take(&StringArray::from(OP_NAMES.to_vec()), ops, None)?,
            None => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                OP_NAMES[0],
                n,
            ))),
        };
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        columns.push(ops);
        columns.push(self.time_column(n));
        columns.extend(changes.rows().columns().iter().cloned());
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// One row: op `progress`, the new event time, no values.
    fn progress_row(&self) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![PROGRESS_OP])),
            self.time_column(1),
        ];
        columns.extend(
            self.schema
                .fields()
                .iter()
                .skip(2)
                .map(|f| new_null_array(f.data_type(), 1)),
        );
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    fn time_column(&self, n: usize) -> ArrayRef {
        let column = match self.watermark {
            Some(t) => TimestampMicrosecondArray::from_value(t, n),
            None => TimestampMicrosecondArray::new_null(n),
        };
        Arc::new(column.with_timezone("+00:00"))
    }
}

#[cfg(test)]
mod tests;
