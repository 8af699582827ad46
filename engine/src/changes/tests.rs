use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;

use super::*;

fn batch(keys: &[&str], values: &[i64]) -> RecordBatch {
    super::testing::key_value_rows(keys, values)
}

fn ops_of(c: &Changes) -> Vec<Op> {
    (0..c.num_rows()).map(|i| c.op(i)).collect()
}

fn values_of(c: &Changes) -> Vec<i64> {
    c.rows()
        .column(1)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

use Op::{Delete as D, Insert as I, UpdateAfter as UA, UpdateBefore as UB};

#[test]
fn unpaired_updates_are_refused() {
    assert!(Changes::from_ops(batch(&["a"], &[1]), &[UB]).is_err());
    assert!(Changes::from_ops(batch(&["a", "a"], &[1, 2]), &[UA, UB]).is_err());
    assert!(Changes::from_ops(batch(&["a", "b"], &[1, 2]), &[UB, I]).is_err());
    assert!(Changes::try_new(batch(&["a"], &[1]), vec![7u8].into()).is_err());
    assert!(Changes::try_new(batch(&["a"], &[1]), vec![0u8, 0].into()).is_err());
    assert!(Changes::from_ops(batch(&["a", "a", "b"], &[1, 2, 3]), &[UB, UA, D]).is_ok());
}

#[test]
fn filter_turns_split_pairs_into_single_changes() {
    let c = Changes::from_ops(
        batch(&["a", "a", "b", "b", "c", "c"], &[1, 2, 3, 4, 5, 6]),
        &[UB, UA, UB, UA, UB, UA],
    )
    .unwrap();
    // Keep a's pair whole, only b's before, only c's after.
    let keep = BooleanArray::from(vec![true, true, true, false, false, true]);
    let kept = c.filter(&keep).unwrap();
    assert_eq!(ops_of(&kept), vec![UB, UA, D, I]);
    assert_eq!(values_of(&kept), vec![1, 2, 3, 6]);
    // Null in the mask means "not kept", as in SQL WHERE.
    let keep = BooleanArray::from(vec![Some(true), None, None, None, None, None]);
    assert_eq!(ops_of(&c.filter(&keep).unwrap()), vec![D]);
}

#[test]
fn filter_of_inserts_allocates_no_ops() {
    let c = Changes::inserts(batch(&["a", "b"], &[1, 2]));
    let kept = c.filter(&BooleanArray::from(vec![false, true])).unwrap();
    assert!(kept.ops().is_none());
    assert_eq!(values_of(&kept), vec![2]);
}

#[test]
fn mapping_that_erases_the_difference_drops_the_pair() {
    let c = Changes::from_ops(
        batch(&["a", "a", "b", "b"], &[1, 2, 3, 4]),
        &[UB, UA, UB, UA],
    )
    .unwrap();
    // Project to `k, v / 2`: a's pair (1 → 2) becomes 0 → 1, b's pair (3 → 4) becomes 1 → 2...
    let halved = batch(&["a", "a", "b", "b"], &[0, 1, 1, 2]);
    assert_eq!(c.with_rows(halved).unwrap().num_rows(), 4);
    // ...while a projection to `k` alone makes both pairs no-ops.
    let same = batch(&["a", "a", "b", "b"], &[0, 0, 0, 0]);
    assert!(c.with_rows(same).unwrap().is_empty());
    assert!(c.with_rows(batch(&["a"], &[0])).is_err());
}

#[test]
fn chunks_never_split_a_pair() {
    let c = Changes::from_ops(
        batch(&["a", "b", "b", "c", "c"], &[1, 2, 3, 4, 5]),
        &[I, UB, UA, UB, UA],
    )
    .unwrap();
    let pieces = c.chunks(2);
    let sizes: Vec<usize> = pieces.iter().map(Changes::num_rows).collect();
    assert_eq!(sizes, vec![1, 2, 2]);
    for p in &pieces {
        Changes::try_new(p.rows().clone(), p.ops().unwrap().clone()).unwrap();
    }
    let ops: Vec<Op> = pieces.iter().flat_map(ops_of).collect();
    let values: Vec<i64> = pieces.iter().flat_map(values_of).collect();
    assert_eq!(ops, ops_of(&c));
    assert_eq!(values, values_of(&c));
}

#[test]
fn checker_follows_a_keyed_stream() {
    let schema = batch(&[], &[]).schema();
    let mut check = ChangelogChecker::new(schema, Some(vec![0])).unwrap();
    check
        .apply(&Changes::inserts(batch(&["a", "b"], &[1, 2])))
        .unwrap();
    check
        .apply(&Changes::from_ops(batch(&["a", "a", "b"], &[1, 5, 2]), &[UB, UA, D]).unwrap())
        .unwrap();
    assert_eq!(check.live_count(), 1);
    let live = check.live_rows().unwrap();
    assert_eq!(live.column(1).as_primitive::<Int64Type>().value(0), 5);
}

#[test]
fn checker_catches_each_broken_invariant() {
    let schema = batch(&[], &[]).schema();
    let fresh = || {
        let mut c = ChangelogChecker::new(schema.clone(), Some(vec![0])).unwrap();
        c.apply(&Changes::inserts(batch(&["a"], &[1]))).unwrap();
        c
    };
    // Retracting an absent row.
    let absent = Changes::from_ops(batch(&["z"], &[1]), &[D]).unwrap();
    assert!(fresh().apply(&absent).is_err());
    // Retracting with a stale row.
    let stale = Changes::from_ops(batch(&["a"], &[9]), &[D]).unwrap();
    assert!(fresh().apply(&stale).is_err());
    // A second insert of a live key.
    assert!(
        fresh()
            .apply(&Changes::inserts(batch(&["a"], &[2])))
            .is_err()
    );
    // An update pair that changes the key.
    let rekeyed = Changes::from_ops(batch(&["a", "b"], &[1, 1]), &[UB, UA]).unwrap();
    assert!(fresh().apply(&rekeyed).is_err());
}

#[test]
fn checker_without_key_counts_copies() {
    let schema = batch(&[], &[]).schema();
    let mut check = ChangelogChecker::new(schema, None).unwrap();
    check
        .apply(&Changes::inserts(batch(&["a", "a"], &[1, 1])))
        .unwrap();
    check
        .apply(&Changes::from_ops(batch(&["a"], &[1]), &[D]).unwrap())
        .unwrap();
    assert_eq!(check.live_count(), 1);
    assert!(
        check
            .apply(&Changes::from_ops(batch(&["a", "a"], &[1, 1]), &[D, D]).unwrap())
            .is_err()
    );
}
