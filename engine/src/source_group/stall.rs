//! A view that stops taking rows must not stop the views sharing its reader. A message a view has
//! not taken within [`STALL_LIMIT`] (its input channel full all that time: a blocked sink, a view
//! much slower than the others) goes to the view's backlog instead, and the view is split off:
//! it gets a reader of its own at the shared reader's position, which first delivers the backlog
//! and later, once the view has caught up, joins the shared reader again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tracing::warn;

use super::{Group, Sharing, Subscriber, spawn_group};
use crate::error::Result;
use crate::message::Message;

/// How long a view may leave a shared reader's message untaken before it is split off.
const STALL_LIMIT: Duration = Duration::from_secs(2);

/// Hands `message` to `s`; a view alone on its reader is waited for however long it takes.
/// Messages after one that went to the backlog follow it there, in order.
pub(super) async fn offer(s: &mut Subscriber, message: Message, alone: bool) {
    if !s.backlog.is_empty() {
        s.backlog.push(message);
        return;
    }
    let message = match s.tx.try_send(message) {
        Ok(()) | Err(TrySendError::Closed(_)) => return,
        Err(TrySendError::Full(message)) => message,
    };
    if alone {
        let _ = s.tx.send(message).await;
        return;
    }
    // The send is cancel-safe: on timeout the message was not delivered.
    let permit = tokio::time::timeout(STALL_LIMIT, s.tx.reserve()).await;
    match permit {
        Ok(Ok(permit)) => permit.send(message),
        Ok(Err(_)) => {}
        Err(_) => s.backlog.push(message),
    }
}

impl Group {
    /// True when no other view shares this reader (then a slow view only slows itself).
    pub(super) fn alone(&self) -> bool {
        self.subscribers.len() <= 1 || self.shared.is_none()
    }

    /// Gives each view with a backlog a reader of its own at this reader's position: every row
    /// up to it was delivered to the view or is in its backlog.
    pub(super) fn split_off_stalled(&mut self) -> Result<()> {
        if self.subscribers.iter().all(|s| s.backlog.is_empty()) {
            return Ok(());
        }
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let state = self.state();
        let (stalled, kept): (Vec<Subscriber>, Vec<Subscriber>) =
            std::mem::take(&mut self.subscribers)
                .into_iter()
                .partition(|s| !s.backlog.is_empty());
        self.subscribers = kept;
        for s in stalled {
            warn!(
                source = %self.config.context.source,
                view = %s.view,
                "view is not keeping up with the reader it shares; it reads on alone and rejoins when it has caught up"
            );
            let mut config = self.config.clone();
            config.context.resume = state.position.clone();
            config.restore = Some(Box::new(state.clone()));
            // Its own figures: the shared reader's no longer count for it.
            self.config.context.metrics.remove_view(&s.view);
            config.context.metrics = shared
                .link
                .metrics
                .register(&self.config.context.source, &s.view);
            let source = shared.link.provider.open(config.context.clone())?;
            let sharing = Sharing {
                registry: Arc::clone(&shared.link.registry),
                key: shared.link.key.clone(),
                provider: Arc::clone(&shared.link.provider),
                metrics: Arc::clone(&shared.link.metrics),
            };
            spawn_group(config, source, s, Some(sharing));
        }
        Ok(())
    }
}
