//! `generator = 'nexmark'`: the Nexmark auction benchmark's events, built column by column.
//!
//! Follows the reference generator (`NexmarkGenerator`, `GeneratorConfig` and the model
//! generators of github.com/nexmark/nexmark, as used by Flink's Nexmark suite): event number `n`
//! gets event id `adjusted(n)` (`out_of_order_group` shuffles ids within groups), its kind from
//! `id mod 50` (1 person : 3 auctions : 46 bids), and its event time
//! `start_time + adjusted(n) · 10⁶ / event_rate` µs. Auction and person ids grow with the event
//! id; bids go to a hot auction (the first of the last hundred) with probability
//! `1 − 1/hot_auction_ratio`, else to one of the `in_flight_auctions` newest; bidders and sellers
//! likewise among the `active_people` newest. Prices are `round(10^(6u) · 100)`; strings are
//! random lowercase words; `extra` pads each event to the reference's average size (person 200,
//! auction 500, bid 100 bytes ± 20%). Bids carry `channel` and `url` as in the later Nexmark
//! versions (half from four hot channels, half from 10,000 numbered ones).
//!
//! Deviations: the reference draws from one `java.util.Random` per generator, so its values
//! cannot be reproduced by index; here each field of each event has its own counter-based stream
//! ([`super::random::Draws`]), which keeps every event a pure function of `(seed, event number)`
//! and lets columns nobody declared be skipped. Rate shapes (sine / square) are not implemented:
//! `event_rate` is constant.
//!
//! A source reads one of the three tables: `table = 'bid'` (default), `'auction'` or `'person'`.
//! All three number events over the same mix, so a bid source and an auction source with the
//! same options see one consistent auction house. `events` and `rate` count events of the mix
//! (a bid table produces about 46 rows per 50 events). Options: `event_rate` (events per second
//! of event time, 10,000), `out_of_order_group` (1), `hot_auction_ratio` (2), `hot_bidder_ratio`
//! (4), `hot_seller_ratio` (4), `active_people` (1,000), `in_flight_auctions` (100); `rate`
//! defaults to `event_rate` (real time).
//!
//! ```sql
//! CREATE SOURCE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
//!                    date_time TIMESTAMP, extra VARCHAR,
//!                    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
//! WITH (connector = 'datagen', generator = 'nexmark', table = 'bid', rate = 'unbounded');
//! ```

use std::sync::Arc;

use crate::error::ConnectorError;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use weir_engine::source::{SourceProvider, SourceSpec};
use weir_engine::{EngineError, Result};

use super::nexmark_text::{
    LetterPool, US_CITIES, US_STATES, credit_card, email, extra, long, millis, person_name, price,
    strings, words,
};
use super::random::Draws;
use super::{CommonOptions, Generator, GeneratorProvider, take_event_rate};
use crate::schema::Projection;

const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const TOTAL_PROPORTION: u64 = 50;
const FIRST_PERSON_ID: i64 = 1000;
const FIRST_AUCTION_ID: i64 = 1000;
const FIRST_CATEGORY_ID: i64 = 10;
const CATEGORIES: u64 = 5;
/// Hot sellers, bidders and auctions are the first of each block of this many ids.
const HOT_BLOCK: i64 = 100;
/// Ids this far past the newest may be chosen (events appear swapped in time).
const ID_LEAD: u64 = 10;
const CHANNELS: u64 = 10_000;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
/// Which Nexmark table a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NexmarkTable {
    /// New people.
    Person,
    /// New auctions.
    Auction,
    /// Bids.
    Bid,
}

impl NexmarkTable {
    fn of_event(id: u64) -> Self {
        match id % TOTAL_PROPORTION {
            r if r < PERSON_PROPORTION => Self::Person,
            r if r < PERSON_PROPORTION + AUCTION_PROPORTION => Self::Auction,
            _ => Self::Bid,
        }
    }

    /// The table's columns (the Nexmark DDL's, in snake case).
    pub fn schema(self) -> SchemaRef {
        let ts = || DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()));
        let long = |n: &str| Field::new(n, DataType::Int64, false);
        let text = |n: &str| Field::new(n, DataType::Utf8, false);
        let fields = match self {
            Self::Person => vec![
                long("id"),
                text("name"),
                text("email_address"),
                text("credit_card"),
                text("city"),
                text("state"),
                Field::new("date_time", ts(), false),
                text("extra"),
            ],
            Self::Auction => vec![
                long("id"),
                text("item_name"),
                text("description"),
                long("initial_bid"),
                long("reserve"),
                Field::new("date_time", ts(), false),
                Field::new("expires", ts(), false),
                long("seller"),
                long("category"),
                text("extra"),
            ],
            Self::Bid => vec![
                long("auction"),
                long("bidder"),
                long("price"),
                text("channel"),
                text("url"),
                Field::new("date_time", ts(), false),
                text("extra"),
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

/// Settings of the Nexmark generator.
#[derive(Debug, Clone)]
pub struct NexmarkConfig {
    /// Random seed.
    pub seed: u64,
    /// Event time of event 0, milliseconds since the epoch.
    pub base_millis: i64,
    /// Microseconds of event time between events.
    pub inter_event_micros: f64,
    /// Event ids are shuffled within groups of this many.
    pub out_of_order_group: u64,
    /// A bid goes to a hot auction with probability `1 - 1/ratio`.
    pub hot_auction_ratio: u64,
    /// A bid comes from a hot bidder with probability `1 - 1/ratio`.
    pub hot_bidder_ratio: u64,
    /// An auction is by a hot seller with probability `1 - 1/ratio`.
    pub hot_seller_ratio: u64,
    /// People who may sell or bid (the newest this many).
    pub active_people: u64,
    /// Auctions that may receive bids (the newest this many).
    pub in_flight_auctions: u64,
}

/// Builds a Nexmark source from its options.
pub(super) fn provider(spec: &mut SourceSpec) -> Result<Arc<dyn SourceProvider>> {
    let o = &mut spec.options;
    let table = match o.take("table").map(|t| t.to_ascii_lowercase()).as_deref() {
        None | Some("bid") => NexmarkTable::Bid,
        Some("auction") => NexmarkTable::Auction,
        Some("person") => NexmarkTable::Person,
        Some(other) => {
            return Err(EngineError::User(format!(
                "unknown nexmark table '{other}' (available: bid, auction, person)"
            )));
        }
    };
    let event_rate = take_event_rate(o)?;
    let mut ratio = |name: &str, default: u64| -> Result<u64> {
        match o.take_parsed::<u64>(name)? {
            Some(0) => Err(EngineError::User(format!(
                "datagen: {name} must be at least 1"
            ))),
            Some(v) => Ok(v),
            None => Ok(default),
        }
    };
    let out_of_order_group = ratio("out_of_order_group", 1)?;
    let hot_auction_ratio = ratio("hot_auction_ratio", 2)?;
    let hot_bidder_ratio = ratio("hot_bidder_ratio", 4)?;
    let hot_seller_ratio = ratio("hot_seller_ratio", 4)?;
    let active_people = ratio("active_people", 1000)?;
    let in_flight_auctions = ratio("in_flight_auctions", 100)?;
    let mut common = CommonOptions::take(o, Some(event_rate), 1024)?;
    let notice = common.settle_start(event_rate);
    let config = NexmarkConfig {
        seed: common.seed,
        base_millis: common.start_nanos.div_euclid(1_000_000),
        inter_event_micros: 1e6 / event_rate,
        out_of_order_group,
        hot_auction_ratio,
        hot_bidder_ratio,
        hot_seller_ratio,
        active_people,
        in_flight_auctions,
    };
    let natural = table.schema();
    let context = "datagen 'nexmark'";
    let projection = Projection::declared_or_all(&natural, spec.columns.as_ref(), context)?;
    Ok(Arc::new(
        GeneratorProvider::new(NexmarkGenerator::new(config, table, projection), common)
            .with_notice(notice),
    ))
}

/// Generates one Nexmark table's rows by event number.
#[derive(Debug)]
pub struct NexmarkGenerator {
    config: NexmarkConfig,
    table: NexmarkTable,
    projection: Projection,
    /// Channel names and URLs: 10,000 numbered channels, then the hot ones.
    channels: Vec<String>,
    urls: Vec<String>,
    /// What `extra` padding is cut from.
    pool: LetterPool,
}

impl NexmarkGenerator {
    /// A generator of `table` fitted to `projection`.
    pub fn new(config: NexmarkConfig, table: NexmarkTable, projection: Projection) -> Self {
        let mut channels: Vec<String> = (0..CHANNELS).map(|c| format!("channel-{c}")).collect();
        channels.extend(HOT_CHANNELS.iter().map(|c| (*c).to_string()));
        let urls = (0..channels.len() as u64)
            .map(|c| {
                let mut d = Draws::new(config.seed, c, 100);
                let mut url = String::from("https://www.nexmark.com/");
                for _ in 0..3 {
                    d.letters(5, &mut url);
                    url.push('/');
                }
                url.push_str("item.htm?query=1");
                if c < CHANNELS && d.below(2) == 0 {
                    url.push_str(&format!("&channel_id={c}"));
                }
                url
            })
            .collect();
        Self {
            pool: LetterPool::new(config.seed),
            config,
            table,
            projection,
            channels,
            urls,
        }
    }

    /// Event id of event number `n` (shuffled within `out_of_order_group`).
    fn event_id(&self, n: u64) -> u64 {
        let g = self.config.out_of_order_group;
        (n / g) * g + (n.wrapping_mul(953)) % g
    }

    /// Event time (ms) of the event with id `id`.
    fn timestamp(&self, id: u64) -> i64 {
        self.config.base_millis + ((id as f64 * self.config.inter_event_micros) as i64) / 1000
    }

    fn draws(&self, id: u64, field: u64) -> Draws {
        Draws::new(self.config.seed, id, field)
    }
}

/// The newest auction id (base 0) at event `id`: the auction being created, if it is one.
fn last_auction(id: u64) -> i64 {
    let (mut epoch, mut offset) = (
        (id / TOTAL_PROPORTION) as i64,
        (id % TOTAL_PROPORTION) as i64,
    );
    let (person, auction) = (PERSON_PROPORTION as i64, AUCTION_PROPORTION as i64);
    if offset < person {
        epoch -= 1;
        offset = auction - 1;
    } else if offset >= person + auction {
        offset = auction - 1;
    } else {
        offset -= person;
    }
    epoch * auction + offset
}

/// The newest person id (base 0) at event `id`.
fn last_person(id: u64) -> i64 {
    let (epoch, offset) = (
        (id / TOTAL_PROPORTION) as i64,
        (id % TOTAL_PROPORTION) as i64,
    );
    epoch * PERSON_PROPORTION as i64 + offset.min(PERSON_PROPORTION as i64 - 1)
}

impl NexmarkGenerator {
    /// A random active person (base 0), a few ids ahead allowed.
    fn random_person(&self, id: u64, d: &mut Draws) -> i64 {
        let people = last_person(id) + 1;
        let active = people.min(self.config.active_people as i64);
        people - active + d.below(active as u64 + ID_LEAD) as i64
    }

    /// A random in-flight auction (base 0), a few ids ahead allowed.
    fn random_auction(&self, id: u64, d: &mut Draws) -> i64 {
        let max = last_auction(id);
        let min = (max - self.config.in_flight_auctions as i64).max(0);
        min + d.below((max - min + 1) as u64 + ID_LEAD) as i64
    }

    /// A person (base 0) chosen hot with probability `1 - 1/ratio`; hot ids are `block + shift`.
    fn hot_or_random_person(&self, id: u64, field: u64, ratio: u64, shift: i64) -> i64 {
        let mut d = self.draws(id, field);
        if d.below(ratio) > 0 {
            (last_person(id) / HOT_BLOCK) * HOT_BLOCK + shift
        } else {
            self.random_person(id, &mut d)
        }
    }

    fn bid_column(&self, name: &str, ids: &[u64]) -> Result<ArrayRef> {
        Ok(match name {
            "auction" => long(ids, |id| {
                let mut d = self.draws(id, 0);
                let base0 = if d.below(self.config.hot_auction_ratio) > 0 {
                    (last_auction(id) / HOT_BLOCK) * HOT_BLOCK
                } else {
                    self.random_auction(id, &mut d)
                };
                FIRST_AUCTION_ID + base0
            }),
            "bidder" => long(ids, |id| {
                FIRST_PERSON_ID + self.hot_or_random_person(id, 1, self.config.hot_bidder_ratio, 1)
            }),
            "price" => long(ids, |id| price(&mut self.draws(id, 2))),
            "channel" | "url" => {
                let names = if name == "channel" {
                    &self.channels
                } else {
                    &self.urls
                };
                strings(ids, |id, out| out.push_str(&names[self.channel(id)]))
            }
            "date_time" => self.timestamps(ids),
            "extra" => strings(ids, |id, out| {
                extra(&mut self.draws(id, 4), &self.pool, 32, 100, out)
            }),
            other => return Err(unknown_column(other)),
        })
    }

    /// Index into `channels`/`urls` of a bid's channel.
    fn channel(&self, id: u64) -> usize {
        let mut d = self.draws(id, 3);
        if d.below(2) > 0 {
            (CHANNELS + d.below(HOT_CHANNELS.len() as u64)) as usize
        } else {
            d.below(CHANNELS) as usize
        }
    }

    fn auction_column(&self, name: &str, ids: &[u64]) -> Result<ArrayRef> {
        Ok(match name {
            "id" => long(ids, |id| FIRST_AUCTION_ID + last_auction(id)),
            "item_name" => strings(ids, |id, out| words(&mut self.draws(id, 5), 20, out)),
            "description" => strings(ids, |id, out| words(&mut self.draws(id, 6), 100, out)),
            "initial_bid" => long(ids, |id| price(&mut self.draws(id, 2))),
            "reserve" => long(ids, |id| {
                let mut d = self.draws(id, 2);
                price(&mut d) + price(&mut d)
            }),
            "date_time" => self.timestamps(ids),
            "expires" => {
                // Auctions last on average as long as it takes to create `in_flight_auctions`
                // more of them, so about that many are open at any time.
                let ahead = self.config.in_flight_auctions * TOTAL_PROPORTION / AUCTION_PROPORTION;
                let values = ids.iter().map(|&id| {
                    let ts = self.timestamp(id);
                    let horizon = self.timestamp(id + ahead) - ts;
                    ts + 1 + self.draws(id, 3).below((horizon * 2).max(1) as u64) as i64
                });
                millis(values.collect())
            }
            "seller" => long(ids, |id| {
                FIRST_PERSON_ID + self.hot_or_random_person(id, 0, self.config.hot_seller_ratio, 0)
            }),
            "category" => long(ids, |id| {
                FIRST_CATEGORY_ID + self.draws(id, 1).below(CATEGORIES) as i64
            }),
            "extra" => strings(ids, |id, out| {
                // The reference pads to the average after the fixed fields and both texts.
                let mut texts = String::new();
                words(&mut self.draws(id, 5), 20, &mut texts);
                words(&mut self.draws(id, 6), 100, &mut texts);
                extra(
                    &mut self.draws(id, 7),
                    &self.pool,
                    48 + texts.len(),
                    500,
                    out,
                )
            }),
            other => return Err(unknown_column(other)),
        })
    }

    fn person_column(&self, name: &str, ids: &[u64]) -> Result<ArrayRef> {
        let pick = |id: u64, field: u64, from: &[&str]| -> usize {
            self.draws(id, field).below(from.len() as u64) as usize
        };
        Ok(match name {
            "id" => long(ids, |id| FIRST_PERSON_ID + last_person(id)),
            "name" => strings(ids, |id, out| person_name(&mut self.draws(id, 0), out)),
            "email_address" => strings(ids, |id, out| email(&mut self.draws(id, 1), out)),
            "credit_card" => strings(ids, |id, out| credit_card(&mut self.draws(id, 2), out)),
            "city" => strings(ids, |id, out| {
                out.push_str(US_CITIES[pick(id, 3, &US_CITIES)])
            }),
            "state" => strings(ids, |id, out| {
                out.push_str(US_STATES[pick(id, 4, &US_STATES)])
            }),
            "date_time" => self.timestamps(ids),
            "extra" => strings(ids, |id, out| {
                let mut fixed = String::new();
                person_name(&mut self.draws(id, 0), &mut fixed);
                email(&mut self.draws(id, 1), &mut fixed);
                credit_card(&mut self.draws(id, 2), &mut fixed);
                fixed.push_str(US_CITIES[pick(id, 3, &US_CITIES)]);
                fixed.push_str(US_STATES[pick(id, 4, &US_STATES)]);
                extra(
                    &mut self.draws(id, 5),
                    &self.pool,
                    8 + fixed.len(),
                    200,
                    out,
                )
            }),
            other => return Err(unknown_column(other)),
        })
    }

    fn timestamps(&self, ids: &[u64]) -> ArrayRef {
        millis(ids.iter().map(|&id| self.timestamp(id)).collect())
    }
}

impl Generator for NexmarkGenerator {
    fn schema(&self) -> SchemaRef {
        self.projection.schema()
    }

    fn rows(&self, start: u64, n: usize) -> Result<RecordBatch> {
        let ids: Vec<u64> = (start..start + n as u64)
            .map(|number| self.event_id(number))
            .filter(|&id| NexmarkTable::of_event(id) == self.table)
            .collect();
        let natural = self.table.schema();
        let columns = natural
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if !self.projection.reads(i) {
                    return Ok(None);
                }
                let column = match self.table {
                    NexmarkTable::Bid => self.bid_column(f.name(), &ids)?,
                    NexmarkTable::Auction => self.auction_column(f.name(), &ids)?,
                    NexmarkTable::Person => self.person_column(f.name(), &ids)?,
                };
                Ok(Some(column))
            })
            .collect::<Result<Vec<_>>>()?;
        self.projection.apply_columns(&columns, ids.len())
    }
}

fn unknown_column(name: &str) -> EngineError {
    ConnectorError::bug(format!("nexmark generator has no column {name}")).into()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;

    fn generator(table: NexmarkTable) -> Result<NexmarkGenerator> {
        let config = NexmarkConfig {
            seed: 1,
            base_millis: 0,
            inter_event_micros: 100.0,
            out_of_order_group: 1,
            hot_auction_ratio: 2,
            hot_bidder_ratio: 4,
            hot_seller_ratio: 4,
            active_people: 1000,
            in_flight_auctions: 100,
        };
        let schema = table.schema();
        Ok(NexmarkGenerator::new(
            config,
            table,
            Projection::try_new(&schema, &schema, "t")?,
        ))
    }

    #[test]
    fn the_mix_is_one_person_three_auctions_forty_six_bids() -> Result<()> {
        let counts: Vec<usize> = [
            NexmarkTable::Person,
            NexmarkTable::Auction,
            NexmarkTable::Bid,
        ]
        .into_iter()
        .map(|t| generator(t)?.rows(0, 5000).map(|b| b.num_rows()))
        .collect::<Result<_>>()?;
        assert_eq!(counts, vec![100, 300, 4600]);
        Ok(())
    }

    #[test]
    fn rows_are_a_function_of_the_event_number() -> Result<()> {
        let g = generator(NexmarkTable::Bid)?;
        let whole = g.rows(0, 1000)?;
        let tail = g.rows(500, 500)?;
        let offset = whole.num_rows() - tail.num_rows();
        assert_eq!(whole.slice(offset, tail.num_rows()), tail);
        Ok(())
    }

    #[test]
    fn bids_go_to_existing_hot_auctions_and_time_advances_with_the_event_rate() -> Result<()> {
        let g = generator(NexmarkTable::Bid)?;
        let b = g.rows(0, 100_000)?;
        let auctions = b.column(0).as_primitive::<Int64Type>();
        let newest = FIRST_AUCTION_ID + last_auction(99_999);
        assert!(
            auctions
                .values()
                .iter()
                .all(|&a| (FIRST_AUCTION_ID..=newest + ID_LEAD as i64).contains(&a))
        );
        let hot = auctions
            .values()
            .iter()
            .filter(|&&a| (a - FIRST_AUCTION_ID) % HOT_BLOCK == 0)
            .count();
        let share = hot as f64 / b.num_rows() as f64;
        assert!((0.49..0.53).contains(&share), "hot share {share}");
        let ts = b
            .column(5)
            .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>();
        // 100 µs per event: event 99,999 is at 9,999.9 ms.
        assert_eq!(ts.value(ts.len() - 1), 9_999);
        let extra = b.column(6).as_string::<i32>();
        let mean = (0..extra.len())
            .map(|i| extra.value(i).len())
            .sum::<usize>() as f64
            / extra.len() as f64;
        assert!((60.0..75.0).contains(&mean), "mean extra {mean}");
        Ok(())
    }

    #[test]
    fn out_of_order_groups_shuffle_ids_within_each_group() -> Result<()> {
        let mut g = generator(NexmarkTable::Bid)?;
        g.config.out_of_order_group = 10;
        let mut ids: Vec<u64> = (0..20).map(|n| g.event_id(n)).collect();
        assert_ne!(ids, (0..20).collect::<Vec<_>>());
        ids[..10].sort_unstable();
        ids[10..].sort_unstable();
        assert_eq!(ids, (0..20).collect::<Vec<_>>());
        Ok(())
    }

    #[test]
    fn undeclared_columns_are_not_needed() -> Result<()> {
        let natural = NexmarkTable::Auction.schema();
        let declared = Arc::new(Schema::new(vec![
            natural.field(0).clone(),
            natural.field(7).clone(),
        ]));
        let mut g = generator(NexmarkTable::Auction)?;
        g.projection = Projection::try_new(&natural, &declared, "t")?;
        let b = g.rows(0, 500)?;
        assert_eq!(b.num_columns(), 2);
        assert_eq!(b.num_rows(), 30);
        let ids = b.column(0).as_primitive::<Int64Type>();
        assert_eq!((ids.value(0), ids.value(29)), (1000, 1029));
        Ok(())
    }
}
