//! A log that keeps the most recent entries and counts every entry ever logged, per owner (a
//! view, a source). What the late-row log and the bad-record log share: a flood of entries costs
//! bounded memory, yet no entry vanishes from the counts.

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// One kept entry.
#[derive(Debug)]
pub struct Logged<T> {
    /// Owner (view or source name).
    pub owner: String,
    /// When it was logged (microseconds since the epoch).
    pub recorded_micros: i64,
    /// The entry.
    pub entry: T,
}

#[derive(Debug)]
struct Inner<T> {
    kept: VecDeque<Logged<T>>,
    /// Entries ever logged, per owner (kept when entries are evicted).
    counts: BTreeMap<String, u64>,
}

/// Keeps at most `capacity` entries, oldest dropped first.
#[derive(Debug)]
pub struct BoundedLog<T> {
    capacity: usize,
    inner: Mutex<Inner<T>>,
}

impl<T> BoundedLog<T> {
    /// A log keeping at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner {
                kept: VecDeque::new(),
                counts: BTreeMap::new(),
            }),
        }
    }

    /// Logs `entries` of `owner`, counting them all.
    pub fn record(&self, owner: &str, entries: impl IntoIterator<Item = T>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let mut inner = self.inner.lock();
        let mut added = 0;
        for entry in entries {
            if inner.kept.len() >= self.capacity {
                inner.kept.pop_front();
            }
            inner.kept.push_back(Logged {
                owner: owner.to_string(),
                recorded_micros: now,
                entry,
            });
            added += 1;
        }
        *inner.counts.entry(owner.to_string()).or_default() += added;
    }

    /// Entries ever logged for `owner`.
    pub fn count(&self, owner: &str) -> u64 {
        self.inner.lock().counts.get(owner).copied().unwrap_or(0)
    }

    /// Entries ever logged for each of `owners`, in order.
    pub fn counts(&self, owners: &[String]) -> Vec<u64> {
        let inner = self.inner.lock();
        owners
            .iter()
            .map(|o| inner.counts.get(o).copied().unwrap_or(0))
            .collect()
    }

    /// Forgets a dropped owner's entries and count.
    pub fn forget(&self, owner: &str) {
        let mut inner = self.inner.lock();
        inner.counts.remove(owner);
        inner.kept.retain(|l| l.owner != owner);
    }

    /// Runs `f` over the kept entries, oldest first, under the log's lock.
    pub fn with_kept<R>(&self, f: impl FnOnce(&VecDeque<Logged<T>>) -> R) -> R {
        f(&self.inner.lock().kept)
    }
}
