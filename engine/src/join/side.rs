//! One input's rows held by a join: arrival chunks, and for each join key the positions of the
//! rows with that key, oldest first.
//!
//! Rows leave a chunk at a time from the front, once the watermark is past the newest row of
//! the chunk by the join's time bound, so the positions of rows gone are a prefix of every key's
//! list: a probe skips and drops them as it meets them, and the key lists are rebuilt once such
//! leftovers outnumber the rows held (so memory follows the rows held, not the rows ever seen).
//!
//! A join over an updating input also removes single rows: a retraction finds its held copy
//! (same key, same full-row hash, equal columns), which is marked dead and taken out of its key's
//! list, and chunks are rewritten without their dead rows once those outnumber the live ones.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, make_comparator};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;

use datafusion::arrow::compute::interleave_record_batch;

use crate::error::{EngineError, Result};
use crate::time::{max_nanos, timestamp_values};

/// Dead rows (or stale key positions) below this many are left alone: rewriting costs more than
/// they do. Tests use a small number so that rewriting happens all the time.
pub(super) const REWRITE_AFTER: usize = if cfg!(test) { 8 } else { 1 << 16 };

/// Where a held row is: its chunk's sequence number and its row in the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Position {
    pub seq: u64,
    pub row: u32,
}

/// Rows that arrived together.
#[derive(Debug)]
pub(super) struct Chunk {
    pub rows: RecordBatch,
    /// Key id of each row (`u32::MAX`: a NULL key, which matches nothing).
    pub keys: Vec<u32>,
    /// Newest and oldest event time of the rows (nanoseconds), when the side has a time bound.
    pub max_time: i64,
    pub min_time: i64,
    /// How many rows of the other input each row joins (a join without retractions only ever
    /// counts up, so it reads as "joined at least once").
    pub degrees: Vec<u32>,
    /// Full-row hashes, for a side whose rows are retracted (empty otherwise).
    pub hashes: Vec<u64>,
    /// Rows not retracted yet.
    pub live: Vec<bool>,
}

impl Chunk {
    /// Bytes of the rows and their per-row facts.
    fn bytes(&self) -> usize {
        self.rows.get_array_memory_size()
            + self.keys.len() * 4
            + self.degrees.len() * 4
            + self.hashes.len() * 8
            + self.live.len()
    }
}

/// How long rows of a side are kept: until the watermark passes `time + reach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBound {
    /// The side's event-time column.
    pub column: usize,
    /// Nanoseconds past a row's time during which rows of the other side can still match it.
    pub reach: i64,
}

/// The rows of one side.
#[derive(Debug)]
pub(super) struct JoinSide {
    pub schema: SchemaRef,
    pub chunks: VecDeque<Chunk>,
    /// Sequence number of `chunks[0]`.
    pub first_seq: u64,
    /// Positions of held rows by key id (and leftovers of rows gone, at the front).
    pub by_key: Vec<Vec<Position>>,
    /// Rows held.
    pub rows: usize,
    /// Positions left in `by_key` of rows gone.
    pub leftovers: usize,
    /// Rows retracted but still in their chunks.
    pub dead: usize,
    /// Bytes of the chunks (kept as they change: state size is read at every watermark).
    chunk_bytes: usize,
    /// Entries in the key lists.
    positions: usize,
    pub bound: Option<TimeBound>,
}

impl JoinSide {
    pub(super) fn new(schema: SchemaRef, bound: Option<TimeBound>) -> Self {
        Self {
            schema,
            chunks: VecDeque::new(),
            first_seq: 0,
            by_key: Vec::new(),
            rows: 0,
            leftovers: 0,
            dead: 0,
            chunk_bytes: 0,
            positions: 0,
            bound,
        }
    }

    /// Holds `rows` (their key ids in `keys`, their degrees, and their hashes if the side's rows
    /// can be retracted), returning the new chunk's sequence number.
    pub(super) fn push(
        &mut self,
        rows: RecordBatch,
        keys: Vec<u32>,
        degrees: Vec<u32>,
        hashes: Vec<u64>,
    ) -> Result<u64> {
        let seq = self.first_seq + self.chunks.len() as u64;
        let (min_time, max_time) = match self.bound {
            Some(b) => time_range(rows.column(b.column))?,
            None => (i64::MIN, i64::MAX),
        };
        for (row, &key) in keys.iter().enumerate() {
            if key == u32::MAX {
                continue;
            }
            let key = key as usize;
            if self.by_key.len() <= key {
                self.by_key.resize_with(key + 1, Vec::new);
            }
            self.by_key[key].push(Position {
                seq,
                row: row as u32,
            });
            self.positions += 1;
        }
        self.rows += rows.num_rows();
        let live = vec![true; rows.num_rows()];
        let chunk = Chunk {
            rows,
            keys,
            max_time,
            min_time,
            degrees,
            hashes,
            live,
        };
        self.chunk_bytes += chunk.bytes();
        self.chunks.push_back(chunk);
        Ok(seq)
    }

    /// The degree of the held row at `p`.
    pub(super) fn degree_mut(&mut self, p: Position) -> Result<&mut u32> {
        self.chunk_mut(p.seq)
            .and_then(|c| c.degrees.get_mut(p.row as usize))
            .ok_or_else(|| EngineError::Internal("a held join row is gone".into()))
    }

    /// Takes out one held row equal to `rows[row]` (key id `key`, full-row hash `hash`),
    /// returning whether there was one.
    pub(super) fn remove(
        &mut self,
        key: u32,
        hash: u64,
        rows: &RecordBatch,
        row: usize,
    ) -> Result<bool> {
        let Some(list) = self.by_key.get(key as usize) else {
            return Ok(false);
        };
        let mut found = None;
        for (index, p) in list.iter().enumerate() {
            let Some(chunk) = self
                .chunks
                .get((p.seq.wrapping_sub(self.first_seq)) as usize)
            else {
                continue;
            };
            let at = p.row as usize;
            if p.seq >= self.first_seq
                && chunk.live.get(at) == Some(&true)
                && chunk.hashes.get(at) == Some(&hash)
                && rows_equal(&chunk.rows, at, rows, row)?
            {
                found = Some((index, *p));
                break;
            }
        }
        let Some((index, p)) = found else {
            return Ok(false);
        };
        if let Some(list) = self.by_key.get_mut(key as usize) {
            // Order-preserving: rows gone by expiry stay a prefix of every list.
            list.remove(index);
            self.positions -= 1;
        }
        if let Some(live) = self
            .chunk_mut(p.seq)
            .and_then(|c| c.live.get_mut(p.row as usize))
        {
            *live = false;
        }
        self.rows -= 1;
        self.dead += 1;
        // Its key may have no rows left: counted toward rebuilding the key table.
        self.leftovers += 1;
        Ok(true)
    }

    /// Rewrites the chunks without their dead rows once those outnumber the live ones (or
    /// whenever there are any, if `force`); the key lists are rebuilt (with `keys` key ids).
    pub(super) fn compact(&mut self, keys: usize, force: bool) -> Result<()> {
        if self.dead == 0 || (!force && self.dead < self.rows.max(REWRITE_AFTER)) {
            return Ok(());
        }
        let mut kept = VecDeque::with_capacity(self.chunks.len());
        for chunk in self.chunks.drain(..) {
            if chunk.live.iter().all(|&l| l) {
                kept.push_back(chunk);
                continue;
            }
            let mask = BooleanArray::from(chunk.live.clone());
            let rows = datafusion::arrow::compute::filter_record_batch(&chunk.rows, &mask)?;
            if rows.num_rows() == 0 {
                continue;
            }
            let pick = |values: &[u32]| -> Vec<u32> {
                values
                    .iter()
                    .zip(&chunk.live)
                    .filter(|(_, l)| **l)
                    .map(|(v, _)| *v)
                    .collect()
            };
            let hashes = chunk
                .hashes
                .iter()
                .zip(&chunk.live)
                .filter(|(_, l)| **l)
                .map(|(h, _)| *h)
                .collect();
            kept.push_back(Chunk {
                keys: pick(&chunk.keys),
                degrees: pick(&chunk.degrees),
                hashes,
                live: vec![true; rows.num_rows()],
                rows,
                max_time: chunk.max_time,
                min_time: chunk.min_time,
            });
        }
        self.chunks = kept;
        self.chunk_bytes = self.chunks.iter().map(Chunk::bytes).sum();
        self.dead = 0;
        self.reindex(keys);
        Ok(())
    }

    /// The held positions of key `key`, dropping leftovers of rows gone first.
    pub(super) fn positions(&mut self, key: usize) -> &[Position] {
        let Some(list) = self.by_key.get_mut(key) else {
            return &[];
        };
        let gone = list.partition_point(|p| p.seq < self.first_seq);
        if gone > 0 {
            list.drain(..gone);
            self.positions -= gone;
            self.leftovers = self.leftovers.saturating_sub(gone);
        }
        list
    }

    /// The chunk holding `seq`.
    pub(super) fn chunk(&self, seq: u64) -> Option<&Chunk> {
        self.chunks.get(seq.checked_sub(self.first_seq)? as usize)
    }

    pub(super) fn chunk_mut(&mut self, seq: u64) -> Option<&mut Chunk> {
        let index = seq.checked_sub(self.first_seq)? as usize;
        self.chunks.get_mut(index)
    }

    /// The held rows at `positions`, in that order (one `interleave` over the chunks they are
    /// in, numbered locally).
    pub(super) fn gather(&self, positions: &[Position]) -> Result<RecordBatch> {
        let mut local: HashMap<u64, usize> = HashMap::new();
        let mut seqs = Vec::new();
        let indices: Vec<(usize, usize)> = positions
            .iter()
            .map(|p| {
                let index = *local.entry(p.seq).or_insert_with(|| {
                    seqs.push(p.seq);
                    seqs.len() - 1
                });
                (index, p.row as usize)
            })
            .collect();
        if indices.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        let held = seqs
            .iter()
            .map(|&seq| {
                self.chunk(seq)
                    .map(|c| &c.rows)
                    .ok_or_else(|| EngineError::Internal("a held join row is gone".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(interleave_record_batch(&held, &indices)?)
    }

    /// Takes out the leading chunks every row of which is past `watermark` by the bound.
    pub(super) fn expire(&mut self, watermark: i64) -> Vec<Chunk> {
        let Some(bound) = self.bound else {
            return Vec::new();
        };
        let mut gone = Vec::new();
        while let Some(front) = self.chunks.front() {
            if front.max_time.saturating_add(bound.reach) >= watermark {
                break;
            }
            if let Some(chunk) = self.chunks.pop_front() {
                self.first_seq += 1;
                let live = chunk.live.iter().filter(|&&l| l).count();
                self.chunk_bytes -= chunk.bytes();
                self.rows -= live;
                self.dead -= chunk.rows.num_rows() - live;
                self.leftovers += chunk
                    .keys
                    .iter()
                    .zip(&chunk.live)
                    .filter(|&(&k, &l)| k != u32::MAX && l)
                    .count();
                gone.push(chunk);
            }
        }
        gone
    }

    /// Oldest event time held (nanoseconds).
    pub(super) fn oldest_time(&self) -> Option<i64> {
        self.chunks.iter().map(|c| c.min_time).min()
    }

    /// Rebuilds the key lists from the chunks' key ids (after the key table was rebuilt with
    /// `keys` keys): no leftovers remain.
    pub(super) fn reindex(&mut self, keys: usize) {
        self.by_key = vec![Vec::new(); keys];
        self.leftovers = 0;
        self.positions = 0;
        for (index, chunk) in self.chunks.iter().enumerate() {
            let seq = self.first_seq + index as u64;
            for (row, &key) in chunk.keys.iter().enumerate() {
                if !chunk.live.get(row).copied().unwrap_or(false) {
                    continue;
                }
                if let Some(list) = self.by_key.get_mut(key as usize) {
                    list.push(Position {
                        seq,
                        row: row as u32,
                    });
                    self.positions += 1;
                }
            }
        }
    }

    /// Bytes held (kept as rows come and go, so reading it costs nothing: list capacity beyond
    /// the entries is not counted).
    pub(super) fn size(&self) -> usize {
        self.chunk_bytes
            + self.positions * std::mem::size_of::<Position>()
            + self.by_key.len() * std::mem::size_of::<Vec<Position>>()
    }

    /// The held rows that never joined, for a side whose unmatched rows are emitted.
    pub(super) fn unmatched(chunk: &Chunk) -> Result<Option<RecordBatch>> {
        let alone = |i: usize| chunk.degrees[i] == 0 && chunk.live[i];
        if !(0..chunk.degrees.len()).any(alone) {
            return Ok(None);
        }
        let keep = BooleanArray::from((0..chunk.degrees.len()).map(alone).collect::<Vec<_>>());
        let rows = datafusion::arrow::compute::filter_record_batch(&chunk.rows, &keep)?;
        Ok(Some(rows))
    }
}

/// Row `a` of `left` equals row `b` of `right` in every column (NULL equal to NULL).
pub(super) fn rows_equal(
    left: &RecordBatch,
    a: usize,
    right: &RecordBatch,
    b: usize,
) -> Result<bool> {
    for (l, r) in left.columns().iter().zip(right.columns()) {
        let compare = make_comparator(l.as_ref(), r.as_ref(), SortOptions::default())?;
        if compare(a, b) != std::cmp::Ordering::Equal {
            return Ok(false);
        }
    }
    Ok(true)
}

/// (oldest, newest) event time of a timestamp column in nanoseconds (nulls ignored; an all-null
/// column holds nothing back and leaves at once).
fn time_range(times: &ArrayRef) -> Result<(i64, i64)> {
    let newest = max_nanos(times)?.unwrap_or(i64::MIN);
    let unit = match times.data_type() {
        datafusion::arrow::datatypes::DataType::Timestamp(unit, _) => *unit,
        _ => return Ok((i64::MIN, newest)),
    };
    let values = timestamp_values(times)?;
    let oldest = datafusion::arrow::compute::min(&values).map_or(newest, |v| {
        v.saturating_mul(crate::time::nanos_per_unit(unit))
    });
    Ok((oldest, newest))
}
