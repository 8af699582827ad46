//! A view's output stream, shared by the views that read it. A new reader is backfilled with the
//! view's current rows and watermark under the same lock the writer holds while it applies and
//! forwards a message, so it sees every row exactly once.
//!
//! Readers choose what they follow ([`ReadMode`]): every change, or, for an updating view, only
//! rows that became final (sealed by the watermark), each once: what a PLAIN sink writes.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

use crate::changes::Changes;
use crate::error::Result;
use crate::message::{Message, Watermark};
use crate::view_table::ViewTable;

/// Bounded capacity of every pipeline channel: backpressure, never an unbounded queue.
pub const CHANNEL_CAPACITY: usize = 16;

/// What a reader of a view follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Every change, as the view's stream has it.
    Changes,
    /// An updating view's final rows only, as inserts when the watermark (or the end
    /// of the input) seals them. For an append-only view the same as `Changes`.
    Sealed,
}

#[derive(Debug)]
struct Subscriber {
    tx: mpsc::Sender<Message>,
    mode: ReadMode,
}

#[derive(Debug, Default)]
struct Inner {
    /// Downstream pipelines reading this view.
    subscribers: Vec<Subscriber>,
    /// Latest watermark forwarded, handed to new readers after their backfill.
    watermark: Option<Watermark>,
    /// The view's input ended; new readers get `End` after their backfill.
    ended: bool,
}

/// Applies a view's messages to its table and forwards them to readers.
#[derive(Debug)]
pub struct Fanout {
    table: Arc<ViewTable>,
    inner: Mutex<Inner>,
}

impl Fanout {
    /// A fanout writing into `table`.
    pub fn new(table: Arc<ViewTable>) -> Self {
        Self {
            table,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Applies `message` to the view and forwards it to every reader (waiting on full readers).
    pub async fn publish(&self, message: Message) -> Result<()> {
        let mut inner = self.inner.lock().await;
        let mut sealed = Vec::new();
        match &message {
            Message::Changes(changes) => self.table.apply(changes.clone())?,
            Message::Watermark(w) => {
                if let Watermark::EventTime(t) = w {
                    sealed = self.table.seal(*t)?;
                }
                inner.watermark = Some(*w);
            }
            Message::End => {
                sealed = self.table.seal_all()?;
                inner.ended = true;
            }
            Message::Barrier(_) => {}
            Message::FromInput(..) => {
                return Err(crate::error::EngineError::Internal(
                    "a view received one input's rows of a join".into(),
                ));
            }
        }
        if inner.subscribers.is_empty() {
            return Ok(());
        }
        let updating = self.table.is_updating();
        let mut alive = Vec::with_capacity(inner.subscribers.len());
        'readers: for reader in inner.subscribers.drain(..) {
            if reader.mode == ReadMode::Sealed && updating {
                if matches!(message, Message::Changes(_)) {
                    alive.push(reader);
                    continue;
                }
                for rows in &sealed {
                    let sealed = Message::Changes(Changes::inserts(rows.clone()));
                    if reader.tx.send(sealed).await.is_err() {
                        continue 'readers;
                    }
                }
            }
            if reader.tx.send(message.clone()).await.is_ok() {
                alive.push(reader);
            }
        }
        inner.subscribers = alive;
        Ok(())
    }

    /// The latest watermark forwarded.
    pub async fn watermark(&self) -> Option<Watermark> {
        self.inner.lock().await.watermark
    }

    /// Recovery: the watermark the view had, and whether its input had ended.
    pub async fn restore(&self, watermark: Option<Watermark>, ended: bool) {
        let mut inner = self.inner.lock().await;
        inner.watermark = watermark;
        inner.ended = ended;
    }

    /// The table behind the stream.
    pub fn table(&self) -> &Arc<ViewTable> {
        &self.table
    }

    /// The view stopped on a failure: its readers' streams end without `End`, which they take
    /// as their input failing.
    pub async fn close_readers(&self) {
        self.inner.lock().await.subscribers.clear();
    }

    /// A reader that already has the view's current rows (a view restored from a checkpoint
    /// taken at the same barrier): live messages only.
    pub async fn subscribe_live(&self, mode: ReadMode) -> mpsc::Receiver<Message> {
        let mut inner = self.inner.lock().await;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        if inner.ended {
            let _ = tx.try_send(Message::End);
        } else {
            inner.subscribers.push(Subscriber { tx, mode });
        }
        rx
    }

    /// A new change reader (a sink): final rows as inserts and, in `Changes` mode, the rows that
    /// can still change as inserts; the watermark; then a live receiver.
    pub async fn subscribe_changes(
        &self,
        mode: ReadMode,
    ) -> Result<(Vec<Message>, mpsc::Receiver<Message>)> {
        self.subscribe_with(Some(mode)).await
    }

    /// A new reader: the messages that replay the view's current state, then a live receiver.
    pub async fn subscribe(&self) -> Result<(Vec<Message>, mpsc::Receiver<Message>)> {
        self.subscribe_with(None).await
    }

    /// The backfill (every current row as inserts, or as changes when `changes`) and the live
    /// receiver, taken under the lock the writer holds while publishing.
    async fn subscribe_with(
        &self,
        changes: Option<ReadMode>,
    ) -> Result<(Vec<Message>, mpsc::Receiver<Message>)> {
        if let Some(why) = self.table.failure() {
            // Nothing more will come: a reader would wait forever.
            return Err(crate::error::EngineError::ViewFailed(why));
        }
        let mut inner = self.inner.lock().await;
        let mut backfill = if let Some(mode) = changes {
            self.table
                .snapshot_changes(mode == ReadMode::Changes)
                .await?
        } else {
            self.table
                .snapshot()
                .await?
                .into_iter()
                .map(|rows| Message::Changes(Changes::inserts(rows)))
                .collect()
        };
        if let Some(w) = inner.watermark {
            backfill.push(Message::Watermark(w));
        }
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        if inner.ended {
            backfill.push(Message::End);
        } else {
            inner.subscribers.push(Subscriber {
                tx,
                mode: changes.unwrap_or(ReadMode::Changes),
            });
        }
        Ok((backfill, rx))
    }
}
