//! The rows of an updating view that can still change, partitioned by the view's sealing column
//! so the watermark can seal whole partitions (a window's rows) at once.
//!
//! Each partition is a [`KeyedRows`] on the view's key (a multiset when the view has no key).
//! A partition is keyed by the sealing column's value in nanoseconds; a view that never seals
//! (an aggregate without a window) has one partition, `i64::MAX`, sealed only when its input
//! ends.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::compute::kernels::aggregate::{max, min};
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::datatypes::{DataType, SchemaRef};

use crate::changes::Changes;
use crate::error::{EngineError, Result};
use crate::keyed_rows::KeyedRows;
use crate::stream_props::StreamProps;
use crate::time::{nanos_per_unit, timestamp_values};

/// The partition of a view that never seals.
pub const UNSEALED: i64 = i64::MAX;

/// Live rows by partition; see the module docs.
#[derive(Debug)]
pub struct LiveRows {
    schema: SchemaRef,
    /// The view's key, or None for a multiset.
    key: Option<Vec<usize>>,
    /// The sealing column and its span (see [`StreamProps::seal_span`]).
    sealed_by: Option<(usize, i64)>,
    partitions: BTreeMap<i64, KeyedRows>,
}

impl LiveRows {
    /// Live rows of a view of `schema` with stream properties `props`.
    pub fn new(schema: SchemaRef, props: &StreamProps) -> Self {
        Self {
            schema,
            key: props.key.clone(),
            sealed_by: props.sealed_by.map(|c| (c, props.seal_span)),
            partitions: BTreeMap::new(),
        }
    }

    /// Applies changes, routing each row to its partition.
    pub fn apply(&mut self, changes: &Changes) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        for (partition, part) in self.split(changes)? {
            let rows = match self.partitions.entry(partition) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(match &self.key {
                    Some(key) => KeyedRows::try_new(self.schema.clone(), key.clone())?,
                    None => KeyedRows::multiset(self.schema.clone())?,
                }),
            };
            rows.apply(&part)?;
            if rows.is_empty() {
                self.partitions.remove(&partition);
            }
        }
        Ok(())
    }

    /// The rows of the partition that never seals (a table's, a global aggregate's), if any.
    pub fn unsealed(&self) -> Option<&KeyedRows> {
        self.partitions.get(&UNSEALED)
    }

    /// Removes and returns the rows of every partition the watermark (nanoseconds) seals.
    pub fn seal(&mut self, watermark: i64) -> Result<Vec<RecordBatch>> {
        let Some((_, span)) = self.sealed_by else {
            return Ok(Vec::new());
        };
        let first_open = watermark.saturating_add(span).saturating_add(1);
        let open = self.partitions.split_off(&first_open);
        let sealed = std::mem::replace(&mut self.partitions, open);
        sealed.into_values().map(|rows| rows.rows()).collect()
    }

    /// Removes and returns every partition's rows (the input ended: nothing changes any more).
    pub fn seal_all(&mut self) -> Result<Vec<RecordBatch>> {
        std::mem::take(&mut self.partitions)
            .into_values()
            .map(|rows| rows.rows())
            .collect()
    }

    /// Each partition's live rows.
    pub fn partitions(&self) -> Result<BTreeMap<i64, RecordBatch>> {
        self.partitions
            .iter()
            .map(|(p, rows)| Ok((*p, rows.rows()?)))
            .collect()
    }

    /// Number of live rows and of partitions.
    pub fn stats(&self) -> (usize, usize) {
        (
            self.partitions.values().map(KeyedRows::len).sum(),
            self.partitions.len(),
        )
    }

    /// Approximate bytes held.
    pub fn size(&self) -> usize {
        self.partitions.values().map(KeyedRows::size).sum()
    }

    /// The partition of every row, as runs of equal partitions; one run when all rows share
    /// one (a window aggregate emits one window at a time).
    fn split(&self, changes: &Changes) -> Result<Vec<(i64, Changes)>> {
        let Some((column, _)) = self.sealed_by else {
            return Ok(vec![(UNSEALED, changes.clone())]);
        };
        let values = changes.rows().column(column);
        let scale = match values.data_type() {
            DataType::Timestamp(unit, _) => nanos_per_unit(*unit),
            _ => 1,
        };
        let values = timestamp_values(values)?;
        if values.null_count() > 0 {
            return Err(EngineError::Internal(
                "a view's sealing column holds NULL".into(),
            ));
        }
        let (Some(low), Some(high)) = (min(&values), max(&values)) else {
            return Ok(Vec::new());
        };
        if low == high {
            return Ok(vec![(low.saturating_mul(scale), changes.clone())]);
        }
        // Several partitions: one filter per distinct value (few: a batch spans few windows).
        let mut distinct: Vec<i64> = values.values().to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        distinct
            .into_iter()
            .map(|v| {
                let mask: BooleanArray = eq(
                    &values,
                    &datafusion::arrow::array::Int64Array::new_scalar(v),
                )?;
                Ok((v.saturating_mul(scale), changes.filter(&mask)?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int64Array, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};

    use super::*;
    use crate::changes::Op;
    use crate::stream_props::StreamKind;

    fn rows(windows: &[i64], values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "window_start",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMillisecondArray::from(windows.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_of_several_windows_seal_window_by_window() -> Result<()> {
        let props = StreamProps {
            kind: StreamKind::Retract,
            key: Some(vec![0]),
            sealed_by: Some(0),
            seal_span: 0,
            event_time: Some(0),
        };
        let mut live = LiveRows::new(rows(&[], &[]).schema(), &props);
        // One batch spanning three windows (1 s, 2 s, 3 s), then an update in the second.
        live.apply(&Changes::inserts(rows(&[1000, 2000, 3000], &[1, 2, 3])))?;
        live.apply(&Changes::from_ops(
            rows(&[2000, 2000], &[2, 20]),
            &[Op::UpdateBefore, Op::UpdateAfter],
        )?)?;
        assert_eq!(live.stats(), (3, 3));
        // The watermark is in nanoseconds: 2 s seals the first two windows.
        let sealed = live.seal(2_000_000_000)?;
        let mut values: Vec<i64> = sealed
            .iter()
            .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        values.sort();
        assert_eq!(values, vec![1, 20]);
        assert_eq!(live.stats(), (1, 1));
        assert_eq!(
            live.seal_all()?
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>(),
            1
        );
        Ok(())
    }
}
