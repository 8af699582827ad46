//! `generator = 'bids'`: uniform random bids, the data of the peer benchmarks' "tumble count".
//!
//! Row `i` (from 0) is a bid with `id = i + 1`, `auction` uniform in `[1000, 1000 + auctions)`,
//! `bidder` uniform in `[1000, 101000)`, `price` uniform in `[100, 100,000,100)` and event time
//! `ts = start_time + ⌊i · 1000 / event_rate⌋` ms, the shape Flink's `datagen` produces for the
//! same benchmark (`fields.auction.min/max`, `ts = id / 10` ms at 10 events per ms). Unlike
//! [`super::nexmark`] there are no hot keys: every auction is equally likely, so the number of
//! open groups is exactly `auctions` per window.
//!
//! Options: `auctions` (10,000), `event_rate` (events per second of event time, 10,000, i.e. 10
//! per ms); `rate` defaults to `'unbounded'` and `batch_size` to 4096.
//!
//! ```sql
//! CREATE SOURCE bids (auction BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '4' SECOND)
//! WITH (connector = 'datagen', generator = 'bids', events = 1000000);
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use weir_engine::source::{SourceProvider, SourceSpec};
use weir_engine::{EngineError, Result};

use super::random::Draws;
use super::{CommonOptions, Generator, GeneratorProvider, take_event_rate};
use crate::schema::Projection;

/// The generator's natural columns.
pub fn bid_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("ts", ts, false),
    ]))
}

/// Builds a uniform-bids source from its options.
pub(super) fn provider(spec: &mut SourceSpec) -> Result<Arc<dyn SourceProvider>> {
    let o = &mut spec.options;
    let auctions = o.take_parsed::<u64>("auctions")?.unwrap_or(10_000);
    if auctions == 0 {
        return Err(EngineError::User(
            "datagen: auctions must be at least 1".into(),
        ));
    }
    let event_rate = take_event_rate(o)?;
    let mut common = CommonOptions::take(o, None, 4096)?;
    let notice = common.settle_start(event_rate);
    let mut generator = UniformBids::new(
        common.seed,
        auctions,
        common.start_nanos.div_euclid(1_000_000),
        event_rate,
    )?;
    generator.projection =
        Projection::declared_or_all(&bid_schema(), spec.columns.as_ref(), "datagen 'bids'")?;
    Ok(Arc::new(
        GeneratorProvider::new(generator, common).with_notice(notice),
    ))
}

/// Uniform bids by index.
#[derive(Debug)]
pub struct UniformBids {
    seed: u64,
    auctions: u64,
    base_millis: i64,
    millis_per_event: f64,
    projection: Projection,
}

impl UniformBids {
    /// A generator of every column of [`bid_schema`] (benchmarks build ceilings from it).
    pub fn new(seed: u64, auctions: u64, base_millis: i64, event_rate: f64) -> Result<Self> {
        let projection = Projection::declared_or_all(&bid_schema(), None, "datagen 'bids'")?;
        Ok(Self {
            seed,
            auctions,
            base_millis,
            millis_per_event: 1000.0 / event_rate,
            projection,
        })
    }

    fn uniform(&self, start: u64, n: usize, field: u64, low: i64, count: u64) -> ArrayRef {
        let values = (start..start + n as u64)
            .map(|i| low + Draws::new(self.seed, i, field).below(count) as i64);
        Arc::new(Int64Array::from_iter_values(values))
    }
}

impl Generator for UniformBids {
    fn schema(&self) -> SchemaRef {
        self.projection.schema()
    }

    fn rows(&self, start: u64, n: usize) -> Result<RecordBatch> {
        let range = start..start + n as u64;
        let column = |i: usize| -> Option<ArrayRef> {
            if !self.projection.reads(i) {
                return None;
            }
            Some(match i {
                0 => Arc::new(Int64Array::from_iter_values(
                    range.clone().map(|i| i as i64 + 1),
                )),
                1 => self.uniform(start, n, 1, 1000, self.auctions),
                2 => self.uniform(start, n, 2, 1000, 100_000),
                3 => self.uniform(start, n, 3, 100, 100_000_000),
                _ => {
                    let ts = range
                        .clone()
                        .map(|i| self.base_millis + (i as f64 * self.millis_per_event) as i64);
                    Arc::new(
                        TimestampMillisecondArray::from_iter_values(ts).with_timezone("+00:00"),
                    )
                }
            })
        };
        let columns: Vec<Option<ArrayRef>> = (0..5).map(column).collect();
        self.projection.apply_columns(&columns, n)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Int64Type, TimestampMillisecondType};

    use super::*;

    fn bids() -> Result<UniformBids> {
        UniformBids::new(42, 10_000, 0, 10_000.0)
    }

    #[test]
    fn ten_bids_per_millisecond_over_ten_thousand_auctions() -> Result<()> {
        let b = bids()?.rows(0, 200_000)?;
        let ts = b.column(4).as_primitive::<TimestampMillisecondType>();
        assert_eq!(
            (ts.value(0), ts.value(9), ts.value(10), ts.value(199_999)),
            (0, 0, 1, 19_999)
        );
        let auctions = b.column(1).as_primitive::<Int64Type>();
        assert!(auctions.values().iter().all(|a| (1000..11_000).contains(a)));
        let seen: std::collections::HashSet<i64> = auctions.values().iter().copied().collect();
        assert_eq!(seen.len(), 10_000);
        Ok(())
    }

    #[test]
    fn any_slice_equals_the_same_rows_of_a_longer_run() -> Result<()> {
        let g = bids()?;
        assert_eq!(g.rows(0, 1000)?.slice(300, 700), g.rows(300, 700)?);
        Ok(())
    }
}
