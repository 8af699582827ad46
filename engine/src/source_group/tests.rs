//! Reader groups: a view that starts behind catches up and shares the other's reader; every view
//! gets every row once, in order, and watermarks that never step back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use tokio::sync::mpsc;

use super::registry::{capped, covers, distance};
use super::*;
use crate::checkpoint::SourcePosition;
use crate::source::{ReaderContext, Split};
use crate::source_errors::SourceErrorLog;
use crate::source_metrics::SourceMetricsRegistry;

/// Two partitions whose rows are their offsets (plus 1000 × the partition); rows up to
/// `available` exist; the source ends when `ended` is set and all are read.
#[derive(Debug, Default)]
struct Feed {
    available: AtomicI64,
    ended: AtomicBool,
    open_readers: AtomicUsize,
}

#[derive(Debug)]
struct FeedProvider {
    feed: Arc<Feed>,
    schema: SchemaRef,
}

struct FeedReader {
    feed: Arc<Feed>,
    schema: SchemaRef,
    next: BTreeMap<u32, i64>,
    turn: u32,
    /// Rows per batch: the first reader 100, later ones 70, so a later reader's batch straddles
    /// the first one's position and has to be cut there.
    batch: i64,
}

impl Drop for FeedReader {
    fn drop(&mut self) {
        self.feed.open_readers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SourceProvider for FeedProvider {
    fn connector(&self) -> &str {
        "feed"
    }
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
    fn open(&self, context: ReaderContext) -> Result<Box<dyn Source>> {
        let others = self.feed.open_readers.fetch_add(1, Ordering::SeqCst);
        let mut next: BTreeMap<u32, i64> = [(0, 0), (1, 0)].into();
        if let Some(resume) = context.resume {
            next.extend(resume.offsets);
        }
        Ok(Box::new(FeedReader {
            feed: Arc::clone(&self.feed),
            schema: Arc::clone(&self.schema),
            next,
            turn: 0,
            batch: if others == 0 { 100 } else { 70 },
        }))
    }
    fn positions_are_offsets(&self) -> bool {
        true
    }
}

#[async_trait]
impl Source for FeedReader {
    async fn next_event(&mut self, max_wait: Duration) -> Result<SourceEvent> {
        let available = self.feed.available.load(Ordering::SeqCst);
        for _ in 0..2 {
            let p = self.turn;
            self.turn = 1 - self.turn;
            let from = self.next[&p];
            let to = (from + self.batch).min(available);
            if to > from {
                self.next.insert(p, to);
                let offsets = Int64Array::from_iter_values(from..to);
                let values = Int64Array::from_iter_values((from..to).map(|o| o + 1000 * p as i64));
                let batch = RecordBatch::try_new(Arc::clone(&self.schema), vec![Arc::new(values)])?;
                return Ok(SourceEvent::Data {
                    partition: p,
                    batch,
                    offsets: Some(offsets),
                });
            }
        }
        if self.feed.ended.load(Ordering::SeqCst) {
            return Ok(SourceEvent::End);
        }
        tokio::time::sleep(max_wait.min(Duration::from_millis(5))).await;
        Ok(SourceEvent::Idle)
    }

    fn position(&self) -> Option<SourcePosition> {
        Some(SourcePosition {
            offsets: self.next.clone(),
        })
    }
}

struct Started {
    rows: mpsc::Receiver<Message>,
    metrics: Arc<crate::source_metrics::ReaderMetrics>,
}

fn start(
    provider: &Arc<FeedProvider>,
    registry: &Arc<SharedSources>,
    metrics: &Arc<SourceMetricsRegistry>,
    view: &str,
) -> Started {
    let reader_metrics = metrics.register("feed", view);
    let context = ReaderContext {
        source: "feed".into(),
        metrics: Arc::clone(&reader_metrics),
        errors: Arc::new(SourceErrorLog::default()),
        bad_records: Default::default(),
        resume: None,
        split: Split::WHOLE,
    };
    let config = SourceTaskConfig {
        watermark: None,
        idle_timeout: Duration::from_secs(3600),
        max_future: None,
        context: context.clone(),
        restore: None,
    };
    let (tx, rows) = mpsc::channel(4);
    let dyn_provider: Arc<dyn SourceProvider> = Arc::clone(provider) as Arc<dyn SourceProvider>;
    spawn_group(
        config,
        dyn_provider.open(context).unwrap(),
        Subscriber::new(view, tx, None, |e| panic!("reader failed: {e}")),
        Some(Sharing {
            registry: Arc::clone(registry),
            key: GroupKey {
                source: "feed".into(),
                split: (0, 1),
            },
            provider: dyn_provider,
            metrics: Arc::clone(metrics),
        }),
    );
    Started {
        rows,
        metrics: reader_metrics,
    }
}

/// An empty feed, its provider, a registry of shared readers and one of reader figures.
fn setup() -> (
    Arc<Feed>,
    Arc<FeedProvider>,
    Arc<SharedSources>,
    Arc<SourceMetricsRegistry>,
) {
    let feed = Arc::new(Feed::default());
    let provider = Arc::new(FeedProvider {
        feed: Arc::clone(&feed),
        schema: Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)])),
    });
    (
        feed,
        provider,
        Arc::new(SharedSources::default()),
        Arc::new(SourceMetricsRegistry::default()),
    )
}

/// Every value a view received, per partition (values tell it), until its end.
async fn drain(mut rows: mpsc::Receiver<Message>) -> BTreeMap<i64, Vec<i64>> {
    let mut got: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    while let Some(message) = rows.recv().await {
        match message {
            Message::Changes(changes) => {
                for v in changes
                    .rows()
                    .column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                {
                    got.entry(v / 1000).or_default().push(v % 1000);
                }
            }
            Message::End => break,
            _ => {}
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_that_starts_behind_catches_up_and_shares_the_reader() {
    let (feed, provider, registry, metrics) = setup();

    feed.available.store(600, Ordering::SeqCst);
    let first = start(&provider, &registry, &metrics, "first");
    let first_rows = tokio::spawn(drain(first.rows));
    // The first view is 600 rows in when the second starts from the beginning.
    while first.metrics.update(1, |m| m.records) < 600 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = start(&provider, &registry, &metrics, "second");
    let second_rows = tokio::spawn(drain(second.rows));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while feed.open_readers.load(Ordering::SeqCst) > 1 || registry.readers() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the second view never joined the first one's reader"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(first.metrics.views(), vec!["first", "second"]);
    assert_eq!(registry.readers(), 1);
    assert!(second.metrics.views().is_empty());
    // More rows, read once for both.
    feed.available.store(900, Ordering::SeqCst);
    feed.ended.store(true, Ordering::SeqCst);
    let want: BTreeMap<i64, Vec<i64>> = [(0, (0..900).collect()), (1, (0..900).collect())].into();
    assert_eq!(first_rows.await.unwrap(), want, "first view");
    assert_eq!(second_rows.await.unwrap(), want, "second view");
    assert_eq!(first.metrics.update(0, |m| m.records), 900);
}

#[test]
fn positions_compare_per_partition() {
    let pos = |o: &[(u32, i64)]| SourcePosition {
        offsets: o.iter().copied().collect(),
    };
    assert!(covers(&pos(&[(0, 5), (1, 3)]), &pos(&[(0, 5)])));
    assert!(covers(&pos(&[(0, 5)]), &pos(&[])));
    assert!(!covers(&pos(&[(0, 5)]), &pos(&[(0, 6)])));
    assert!(!covers(&pos(&[(0, 5)]), &pos(&[(1, 1)])));
    assert_eq!(distance(&pos(&[(0, 5), (1, 3)]), &pos(&[(0, 2)])), 6);
    // Held to a target: never past it, and partitions it has not read are read again.
    assert_eq!(
        capped(&pos(&[(0, 9), (1, 2), (2, 4)]), &pos(&[(0, 5), (1, 3)])),
        pos(&[(0, 5), (1, 2)])
    );
}

#[test]
fn a_view_never_sees_time_step_back() {
    let (tx, _rx) = mpsc::channel(1);
    let mut s = Subscriber::new("v", tx, None, |_| {});
    assert_eq!(
        s.news(Watermark::EventTime(10)),
        Some(Watermark::EventTime(10))
    );
    assert_eq!(s.news(Watermark::EventTime(7)), None);
    assert_eq!(s.news(Watermark::Idle), Some(Watermark::Idle));
    // Active again: said, at the time it had reached.
    assert_eq!(
        s.news(Watermark::EventTime(8)),
        Some(Watermark::EventTime(10))
    );
    assert_eq!(
        s.news(Watermark::EventTime(12)),
        Some(Watermark::EventTime(12))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_that_stops_taking_rows_does_not_stop_the_others() {
    let (feed, provider, registry, metrics) = setup();
    // Both start at the beginning with nothing to read: they share at once.
    feed.available.store(0, Ordering::SeqCst);
    let first = start(&provider, &registry, &metrics, "first");
    let first_rows = tokio::spawn(drain(first.rows));
    let second = start(&provider, &registry, &metrics, "second");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Shared: one reader shows both views.
    while first.metrics.views().len() + second.metrics.views().len() != 2
        || !(first.metrics.views().is_empty() || second.metrics.views().is_empty())
    {
        assert!(std::time::Instant::now() < deadline, "never shared");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The second view takes nothing for now: the first must still get everything.
    feed.available.store(900, Ordering::SeqCst);
    feed.ended.store(true, Ordering::SeqCst);
    let want: BTreeMap<i64, Vec<i64>> = [(0, (0..900).collect()), (1, (0..900).collect())].into();
    let first_got = tokio::time::timeout(Duration::from_secs(30), first_rows)
        .await
        .expect("the first view was held up by the second")
        .unwrap();
    assert_eq!(first_got, want, "first view");
    // Split off with what it had not taken, the second view then reads every row once.
    assert_eq!(drain(second.rows).await, want, "second view");
}
