//! Which reader group of a (source, split) the others join: the first one started, until it
//! ends. Positions are compared here too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use super::Subscriber;
use crate::checkpoint::SourcePosition;
use crate::source::SourceProvider;
use crate::source_metrics::ReaderMetrics;

/// The readers of one source that can share a group: same source, same split of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    /// The source's name.
    pub source: String,
    /// This reader's share of the partitions (`index` of `count`).
    pub split: (usize, usize),
}

/// A group asking the canonical group to take its views.
pub(super) struct Join {
    /// Only at exactly the asker's position (its source cannot cut rows at another).
    pub exact: bool,
    /// Where the asking group stands.
    pub position: SourcePosition,
    /// The position the canonical group stopped at, for the asker to read up to.
    pub reply: oneshot::Sender<SourcePosition>,
    /// The asker's views, once it has delivered them everything before that position.
    pub handover: oneshot::Receiver<Handover>,
}

/// Views moving from one group to another.
pub(super) struct Handover {
    pub subscribers: Vec<Subscriber>,
    /// The figures their reader kept (its views move to the new reader's).
    pub metrics: Arc<ReaderMetrics>,
}

/// How to reach the canonical group of a key.
#[derive(Clone)]
pub(super) struct CanonicalLink {
    pub joins: mpsc::UnboundedSender<Join>,
    /// Its position after every event.
    pub position: watch::Receiver<Option<SourcePosition>>,
}

struct Canonical {
    /// The source definition it reads (a source dropped and created again is another).
    provider: Weak<dyn SourceProvider>,
    link: CanonicalLink,
}

impl Canonical {
    fn live(&self, provider: &Arc<dyn SourceProvider>) -> bool {
        !self.link.joins.is_closed()
            && self
                .provider
                .upgrade()
                .is_some_and(|p| Arc::ptr_eq(&p, provider))
    }
}

/// The canonical reader group of every (source, split) being read.
#[derive(Default)]
pub struct SharedSources {
    groups: Mutex<HashMap<GroupKey, Canonical>>,
    /// Reader groups running, canonical or not.
    readers: AtomicUsize,
}

/// Counts a running group while it lives.
pub(super) struct Running(Arc<SharedSources>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for SharedSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSources")
            .field("groups", &self.groups.lock().len())
            .finish()
    }
}

impl SharedSources {
    /// Makes `link` the canonical group of `key` unless a live one exists; true if it did.
    pub(super) fn claim(
        &self,
        key: &GroupKey,
        provider: &Arc<dyn SourceProvider>,
        link: &CanonicalLink,
    ) -> bool {
        let mut groups = self.groups.lock();
        if groups.get(key).is_some_and(|c| c.live(provider)) {
            return false;
        }
        groups.retain(|_, c| !c.link.joins.is_closed());
        groups.insert(
            key.clone(),
            Canonical {
                provider: Arc::downgrade(provider),
                link: link.clone(),
            },
        );
        true
    }

    /// The live canonical group of `key`.
    pub(super) fn canonical(
        &self,
        key: &GroupKey,
        provider: &Arc<dyn SourceProvider>,
    ) -> Option<CanonicalLink> {
        self.groups
            .lock()
            .get(key)
            .filter(|c| c.live(provider))
            .map(|c| c.link.clone())
    }

    /// Source readers running for views (once views share, one per source and split).
    pub fn readers(&self) -> usize {
        self.readers.load(Ordering::Relaxed)
    }

    /// Counts a group as running until the guard drops.
    pub(super) fn running(self: &Arc<Self>) -> Running {
        self.readers.fetch_add(1, Ordering::Relaxed);
        Running(Arc::clone(self))
    }
}

/// True when `ahead` is at or past `behind` on every partition `behind` has read (a partition
/// `behind` has not read it can still read from the start).
pub(super) fn covers(ahead: &SourcePosition, behind: &SourcePosition) -> bool {
    behind
        .offsets
        .iter()
        .all(|(p, b)| ahead.offsets.get(p).is_some_and(|a| a >= b))
}

/// Records between `behind` and `ahead` (partitions `behind` has not read count from 0).
pub(super) fn distance(ahead: &SourcePosition, behind: &SourcePosition) -> i64 {
    ahead
        .offsets
        .iter()
        .map(|(p, a)| (a - behind.offsets.get(p).copied().unwrap_or(0)).max(0))
        .fold(0i64, i64::saturating_add)
}

/// `position` held to `target`: on each partition no further than the target, and partitions
/// the target has not read left out (read from the start again).
pub(super) fn capped(position: &SourcePosition, target: &SourcePosition) -> SourcePosition {
    SourcePosition {
        offsets: position
            .offsets
            .iter()
            .filter_map(|(p, o)| target.offsets.get(p).map(|t| (*p, (*o).min(*t))))
            .collect(),
    }
}
