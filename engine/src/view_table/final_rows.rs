//! A view's final rows held in memory, in append order, each at a fixed absolute position.
//!
//! Positions count every final row the view ever appended, so checkpoints can name "rows
//! `[a, b)`" while older rows leave memory from the front (written to a segment, or expired by
//! retention). Small batches, as the watermark seals them, are merged into chunks of about
//! [`CHUNK_ROWS`] rows: scans stay cheap, and retention can still drop old rows a chunk at a
//! time without touching newer ones.

use std::collections::VecDeque;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use super::retention::Retention;
use crate::error::{EngineError, Result};

/// Small batches are merged once this many pile up after the last full chunk.
const COMPACT_AFTER_BATCHES: usize = 256;

/// Rows in a merged chunk (a batch bigger than this stays as it is).
const CHUNK_ROWS: usize = 64 * 1024;

#[derive(Debug)]
struct Chunk {
    rows: RecordBatch,
    /// Newest event time among the rows (nanoseconds), when the view has a retention column
    /// and some row has a time.
    max_time: Option<i64>,
}

/// Final rows in memory: positions `[start, end)`.
#[derive(Debug)]
pub(super) struct FinalRows {
    schema: SchemaRef,
    chunks: VecDeque<Chunk>,
    start: usize,
    end: usize,
    /// `chunks[..full]` are merged chunks, never merged again.
    full: usize,
    retention: Option<Retention>,
}

impl FinalRows {
    /// Empty, the next row appended getting position `start`.
    pub(super) fn starting_at(
        schema: SchemaRef,
        start: usize,
        retention: Option<Retention>,
    ) -> Self {
        Self {
            schema,
            chunks: VecDeque::new(),
            start,
            end: start,
            full: 0,
            retention,
        }
    }

    /// Position of the first row held.
    #[cfg(test)]
    pub(super) fn start(&self) -> usize {
        self.start
    }

    /// Position after the last row appended.
    pub(super) fn end(&self) -> usize {
        self.end
    }

    /// Appends rows (already in the view's schema).
    pub(super) fn push(&mut self, rows: RecordBatch) -> Result<()> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let max_time = match &self.retention {
            Some(r) => r.max_time(&rows)?,
            None => None,
        };
        self.end += rows.num_rows();
        self.chunks.push_back(Chunk { rows, max_time });
        if self.chunks.len() - self.full >= COMPACT_AFTER_BATCHES {
            self.merge_tail()?;
        }
        Ok(())
    }

    /// Merges the batches after the last full chunk into chunks of about [`CHUNK_ROWS`]: each
    /// row is copied about once, the last partial chunk again at the next merge.
    fn merge_tail(&mut self) -> Result<()> {
        let tail: Vec<Chunk> = self.chunks.drain(self.full..).collect();
        let mut group: Vec<Chunk> = Vec::new();
        let mut group_rows = 0;
        for chunk in tail {
            group_rows += chunk.rows.num_rows();
            group.push(chunk);
            if group_rows >= CHUNK_ROWS {
                let merged = self.merge(std::mem::take(&mut group))?;
                self.chunks.push_back(merged);
                self.full = self.chunks.len();
                group_rows = 0;
            }
        }
        if !group.is_empty() {
            let merged = self.merge(group)?;
            self.chunks.push_back(merged);
        }
        Ok(())
    }

    fn merge(&self, mut group: Vec<Chunk>) -> Result<Chunk> {
        if group.len() == 1
            && let Some(only) = group.pop()
        {
            return Ok(only);
        }
        let rows = concat_batches(&self.schema, group.iter().map(|c| &c.rows))?;
        let max_time = group.iter().filter_map(|c| c.max_time).max();
        Ok(Chunk { rows, max_time })
    }

    /// Rows `[from, to)` as zero-copy slices.
    pub(super) fn range(&self, from: usize, to: usize) -> Result<Vec<RecordBatch>> {
        if to > self.end || from > to || from < self.start {
            return Err(EngineError::Internal(format!(
                "final rows {from}..{to} asked for; memory holds {}..{}",
                self.start, self.end
            )));
        }
        let mut out = Vec::new();
        let mut start = self.start;
        for chunk in &self.chunks {
            let end = start + chunk.rows.num_rows();
            let lo = from.max(start);
            let hi = to.min(end);
            if lo < hi {
                out.push(chunk.rows.slice(lo - start, hi - lo));
            }
            if end >= to {
                break;
            }
            start = end;
        }
        Ok(out)
    }

    /// Lets go of the rows before position `position` (they are in a committed segment).
    pub(super) fn drop_before(&mut self, position: usize) -> Result<()> {
        if position < self.start || position > self.end {
            return Err(EngineError::Internal(format!(
                "dropping final rows before {position}; memory holds {}..{}",
                self.start, self.end
            )));
        }
        let mut drop = position - self.start;
        while drop > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let rows = front.rows.num_rows();
            if drop >= rows {
                self.chunks.pop_front();
                self.full = self.full.saturating_sub(1);
                drop -= rows;
            } else {
                // The chunk's newest time still bounds what is left of it.
                front.rows = front.rows.slice(drop, rows - drop);
                drop = 0;
            }
        }
        self.start = position;
        Ok(())
    }

    /// Drops leading chunks whose every row is older than `cutoff`; returns how many rows went.
    /// Rows arrive roughly in event-time order, so old rows gather at the front; an old row
    /// behind a newer one waits for it (queries never see it: they filter by the cutoff).
    pub(super) fn expire_front(&mut self, cutoff: i64) -> usize {
        let mut dropped = 0;
        while let Some(front) = self.chunks.front() {
            match front.max_time {
                Some(newest) if newest < cutoff => {
                    dropped += front.rows.num_rows();
                    self.chunks.pop_front();
                    self.full = self.full.saturating_sub(1);
                }
                _ => break,
            }
        }
        self.start += dropped;
        dropped
    }

    /// The rows held, in order (zero-copy).
    pub(super) fn batches(&self) -> Vec<RecordBatch> {
        self.chunks.iter().map(|c| c.rows.clone()).collect()
    }

    /// Rows held.
    pub(super) fn rows(&self) -> usize {
        self.end - self.start
    }

    /// Bytes of the rows held (a slice of a larger batch counts what it spans, not the whole
    /// buffer it shares).
    pub(super) fn bytes(&self) -> usize {
        self.chunks
            .iter()
            .flat_map(|c| c.rows.columns())
            .map(|a| {
                a.to_data()
                    .get_slice_memory_size()
                    .unwrap_or_else(|_| a.get_array_memory_size())
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, AsArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{
        DataType, Field, Schema, TimeUnit, TimestampNanosecondType,
    };

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        )]))
    }

    fn batch(times: std::ops::Range<i64>) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![Arc::new(TimestampNanosecondArray::from_iter_values(times))],
        )
        .unwrap()
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<TimestampNanosecondType>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn positions_survive_merging_dropping_and_expiry() -> Result<()> {
        let retention = Retention {
            column: 0,
            horizon_nanos: 0,
        };
        let mut rows = FinalRows::starting_at(schema(), 10, Some(retention));
        // 1 000 batches of 100 rows, times equal to positions - 10.
        for i in 0..1_000 {
            rows.push(batch(i * 100..(i + 1) * 100))?;
        }
        assert_eq!((rows.start(), rows.end()), (10, 100_010));
        // Merged into chunks, not one batch: retention can still drop the old ones.
        assert!(rows.full >= 1 && rows.chunks.len() < 1_000);
        assert_eq!(values(&rows.range(15, 20)?), vec![5, 6, 7, 8, 9]);
        assert_eq!(values(&rows.range(65_540, 65_542)?), vec![65_530, 65_531]);
        assert!(rows.range(5, 20).is_err());
        // A checkpoint took the first 50 rows.
        rows.drop_before(60)?;
        assert_eq!(values(&rows.range(60, 61)?), vec![50]);
        // Everything before time 70 000 is expired, a chunk at a time: the first chunk goes
        // (it ends before 70 000), the next one holds newer rows and stays.
        let dropped = rows.expire_front(70_000);
        assert!(dropped > 0 && dropped < 70_000 - 50);
        assert_eq!(rows.start(), 60 + dropped);
        assert_eq!(rows.rows(), 100_010 - rows.start());
        let held = values(&rows.batches());
        assert_eq!(held.len(), rows.rows());
        assert_eq!(held.first().copied(), Some((rows.start() - 10) as i64));
        // Nothing newer than the cutoff ever goes.
        assert!(held.iter().all(|&t| t >= 50) && held.contains(&70_000));
        assert_eq!(rows.expire_front(0), 0);
        assert!(rows.batches().iter().all(|b| b.column(0).null_count() == 0));
        Ok(())
    }
}
