//! One input's rows held by a join: arrival chunks, and for each join key the positions of the
//! rows with that key, oldest first.
//!
//! Rows leave a chunk at a time from the front, once the watermark is past the newest row of
//! the chunk by the join's time bound, so the positions of rows gone are a prefix of every key's
//! list: a probe skips and drops them as it meets them, and the key lists are rebuilt once such
//! leftovers outnumber the rows held (so memory follows the rows held, not the rows ever seen).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;

use datafusion::arrow::compute::interleave_record_batch;

use crate::error::{EngineError, Result};
use crate::time::{max_nanos, timestamp_values};

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
    /// Rows that joined at least once (kept for a side whose unmatched rows are emitted).
    pub matched: Vec<bool>,
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
            bound,
        }
    }

    /// Holds `rows` (their key ids in `keys`), returning the new chunk's sequence number.
    pub(super) fn push(
        &mut self,
        rows: RecordBatch,
        keys: Vec<u32>,
        matched: Vec<bool>,
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
        }
        self.rows += rows.num_rows();
        self.chunks.push_back(Chunk {
            rows,
            keys,
            max_time,
            min_time,
            matched,
        });
        Ok(seq)
    }

    /// The held positions of key `key`, dropping leftovers of rows gone first.
    pub(super) fn positions(&mut self, key: usize) -> &[Position] {
        let Some(list) = self.by_key.get_mut(key) else {
            return &[];
        };
        let gone = list.partition_point(|p| p.seq < self.first_seq);
        if gone > 0 {
            list.drain(..gone);
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
                self.rows -= chunk.rows.num_rows();
                self.leftovers += chunk.keys.iter().filter(|&&k| k != u32::MAX).count();
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
        for (index, chunk) in self.chunks.iter().enumerate() {
            let seq = self.first_seq + index as u64;
            for (row, &key) in chunk.keys.iter().enumerate() {
                if let Some(list) = self.by_key.get_mut(key as usize) {
                    list.push(Position {
                        seq,
                        row: row as u32,
                    });
                }
            }
        }
    }

    /// Bytes held.
    pub(super) fn size(&self) -> usize {
        let rows: usize = self
            .chunks
            .iter()
            .map(|c| c.rows.get_array_memory_size() + c.keys.len() * 4 + c.matched.len())
            .sum();
        let lists: usize = self
            .by_key
            .iter()
            .map(|l| l.capacity() * std::mem::size_of::<Position>() + 24)
            .sum();
        rows + lists
    }

    /// The held rows that never joined, for a side whose unmatched rows are emitted.
    pub(super) fn unmatched(chunk: &Chunk) -> Result<Option<RecordBatch>> {
        if chunk.matched.iter().all(|&m| m) {
            return Ok(None);
        }
        let keep = BooleanArray::from(chunk.matched.iter().map(|&m| !m).collect::<Vec<_>>());
        let rows = datafusion::arrow::compute::filter_record_batch(&chunk.rows, &keep)?;
        Ok(Some(rows))
    }
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
