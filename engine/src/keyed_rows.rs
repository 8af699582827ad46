//! The live rows of an updating stream, unique by key, with updates and deletes applied in place.
//! A stream without a known key is held as a multiset instead: the whole row is the key and
//! each distinct row has a count.
//!
//! Keys are interned with DataFusion's `GroupValues` (the vectorised hash table its aggregates
//! use), so applying a batch of changes hashes whole columns at once. Each key id points at the
//! batch and row holding its live version. Changed batches are kept as they arrive (a row that
//! was retracted or replaced is simply no longer pointed at) and compacted into one batch, with
//! the keys re-interned, once more than half of what is held is dead: memory stays within twice
//! the live rows, and the cost of compaction is amortised over the changes that made it
//! necessary.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use parking_lot::Mutex;

use crate::changes::Changes;
use crate::error::{EngineError, Result};

/// A key id's live row: index into `batches` and row within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    batch: u32,
    row: u32,
}

/// Rows unique by key; see the module docs.
pub struct KeyedRows {
    schema: SchemaRef,
    key: Vec<usize>,
    key_schema: SchemaRef,
    /// Key → dense id. Behind a mutex only because `GroupValues` is not `Sync` and the rows
    /// are read from query threads; it is locked once per batch, by the one writer.
    ids: Mutex<Box<dyn GroupValues>>,
    /// Per key id: where its live row is, if it has one.
    slots: Vec<Option<Slot>>,
    /// Multiset mode: per key id, how many copies of its row are live.
    counts: Option<Vec<u32>>,
    /// Key ids with a live row.
    distinct: usize,
    batches: Vec<RecordBatch>,
    /// Rows held in `batches` (live or dead).
    held: usize,
    live: usize,
    /// Reused buffer of key ids per row.
    scratch: Vec<usize>,
}

impl std::fmt::Debug for KeyedRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedRows")
            .field("key", &self.key)
            .field("live", &self.live)
            .field("held", &self.held)
            .finish()
    }
}

impl KeyedRows {
    /// Empty rows of `schema`, unique on the columns `key` (empty: at most one row).
    pub fn try_new(schema: SchemaRef, key: Vec<usize>) -> Result<Self> {
        let key_schema = key_schema(&schema, &key)?;
        let ids = Mutex::new(new_group_values(
            Arc::clone(&key_schema),
            &GroupOrdering::None,
        )?);
        Ok(Self {
            schema,
            key,
            key_schema,
            ids,
            slots: Vec::new(),
            counts: None,
            distinct: 0,
            batches: Vec::new(),
            held: 0,
            live: 0,
            scratch: Vec::new(),
        })
    }

    /// Empty rows of `schema` kept as a multiset: the whole row is the key, duplicates are
    /// counted (an updating stream whose key a projection dropped).
    pub fn multiset(schema: SchemaRef) -> Result<Self> {
        let all = (0..schema.fields().len()).collect();
        let mut rows = Self::try_new(schema, all)?;
        rows.counts = Some(Vec::new());
        Ok(rows)
    }

    /// Number of live rows.
    pub fn len(&self) -> usize {
        self.live
    }

    /// No live rows.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Applies changes in order: a retraction must remove the live row of its key, an addition
    /// must find its key free (a stream that breaks this is a bug upstream, reported as an
    /// internal error rather than guessed around).
    pub fn apply(&mut self, changes: &Changes) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let rows = changes.rows();
        let keys = self.key_columns(rows);
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        let known = {
            let mut interner = self.ids.lock();
            interner.intern(&keys, &mut ids)?;
            interner.len()
        };
        if self.slots.len() < known {
            self.slots.resize(known, None);
            if let Some(counts) = &mut self.counts {
                counts.resize(known, 0);
            }
        }
        let batch = u32::try_from(self.batches.len())
            .map_err(|_| EngineError::Internal("keyed rows: too many batches".into()))?;
        let mut added = 0usize;
        let result = (|| {
            for (i, &id) in ids.iter().enumerate() {
                let op = changes.op(i);
                let slot = &mut self.slots[id];
                let copies = self.counts.as_mut().map(|c| &mut c[id]);
                if op.is_retraction() {
                    let remaining = match copies {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            *n
                        }
                        Some(_) => 0,
                        None => u32::from(slot.is_none()),
                    };
                    if slot.is_none() {
                        return Err(EngineError::Internal(format!(
                            "keyed rows: {op} of a row that is not live"
                        )));
                    }
                    if remaining == 0 {
                        *slot = None;
                        self.distinct -= 1;
                    }
                    self.live -= 1;
                } else {
                    match copies {
                        Some(n) => *n += 1,
                        None if slot.is_some() => {
                            return Err(EngineError::Internal(format!(
                                "keyed rows: {op} of a key that already has a live row"
                            )));
                        }
                        None => {}
                    }
                    if slot.is_none() {
                        *slot = Some(Slot {
                            batch,
                            row: i as u32,
                        });
                        self.distinct += 1;
                        added += 1;
                    }
                    self.live += 1;
                }
            }
            Ok(())
        })();
        self.scratch = ids;
        result?;
        if added > 0 {
            self.held += rows.num_rows();
            self.batches.push(rows.clone());
        }
        if self.held > 2 * self.distinct + 1024 {
            self.compact()?;
        }
        Ok(())
    }

    /// The live rows, in one batch (in key-id order: first-seen order, until a compaction).
    pub fn rows(&self) -> Result<RecordBatch> {
        let positions: Vec<(usize, usize)> = match &self.counts {
            None => self
                .slots
                .iter()
                .flatten()
                .map(|s| (s.batch as usize, s.row as usize))
                .collect(),
            Some(counts) => self
                .slots
                .iter()
                .zip(counts)
                .filter_map(|(slot, n)| slot.map(|s| (s, *n as usize)))
                .flat_map(|(s, n)| std::iter::repeat_n((s.batch as usize, s.row as usize), n))
                .collect(),
        };
        self.take(&positions)
    }

    /// Rows at `positions` (batch, row) as one batch.
    fn take(&self, positions: &[(usize, usize)]) -> Result<RecordBatch> {
        if positions.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        let batches: Vec<&RecordBatch> = self.batches.iter().collect();
        Ok(interleave_record_batch(&batches, positions)?)
    }

    /// The live rows whose keys some of `rows` (in this table's schema) have: the positions in
    /// `rows` that found one, and those live rows in the same order. One vectorised hash of the
    /// key columns, as for applying changes.
    pub fn live_versions(&self, rows: &RecordBatch) -> Result<(Vec<usize>, RecordBatch)> {
        self.lookup(&self.key_columns(rows))
    }

    /// The live rows whose keys are given, column by key column (cast to the key's types): the
    /// positions that found one, and those rows in the same order.
    pub fn lookup(&self, keys: &[ArrayRef]) -> Result<(Vec<usize>, RecordBatch)> {
        if keys.len() != self.key_schema.fields().len() {
            return Err(EngineError::Internal(format!(
                "{} key columns to look up rows keyed by {}",
                keys.len(),
                self.key_schema.fields().len()
            )));
        }
        let keys = keys
            .iter()
            .zip(self.key_schema.fields())
            .map(|(k, f)| {
                if k.data_type() == f.data_type() {
                    Ok(Arc::clone(k))
                } else {
                    Ok(datafusion::arrow::compute::cast(k, f.data_type())?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = keys.first().map_or(0, |k| k.len());
        let mut ids = Vec::with_capacity(rows);
        self.ids.lock().intern(&keys, &mut ids)?;
        let mut found = Vec::new();
        let mut positions = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if let Some(Some(slot)) = self.slots.get(*id) {
                found.push(i);
                positions.push((slot.batch as usize, slot.row as usize));
            }
        }
        if positions.is_empty() {
            return Ok((found, RecordBatch::new_empty(Arc::clone(&self.schema))));
        }
        let batches: Vec<&RecordBatch> = self.batches.iter().collect();
        Ok((found, interleave_record_batch(&batches, &positions)?))
    }

    /// Approximate bytes held.
    pub fn size(&self) -> usize {
        self.ids.lock().size()
            + self.slots.capacity() * std::mem::size_of::<Option<Slot>>()
            + self
                .batches
                .iter()
                .map(RecordBatch::get_array_memory_size)
                .sum::<usize>()
    }

    /// Keeps only the live rows, in one batch, with the keys re-interned so dead keys leave the
    /// hash table too.
    fn compact(&mut self) -> Result<()> {
        let (positions, counts): (Vec<(usize, usize)>, Vec<u32>) = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| {
                let copies = self.counts.as_ref().map_or(1, |c| c[id]);
                slot.map(|s| ((s.batch as usize, s.row as usize), copies))
            })
            .unzip();
        let live = self.take(&positions)?;
        let mut ids = new_group_values(Arc::clone(&self.key_schema), &GroupOrdering::None)?;
        let mut assigned = Vec::with_capacity(live.num_rows());
        ids.intern(&self.key_columns(&live), &mut assigned)?;
        if assigned.iter().enumerate().any(|(i, id)| *id != i) {
            return Err(EngineError::Internal(
                "keyed rows: live keys are not unique".into(),
            ));
        }
        self.slots = (0..live.num_rows())
            .map(|row| {
                Some(Slot {
                    batch: 0,
                    row: row as u32,
                })
            })
            .collect();
        if self.counts.is_some() {
            self.counts = Some(counts);
        }
        self.ids = Mutex::new(ids);
        self.held = live.num_rows();
        self.distinct = live.num_rows();
        self.batches = vec![live];
        Ok(())
    }

    fn key_columns(&self, rows: &RecordBatch) -> Vec<ArrayRef> {
        if self.key.is_empty() {
            // The empty key: every row has the same (constant) key.
            return vec![Arc::new(datafusion::arrow::array::BooleanArray::from(
                vec![true; rows.num_rows()],
            ))];
        }
        self.key
            .iter()
            .map(|&i| Arc::clone(rows.column(i)))
            .collect()
    }
}

fn key_schema(schema: &Schema, key: &[usize]) -> Result<SchemaRef> {
    if key.is_empty() {
        return Ok(Arc::new(Schema::new(vec![
            datafusion::arrow::datatypes::Field::new(
                "__weir_single_row",
                datafusion::arrow::datatypes::DataType::Boolean,
                false,
            ),
        ])));
    }
    let fields = key
        .iter()
        .map(|&i| {
            schema.fields().get(i).cloned().ok_or_else(|| {
                EngineError::Internal(format!("key column {i} is outside the schema"))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;
    use crate::changes::{ChangelogChecker, Op};

    fn rows(keys: &[&str], values: &[i64]) -> RecordBatch {
        crate::changes::testing::key_value_rows(keys, values)
    }

    fn sorted_values(batch: &RecordBatch) -> Vec<i64> {
        let mut v = batch
            .column(1)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        v.sort();
        v
    }

    #[test]
    fn updates_and_deletes_apply_in_place() {
        let schema = rows(&[], &[]).schema();
        let mut table = KeyedRows::try_new(schema, vec![0]).unwrap();
        table
            .apply(&Changes::inserts(rows(&["a", "b", "c"], &[1, 2, 3])))
            .unwrap();
        let update = Changes::from_ops(
            rows(&["a", "a", "c", "d"], &[1, 10, 3, 4]),
            &[Op::UpdateBefore, Op::UpdateAfter, Op::Delete, Op::Insert],
        )
        .unwrap();
        table.apply(&update).unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(sorted_values(&table.rows().unwrap()), vec![2, 4, 10]);
        // A deleted key can come back.
        table.apply(&Changes::inserts(rows(&["c"], &[30]))).unwrap();
        assert_eq!(sorted_values(&table.rows().unwrap()), vec![2, 4, 10, 30]);
    }

    #[test]
    fn broken_streams_are_errors() {
        let schema = rows(&[], &[]).schema();
        let mut table = KeyedRows::try_new(schema, vec![0]).unwrap();
        table.apply(&Changes::inserts(rows(&["a"], &[1]))).unwrap();
        assert!(table.apply(&Changes::inserts(rows(&["a"], &[2]))).is_err());
        let absent = Changes::from_ops(rows(&["z"], &[1]), &[Op::Delete]).unwrap();
        assert!(table.apply(&absent).is_err());
    }

    #[test]
    fn empty_key_holds_one_row() {
        let schema = rows(&[], &[]).schema();
        let mut table = KeyedRows::try_new(schema, vec![]).unwrap();
        table.apply(&Changes::inserts(rows(&["a"], &[1]))).unwrap();
        let update = Changes::from_ops(
            rows(&["a", "b"], &[1, 2]),
            &[Op::UpdateBefore, Op::UpdateAfter],
        )
        .unwrap();
        table.apply(&update).unwrap();
        assert_eq!(sorted_values(&table.rows().unwrap()), vec![2]);
        assert!(table.apply(&Changes::inserts(rows(&["c"], &[3]))).is_err());
    }

    #[test]
    fn multiset_counts_copies() {
        let schema = rows(&[], &[]).schema();
        let mut table = KeyedRows::multiset(schema).unwrap();
        table
            .apply(&Changes::inserts(rows(&["a", "a", "b"], &[1, 1, 2])))
            .unwrap();
        let delete_one = Changes::from_ops(rows(&["a"], &[1]), &[Op::Delete]).unwrap();
        table.apply(&delete_one).unwrap();
        assert_eq!(sorted_values(&table.rows().unwrap()), vec![1, 2]);
        table.apply(&delete_one).unwrap();
        assert!(table.apply(&delete_one).is_err());
        assert_eq!(table.len(), 1);
    }

    /// Many rounds of updates to a few keys: memory stays bounded by compaction, and the rows
    /// always equal what a reference replay of the same stream holds.
    #[test]
    fn compaction_keeps_the_live_rows() {
        let schema = rows(&[], &[]).schema();
        let mut table = KeyedRows::try_new(Arc::clone(&schema), vec![0]).unwrap();
        let mut check = ChangelogChecker::new(schema, Some(vec![0])).unwrap();
        let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let first = Changes::inserts(rows(&key_refs, &vec![0; 100]));
        table.apply(&first).unwrap();
        check.apply(&first).unwrap();
        for round in 1..200i64 {
            // Update every key: a before/after pair each.
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            let mut ops = Vec::new();
            for k in &key_refs {
                ks.extend([*k, *k]);
                vs.extend([round - 1, round]);
                ops.extend([Op::UpdateBefore, Op::UpdateAfter]);
            }
            let update = Changes::from_ops(rows(&ks, &vs), &ops).unwrap();
            table.apply(&update).unwrap();
            check.apply(&update).unwrap();
        }
        assert!(table.held <= 2 * table.live + 1024);
        assert_eq!(
            sorted_values(&table.rows().unwrap()),
            sorted_values(&check.live_rows().unwrap())
        );
    }
}
