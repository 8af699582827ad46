use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};

use super::*;
use crate::changes::{Changes, Op};
use crate::fanout::{CHANNEL_CAPACITY, Fanout};
use crate::message::{Message, Watermark};
use crate::stream_props::{StreamKind, StreamProps};
use crate::view_table::ViewTable;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

fn rows(k: &[i64], v: &[i64]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(k.to_vec())),
            Arc::new(Int64Array::from(v.to_vec())),
        ],
    )
    .unwrap()
}

/// A keyed, updating view's fanout.
fn keyed_view() -> Fanout {
    let props = StreamProps {
        kind: StreamKind::Retract,
        key: Some(vec![0]),
        ..StreamProps::append_only()
    };
    Fanout::new(Arc::new(ViewTable::new(schema()).updating(&props)))
}

/// (op, watermark in µs, k, v) of one row.
type Described = (String, Option<i64>, Option<i64>, Option<i64>);

/// Every row of `batch`, described.
fn described(batch: &RecordBatch) -> Vec<Described> {
    let ops = batch.column(0).as_string::<i32>();
    let time = batch.column(1).as_primitive::<TimestampMicrosecondType>();
    let k = batch
        .column(2)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    let v = batch
        .column(3)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    (0..batch.num_rows())
        .map(|i| {
            let get = |a: &Int64Array| (!a.is_null(i)).then(|| a.value(i));
            (
                ops.value(i).to_string(),
                (!time.is_null(i)).then(|| time.value(i)),
                get(k),
                get(v),
            )
        })
        .collect()
}

async fn next(s: &mut Subscription) -> Vec<Described> {
    let batch = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("rows within 5 s")
        .expect("the subscription goes on")
        .expect("rows, not an error");
    described(&batch)
}

#[tokio::test]
async fn the_current_rows_come_first_then_each_change_with_its_op_and_time() {
    let fanout = keyed_view();
    fanout
        .publish(Message::Changes(Changes::inserts(rows(&[1, 2], &[10, 20]))))
        .await
        .unwrap();
    fanout
        .publish(Message::Watermark(Watermark::EventTime(5_000_000)))
        .await
        .unwrap();
    let options = SubscribeOptions {
        snapshot: true,
        progress: true,
    };
    let mut s = Subscription::start("v", &fanout, options).await.unwrap();
    assert_eq!(s.schema().field(0).name(), OP_COLUMN);
    assert_eq!(s.schema().field(2).name(), "k");

    let mut snapshot = next(&mut s).await;
    snapshot.sort();
    assert_eq!(
        snapshot,
        vec![
            ("insert".into(), Some(5_000), Some(1), Some(10)),
            ("insert".into(), Some(5_000), Some(2), Some(20)),
        ]
    );
    assert_eq!(
        next(&mut s).await,
        vec![("progress".into(), Some(5_000), None, None)]
    );

    let update = Changes::from_ops(
        rows(&[1, 1, 2], &[10, 11, 20]),
        &[Op::UpdateBefore, Op::UpdateAfter, Op::Delete],
    )
    .unwrap();
    fanout.publish(Message::Changes(update)).await.unwrap();
    assert_eq!(
        next(&mut s).await,
        vec![
            ("update_before".into(), Some(5_000), Some(1), Some(10)),
            ("update_after".into(), Some(5_000), Some(1), Some(11)),
            ("delete".into(), Some(5_000), Some(2), Some(20)),
        ]
    );
    // A watermark that does not advance is no progress; the end ends the subscription.
    fanout
        .publish(Message::Watermark(Watermark::EventTime(5_000_000)))
        .await
        .unwrap();
    fanout.publish(Message::End).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .unwrap();
    assert!(end.is_none(), "ended, got {end:?}");
}

#[tokio::test]
async fn without_a_snapshot_only_later_changes_come() {
    let fanout = keyed_view();
    fanout
        .publish(Message::Changes(Changes::inserts(rows(&[1], &[10]))))
        .await
        .unwrap();
    let options = SubscribeOptions {
        snapshot: false,
        progress: false,
    };
    let mut s = Subscription::start("v", &fanout, options).await.unwrap();
    assert!(s.try_next().is_none(), "nothing queued yet");
    fanout
        .publish(Message::Changes(Changes::inserts(rows(&[3], &[30]))))
        .await
        .unwrap();
    assert_eq!(
        next(&mut s).await,
        vec![("insert".into(), None, Some(3), Some(30))]
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_never_holds_the_view_back() {
    let fanout = keyed_view();
    let _idle = Subscription::start("v", &fanout, SubscribeOptions::default())
        .await
        .unwrap();
    // Many more messages than the fanout's channel holds: publishing never waits on the client.
    let publishing = async {
        for i in 0..(CHANNEL_CAPACITY as i64 * 8) {
            fanout
                .publish(Message::Changes(Changes::inserts(rows(&[i], &[i]))))
                .await
                .unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(5), publishing)
        .await
        .expect("the view is not held back by an idle subscriber");
}

#[tokio::test]
async fn a_view_that_stops_ends_its_subscriptions_with_an_error() {
    let fanout = keyed_view();
    let mut s = Subscription::start("v", &fanout, SubscribeOptions::default())
        .await
        .unwrap();
    fanout.close_readers().await;
    let item = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .unwrap();
    match item {
        Some(Err(e)) => assert!(e.to_string().contains("view stopped"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_too_far_behind_loses_its_subscription_with_a_reason() {
    let fanout = keyed_view();
    let mut s = Subscription::start_with_limit("v", &fanout, SubscribeOptions::default(), 4096)
        .await
        .unwrap();
    for i in 0..64 {
        fanout
            .publish(Message::Changes(Changes::inserts(rows(&[i], &[i]))))
            .await
            .unwrap();
    }
    let mut error = None;
    while let Some(item) = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .unwrap()
    {
        if let Err(e) = item {
            error = Some(e.to_string());
        }
    }
    let error = error.expect("the subscription ends with an error");
    assert!(error.contains("fell more than"), "{error}");
}
