//! Running a keyed operator as N shards: a hash exchange sends each row to the shard that owns
//! its key, each shard runs its own copy of the operator (and the stateless operators after it)
//! on its own task, and a merge joins the shards' outputs again.
//!
//! ```text
//!                      ┌──▶ shard 0: keyed operator ─▶ stateless … ──┐
//! … ──▶ exchange ──────┤                                             ├──▶ merge ──▶ … ──▶ writer
//!   (hash of the key)  └──▶ shard 1: keyed operator ─▶ stateless … ──┘
//! ```
//!
//! - **Rows** go by key: a key's rows meet in one shard, in the order they came. An update pair
//!   whose halves belong to different shards becomes a delete and an insert
//!   ([`crate::changes::Changes::filter`]).
//! - **Watermarks, barriers, the end** go to every shard; the merge after the shards takes the
//!   least watermark and aligns the barriers ([`crate::merge`]), so a checkpoint holds every
//!   shard's state as of the same rows.
//! - **Key groups**: a key's hash picks one of [`KEY_GROUPS`] groups, and shard `s` of `n` owns
//!   a contiguous range of groups (as Flink's key groups under its maximum parallelism). State
//!   is checkpointed as one operator's (the shards' states together) and split again by key
//!   group at restore ([`state_for_shard`]), so a restart with another number of workers hands
//!   every key's state to the shard that now owns it.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::physical_expr::PhysicalExpr;
use tokio::sync::mpsc;

use crate::changes::Changes;
use crate::checkpoint::OperatorState;
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::operator::StreamOperator;

/// Key groups: the unit state moves in when the number of shards changes. Fixed, so a key keeps
/// its group across restarts; larger than any worker count this runs with.
pub const KEY_GROUPS: usize = 256;

/// The shard of `shards` owning the key group of `hash`.
fn shard_of(hash: u64, shards: usize) -> usize {
    let group = (hash % KEY_GROUPS as u64) as usize;
    group * shards / KEY_GROUPS
}

/// Per row of `keys` (the key's columns), the shard of `shards` owning it.
fn shards_of_rows(keys: &[ArrayRef], rows: usize, shards: usize) -> Result<Vec<usize>> {
    let mut hashes = vec![0u64; rows];
    create_hashes(keys, &RandomState::default(), &mut hashes)?;
    Ok(hashes.into_iter().map(|h| shard_of(h, shards)).collect())
}

/// One mask per shard: the rows it owns.
fn masks(owners: &[usize], shards: usize) -> Vec<BooleanArray> {
    (0..shards)
        .map(|shard| owners.iter().map(|o| *o == shard).collect())
        .collect()
}

/// The operators of a pipeline that run once per shard.
#[derive(Debug, Clone)]
pub struct KeyedSegment {
    /// The first keyed operator.
    pub start: usize,
    /// One past the stateless operators right after it.
    pub end: usize,
    /// What rows are routed by: the keyed operator's [`StreamOperator::partition_key`].
    pub key: Vec<Arc<dyn PhysicalExpr>>,
}

/// The [`KeyedSegment`] of `operators`. None: no operator can be sharded, and each runs once.
pub fn keyed_segment(operators: &[Box<dyn StreamOperator>]) -> Option<KeyedSegment> {
    let (start, key) = operators.iter().enumerate().find_map(|(i, op)| {
        if op.reads_inputs() {
            return None;
        }
        op.partition_key().map(|key| (i, key))
    })?;
    let stateless_after = operators[start + 1..]
        .iter()
        .take_while(|op| op.is_stateless())
        .count();
    Some(KeyedSegment {
        start,
        end: start + 1 + stateless_after,
        key,
    })
}

/// [`keyed_segment`] when there are `copies` of the operators to run the other shards with, all
/// planned alike.
pub(crate) fn sharded_segment(
    operators: &[Box<dyn StreamOperator>],
    copies: &[Vec<Box<dyn StreamOperator>>],
) -> Option<KeyedSegment> {
    if copies.is_empty() {
        return None;
    }
    let alike = copies.iter().all(|copy| {
        copy.len() == operators.len()
            && copy
                .iter()
                .zip(operators)
                .all(|(a, b)| a.name() == b.name())
    });
    if !alike {
        return None;
    }
    keyed_segment(operators)
}

/// Routes `rx`'s messages to `outputs` (one per shard) until the input ends or fails: rows by the
/// hash of `key` evaluated over them, everything else to every shard. `rows_in` counts rows read,
/// when the exchange is the first stage of the pipeline.
pub(crate) async fn exchange(
    mut rx: mpsc::Receiver<Message>,
    key: Vec<Arc<dyn PhysicalExpr>>,
    outputs: Vec<mpsc::Sender<Message>>,
    rows_in: impl Fn(usize) + Send,
) -> Result<()> {
    let shards = outputs.len();
    while let Some(message) = rx.recv().await {
        match message {
            Message::Changes(changes) => {
                rows_in(changes.num_rows());
                for (shard, part) in split(&changes, &key, shards)?.into_iter().enumerate() {
                    if let Some(part) = part
                        && outputs[shard].send(Message::Changes(part)).await.is_err()
                    {
                        return Ok(());
                    }
                }
            }
            Message::FromInput(..) => {
                return Err(EngineError::Internal(
                    "an exchange received rows tagged for a join".into(),
                ));
            }
            control => {
                let end = matches!(control, Message::End);
                for output in &outputs {
                    if output.send(control.clone()).await.is_err() {
                        return Ok(());
                    }
                }
                if end {
                    return Ok(());
                }
            }
        }
    }
    Err(EngineError::External(
        "the input of an exchange stopped on a failure (see weir_views)".into(),
    ))
}

/// `changes` cut into each shard's part (None where a shard owns none of the rows).
fn split(
    changes: &Changes,
    key: &[Arc<dyn PhysicalExpr>],
    shards: usize,
) -> Result<Vec<Option<Changes>>> {
    let rows = changes.rows();
    let keys = key
        .iter()
        .map(|k| k.evaluate(rows)?.into_array(rows.num_rows()))
        .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
    let owners = shards_of_rows(&keys, rows.num_rows(), shards)?;
    if let Some(first) = owners.first()
        && owners.iter().all(|o| o == first)
    {
        let mut parts = vec![None; shards];
        parts[*first] = Some(changes.clone());
        return Ok(parts);
    }
    masks(&owners, shards)
        .into_iter()
        .map(|mask| {
            if mask.true_count() == 0 {
                Ok(None)
            } else {
                changes.filter(&mask).map(Some)
            }
        })
        .collect()
}

/// The part of a sharded operator's checkpointed `state` that shard `shard` of `shards` owns:
/// the state rows whose key (columns `key_columns`) falls in its key groups; scalar values go to
/// every shard.
pub(crate) fn state_for_shard(
    state: &OperatorState,
    op: &dyn StreamOperator,
    shard: usize,
    shards: usize,
) -> Result<OperatorState> {
    let batches = state
        .batches
        .iter()
        .map(|batch| {
            let keys = op.state_keys(batch)?;
            rows_of_shard(batch, &keys, shard, shards)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(OperatorState {
        schema: state.schema.clone(),
        batches,
        values: state.values.clone(),
    })
}

/// Columns `columns` of `rows`: the key of a state whose rows hold it as plain columns.
pub fn state_columns(
    rows: &RecordBatch,
    columns: impl IntoIterator<Item = usize>,
) -> Result<Vec<ArrayRef>> {
    columns
        .into_iter()
        .map(|c| {
            rows.columns().get(c).cloned().ok_or_else(|| {
                EngineError::Storage(format!(
                    "checkpointed state has {} columns; its key is column {c}",
                    rows.num_columns()
                ))
            })
        })
        .collect()
}

fn rows_of_shard(
    batch: &RecordBatch,
    keys: &[ArrayRef],
    shard: usize,
    shards: usize,
) -> Result<RecordBatch> {
    if batch.num_rows() == 0 {
        return Ok(batch.clone());
    }
    if keys.is_empty() {
        return Err(EngineError::Internal(
            "a sharded operator's state has rows but no key".into(),
        ));
    }
    let owners = shards_of_rows(keys, batch.num_rows(), shards)?;
    let mask: BooleanArray = owners.iter().map(|o| *o == shard).collect();
    Ok(filter_record_batch(batch, &mask)?)
}

/// Folds one shard's reported state into the state of the operator's other shards: rows
/// together, and per scalar value the least (shards see the same watermarks, so they agree; the
/// least is the safe side where they might not).
pub(crate) fn merge_shard_state(into: &mut OperatorState, shard: OperatorState) {
    if into.schema.is_none() {
        into.schema = shard.schema;
    }
    into.batches.extend(shard.batches);
    for (name, value) in shard.values {
        into.values
            .entry(name)
            .and_modify(|v| *v = (*v).min(value))
            .or_insert(value);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::changes::Op;
    use crate::changes::testing::key_value_rows;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::physical_expr::expressions::Column;

    /// An operator whose state rows hold their key in column 0.
    struct KeyedByK;

    impl StreamOperator for KeyedByK {
        fn name(&self) -> String {
            "keyed".into()
        }

        fn process_batch(
            &mut self,
            _batch: RecordBatch,
            _out: &mut crate::operator::Collector,
        ) -> Result<()> {
            Ok(())
        }

        fn state_keys(&self, state_rows: &RecordBatch) -> Result<Vec<ArrayRef>> {
            state_columns(state_rows, [0])
        }
    }

    fn key() -> Vec<Arc<dyn PhysicalExpr>> {
        vec![Arc::new(Column::new("k", 0))]
    }

    fn keys_of(changes: &Changes) -> Vec<String> {
        changes
            .rows()
            .column(0)
            .as_string::<i32>()
            .iter()
            .map(|k| k.unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn a_key_goes_to_one_shard_and_every_row_to_some_shard() {
        let keys: Vec<String> = (0..1000).map(|i| format!("k{}", i % 97)).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let values: Vec<i64> = (0..1000).collect();
        let changes = Changes::inserts(key_value_rows(&key_refs, &values));
        let parts = split(&changes, &key(), 3).unwrap();
        let mut owner = std::collections::HashMap::new();
        let mut total = 0;
        for (shard, part) in parts.iter().enumerate() {
            let part = part.as_ref().unwrap();
            total += part.num_rows();
            for k in keys_of(part) {
                assert_eq!(*owner.entry(k).or_insert(shard), shard);
            }
            // Rows keep their order within a shard.
            let v = part.rows().column(1).as_primitive::<Int64Type>();
            assert!(v.values().windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(total, 1000);
        assert_eq!(owner.len(), 97);
    }

    #[test]
    fn an_update_pair_split_across_shards_becomes_a_delete_and_an_insert() {
        // Find two keys owned by different shards.
        let shard = |k: &str| {
            let rows = key_value_rows(&[k], &[0]);
            shards_of_rows(&[Arc::clone(rows.column(0))], 1, 2).unwrap()[0]
        };
        let a = "a";
        let b = (0..100)
            .map(|i| format!("b{i}"))
            .find(|b| shard(b) != shard(a))
            .unwrap();
        let rows = key_value_rows(&[a, &b], &[1, 2]);
        let changes = Changes::from_ops(rows, &[Op::UpdateBefore, Op::UpdateAfter]).unwrap();
        let parts = split(&changes, &key(), 2).unwrap();
        let a_part = parts[shard(a)].as_ref().unwrap();
        let b_part = parts[shard(&b)].as_ref().unwrap();
        assert_eq!(a_part.op(0), Op::Delete);
        assert_eq!(b_part.op(0), Op::Insert);
    }

    #[test]
    fn state_split_by_key_group_adds_up_for_any_number_of_shards() {
        let keys: Vec<String> = (0..500).map(|i| format!("k{i}")).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let values: Vec<i64> = (0..500).collect();
        let state = OperatorState {
            schema: None,
            batches: vec![key_value_rows(&key_refs, &values)],
            values: [("watermark".to_string(), 7)].into(),
        };
        for shards in [1, 2, 3, 8] {
            let mut merged = OperatorState::default();
            for shard in 0..shards {
                let part = state_for_shard(&state, &KeyedByK, shard, shards).unwrap();
                // The exchange sends the same keys to this shard.
                let routed =
                    split(&Changes::inserts(part.batches[0].clone()), &key(), shards).unwrap();
                assert!(
                    routed
                        .iter()
                        .enumerate()
                        .all(|(s, p)| s == shard || p.is_none())
                );
                merge_shard_state(&mut merged, part);
            }
            assert_eq!(merged.rows(), 500);
            assert_eq!(merged.values["watermark"], 7);
            let mut seen: Vec<i64> = merged
                .batches
                .iter()
                .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..500).collect::<Vec<_>>());
        }
    }
}
