//! Open sessions by key: finding the session a run of rows belongs to, merging sessions a run
//! bridges, and handing out sessions as the watermark closes them.
//!
//! Keys are Arrow row-format bytes, interned to slots that are freed when a key's last session
//! closes, so a key seen once does not cost memory forever. A key has few open sessions (those
//! within the watermark delay), kept sorted by start in a small vector. Closing uses a calendar:
//! `(slot, session id)` entries in buckets of end time (a sixteenth of the gap, at most 1 s), one entry
//! per session, queued when it opens. A bucket is checked once the watermark has passed all of
//! it: a session that grew meanwhile is queued again at its new end, entries of sessions merged
//! away are skipped. Growing a session costs nothing here, and queueing is a vector push. A
//! session closes up to one bucket after the watermark passes its end; that changes nothing
//! but when it is emitted, since rows behind the watermark cannot reach it.

use std::collections::BTreeMap;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;

use crate::error::{EngineError, Result};

/// The widest closing bucket: a session is emitted at most this long (in event time) after the
/// watermark passes its end, however long the gap.
const MAX_BUCKET_NANOS: i64 = 1_000_000_000;

/// A session's row as last emitted (`OnUpdate`).
#[derive(Debug, Clone)]
pub(super) struct EmittedRow {
    pub start: i64,
    pub end: i64,
    pub values: Vec<ScalarValue>,
}

/// One open session of one key.
pub(super) struct Session {
    pub id: u64,
    /// Time of its first row.
    pub start: i64,
    /// Time of its last row plus the gap.
    pub end: i64,
    pub accumulators: Vec<Box<dyn Accumulator>>,
    /// What downstream holds for it (`OnUpdate` only).
    pub emitted: Option<EmittedRow>,
    /// Changed since the last refresh (and queued in the dirty list).
    pub dirty: bool,
}

struct Slot {
    key: Box<[u8]>,
    /// Open sessions, sorted by start, pairwise more than a gap apart.
    sessions: Vec<Session>,
}

/// A session that ended, with its key.
pub(super) struct Ended {
    pub key: Box<[u8]>,
    pub session: Session,
}

/// Every open session; see the module docs.
#[derive(Default)]
pub(super) struct SessionStore {
    /// Width of a closing bucket (nanoseconds, at least 1).
    bucket_width: i64,
    /// DataFusion's hash map (hashbrown, a fast hasher): keys are hashed once per run of rows.
    index: datafusion::common::HashMap<Box<[u8]>, u32>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// `(slot, session id)` by bucket of the session's end when queued.
    closing: BTreeMap<i64, Vec<(u32, u64)>>,
    next_id: u64,
    /// Sessions changed since the last refresh, as `(slot, id)`.
    dirty: Vec<(u32, u64)>,
    /// Rows downstream holds for sessions merged into others since the last refresh.
    retired: Vec<(Box<[u8]>, EmittedRow)>,
    sessions: usize,
    /// The earliest `window_end` among rows downstream holds that pending changes replace
    /// (dirty sessions' emitted rows, retired rows); `i64::MAX` when there are none.
    pending_end: i64,
}

impl SessionStore {
    /// An empty store for sessions closed by `gap` of inactivity.
    pub(super) fn new(gap: i64) -> Self {
        Self {
            bucket_width: (gap / 16).clamp(1, MAX_BUCKET_NANOS),
            pending_end: i64::MAX,
            ..Self::default()
        }
    }

    fn queue(&mut self, end: i64, slot: u32, id: u64) {
        let bucket = end.div_euclid(self.bucket_width.max(1));
        self.closing.entry(bucket).or_default().push((slot, id));
    }

    /// The slot of `key`, created when new.
    pub(super) fn slot_for(&mut self, key: &[u8]) -> u32 {
        if let Some(&slot) = self.index.get(key) {
            return slot;
        }
        let slot = Slot {
            key: key.into(),
            sessions: Vec::new(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key.into(), id);
        id
    }

    /// The session of `slot` that rows at `first..=last` (each less than `gap` from the next)
    /// belong to: a new one, an existing one they reach, or the merge of every session they
    /// bridge. `merge` folds a retired session's accumulators into the survivor's. The session
    /// is marked dirty and its end re-queued; the caller folds the rows in.
    pub(super) fn session_for(
        &mut self,
        slot: u32,
        first: i64,
        last: i64,
        gap: i64,
        new_accumulators: impl Fn() -> Result<Vec<Box<dyn Accumulator>>>,
        merge: impl Fn(&mut Session, Session) -> Result<()>,
    ) -> Result<&mut Session> {
        let reach = last.saturating_add(gap);
        let entry = self
            .slots
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .ok_or_else(|| EngineError::Internal("session slot vanished".into()))?;
        let sessions = &mut entry.sessions;
        // Sessions overlapping [first, reach): a contiguous range of the sorted vector.
        let lo = sessions.partition_point(|s| s.end <= first);
        let hi = sessions.partition_point(|s| s.start < reach);
        let position = if lo >= hi {
            let id = self.next_id;
            self.next_id += 1;
            sessions.insert(
                lo,
                Session {
                    id,
                    start: first,
                    end: reach,
                    accumulators: new_accumulators()?,
                    emitted: None,
                    dirty: false,
                },
            );
            self.sessions += 1;
            lo
        } else {
            let absorbed: Vec<Session> = sessions.drain(lo + 1..hi).collect();
            let survivor = &mut sessions[lo];
            for other in absorbed {
                survivor.start = survivor.start.min(other.start);
                survivor.end = survivor.end.max(other.end);
                if let Some(row) = other.emitted.clone() {
                    self.pending_end = self.pending_end.min(row.end);
                    self.retired.push((entry.key.clone(), row));
                }
                self.sessions -= 1;
                merge(survivor, other)?;
            }
            lo
        };
        let session = &mut sessions[position];
        session.start = session.start.min(first);
        session.end = session.end.max(reach);
        let (end, id, fresh) = (session.end, session.id, lo >= hi);
        if !session.dirty {
            session.dirty = true;
            self.dirty.push((slot, id));
            if let Some(row) = &session.emitted {
                self.pending_end = self.pending_end.min(row.end);
            }
        }
        if fresh {
            self.queue(end, slot, id);
        }
        self.slots
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .and_then(|entry| entry.sessions.get_mut(position))
            .ok_or_else(|| EngineError::Internal("session vanished".into()))
    }

    /// Removes and returns the sessions ending at or before `watermark` whose bucket the
    /// watermark has passed entirely (every session, for the greatest watermark).
    pub(super) fn close_until(&mut self, watermark: i64) -> Vec<Ended> {
        let width = self.bucket_width.max(1);
        let mut ended = Vec::new();
        while let Some(entry) = self.closing.first_entry() {
            let last_end = entry
                .key()
                .saturating_add(1)
                .saturating_mul(width)
                .saturating_sub(1);
            if last_end > watermark && watermark != i64::MAX {
                break;
            }
            for (slot, id) in entry.remove() {
                let Some(entry) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
                    continue;
                };
                // A session merged away: nothing to close.
                let Some(i) = entry.sessions.iter().position(|s| s.id == id) else {
                    continue;
                };
                // A session that grew since it was queued: queue it at its new end.
                let end = entry.sessions[i].end;
                if end > watermark {
                    self.queue(end, slot, id);
                    continue;
                }
                let session = entry.sessions.remove(i);
                self.sessions -= 1;
                let key = if entry.sessions.is_empty() {
                    let key = std::mem::take(&mut entry.key);
                    self.index.remove(&key);
                    self.slots[slot as usize] = None;
                    self.free.push(slot);
                    key
                } else {
                    entry.key.clone()
                };
                ended.push(Ended { key, session });
            }
        }
        ended
    }

    /// True when a pending change replaces a row downstream holds whose `window_end` is at or
    /// before `watermark`: such rows become final once the watermark passes on, so the changes
    /// must go out first.
    pub(super) fn pending_before(&self, watermark: i64) -> bool {
        self.pending_end <= watermark
    }

    /// Calls `f` on each session changed since the last call (still open), marking it clean.
    /// With [`Self::take_retired`] this drains every pending change.
    pub(super) fn for_each_dirty(
        &mut self,
        mut f: impl FnMut(&[u8], &mut Session) -> Result<()>,
    ) -> Result<()> {
        for (slot, id) in std::mem::take(&mut self.dirty) {
            let Some(entry) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
                continue;
            };
            if let Some(session) = entry.sessions.iter_mut().find(|s| s.id == id && s.dirty) {
                session.dirty = false;
                f(&entry.key, session)?;
            }
        }
        self.pending_end = i64::MAX;
        Ok(())
    }

    /// Rows of sessions merged away since the last call.
    pub(super) fn take_retired(&mut self) -> Vec<(Box<[u8]>, EmittedRow)> {
        std::mem::take(&mut self.retired)
    }

    /// Every open session with its key (checkpoints).
    pub(super) fn all_mut(&mut self) -> impl Iterator<Item = (&[u8], &mut Session)> {
        self.slots
            .iter_mut()
            .flatten()
            .flat_map(|slot| slot.sessions.iter_mut().map(|s| (&*slot.key, s)))
    }

    /// Puts back a checkpointed session (no overlap checks: it was open and distinct).
    pub(super) fn restore(&mut self, key: &[u8], mut session: Session) {
        let slot = self.slot_for(key);
        session.id = self.next_id;
        self.next_id += 1;
        self.queue(session.end, slot, session.id);
        if let Some(entry) = self.slots[slot as usize].as_mut() {
            let at = entry.sessions.partition_point(|s| s.start < session.start);
            entry.sessions.insert(at, session);
            self.sessions += 1;
        }
    }

    /// Open sessions.
    pub(super) fn len(&self) -> usize {
        self.sessions
    }

    /// Bytes held, approximately (accumulators, keys, the index and the heap).
    pub(super) fn size(&self) -> usize {
        let sessions: usize = self
            .slots
            .iter()
            .flatten()
            .map(|slot| {
                2 * slot.key.len()
                    + slot
                        .sessions
                        .iter()
                        .map(|s| {
                            std::mem::size_of::<Session>()
                                + s.accumulators.iter().map(|a| a.size()).sum::<usize>()
                        })
                        .sum::<usize>()
            })
            .sum();
        sessions
            + self.slots.capacity() * std::mem::size_of::<Option<Slot>>()
            + self.index.capacity() * 24
            + self
                .closing
                .values()
                .map(|v| v.capacity() * 16)
                .sum::<usize>()
    }
}
