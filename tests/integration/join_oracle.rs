//! Every join kind through a real broker, against DataFusion batch queries over the same rows:
//! orders and payments on two partitions each, out of order by up to 2 s behind watermarks 3 s
//! behind; customer tiers as versions by event time; a customers table over an upsert topic
//! whose rows change and go away while the orders stream; then rows a minute too late, which the
//! event-time joins must log and leave out and the regular joins must join; then rows far ahead
//! on every partition, which close everything.
//!
//! Views: an outer interval join, an interval self-join, a window join of two windowed views, an
//! event-time temporal join with an append-only source and one with an upsert table (versions
//! updated and deleted by key), a regular join with the table and an aggregate over it (both
//! revised as the table changes), and a processing-time temporal join with the table.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use weir_sql::Session;

use crate::broker::{Broker, Record};
use crate::harness::{batch_rows, query_rows};

/// 2024-01-01T00:00:00Z in milliseconds.
const T0: i64 = 1_704_067_200_000;
const PARTITIONS: i32 = 2;
const ORDERS_PER_PARTITION: i64 = 600;
const CUSTOMERS: i64 = 20;
/// Chunks each topic's records are sent in, alternating topics (the table changes mid-stream).
const ROUNDS: usize = 10;
/// Far ahead of every row: closes every window, bound and version.
const END: i64 = T0 + 10_000_000;

#[derive(Clone, Copy)]
struct Order {
    id: i64,
    cust: i64,
    amount: i64,
    ts: i64,
}

#[derive(Clone, Copy)]
struct Payment {
    id: i64,
    order_id: i64,
    cust: i64,
    amount: i64,
    ts: i64,
}

#[derive(Clone, Copy)]
struct Tier {
    cust: i64,
    tier: i64,
    ts: i64,
}

/// Orders `rows` by time with up to 2 s of disorder: sent in order of `ts + jitter`, a row is at
/// most 2 s behind the newest before it, inside the 3 s watermark delay.
fn disorder<T>(rng: &mut ChaCha8Rng, rows: Vec<T>, ts: impl Fn(&T) -> i64) -> Vec<T> {
    let mut keyed: Vec<(i64, T)> = rows
        .into_iter()
        .map(|r| (ts(&r) + rng.random_range(0..2_000), r))
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, r)| r).collect()
}

fn order_record(p: i32, o: Order) -> Record {
    Record::new(
        p,
        format!(
            r#"{{"id": {}, "cust": {}, "amount": {}, "ts": {}}}"#,
            o.id, o.cust, o.amount, o.ts
        ),
    )
}

fn payment_record(p: i32, x: Payment) -> Record {
    Record::new(
        p,
        format!(
            r#"{{"id": {}, "order_id": {}, "cust": {}, "amount": {}, "ts": {}}}"#,
            x.id, x.order_id, x.cust, x.amount, x.ts
        ),
    )
}

fn tier_record(t: Tier) -> Record {
    Record::new(
        0,
        format!(
            r#"{{"cust": {}, "tier": {}, "ts": {}}}"#,
            t.cust, t.tier, t.ts
        ),
    )
}

/// What the broker is sent, topic by topic, and what the oracle reads.
struct Stream {
    orders: Vec<Vec<Order>>,
    payments: Vec<Vec<Payment>>,
    tiers: Vec<Tier>,
    /// Upsert messages in order: `(cust, Some((name, region)))` or a tombstone.
    customers: Vec<(i64, Option<(String, String)>)>,
    /// Messages of an upsert table with a WATERMARK, in time order on one partition:
    /// `(cust, Some(level), ts)`, or a tombstone `(cust, None, ts)` (`ts` only orders it).
    levels: Vec<(i64, Option<i64>, i64)>,
}

fn generate(rng: &mut ChaCha8Rng) -> Stream {
    let mut orders = Vec::new();
    let mut payments = Vec::new();
    let mut payment_id = 0;
    for p in 0..PARTITIONS as i64 {
        let rows: Vec<Order> = (0..ORDERS_PER_PARTITION)
            .map(|i| Order {
                id: p * ORDERS_PER_PARTITION + i + 1,
                cust: rng.random_range(0..CUSTOMERS),
                amount: rng.random_range(1..100),
                ts: T0 + 10_000 + i * 50,
            })
            .collect();
        let mut paid = Vec::new();
        for o in &rows {
            // 70% paid, some outside the 5 s the join allows; 10% of payments match no order.
            if rng.random_bool(0.7) {
                payment_id += 1;
                paid.push(Payment {
                    id: payment_id,
                    order_id: o.id,
                    cust: o.cust,
                    amount: o.amount,
                    ts: o.ts + rng.random_range(-1_000..7_000),
                });
            }
            if rng.random_bool(0.1) {
                payment_id += 1;
                paid.push(Payment {
                    id: payment_id,
                    order_id: 100_000 + payment_id,
                    cust: rng.random_range(0..CUSTOMERS),
                    amount: rng.random_range(1..100),
                    ts: o.ts + rng.random_range(0..3_000),
                });
            }
        }
        orders.push(disorder(rng, rows, |o| o.ts));
        payments.push(disorder(rng, paid, |x| x.ts));
    }
    // Five versions per customer at distinct times (the newest at or before an order applies).
    let span = ORDERS_PER_PARTITION * 50 + 10_000;
    let mut times = BTreeSet::new();
    let mut tiers = Vec::new();
    for cust in 0..CUSTOMERS {
        for _ in 0..5 {
            let mut ts = T0 + rng.random_range(0..span);
            while !times.insert(ts) {
                ts += 1;
            }
            tiers.push(Tier {
                cust,
                tier: rng.random_range(1..5),
                ts,
            });
        }
    }
    let tiers = disorder(rng, tiers, |t| t.ts);
    let customers = (0..300)
        .map(|_| {
            let cust = rng.random_range(0..CUSTOMERS + 4);
            if rng.random_bool(0.15) {
                (cust, None)
            } else {
                let name = format!("c{cust}-{}", rng.random_range(0..1000));
                let region = ["north", "south", "east"][rng.random_range(0..3)].to_string();
                (cust, Some((name, region)))
            }
        })
        .collect();
    let mut levels = Vec::new();
    for i in 0..150 {
        let cust = rng.random_range(0..CUSTOMERS);
        let ts = T0 + i * span / 150;
        let level = (!rng.random_bool(0.15)).then(|| rng.random_range(1..10));
        levels.push((cust, level, ts));
    }
    Stream {
        orders,
        payments,
        tiers,
        customers,
        levels,
    }
}

fn customer_record(cust: i64, row: &Option<(String, String)>) -> Record {
    let mut record = Record::new((cust % PARTITIONS as i64) as i32, Vec::new());
    record.key = Some(cust.to_string());
    match row {
        Some((name, region)) => {
            record.payload = format!(r#"{{"name": "{name}", "region": "{region}"}}"#).into_bytes();
        }
        None => record.tombstone = true,
    }
    record
}

fn level_record(&(cust, level, ts): &(i64, Option<i64>, i64)) -> Record {
    let mut record = Record::new(0, Vec::new());
    record.key = Some(cust.to_string());
    match level {
        Some(level) => {
            record.payload = format!(r#"{{"level": {level}, "ts": {ts}}}"#).into_bytes();
        }
        None => record.tombstone = true,
    }
    record
}

/// The upsert table's history as the join reads it: `(cust, level or NULL, start, seq)`, a
/// message a version from its time, a tombstone the end of its key's versions from the newest
/// time the table had shown (one partition: that is the newest before it in the topic).
fn level_history(levels: &[(i64, Option<i64>, i64)]) -> Vec<String> {
    let mut live = BTreeSet::new();
    let mut clock = i64::MIN;
    let mut out = Vec::new();
    for (seq, &(cust, level, ts)) in levels.iter().enumerate() {
        match level {
            Some(level) => {
                clock = clock.max(ts);
                live.insert(cust);
                out.push(format!(
                    "({cust}, {level}, to_timestamp_millis({ts}), {seq})"
                ));
            }
            // A tombstone for a key with no row changes nothing.
            None if live.remove(&cust) => {
                out.push(format!(
                    "({cust}, NULL, to_timestamp_millis({clock}), {seq})"
                ));
            }
            None => {}
        }
    }
    out
}

/// The rows of changes the upsert table sends for `levels`: an insert, an update's two rows,
/// a delete of a live key.
fn level_changes(levels: &[(i64, Option<i64>, i64)]) -> usize {
    let mut live = BTreeSet::new();
    levels
        .iter()
        .map(|&(cust, level, _)| match level {
            Some(_) if !live.insert(cust) => 2,
            Some(_) => 1,
            None => usize::from(live.remove(&cust)),
        })
        .sum()
}

/// `rows` split into `ROUNDS` nearly equal chunks; chunk `round`.
fn chunk<T: Clone>(rows: &[T], round: usize) -> Vec<T> {
    let size = rows.len().div_ceil(ROUNDS);
    rows.iter().skip(round * size).take(size).cloned().collect()
}

async fn wait_until(session: &Session, sql: &str, want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut rows = query_rows(session, sql).await;
        rows.sort();
        if rows == want {
            return;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = want.iter().filter(|r| !rows.contains(r)).take(5).collect();
            let extra: Vec<_> = rows.iter().filter(|r| !want.contains(r)).take(5).collect();
            panic!(
                "{sql}: {} rows, want {}; missing {missing:?}, extra {extra:?}",
                rows.len(),
                want.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const VIEWS: &str = "
CREATE MATERIALIZED VIEW paid AS
  SELECT o.id, o.cust, o.amount, p.id AS payment, p.amount AS paid
  FROM orders AS o LEFT JOIN payments AS p
    ON p.order_id = o.id AND p.ts BETWEEN o.ts AND o.ts + INTERVAL '5 seconds';
CREATE MATERIALIZED VIEW repeat_orders AS
  SELECT a.id AS first, b.id AS second, a.cust
  FROM orders AS a JOIN orders AS b
    ON a.cust = b.cust AND b.ts > a.ts AND b.ts <= a.ts + INTERVAL '1 second';
CREATE MATERIALIZED VIEW order_windows AS
  SELECT cust, window_start, window_end, count(*) AS n, sum(amount) AS total
  FROM TUMBLE(orders, ts, INTERVAL '2 seconds')
  GROUP BY cust, window_start, window_end EMIT ON WINDOW CLOSE;
CREATE MATERIALIZED VIEW payment_windows AS
  SELECT cust, window_start, window_end, count(*) AS n, sum(amount) AS total
  FROM TUMBLE(payments, ts, INTERVAL '2 seconds')
  GROUP BY cust, window_start, window_end EMIT ON WINDOW CLOSE;
CREATE MATERIALIZED VIEW windows_joined AS
  SELECT o.cust, o.window_start, o.n AS orders, p.n AS payments, o.total, p.total AS paid
  FROM order_windows AS o JOIN payment_windows AS p
    ON o.cust = p.cust AND o.window_start = p.window_start AND o.window_end = p.window_end;
CREATE MATERIALIZED VIEW tiered AS
  SELECT o.id, o.cust, t.tier
  FROM orders AS o LEFT JOIN tiers FOR SYSTEM_TIME AS OF o.ts AS t ON o.cust = t.cust;
CREATE MATERIALIZED VIEW leveled AS
  SELECT o.id, o.cust, l.level
  FROM orders AS o LEFT JOIN levels FOR SYSTEM_TIME AS OF o.ts AS l ON o.cust = l.cust;
CREATE MATERIALIZED VIEW with_customer AS
  SELECT o.id, o.amount, c.name, c.region
  FROM orders AS o JOIN customers AS c ON o.cust = c.cust;
CREATE MATERIALIZED VIEW by_region AS
  SELECT c.region, count(*) AS n, sum(o.amount) AS total
  FROM orders AS o JOIN customers AS c ON o.cust = c.cust GROUP BY c.region;
CREATE MATERIALIZED VIEW stamped AS
  SELECT o.id, o.cust, c.region
  FROM orders AS o LEFT JOIN customers FOR SYSTEM_TIME AS OF PROCTIME() AS c
    ON o.cust = c.cust;";

/// The batch queries the views must equal (DataFusion over the rows the views accepted).
const ORACLES: [(&str, &str, &str); 7] = [
    (
        "SELECT id, cust, amount, payment, paid FROM paid WHERE id >= 0",
        "on_time",
        "SELECT o.id, o.cust, o.amount, p.id, p.amount
         FROM orders AS o LEFT JOIN payments AS p
           ON p.order_id = o.id AND p.ts BETWEEN o.ts AND o.ts + INTERVAL '5 seconds'",
    ),
    (
        "SELECT first, second, cust FROM repeat_orders",
        "on_time",
        "SELECT a.id, b.id, a.cust FROM orders AS a JOIN orders AS b
           ON a.cust = b.cust AND b.ts > a.ts AND b.ts <= a.ts + INTERVAL '1 second'",
    ),
    (
        "SELECT cust, CAST(window_start AS BIGINT), orders, payments, total, paid FROM windows_joined",
        "on_time",
        "WITH o AS (SELECT cust, CAST(date_bin(INTERVAL '2 seconds', ts) AS BIGINT) AS ws,
                           count(*) AS n, sum(amount) AS total FROM orders GROUP BY 1, 2),
              p AS (SELECT cust, CAST(date_bin(INTERVAL '2 seconds', ts) AS BIGINT) AS ws,
                           count(*) AS n, sum(amount) AS total FROM payments GROUP BY 1, 2)
         SELECT o.cust, o.ws, o.n, p.n, o.total, p.total FROM o JOIN p
           ON o.cust = p.cust AND o.ws = p.ws",
    ),
    (
        "SELECT id, cust, tier FROM tiered WHERE id >= 0",
        "on_time",
        "SELECT id, cust, tier FROM (
           SELECT o.id, o.cust, t.tier,
                  row_number() OVER (PARTITION BY o.id ORDER BY t.ts DESC) AS rn
           FROM orders AS o LEFT JOIN tiers AS t ON o.cust = t.cust AND t.ts <= o.ts)
         WHERE rn = 1",
    ),
    (
        "SELECT id, cust, level FROM leveled WHERE id >= 0",
        "on_time",
        "SELECT id, cust, level FROM (
           SELECT o.id, o.cust, l.level,
                  row_number() OVER (PARTITION BY o.id ORDER BY l.start DESC, l.seq DESC) AS rn
           FROM orders AS o LEFT JOIN levels AS l ON o.cust = l.cust AND l.start <= o.ts)
         WHERE rn = 1",
    ),
    (
        "SELECT id, amount, name, region FROM with_customer",
        "all",
        "SELECT o.id, o.amount, c.name, c.region FROM orders AS o JOIN customers AS c
           ON o.cust = c.cust",
    ),
    (
        "SELECT region, n, total FROM by_region",
        "all",
        "SELECT c.region, count(*), sum(o.amount) FROM orders AS o JOIN customers AS c
           ON o.cust = c.cust GROUP BY c.region",
    ),
];

/// A DataFusion context over `orders`, `payments`, `tiers` and `customers`.
async fn oracle_context(
    orders: &[Order],
    payments: &[Payment],
    tiers: &[Tier],
    customers: &BTreeMap<i64, (String, String)>,
    levels: &[String],
) -> datafusion::prelude::SessionContext {
    let ctx = datafusion::prelude::SessionContext::new();
    let ms = |ts: i64| format!("to_timestamp_millis({ts})");
    let tables = [
        (
            "orders",
            "id, cust, amount, ts",
            orders
                .iter()
                .map(|o| format!("({}, {}, {}, {})", o.id, o.cust, o.amount, ms(o.ts)))
                .collect::<Vec<_>>(),
        ),
        (
            "payments",
            "id, order_id, cust, amount, ts",
            payments
                .iter()
                .map(|x| {
                    let ts = ms(x.ts);
                    format!("({}, {}, {}, {}, {ts})", x.id, x.order_id, x.cust, x.amount)
                })
                .collect(),
        ),
        (
            "tiers",
            "cust, tier, ts",
            tiers
                .iter()
                .map(|t| format!("({}, {}, {})", t.cust, t.tier, ms(t.ts)))
                .collect(),
        ),
        (
            "customers",
            "cust, name, region",
            customers
                .iter()
                .map(|(c, (name, region))| format!("({c}, '{name}', '{region}')"))
                .collect(),
        ),
        ("levels", "cust, level, start, seq", levels.to_vec()),
    ];
    for (name, columns, values) in tables {
        ctx.sql(&format!(
            "CREATE VIEW {name} AS SELECT * FROM (VALUES {}) AS t({columns})",
            values.join(", ")
        ))
        .await
        .expect("oracle table");
    }
    ctx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_join_kind_over_kafka_matches_the_batch_oracle() {
    let broker = Broker::start();
    for (topic, partitions) in [
        ("orders", PARTITIONS),
        ("payments", PARTITIONS),
        ("tiers", 1),
        ("customers", PARTITIONS),
        ("levels", 1),
    ] {
        broker.create_topic(topic, partitions as u32);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(25);
    let stream = generate(&mut rng);
    let kafka = |topic: &str| {
        format!(
            "WITH (connector = 'kafka', topic = '{topic}', properties.bootstrap.server = '{}',
                   source.idle_timeout = '60s') FORMAT PLAIN ENCODE JSON",
            broker.address
        )
    };
    let s = weir::database().build().expect("database").session();
    s.execute_all(&format!(
        "CREATE SOURCE orders (id BIGINT, cust BIGINT, amount BIGINT, ts TIMESTAMP(3) WITH TIME ZONE,
                               WATERMARK FOR ts AS ts - INTERVAL '3 seconds') {};
         CREATE SOURCE payments (id BIGINT, order_id BIGINT, cust BIGINT, amount BIGINT,
                                 ts TIMESTAMP(3) WITH TIME ZONE,
                                 WATERMARK FOR ts AS ts - INTERVAL '3 seconds') {};
         CREATE SOURCE tiers (cust BIGINT, tier BIGINT, ts TIMESTAMP(3) WITH TIME ZONE,
                              WATERMARK FOR ts AS ts - INTERVAL '3 seconds') {};
         CREATE TABLE customers (cust BIGINT, name TEXT, region TEXT, PRIMARY KEY (cust))
           WITH (connector = 'kafka', topic = 'customers', properties.bootstrap.server = '{}')
           FORMAT UPSERT ENCODE JSON;
         CREATE TABLE levels (cust BIGINT, level BIGINT, ts TIMESTAMP(3) WITH TIME ZONE,
                              WATERMARK FOR ts AS ts - INTERVAL '3 seconds', PRIMARY KEY (cust))
           WITH (connector = 'kafka', topic = 'levels', properties.bootstrap.server = '{}',
                 source.idle_timeout = '60s')
           FORMAT UPSERT ENCODE JSON;
         {VIEWS}",
        kafka("orders"),
        kafka("payments"),
        kafka("tiers"),
        broker.address,
        broker.address
    ))
    .await
    .expect("ddl");

    // The stream, topics alternating so the table changes while orders arrive.
    let producer = broker.producer();
    for round in 0..ROUNDS {
        for p in 0..PARTITIONS {
            let orders = chunk(&stream.orders[p as usize], round);
            let records: Vec<Record> = orders.into_iter().map(|o| order_record(p, o)).collect();
            producer.send("orders", &records).await;
            let payments = chunk(&stream.payments[p as usize], round);
            let records: Vec<Record> = payments.into_iter().map(|x| payment_record(p, x)).collect();
            producer.send("payments", &records).await;
        }
        let tiers: Vec<Record> = chunk(&stream.tiers, round)
            .into_iter()
            .map(tier_record)
            .collect();
        producer.send("tiers", &tiers).await;
        let customers: Vec<Record> = chunk(&stream.customers, round)
            .iter()
            .map(|(c, row)| customer_record(*c, row))
            .collect();
        producer.send("customers", &customers).await;
        let levels: Vec<Record> = chunk(&stream.levels, round)
            .iter()
            .map(level_record)
            .collect();
        producer.send("levels", &levels).await;
    }
    // Every event-time view has read the stream before the late rows are sent (lateness is
    // judged against the watermark a row meets).
    let orders_in = PARTITIONS as usize * ORDERS_PER_PARTITION as usize;
    let payments_in: usize = stream.payments.iter().map(Vec::len).sum();
    for (view, rows_in) in [
        ("paid", orders_in + payments_in),
        ("repeat_orders", 2 * orders_in),
        ("order_windows", orders_in),
        ("payment_windows", payments_in),
        ("tiered", orders_in + stream.tiers.len()),
        ("leveled", orders_in + level_changes(&stream.levels)),
    ] {
        wait_until(
            &s,
            &format!("SELECT rows_in FROM weir_views WHERE name = '{view}'"),
            &[rows_in.to_string()],
        )
        .await;
    }
    // A minute too late: one of each per partition, joining what they would have joined.
    let late_orders: Vec<Order> = (0..4)
        .map(|i| Order {
            id: 50_000 + i,
            cust: i % CUSTOMERS,
            amount: 7,
            ts: T0 + 10_000 + i * 100,
        })
        .collect();
    let late_payments: Vec<Payment> = late_orders
        .iter()
        .map(|o| Payment {
            id: 60_000 + o.id,
            order_id: stream.orders[0][0].id,
            cust: o.cust,
            amount: 1,
            ts: stream.orders[0][0].ts + 10,
        })
        .collect();
    let late_tier = Tier {
        cust: 0,
        tier: 99,
        ts: T0 + 10_001,
    };
    let mut records: Vec<Record> = late_orders
        .iter()
        .map(|o| order_record((o.id % 2) as i32, *o))
        .collect();
    let end = Order {
        id: -1,
        cust: -1,
        amount: 0,
        ts: END,
    };
    records.extend((0..PARTITIONS).map(|p| order_record(p, end)));
    producer.send("orders", &records).await;
    let mut records: Vec<Record> = late_payments
        .iter()
        .map(|x| payment_record((x.id % 2) as i32, *x))
        .collect();
    let end_payment = Payment {
        id: -1,
        order_id: -1,
        cust: -1,
        amount: 0,
        ts: END,
    };
    records.extend((0..PARTITIONS).map(|p| payment_record(p, end_payment)));
    producer.send("payments", &records).await;
    let end_tier = Tier {
        cust: -1,
        tier: 0,
        ts: END,
    };
    producer
        .send("tiers", &[tier_record(late_tier), tier_record(end_tier)])
        .await;
    producer
        .send("levels", &[level_record(&(-1, Some(0), END))])
        .await;

    // The oracle's rows: the stream's (event-time joins) or every order sent (regular joins).
    let on_time_orders: Vec<Order> = stream.orders.iter().flatten().copied().collect();
    let on_time_payments: Vec<Payment> = stream.payments.iter().flatten().copied().collect();
    let mut customers = BTreeMap::new();
    for (cust, row) in &stream.customers {
        match row {
            Some(row) => customers.insert(*cust, row.clone()),
            None => customers.remove(cust),
        };
    }
    let levels = level_history(&stream.levels);
    let on_time = oracle_context(
        &on_time_orders,
        &on_time_payments,
        &stream.tiers,
        &customers,
        &levels,
    )
    .await;
    let mut all_orders = on_time_orders.clone();
    all_orders.extend(late_orders.iter().copied());
    all_orders.push(end);
    let all = oracle_context(
        &all_orders,
        &on_time_payments,
        &stream.tiers,
        &customers,
        &levels,
    )
    .await;
    for (view_sql, rows, oracle_sql) in ORACLES {
        let ctx = if rows == "all" { &all } else { &on_time };
        let mut want = batch_rows(ctx, oracle_sql).await;
        want.sort();
        assert!(want.len() >= 3, "{oracle_sql}: only {} rows", want.len());
        wait_until(&s, view_sql, &want).await;
    }

    // The late rows are logged by the event-time joins (the windowed views' late rows are
    // theirs; the join behind them never sees them).
    let late = query_rows(
        &s,
        "SELECT name, late_rows FROM weir_views
         WHERE name IN ('paid', 'repeat_orders', 'order_windows', 'payment_windows', 'tiered',
                        'leveled', 'windows_joined', 'with_customer', 'stamped')
         ORDER BY name",
    )
    .await;
    assert_eq!(
        late,
        vec![
            "leveled | 4",
            "order_windows | 4",
            "paid | 8",
            "payment_windows | 4",
            "repeat_orders | 8",
            "stamped | 0",
            "tiered | 5",
            "windows_joined | 0",
            "with_customer | 0",
        ]
    );

    // An upsert table's rows are versions of its primary key: joined on anything else, refused.
    let refused = s
        .execute_all(
            "CREATE MATERIALIZED VIEW by_level AS SELECT o.id, l.cust FROM orders AS o
             JOIN levels FOR SYSTEM_TIME AS OF o.ts AS l ON o.amount = l.level",
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        refused.contains("join it on exactly its primary key columns"),
        "{refused}"
    );

    // The processing-time join: every order once, each with a region its customer had at some
    // point during the stream, or none.
    let mut regions: BTreeSet<(i64, String)> = BTreeSet::new();
    for (cust, row) in &stream.customers {
        if let Some((_, region)) = row {
            regions.insert((*cust, region.clone()));
        }
    }
    let count = (orders_in + late_orders.len() + PARTITIONS as usize).to_string();
    wait_until(&s, "SELECT count(*) FROM stamped", &[count]).await;
    for row in query_rows(
        &s,
        "SELECT cust, region FROM stamped WHERE region IS NOT NULL",
    )
    .await
    {
        let (cust, region) = row.split_once(" | ").expect("two columns");
        let cust: i64 = cust.parse().expect("cust");
        assert!(
            regions.contains(&(cust, region.to_string())),
            "customer {cust} never had region {region}"
        );
    }
}
