//! The right input's history in an event-time temporal join: versions kept per key (from
//! inserts and updates), ends of versions (from deletes), and dropping those no left row still
//! to come can use as the watermark passes.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;

use super::super::keys::NO_KEY;
use super::super::output::gather_or_null;
use super::super::side::Position;
use super::{REWRITE_AFTER, Version, VersionedJoin, times};
use crate::changes::{Changes, Op};
use crate::error::Result;

impl VersionedJoin {
    /// Keeps a batch of versions (those on time).
    pub(super) fn add_versions(&mut self, rows: RecordBatch) -> Result<()> {
        let rows = self.on_time(1, rows)?;
        let starts = times(&rows, self.spec.right_time)?;
        if let Some(&newest) = starts.iter().max() {
            self.clock = self.clock.max(newest);
        }
        self.keep_versions(rows, &starts, &[])
    }

    /// Ends the versions of the keys of `rows` (deleted rows) from the right input's clock on
    /// (never before the watermark: rows out already joined what there was).
    pub(super) fn end_versions(&mut self, rows: RecordBatch) -> Result<()> {
        let floor = self.clock.max(self.watermark.unwrap_or(i64::MIN));
        let starts: Vec<i64> = times(&rows, self.spec.right_time)?
            .into_iter()
            .map(|t| t.max(floor))
            .collect();
        let ends = vec![true; rows.num_rows()];
        self.keep_versions(rows, &starts, &ends)
    }

    /// Keeps `rows` as versions from `starts` on (`ends[i]`: row `i` ends its key's versions;
    /// empty: none does).
    pub(super) fn keep_versions(
        &mut self,
        rows: RecordBatch,
        starts: &[i64],
        ends: &[bool],
    ) -> Result<()> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let ids = self.keys.ids(&self.spec.right_keys, &rows)?;
        let seq = self.batches.len() as u64;
        for (row, (&id, &start)) in ids.iter().zip(starts).enumerate() {
            if id == NO_KEY {
                continue;
            }
            let key = id as usize;
            if self.versions.len() <= key {
                self.versions.resize_with(key + 1, Vec::new);
                self.unsettled_flag.resize(key + 1, false);
            }
            let list = &mut self.versions[key];
            // Versions mostly arrive in time order: usually this appends.
            let at = list.partition_point(|v| v.start <= start);
            let version = Version {
                start,
                at: Position {
                    seq,
                    row: row as u32,
                },
                ends: ends.get(row).copied().unwrap_or(false),
            };
            list.insert(at, version);
            self.kept += 1;
            if !self.unsettled_flag[key] {
                self.unsettled_flag[key] = true;
                self.unsettled.push(id);
            }
        }
        self.batch_bytes += rows.get_array_memory_size();
        self.batches.push(rows);
        Ok(())
    }

    /// Applies a table's changes in order: runs of new rows are versions, runs of deletes end
    /// versions, an update's old row is passed over (its new row follows).
    pub(super) fn apply_changes(&mut self, changes: &Changes) -> Result<()> {
        let rows = changes.rows();
        let class = |i: usize| match changes.op(i) {
            Op::Insert | Op::UpdateAfter => 0,
            Op::UpdateBefore => 1,
            Op::Delete => 2,
        };
        let mut start = 0;
        while start < rows.num_rows() {
            let kind = class(start);
            let mut end = start + 1;
            while end < rows.num_rows() && class(end) == kind {
                end += 1;
            }
            let run = rows.slice(start, end - start);
            match kind {
                0 => self.add_versions(run)?,
                2 => self.end_versions(run)?,
                _ => {}
            }
            start = end;
        }
        Ok(())
    }

    /// Drops versions no left row still to come can use: per unsettled key, all but the newest
    /// before `watermark`.
    pub(super) fn settle(&mut self, watermark: i64) -> Result<()> {
        let mut still = Vec::new();
        for id in std::mem::take(&mut self.unsettled) {
            let key = id as usize;
            let Some(list) = self.versions.get_mut(key) else {
                continue;
            };
            let before = list.partition_point(|v| v.start < watermark);
            if before > 1 {
                list.drain(..before - 1);
                self.kept -= before - 1;
                self.dropped += before - 1;
            }
            if list.last().is_some_and(|v| v.start >= watermark) {
                still.push(id);
            } else if let Some(flag) = self.unsettled_flag.get_mut(key) {
                *flag = false;
            }
        }
        self.unsettled = still;
        if self.dropped >= self.kept.max(REWRITE_AFTER) {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Rewrites the kept versions into one batch, leaving the dropped ones behind.
    pub(super) fn rewrite(&mut self) -> Result<()> {
        let mut order: Vec<Option<Position>> = Vec::with_capacity(self.kept);
        for list in &mut self.versions {
            for version in list.iter_mut() {
                let position = version.at;
                version.at = Position {
                    seq: 0,
                    row: order.len() as u32,
                };
                order.push(Some(position));
            }
        }
        let columns = gather_or_null(&self.spec.right_schema, &self.batches, &order)?;
        self.batches = vec![RecordBatch::try_new(
            Arc::clone(&self.spec.right_schema),
            columns,
        )?];
        self.batch_bytes = self
            .batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        self.dropped = 0;
        Ok(())
    }
}
