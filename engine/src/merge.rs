//! Merging the inputs of a multi-input pipeline (`UNION ALL`, a join) into one ordered stream.
//!
//! - **Rows** pass through as they arrive, from whichever input has them; for a join, tagged
//!   with their input ([`Message::FromInput`]).
//! - **Watermarks**: the merged watermark is the minimum over the inputs that have not ended; an
//!   input that has sent none yet holds it back (its rows could be older than anything seen),
//!   an idle input does not. When every input is idle, the least time the idle inputs had
//!   reached still counts (their rows up to it are delivered). It only moves forward.
//! - **Barriers** are aligned: once an input delivers barrier `n`, it is not read again until
//!   every input that has not ended has delivered `n`; then one barrier `n` goes downstream. So
//!   every row before the barrier on any input precedes it in the merged stream, and none after.
//! - **End** goes downstream once every input has ended.

use futures::FutureExt;
use futures::future::select_all;
use tokio::sync::mpsc;

use crate::error::{EngineError, Result};
use crate::message::{CheckpointBarrier, Message, Watermark};

/// Where an input's event time stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputTime {
    /// No watermark yet: holds the merged watermark back.
    Unknown,
    /// Event time up to here is complete.
    At(i64),
    /// No data for a while: does not hold the merged watermark back. Keeps the time it had
    /// reached, which counts once every input is idle: a reader whose partition went quiet
    /// after its last rows must still let the windows of those rows close.
    Idle(Option<i64>),
    /// The input ended.
    Ended,
}

/// One input of the merge.
struct Input {
    rx: mpsc::Receiver<Message>,
    time: InputTime,
    /// The barrier this input delivered and waits on the others for.
    waiting: Option<CheckpointBarrier>,
    /// Count the input's rows as the pipeline's input (no operator before the merge does).
    count_rows: bool,
}

/// Where the merged stream's event time stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MergedTime {
    /// Complete up to here (the least over the active inputs).
    At(i64),
    /// Every input still running is idle; the least time those with one had reached.
    Idle(Option<i64>),
}

/// The merged time of `inputs`, if one can be given.
fn merged_time(inputs: &[Input]) -> Option<MergedTime> {
    let mut active: Option<i64> = None;
    let mut reached: Option<i64> = None;
    let mut idle = false;
    for input in inputs {
        match input.time {
            InputTime::Unknown => return None,
            InputTime::At(t) => active = Some(active.map_or(t, |l| l.min(t))),
            InputTime::Idle(t) => {
                idle = true;
                if let Some(t) = t {
                    reached = Some(reached.map_or(t, |r| r.min(t)));
                }
            }
            InputTime::Ended => {}
        }
    }
    match (active, idle) {
        (Some(t), _) => Some(MergedTime::At(t)),
        (None, true) => Some(MergedTime::Idle(reached)),
        (None, false) => None,
    }
}

/// Merges `inputs` into `out` until all have ended or `out` is gone. `count_rows[i]` says
/// whether rows of input `i` count as rows read by the pipeline (passed to `rows_in`); `tag`
/// sends rows as [`Message::FromInput`].
pub(crate) async fn merge_inputs(
    inputs: Vec<mpsc::Receiver<Message>>,
    count_rows: Vec<bool>,
    tag: bool,
    out: mpsc::Sender<Message>,
    rows_in: impl Fn(usize) + Send,
) -> Result<()> {
    let mut inputs: Vec<Input> = inputs
        .into_iter()
        .zip(count_rows.into_iter().chain(std::iter::repeat(false)))
        .map(|(rx, count_rows)| Input {
            rx,
            time: InputTime::Unknown,
            waiting: None,
            count_rows,
        })
        .collect();
    let mut forwarded = Forwarded::default();
    let mut outbox: Vec<Message> = Vec::with_capacity(2);
    loop {
        let readable = inputs
            .iter()
            .any(|i| i.time != InputTime::Ended && i.waiting.is_none());
        if !readable {
            let waiting: Vec<CheckpointBarrier> =
                inputs.iter_mut().filter_map(|i| i.waiting.take()).collect();
            // All waiting inputs hold the same barrier (see `wait_at_barrier`).
            let Some(&barrier) = waiting.first() else {
                // Every input ended.
                let _ = out.send(Message::End).await;
                return Ok(());
            };
            if out.send(Message::Barrier(barrier)).await.is_err() {
                return Ok(());
            }
            continue;
        }
        // A join holds the rows of an input that runs ahead in event time until the other
        // catches up, so it reads the inputs that are behind first (watermark alignment).
        let ahead = if tag {
            ahead_of_the_others(&inputs)
        } else {
            vec![false; inputs.len()]
        };
        // One receive per readable input; the inputs are borrowed disjointly.
        let receives = inputs
            .iter_mut()
            .enumerate()
            .filter(|(index, i)| {
                i.time != InputTime::Ended && i.waiting.is_none() && !ahead[*index]
            })
            .map(|(index, i)| i.rx.recv().map(move |m| (index, m)).boxed())
            .collect::<Vec<_>>();
        let ((index, message), _, _) = select_all(receives).await;
        let input = &mut inputs[index];
        let Some(message) = message else {
            return Err(EngineError::External(
                "an input of the union stopped on a failure (see weir_views)".into(),
            ));
        };
        match message {
            Message::Changes(changes) => {
                if input.count_rows {
                    rows_in(changes.num_rows());
                }
                outbox.push(if tag {
                    Message::FromInput(index, changes)
                } else {
                    Message::Changes(changes)
                });
            }
            Message::FromInput(..) => {
                return Err(EngineError::Internal(
                    "an input of a merge sent rows tagged for a join".into(),
                ));
            }
            Message::Watermark(w) => {
                input.time = match (input.time, w) {
                    (InputTime::At(old) | InputTime::Idle(Some(old)), Watermark::EventTime(t)) => {
                        InputTime::At(old.max(t))
                    }
                    (_, Watermark::EventTime(t)) => InputTime::At(t),
                    (InputTime::At(t) | InputTime::Idle(Some(t)), Watermark::Idle) => {
                        InputTime::Idle(Some(t))
                    }
                    (_, Watermark::Idle) => InputTime::Idle(None),
                };
                advanced(&inputs, &mut forwarded, &mut outbox);
            }
            Message::Barrier(b) => wait_at_barrier(&mut inputs, index, b),
            Message::End => {
                input.time = InputTime::Ended;
                advanced(&inputs, &mut forwarded, &mut outbox);
            }
        }
        for message in outbox.drain(..) {
            if out.send(message).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// How far (nanoseconds of event time) a join's input may run ahead of the input furthest
/// behind before it is not read: the rows it delivers meanwhile would only wait in the join's
/// state for the other input's time to catch up.
const MAX_INPUT_DRIFT_NANOS: i64 = 1_000_000_000;

/// Which readable inputs are more than [`MAX_INPUT_DRIFT_NANOS`] ahead of the furthest-behind
/// readable input with a known time. Inputs without a time yet, idle ones and ended ones hold
/// nobody back (an input whose source has no watermark must not stall the others), and if
/// every readable input would be skipped, none is.
fn ahead_of_the_others(inputs: &[Input]) -> Vec<bool> {
    let readable = |i: &Input| i.time != InputTime::Ended && i.waiting.is_none();
    let behind = inputs
        .iter()
        .filter(|i| readable(i))
        .filter_map(|i| match i.time {
            InputTime::At(t) => Some(t),
            _ => None,
        })
        .min();
    let Some(behind) = behind else {
        return vec![false; inputs.len()];
    };
    inputs
        .iter()
        .map(|i| {
            readable(i)
                && matches!(i.time, InputTime::At(t) if t > behind.saturating_add(MAX_INPUT_DRIFT_NANOS))
        })
        .collect()
}

/// Input `index` delivered barrier `b`. Inputs normally deliver the same barriers, but one that
/// subscribed to its upstream view after a checkpoint began never sees that checkpoint's
/// barrier: the newest barrier wins, and inputs waiting at an older one are released (that
/// checkpoint cannot include this pipeline; the next one does).
fn wait_at_barrier(inputs: &mut [Input], index: usize, b: CheckpointBarrier) {
    let newest = inputs
        .iter()
        .filter_map(|i| i.waiting)
        .map(|w| w.epoch)
        .max();
    match newest {
        Some(epoch) if epoch > b.epoch => {}
        Some(epoch) if epoch < b.epoch => {
            for input in inputs.iter_mut() {
                input.waiting = None;
            }
            inputs[index].waiting = Some(b);
        }
        _ => inputs[index].waiting = Some(b),
    }
}

/// What the merge last sent downstream as time.
#[derive(Debug, Default)]
struct Forwarded {
    time: Option<i64>,
    idle: bool,
}

/// Pushes the merged watermark to `outbox` when it says something new: a later time (never an
/// earlier one, e.g. when an input comes back from idle behind the others), or idleness. When
/// every input went idle, the time they had reached goes first, then the idleness.
fn advanced(inputs: &[Input], forwarded: &mut Forwarded, outbox: &mut Vec<Message>) {
    let Some(merged) = merged_time(inputs) else {
        return;
    };
    let (time, idle) = match merged {
        MergedTime::At(t) => (Some(t), false),
        MergedTime::Idle(reached) => (reached, true),
    };
    if let Some(t) = time
        && forwarded.time.is_none_or(|old| t > old)
    {
        forwarded.time = Some(t);
        forwarded.idle = false;
        outbox.push(Message::Watermark(Watermark::EventTime(t)));
    }
    if idle && !forwarded.idle {
        forwarded.idle = true;
        outbox.push(Message::Watermark(Watermark::Idle));
    }
    if !idle {
        forwarded.idle = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::changes::testing::key_value_rows;

    fn kinds(messages: &[Message]) -> Vec<String> {
        messages
            .iter()
            .map(|m| match m {
                Message::Changes(c) if c.is_inserts_only() => format!("rows {}", c.num_rows()),
                Message::Watermark(Watermark::EventTime(t)) => format!("wm {t}"),
                Message::Watermark(Watermark::Idle) => "idle".into(),
                Message::Barrier(b) => format!("barrier {}", b.epoch),
                Message::End => "end".into(),
                Message::Changes(_) => "changes".into(),
                Message::FromInput(input, c) => format!("input {input} rows {}", c.num_rows()),
            })
            .collect()
    }

    #[tokio::test]
    async fn aligns_barriers_takes_the_least_watermark_and_ends_last() {
        let (a_tx, a_rx) = mpsc::channel(16);
        let (b_tx, b_rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::channel(64);
        let counted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&counted);
        let merge = tokio::spawn(merge_inputs(
            vec![a_rx, b_rx],
            vec![true, false],
            false,
            out_tx,
            move |n| {
                counter.fetch_add(n as u64, Ordering::Relaxed);
            },
        ));
        let rows = |n: usize| {
            Message::Changes(crate::changes::Changes::inserts(key_value_rows(
                &vec!["k"; n],
                &vec![1; n],
            )))
        };
        // A's time alone does not move the merged watermark: B has said nothing yet.
        a_tx.send(Message::Watermark(Watermark::EventTime(50)))
            .await
            .unwrap();
        a_tx.send(rows(1)).await.unwrap();
        // A passes barrier 1 and goes on; its next rows must wait behind the barrier.
        a_tx.send(Message::Barrier(CheckpointBarrier { epoch: 1 }))
            .await
            .unwrap();
        a_tx.send(rows(3)).await.unwrap();
        b_tx.send(rows(2)).await.unwrap();
        b_tx.send(Message::Watermark(Watermark::EventTime(20)))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        b_tx.send(Message::Barrier(CheckpointBarrier { epoch: 1 }))
            .await
            .unwrap();
        b_tx.send(Message::End).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        a_tx.send(Message::Watermark(Watermark::EventTime(70)))
            .await
            .unwrap();
        a_tx.send(Message::End).await.unwrap();
        merge.await.unwrap().unwrap();
        let mut seen = Vec::new();
        while let Some(m) = out_rx.recv().await {
            seen.push(m);
        }
        let seen = kinds(&seen);
        let barrier = seen.iter().position(|m| m == "barrier 1").unwrap();
        let rows_after = seen.iter().position(|m| m == "rows 3").unwrap();
        assert!(
            barrier < rows_after,
            "rows after A's barrier came first: {seen:?}"
        );
        assert!(seen[..barrier].contains(&"rows 1".to_string()));
        assert!(seen[..barrier].contains(&"rows 2".to_string()));
        assert!(seen[..barrier].contains(&"wm 20".to_string()), "{seen:?}");
        assert!(
            !seen[..barrier].contains(&"wm 50".to_string()),
            "the least over inputs while both run: {seen:?}"
        );
        // Once B ended, A alone sets the time; the end comes last, once.
        assert_eq!(
            &seen[seen.len() - 3..],
            ["wm 50", "wm 70", "end"],
            "{seen:?}"
        );
        // Only A's rows count as the pipeline's input here.
        assert_eq!(counted.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn a_join_reads_the_input_that_is_behind_first() {
        let (a_tx, a_rx) = mpsc::channel(16);
        let (b_tx, b_rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::channel(64);
        let merge = tokio::spawn(merge_inputs(
            vec![a_rx, b_rx],
            vec![false, false],
            true,
            out_tx,
            |_| {},
        ));
        let rows = |n: usize| {
            Message::Changes(crate::changes::Changes::inserts(key_value_rows(
                &vec!["k"; n],
                &vec![1; n],
            )))
        };
        let second = 1_000_000_000;
        b_tx.send(Message::Watermark(Watermark::EventTime(0)))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // A is 10 s ahead: its rows wait while B, behind, is read.
        a_tx.send(Message::Watermark(Watermark::EventTime(10 * second)))
            .await
            .unwrap();
        a_tx.send(rows(5)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        b_tx.send(rows(3)).await.unwrap();
        b_tx.send(Message::Watermark(Watermark::EventTime(20 * second)))
            .await
            .unwrap();
        a_tx.send(Message::End).await.unwrap();
        b_tx.send(Message::End).await.unwrap();
        merge.await.unwrap().unwrap();
        let mut seen = Vec::new();
        while let Some(m) = out_rx.recv().await {
            seen.push(m);
        }
        let seen = kinds(&seen);
        let b_rows = seen.iter().position(|m| m == "input 1 rows 3").unwrap();
        let a_rows = seen.iter().position(|m| m == "input 0 rows 5").unwrap();
        assert!(b_rows < a_rows, "{seen:?}");
    }

    #[tokio::test]
    async fn an_input_that_missed_a_barrier_does_not_stall_the_others() {
        let (a_tx, a_rx) = mpsc::channel(16);
        let (b_tx, b_rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::channel(64);
        let merge = tokio::spawn(merge_inputs(
            vec![a_rx, b_rx],
            vec![false, false],
            false,
            out_tx,
            |_| {},
        ));
        // B subscribed after barrier 1 passed its upstream: it only ever sees barrier 2.
        a_tx.send(Message::Barrier(CheckpointBarrier { epoch: 1 }))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        b_tx.send(Message::Barrier(CheckpointBarrier { epoch: 2 }))
            .await
            .unwrap();
        a_tx.send(Message::Barrier(CheckpointBarrier { epoch: 2 }))
            .await
            .unwrap();
        a_tx.send(Message::End).await.unwrap();
        b_tx.send(Message::End).await.unwrap();
        merge.await.unwrap().unwrap();
        let mut seen = Vec::new();
        while let Some(m) = out_rx.recv().await {
            seen.push(m);
        }
        assert_eq!(kinds(&seen), ["barrier 2", "end"]);
    }

    #[tokio::test]
    async fn inputs_gone_idle_release_the_time_they_reached() {
        let (a_tx, a_rx) = mpsc::channel(16);
        let (b_tx, b_rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::channel(64);
        let merge = tokio::spawn(merge_inputs(
            vec![a_rx, b_rx],
            vec![false, false],
            false,
            out_tx,
            |_| {},
        ));
        // A reached 14 and went quiet before B (a reader of an empty partition) said anything;
        // then B went idle too. A's 14 must come out, then the idleness.
        a_tx.send(Message::Watermark(Watermark::EventTime(14)))
            .await
            .unwrap();
        a_tx.send(Message::Watermark(Watermark::Idle))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        b_tx.send(Message::Watermark(Watermark::Idle))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // A comes back behind its old time: the merged time does not step back.
        a_tx.send(Message::Watermark(Watermark::EventTime(9)))
            .await
            .unwrap();
        a_tx.send(Message::Watermark(Watermark::EventTime(20)))
            .await
            .unwrap();
        a_tx.send(Message::End).await.unwrap();
        b_tx.send(Message::End).await.unwrap();
        merge.await.unwrap().unwrap();
        let mut seen = Vec::new();
        while let Some(m) = out_rx.recv().await {
            seen.push(m);
        }
        assert_eq!(kinds(&seen), ["wm 14", "idle", "wm 20", "idle", "end"]);
    }

    #[tokio::test]
    async fn an_input_that_fails_fails_the_merge() {
        let (a_tx, a_rx) = mpsc::channel(4);
        let (_b_tx, b_rx) = mpsc::channel::<Message>(4);
        let (out_tx, _out_rx) = mpsc::channel(4);
        drop(a_tx);
        let result =
            merge_inputs(vec![a_rx, b_rx], vec![false, false], false, out_tx, |_| {}).await;
        assert!(result.is_err());
    }
}
