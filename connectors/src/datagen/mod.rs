//! `connector = 'datagen'`: deterministic generators that build Arrow batches directly.
//!
//! | `generator =` | rows | module |
//! |---|---|---|
//! | `'sensors'` (default) | IoT readings with injected, labelled anomalies | [`sensors`] |
//! | `'nexmark'` | Nexmark person / auction / bid events (`table = 'bid'` …) | [`nexmark`] |
//! | `'bids'` | uniform bids, the shape of the peer benchmarks' tumble count | [`uniform_bids`] |
//!
//! Every row is a pure function of `(seed, index)` ([`random::Draws`]), so every view reading a
//! source sees the same rows, a reader can start at any index, and columns nobody declared are
//! not generated at all. Options every generator shares: `seed`, `events` (stop after this many
//! row indexes; default: never), `start_time` (RFC 3339 event time of index 0), `batch_size`
//! (rows per batch at most) and `rate` (row indexes per wall-clock second, or `'unbounded'` for
//! as fast as the pipeline takes them), `partitions` (1 by default: blocks of `batch_size`
//! indexes dealt round-robin to this many partitions, which a view reads with one reader per
//! worker; each partition has its own watermark).
//!
//! Without `start_time`, event time starts when the source is created, unless the generator runs
//! faster than its own event time (`rate = 'unbounded'`, or a rate above the event rate): then a
//! bounded generator (`events`) starts as far in the past as its rows span, so its last row is
//! stamped "now" and none lands in `weir_source_errors` as too far in the future; an unbounded one
//! starts now and says at creation (a NOTICE) that its event time will run ahead of the clock.

pub mod nexmark;
mod nexmark_text;
pub mod random;
pub mod sensors;
pub mod uniform_bids;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use weir_engine::checkpoint::SourcePosition;
use weir_engine::options::Options;
use weir_engine::source::{
    ConnectorFactory, ReaderContext, Source, SourceEvent, SourceProvider, SourceSpec,
};
use weir_engine::{EngineError, Result};

pub use sensors::{SensorConfig, SensorGenerator, sensor_schema};

/// The `datagen` connector.
#[derive(Debug, Clone, Copy)]
pub struct DatagenConnector;

/// Options shared by every generator.
#[derive(Debug, Clone)]
pub struct CommonOptions {
    /// Row indexes per wall-clock second, or None for unbounded.
    pub rate: Option<f64>,
    /// Random seed.
    pub seed: u64,
    /// Stop after this many row indexes.
    pub events: Option<u64>,
    /// Event time of index 0, in nanoseconds since the epoch.
    pub start_nanos: i64,
    /// `start_time` was given (else [`CommonOptions::settle_start`] may move it).
    start_given: bool,
    /// Rows per batch at most, and the length of a partition's blocks of indexes.
    pub batch_size: usize,
    /// Partitions: index blocks of `batch_size` rows dealt round-robin (block `b` is partition
    /// `b % partitions`), so a view can read them with one reader per worker.
    pub partitions: u32,
}

impl CommonOptions {
    /// Takes the shared options; `default_rate` applies when `rate` is not given.
    pub fn take(o: &mut Options, default_rate: Option<f64>, default_batch: usize) -> Result<Self> {
        let rate = match o.take("rate") {
            None => default_rate,
            Some(r) if r.eq_ignore_ascii_case("unbounded") => None,
            Some(r) => Some(positive_rate(&r, "rate")?),
        };
        let seed = o.take_parsed::<u64>("seed")?.unwrap_or(42);
        let events = o.take_parsed::<u64>("events")?;
        let given = o.take("start_time");
        let start_given = given.is_some();
        let start_nanos = match given {
            Some(t) => chrono::DateTime::parse_from_rfc3339(t.trim())
                .map_err(|e| EngineError::User(format!("invalid start_time '{t}': {e}")))?
                .timestamp_nanos_opt()
                .ok_or_else(|| EngineError::User(format!("start_time '{t}' is out of range")))?,
            None => chrono::Utc::now().timestamp().saturating_mul(1_000_000_000),
        };
        let batch_size = o
            .take_parsed::<usize>("batch_size")?
            .unwrap_or(default_batch)
            .clamp(1, 1 << 20);
        let partitions = o.take_parsed::<u32>("partitions")?.unwrap_or(1);
        if !(1..=1024).contains(&partitions) {
            return Err(EngineError::User(format!(
                "invalid value '{partitions}' for option \"partitions\": 1 to 1024"
            )));
        }
        Ok(Self {
            rate,
            seed,
            events,
            start_nanos,
            start_given,
            batch_size,
            partitions,
        })
    }

    /// Settles the default start for a generator whose rows are `per_second` row indexes per
    /// second of event time (see the module docs); what to tell the user, if anything.
    pub fn settle_start(&mut self, per_second: f64) -> Option<String> {
        let outruns_the_clock = self.rate.is_none_or(|r| r > per_second * (1.0 + 1e-9));
        if self.start_given || !outruns_the_clock {
            return None;
        }
        match self.events {
            Some(events) => {
                let span_nanos = events as f64 / per_second * 1e9;
                self.start_nanos = self.start_nanos.saturating_sub(span_nanos as i64);
                None
            }
            None => Some(format!(
                "this generator makes {per_second} rows per second of event time, faster than \
                 that in real time, without end: its event time starts now and runs ahead of the \
                 clock, and rows beyond source.max_future (1 hour by default) go to \
                 weir_source_errors; give start_time (in the past), events, or a rate"
            )),
        }
    }
}

/// Takes `event_rate`: events per second of event time, 10,000 (10 per ms) by default.
pub(crate) fn take_event_rate(o: &mut Options) -> Result<f64> {
    match o.take("event_rate") {
        Some(r) => positive_rate(&r, "event_rate"),
        None => Ok(10_000.0),
    }
}

/// Parses a rate option: a positive, finite number.
fn positive_rate(text: &str, option: &str) -> Result<f64> {
    match text.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(EngineError::User(format!(
            "invalid value '{text}' for option \"{option}\": events per second (> 0) or 'unbounded'"
        ))),
    }
}

#[async_trait]
impl ConnectorFactory for DatagenConnector {
    fn name(&self) -> &'static str {
        "datagen"
    }

    async fn create_source(&self, spec: &mut SourceSpec) -> Result<Arc<dyn SourceProvider>> {
        if let Some(f) = &spec.format {
            return Err(EngineError::User(format!(
                "datagen produces rows directly; remove FORMAT {} ENCODE {}",
                f.format, f.encode
            )));
        }
        let generator = spec
            .options
            .take("generator")
            .unwrap_or_else(|| "sensors".into());
        match generator.to_ascii_lowercase().as_str() {
            "sensors" => sensors::provider(spec),
            "nexmark" => nexmark::provider(spec),
            "bids" => uniform_bids::provider(spec),
            _ => Err(EngineError::User(format!(
                "unknown datagen generator '{generator}' (available: sensors, nexmark, bids)"
            ))),
        }
    }
}

/// A generator of rows by index.
pub trait Generator: Send + Sync + Debug + 'static {
    /// The declared columns of the rows it produces.
    fn schema(&self) -> SchemaRef;
    /// The rows of indexes `[start, start + n)`; may hold fewer than `n` rows when some indexes
    /// produce nothing (a Nexmark bid table skips the person and auction events).
    fn rows(&self, start: u64, n: usize) -> Result<RecordBatch>;
}

/// A defined datagen source: a generator plus pacing.
#[derive(Debug)]
pub struct GeneratorProvider<G> {
    generator: Arc<G>,
    common: CommonOptions,
    /// Wall-clock origin of pacing for new readers: index `i` is due at `created + i / rate`.
    created: Instant,
    /// What to tell the user at creation (see [`CommonOptions::settle_start`]).
    notice: Option<String>,
}

impl<G: Generator> GeneratorProvider<G> {
    /// A provider over `generator`.
    pub fn new(generator: G, common: CommonOptions) -> Self {
        Self {
            generator: Arc::new(generator),
            common,
            created: Instant::now(),
            notice: None,
        }
    }

    /// With what to tell the user at creation.
    pub fn with_notice(mut self, notice: Option<String>) -> Self {
        self.notice = notice;
        self
    }
}

impl<G: Generator> SourceProvider for GeneratorProvider<G> {
    fn connector(&self) -> &str {
        "datagen"
    }

    fn schema(&self) -> SchemaRef {
        self.generator.schema()
    }

    fn creation_notice(&self) -> Option<String> {
        self.notice.clone()
    }

    fn pinned_options(&self) -> Vec<(String, String)> {
        let start = chrono::DateTime::from_timestamp_nanos(self.common.start_nanos);
        vec![(
            "start_time".into(),
            start.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        )]
    }

    fn partitions(&self) -> usize {
        self.common.partitions as usize
    }

    fn positions_are_offsets(&self) -> bool {
        // A row's offset is its index, and a partition's position the next index it reads.
        true
    }

    fn open(&self, context: ReaderContext) -> Result<Box<dyn Source>> {
        // A resumed reader continues at its checkpointed indexes, paced from now: rows are a
        // pure function of their index, so the rows after the checkpoint come out as before.
        let block = self.common.batch_size as u64;
        let next: BTreeMap<u32, u64> = (0..self.common.partitions)
            .filter(|p| context.split.owns(*p))
            .map(|p| {
                let resumed = context.resume.as_ref().and_then(|r| r.offsets.get(&p));
                let first =
                    resumed.map_or(u64::from(p) * block, |&i| u64::try_from(i).unwrap_or(0));
                (p, first)
            })
            .collect();
        let (origin, origin_index) = match &context.resume {
            Some(_) => (Instant::now(), next.values().copied().min().unwrap_or(0)),
            None => (self.created, 0),
        };
        Ok(Box::new(GeneratorReader {
            generator: Arc::clone(&self.generator),
            common: self.common.clone(),
            origin,
            origin_index,
            next,
        }))
    }
}

/// One pipeline's reader of some of a generator's partitions: releases indexes as they fall
/// due, from the partition furthest behind.
#[derive(Debug)]
struct GeneratorReader<G> {
    generator: Arc<G>,
    common: CommonOptions,
    /// Pacing: index `origin_index + k` is due at `origin + k / rate`.
    origin: Instant,
    origin_index: u64,
    /// Next index to generate, per partition read.
    next: BTreeMap<u32, u64>,
}

impl<G: Generator> GeneratorReader<G> {
    /// The partition to read next (the one furthest behind that has indexes left) and its next
    /// index; None when every partition is done.
    fn behind(&self) -> Option<(u32, u64)> {
        let events = self.common.events.unwrap_or(u64::MAX);
        self.next
            .iter()
            .filter(|(_, next)| **next < events)
            .min_by_key(|(_, next)| **next)
            .map(|(p, next)| (*p, *next))
    }

    /// How many indexes from `next` to produce now (0: none due before `max_wait`), at most to
    /// the end of its block.
    async fn due(&mut self, next: u64, max_wait: Duration) -> usize {
        let block = self.common.batch_size as u64;
        let block_end = (next / block + 1) * block;
        let left = self.common.events.unwrap_or(u64::MAX).min(block_end) - next;
        let Some(rate) = self.common.rate else {
            // Let other tasks run between batches even when unpaced.
            tokio::task::yield_now().await;
            return left as usize;
        };
        // Release rows in batches of about 10 ms worth, not one wake-up per row: a thousand
        // one-row batches a second would cost more than the rows themselves.
        let min_rows = ((rate * 0.01).ceil() as u64).clamp(1, left.max(1));
        let due = self.origin_index + (self.origin.elapsed().as_secs_f64() * rate) as u64;
        if due < next + min_rows {
            let wait = Duration::from_secs_f64((next + min_rows - due) as f64 / rate);
            tokio::time::sleep(wait.min(max_wait)).await;
        }
        let due = self.origin_index + (self.origin.elapsed().as_secs_f64() * rate) as u64;
        due.saturating_sub(next).min(left) as usize
    }
}

#[async_trait]
impl<G: Generator> Source for GeneratorReader<G> {
    async fn next_event(&mut self, max_wait: Duration) -> Result<SourceEvent> {
        let Some((partition, next)) = self.behind() else {
            return Ok(SourceEvent::End);
        };
        let n = self.due(next, max_wait).await;
        if n == 0 {
            return Ok(SourceEvent::Idle);
        }
        let batch = self.generator.rows(next, n)?;
        // Past the end of its block, a partition goes on at its next block.
        let block = self.common.batch_size as u64;
        let mut advanced = next + n as u64;
        if advanced.is_multiple_of(block) {
            advanced += (u64::from(self.common.partitions) - 1) * block;
        }
        self.next.insert(partition, advanced);
        if batch.num_rows() == 0 {
            return Ok(SourceEvent::Idle);
        }
        // Each row's index, when every index gave a row (a Nexmark generator of one event kind
        // skips the others): views reading from different indexes can then meet at one.
        let offsets = (batch.num_rows() == n).then(|| {
            Int64Array::from_iter_values(
                (next..next + n as u64).map(|i| i64::try_from(i).unwrap_or(i64::MAX)),
            )
        });
        Ok(SourceEvent::Data {
            partition,
            batch,
            offsets,
        })
    }

    fn position(&self) -> Option<SourcePosition> {
        Some(SourcePosition {
            offsets: self
                .next
                .iter()
                .map(|(p, next)| (*p, i64::try_from(*next).unwrap_or(i64::MAX)))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::CommonOptions;
    use weir_engine::options::Options;

    fn common(pairs: &[(&str, &str)]) -> CommonOptions {
        let pairs = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        CommonOptions::take(&mut Options::new("test", pairs).unwrap(), Some(10.0), 64).unwrap()
    }

    /// Every `id` a reader of `provider` owning `split` delivers, and its final position.
    async fn read_split(
        provider: &super::GeneratorProvider<super::uniform_bids::UniformBids>,
        split: weir_engine::source::Split,
        resume: Option<weir_engine::checkpoint::SourcePosition>,
        stop_after: usize,
    ) -> (
        Vec<i64>,
        Vec<u32>,
        Option<weir_engine::checkpoint::SourcePosition>,
    ) {
        use super::{SourceEvent, SourceProvider};
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int64Type;
        let context = super::ReaderContext {
            source: "bids".into(),
            metrics: weir_engine::source_metrics::SourceMetricsRegistry::default()
                .register("bids", "v"),
            errors: std::sync::Arc::default(),
            bad_records: Default::default(),
            resume,
            split,
        };
        let mut reader = provider.open(context).unwrap();
        let (mut ids, mut partitions) = (Vec::new(), Vec::new());
        for _ in 0..stop_after {
            match reader
                .next_event(std::time::Duration::from_millis(10))
                .await
                .unwrap()
            {
                SourceEvent::Data {
                    partition, batch, ..
                } => {
                    let id = batch
                        .column_by_name("id")
                        .unwrap()
                        .as_primitive::<Int64Type>();
                    ids.extend(id.values().iter().copied());
                    partitions.push(partition);
                }
                SourceEvent::End => break,
                _ => {}
            }
        }
        (ids, partitions, reader.position())
    }

    #[tokio::test]
    async fn partitions_deal_blocks_to_readers_that_together_read_every_row_once() {
        use weir_engine::source::Split;
        let mut options = common(&[
            ("rate", "unbounded"),
            ("events", "1000"),
            ("partitions", "3"),
            ("start_time", "2024-01-01T00:00:00Z"),
        ]);
        options.batch_size = 64;
        let bids =
            super::uniform_bids::UniformBids::new(42, 100, 1_704_067_200_000, 10_000.0).unwrap();
        let provider = super::GeneratorProvider::new(bids, options);
        let mut all = Vec::new();
        for index in 0..2 {
            let split = Split { index, count: 2 };
            let (ids, partitions, _) = read_split(&provider, split, None, usize::MAX).await;
            // Split 0 owns partitions 0 and 2, split 1 partition 1: blocks of 64 ids each.
            assert!(partitions.iter().all(|p| split.owns(*p)), "{partitions:?}");
            // Row `i` has id `i + 1`.
            assert!(
                ids.iter()
                    .all(|id| split.owns((((id - 1) / 64) % 3) as u32))
            );
            all.extend(ids);
        }
        all.sort_unstable();
        assert_eq!(all, (1..=1000).collect::<Vec<i64>>());
        // A reader stopped part-way resumes at its position: the rest, once.
        let whole = Split::WHOLE;
        let (first, _, position) = read_split(&provider, whole, None, 5).await;
        let (rest, _, _) = read_split(&provider, whole, position, usize::MAX).await;
        let mut both: Vec<i64> = first.into_iter().chain(rest).collect();
        both.sort_unstable();
        assert_eq!(both, (1..=1000).collect::<Vec<i64>>());
    }

    #[test]
    fn a_default_start_keeps_event_time_out_of_the_future() {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        // Bounded and faster than event time: starts as far back as the rows span (1,000 s).
        let mut bounded = common(&[("rate", "unbounded"), ("events", "100000")]);
        assert_eq!(bounded.settle_start(100.0), None);
        let last = bounded.start_nanos + 1_000_000_000_000;
        assert!(
            (last - now).abs() < 5_000_000_000,
            "last row at {last}, now {now}"
        );
        // Unbounded: starts now, and says so.
        let mut endless = common(&[("rate", "unbounded")]);
        let notice = endless.settle_start(100.0).unwrap();
        assert!(notice.contains("runs ahead of the clock"), "{notice}");
        assert!((endless.start_nanos - now).abs() < 5_000_000_000);
        // Paced at the event rate, or started where the user said: untouched.
        let mut paced = common(&[("events", "100000")]);
        assert_eq!(paced.settle_start(10.0), None);
        assert!((paced.start_nanos - now).abs() < 5_000_000_000);
        let mut given = common(&[
            ("rate", "unbounded"),
            ("start_time", "2024-01-01T00:00:00Z"),
        ]);
        assert_eq!(given.settle_start(100.0), None);
        assert_eq!(given.start_nanos, 1_704_067_200_000_000_000);
    }
}
