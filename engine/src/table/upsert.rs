//! The step that turns an upsert topic into a table's changes (`CREATE TABLE … FORMAT UPSERT`):
//! each message says "key K now has this value", or, without a value (a tombstone), "key K is
//! gone". Against the rows live per key it becomes `+I` (a new key), `-U old, +U new` (a key
//! that had a row) or `-D old` (a tombstone of a live key; one of an unknown key is nothing).
//!
//! Input rows are the table's columns, then the message key as text, then the tombstone flag.
//! The key columns come from the message key (a JSON object of them, or, for a one-column key,
//! the key's text), or from the value when a message has no key. Within a batch only the last
//! message per key counts: the changes of the earlier ones would be taken back in the same batch;
//! unless every message is a version by event time ([`UpsertOperator::keeping_every_version`]),
//! when all count, in order.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{
    and, cast, concat_batches, filter_record_batch, interleave_record_batch, is_not_null, is_null,
    not, nullif, take_record_batch,
};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::physical_plan::aggregates::group_values::new_group_values;
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::changes::{Changes, MAX_CHANGES_ROWS, Op};
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};
use crate::keyed_rows::KeyedRows;
use crate::message::CheckpointBarrier;
use crate::operator::{Collector, StreamOperator};

/// Upsert messages in, a keyed table's changes out.
pub struct UpsertOperator {
    table_schema: SchemaRef,
    key: Vec<usize>,
    /// The rows live per key (what a tombstone or a new value retracts).
    live: KeyedRows,
    /// Messages dropped because they had no key at all.
    keyless: u64,
    /// Every message is a change (a versioned table: each is a version), not only the last
    /// of its key in a batch.
    every_version: bool,
}

impl UpsertOperator {
    /// The step for a table of `table_schema` keyed by `key`.
    pub fn try_new(table_schema: SchemaRef, key: Vec<usize>) -> Result<Self> {
        if key.is_empty() {
            return Err(EngineError::User(
                "an upsert table needs a PRIMARY KEY: the message key".into(),
            ));
        }
        Ok(Self {
            live: KeyedRows::try_new(Arc::clone(&table_schema), key.clone())?,
            table_schema,
            key,
            keyless: 0,
            every_version: false,
        })
    }

    /// Emits every message's change, also when a batch holds several of one key (a table with
    /// a WATERMARK, whose messages are versions by event time).
    pub fn keeping_every_version(mut self) -> Self {
        self.every_version = true;
        self
    }

    /// The key columns of each message, from its key text: a JSON object of the key columns, or
    /// the text of a one-column key (NULL where a message has no key).
    fn decode_keys(&self, keys: &StringArray) -> Result<Vec<ArrayRef>> {
        let is_json: BooleanArray = keys
            .iter()
            .map(|k| Some(k.is_some_and(|k| k.trim_start().starts_with('{'))))
            .collect();
        let json_rows = is_json.true_count();
        let plain_rows = keys.len() - keys.null_count() - json_rows;
        let key_fields: Vec<_> = self
            .key
            .iter()
            .map(|&k| {
                self.table_schema
                    .field(k)
                    .as_ref()
                    .clone()
                    .with_nullable(true)
            })
            .collect();
        let mut columns: Vec<ArrayRef> = key_fields
            .iter()
            .map(|f| new_null_array(f.data_type(), keys.len()))
            .collect();
        if json_rows > 0 {
            let mut text = String::new();
            for (k, json) in keys.iter().zip(is_json.values().iter()) {
                text.push_str(if json { k.unwrap_or("{}") } else { "{}" });
                text.push('\n');
            }
            let mut decoder =
                arrow_json::ReaderBuilder::new(Arc::new(Schema::new(key_fields.clone())))
                    .with_batch_size(keys.len().max(1))
                    .build_decoder()?;
            decoder.decode(text.as_bytes())?;
            let decoded = decoder.flush()?.ok_or_else(|| {
                EngineError::User("message keys did not decode as JSON objects".into())
            })?;
            columns = decoded.columns().to_vec();
        }
        if plain_rows > 0 {
            let [column] = self.key.as_slice() else {
                return Err(EngineError::User(
                    "a message key that is not a JSON object can only fill a one-column \
                     PRIMARY KEY"
                        .into(),
                ));
            };
            let target = self.table_schema.field(*column).data_type();
            let plain = cast(&nullif(keys, &is_json)?, target)?;
            columns[0] = zip(&is_json, &columns[0], &plain)?;
        }
        Ok(columns)
    }

    /// The changes of one batch of messages.
    fn changes(&mut self, batch: &RecordBatch) -> Result<Vec<Changes>> {
        let n = self.table_schema.fields().len();
        if batch.num_columns() != n + 2 {
            return Err(EngineError::Internal(format!(
                "upsert input has {} columns, expected {}",
                batch.num_columns(),
                n + 2
            )));
        }
        let keys = batch.column(n).as_string::<i32>();
        let tombstones = batch.column(n + 1).as_boolean();
        let mut columns: Vec<ArrayRef> = batch.columns()[..n].to_vec();
        let no_key = is_null(keys)?;
        for (i, decoded) in self.decode_keys(keys)?.into_iter().enumerate() {
            let column = self.key[i];
            columns[column] = zip(&no_key, &columns[column], &decoded)?;
        }
        // Messages without any key value cannot be applied.
        let mut has_key = BooleanArray::from(vec![true; batch.num_rows()]);
        for &k in &self.key {
            has_key = and(&has_key, &is_not_null(&columns[k])?)?;
        }
        let nullable = Arc::new(Schema::new(
            self.table_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let rows = RecordBatch::try_new(Arc::clone(&nullable), columns)?;
        let keyed = has_key.true_count();
        self.keyless += (rows.num_rows() - keyed) as u64;
        let (rows, tombstones) = if keyed < rows.num_rows() {
            (
                filter_record_batch(&rows, &has_key)?,
                datafusion::arrow::compute::filter(tombstones, &has_key)?
                    .as_boolean()
                    .clone(),
            )
        } else {
            (rows, tombstones.clone())
        };
        if rows.num_rows() == 0 {
            return Ok(Vec::new());
        }
        // Which rows count: the last message of each key, or (every version kept) all of them,
        // in runs where no key repeats so each run's changes see the one before applied.
        let key_columns: Vec<ArrayRef> = self
            .key
            .iter()
            .map(|&k| Arc::clone(rows.column(k)))
            .collect();
        let key_schema = Arc::new(Schema::new(
            self.key
                .iter()
                .map(|&k| nullable.field(k).clone())
                .collect::<Vec<_>>(),
        ));
        let mut interner = new_group_values(key_schema, &GroupOrdering::None)?;
        let mut ids = Vec::with_capacity(rows.num_rows());
        interner.intern(&key_columns, &mut ids)?;
        let runs: Vec<Vec<u32>> = if self.every_version {
            let mut runs: Vec<Vec<u32>> = vec![Vec::new()];
            // The run each key was last in: a key seen in the current run starts the next.
            let mut run_of = vec![usize::MAX; interner.len()];
            for (row, &id) in ids.iter().enumerate() {
                if run_of[id] == runs.len() - 1 {
                    runs.push(Vec::new());
                }
                run_of[id] = runs.len() - 1;
                if let Some(run) = runs.last_mut() {
                    run.push(row as u32);
                }
            }
            runs
        } else {
            let mut last = vec![u32::MAX; interner.len()];
            for (row, id) in ids.iter().enumerate() {
                last[*id] = row as u32;
            }
            let mut keep: Vec<u32> = last.into_iter().filter(|r| *r != u32::MAX).collect();
            keep.sort_unstable();
            vec![keep]
        };
        let rows = RecordBatch::try_new(Arc::clone(&self.table_schema), rows.columns().to_vec())?;
        let mut out = Vec::with_capacity(runs.len());
        for keep in runs {
            let keep = UInt32Array::from(keep);
            let run = take_record_batch(&rows, &keep)?;
            let run_tombstones = datafusion::arrow::compute::take(&tombstones, &keep, None)?;
            if let Some(changes) = self.run_changes(&run, run_tombstones.as_boolean())? {
                self.live.apply(&changes)?;
                out.push(changes);
            }
        }
        Ok(out)
    }

    /// The changes of messages of distinct keys against the rows live.
    fn run_changes(
        &mut self,
        rows: &RecordBatch,
        tombstones: &BooleanArray,
    ) -> Result<Option<Changes>> {
        let (found, existing) = self.live.live_versions(rows)?;
        let mut had_row = vec![false; rows.num_rows()];
        for &i in &found {
            had_row[i] = true;
        }
        let found_deleted: Vec<bool> = found.iter().map(|&i| tombstones.value(i)).collect();
        let deleted_mask = BooleanArray::from(found_deleted);
        let deletes = filter_record_batch(&existing, &deleted_mask)?;
        let updated_positions = UInt32Array::from_iter_values(
            found
                .iter()
                .filter(|&&i| !tombstones.value(i))
                .map(|&i| i as u32),
        );
        let old = filter_record_batch(&existing, &not(&deleted_mask)?)?;
        let new = take_record_batch(rows, &updated_positions)?;
        let inserted = BooleanArray::from(
            (0..rows.num_rows())
                .map(|i| !had_row[i] && !tombstones.value(i))
                .collect::<Vec<_>>(),
        );
        let inserts = filter_record_batch(rows, &inserted)?;
        let pairs: Vec<(usize, usize)> =
            (0..old.num_rows()).flat_map(|i| [(0, i), (1, i)]).collect();
        let updates = interleave_record_batch(&[&old, &new], &pairs)?;
        let all = concat_batches(&self.table_schema, [&deletes, &updates, &inserts])?;
        if all.num_rows() == 0 {
            return Ok(None);
        }
        let mut ops = vec![Op::Delete; deletes.num_rows()];
        for _ in 0..old.num_rows() {
            ops.push(Op::UpdateBefore);
            ops.push(Op::UpdateAfter);
        }
        ops.resize(all.num_rows(), Op::Insert);
        if !self.every_version {
            return Ok(Some(Changes::from_ops(all, &ops)?));
        }
        // Versions by event time: the changes in the messages' order (a delete takes effect
        // at the newest time shown before it).
        let mut origin: Vec<usize> = found
            .iter()
            .copied()
            .filter(|&i| tombstones.value(i))
            .collect();
        for &i in found.iter().filter(|&&i| !tombstones.value(i)) {
            origin.extend([i, i]);
        }
        origin.extend((0..rows.num_rows()).filter(|&i| inserted.value(i)));
        let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
        order.sort_by_key(|&r| origin.get(r as usize).copied().unwrap_or(usize::MAX));
        let order = UInt32Array::from(order);
        let ops: Vec<Op> = order.values().iter().map(|&r| ops[r as usize]).collect();
        Ok(Some(Changes::from_ops(
            take_record_batch(&all, &order)?,
            &ops,
        )?))
    }
}

impl StreamOperator for UpsertOperator {
    fn name(&self) -> String {
        "upsert".into()
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        for changes in self.changes(&batch)? {
            for chunk in changes.chunks(MAX_CHANGES_ROWS) {
                out.changes(chunk);
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, _barrier: CheckpointBarrier) -> Result<OperatorState> {
        let mut state = OperatorState {
            schema: Some(Arc::clone(&self.table_schema)),
            batches: vec![self.live.rows()?],
            ..OperatorState::default()
        };
        state.values.insert(
            "keyless".into(),
            i64::try_from(self.keyless).unwrap_or(i64::MAX),
        );
        Ok(state)
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        self.keyless = state
            .values
            .get("keyless")
            .map_or(0, |v| u64::try_from(*v).unwrap_or(0));
        for batch in state.batches {
            let batch =
                RecordBatch::try_new(Arc::clone(&self.table_schema), batch.columns().to_vec())?;
            self.live.apply(&Changes::inserts(batch))?;
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.live.size()
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self
            .key
            .iter()
            .map(|&k| self.table_schema.field(k).name().as_str())
            .collect();
        format!(
            "Upsert: messages by key ({}) to changes (a value replaces the key's row, a \
             tombstone deletes it)",
            names.join(", ")
        )
    }
}
