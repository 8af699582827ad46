//! Prometheus metrics of a running Weir (`GET /metrics` on the `--http` listener), in the
//! OpenMetrics text format from the `prometheus-client` crate.
//!
//! The figures are the system tables' (`weir_source_partitions`, `weir_views`, `weir_sinks`,
//! `weir_checkpoints`) read at scrape time, so `/metrics` and SQL never disagree, plus each view's
//! watermark and the PostgreSQL front end's counters. Names follow Prometheus conventions: a
//! `weir_` prefix, base units in the name (`_seconds`, `_bytes`), `_total` on counters.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use futures::TryStreamExt;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use weir_pg::wire::WireStats;
use weir_sql::{Database, QueryResult};

/// One sample: its labels and value.
type Sample = (Vec<(&'static str, String)>, f64);

/// A metric family: name (counters without `_total`, which the encoder adds), help, kind, samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<Sample>,
}

/// Every family of one scrape.
#[derive(Debug)]
struct Scrape(Vec<Family>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for family in &self.0 {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
            if let [(labels, value)] = family.samples.as_slice()
                && labels.is_empty()
            {
                match family.kind {
                    MetricType::Counter => ConstCounter::new(*value).encode(metric)?,
                    _ => ConstGauge::new(*value).encode(metric)?,
                }
                continue;
            }
            for (labels, value) in &family.samples {
                let sample = metric.encode_family(labels)?;
                match family.kind {
                    MetricType::Counter => ConstCounter::new(*value).encode(sample)?,
                    _ => ConstGauge::new(*value).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

/// The rows of `sql` (a query over system tables).
async fn rows(db: &Arc<Database>, sql: &str) -> Result<Vec<RecordBatch>, String> {
    let mut results = db
        .session()
        .execute_all(sql)
        .await
        .map_err(|e| e.to_string())?;
    match results.pop() {
        Some(QueryResult::Rows { stream, .. }) => {
            stream.try_collect().await.map_err(|e| e.to_string())
        }
        _ => Ok(Vec::new()),
    }
}

/// Column `i` of every batch as text (NULL: empty).
fn texts(batches: &[RecordBatch], i: usize) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for b in batches {
        let column = cast(b.column(i), &DataType::Utf8).map_err(|e| e.to_string())?;
        let column = column.as_string::<i32>();
        out.extend((0..column.len()).map(|r| {
            if column.is_valid(r) {
                column.value(r).to_string()
            } else {
                String::new()
            }
        }));
    }
    Ok(out)
}

/// Column `i` of every batch as numbers (NULL: None).
fn numbers(batches: &[RecordBatch], i: usize) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for b in batches {
        let column = cast(b.column(i), &DataType::Float64).map_err(|e| e.to_string())?;
        let column = column.as_primitive::<Float64Type>();
        out.extend(column.iter());
    }
    Ok(out)
}

/// A family with one sample per row that has a value in column `value`.
fn family(
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &[(&'static str, &Vec<String>)],
    values: Vec<Option<f64>>,
) -> Family {
    let samples = values
        .into_iter()
        .enumerate()
        .filter_map(|(row, v)| {
            let v = v?;
            let labels = labels
                .iter()
                .map(|(name, column)| (*name, column.get(row).cloned().unwrap_or_default()))
                .collect();
            Some((labels, v))
        })
        .collect();
    Family {
        name,
        help,
        kind,
        samples,
    }
}

/// Renders every metric of `db` and the front end's `wire` counters.
pub async fn render(db: &Arc<Database>, wire: &WireStats) -> Result<String, String> {
    use MetricType::{Counter, Gauge};
    let mut families = Vec::new();
    let now_seconds = weir_engine::source_metrics::now_millis() as f64 / 1000.0;

    let p = rows(
        db,
        "SELECT source_name, view_name, CAST(partition AS VARCHAR) AS p, records, errors, lag, \
                arrow_cast(watermark, 'Int64') AS w, CASE WHEN idle THEN 1 ELSE 0 END AS i \
         FROM weir_source_partitions",
    )
    .await?;
    let (source, view, partition) = (texts(&p, 0)?, texts(&p, 1)?, texts(&p, 2)?);
    let labels = [
        ("source", &source),
        ("view", &view),
        ("partition", &partition),
    ];
    families.push(family(
        "weir_source_records",
        "Records a source's reader delivered, per view reading it and partition.",
        Counter,
        &labels,
        numbers(&p, 3)?,
    ));
    families.push(family(
        "weir_source_errors",
        "Records a source's reader rejected to weir_source_errors.",
        Counter,
        &labels,
        numbers(&p, 4)?,
    ));
    families.push(family("weir_source_lag_records", "Records in the partition not yet read (the broker's high watermark minus the reader's offset).", Gauge, &labels, numbers(&p, 5)?));
    let watermarks: Vec<Option<f64>> = numbers(&p, 6)?
        .into_iter()
        .map(|w| w.map(|ns| ns / 1e9))
        .collect();
    families.push(family(
        "weir_source_watermark_seconds",
        "Event-time watermark of the partition (seconds since the epoch).",
        Gauge,
        &labels,
        watermarks,
    ));
    families.push(family(
        "weir_source_idle",
        "1 while the partition is idle and does not hold the watermark back.",
        Gauge,
        &labels,
        numbers(&p, 7)?,
    ));

    let v = rows(
        db,
        "SELECT name, rows_in, final_rows, open_rows, late_rows, state_bytes, memory_bytes, disk_bytes, \
                CASE WHEN status LIKE 'failed%' THEN 1 ELSE 0 END FROM weir_views",
    )
    .await?;
    let name = texts(&v, 0)?;
    let labels = [("view", &name)];
    families.push(family(
        "weir_view_rows_in",
        "Rows the view's pipeline took in.",
        Counter,
        &labels,
        numbers(&v, 1)?,
    ));
    families.push(family(
        "weir_view_final_rows",
        "Rows of the view that are final (their window closed, or the view is append-only).",
        Gauge,
        &labels,
        numbers(&v, 2)?,
    ));
    families.push(family(
        "weir_view_open_rows",
        "Rows of the view still open to change.",
        Gauge,
        &labels,
        numbers(&v, 3)?,
    ));
    families.push(family(
        "weir_view_late_rows",
        "Rows that arrived after their window closed and were left out.",
        Counter,
        &labels,
        numbers(&v, 4)?,
    ));
    families.push(family(
        "weir_view_state_bytes",
        "Bytes of operator state (open windows, join sides, per-key detectors).",
        Gauge,
        &labels,
        numbers(&v, 5)?,
    ));
    families.push(family(
        "weir_view_memory_bytes",
        "Bytes of the view's rows in memory.",
        Gauge,
        &labels,
        numbers(&v, 6)?,
    ));
    families.push(family(
        "weir_view_disk_bytes",
        "Bytes of the view's rows in segments.",
        Gauge,
        &labels,
        numbers(&v, 7)?,
    ));
    families.push(family(
        "weir_view_failed",
        "1 when the view stopped on an error (weir_views says which).",
        Gauge,
        &labels,
        numbers(&v, 8)?,
    ));
    let mut watermark = Vec::new();
    let mut delay = Vec::new();
    for view_name in &name {
        let time = match db.catalog().view(view_name) {
            Some(entry) => match entry.fanout.watermark().await {
                Some(weir_engine::message::Watermark::EventTime(t))
                    if t > i64::MIN && t < i64::MAX =>
                {
                    Some(t as f64 / 1e9)
                }
                _ => None,
            },
            None => None,
        };
        watermark.push(time);
        delay.push(time.map(|t| (now_seconds - t).max(0.0)));
    }
    families.push(family(
        "weir_view_watermark_seconds",
        "The view's event-time watermark (seconds since the epoch).",
        Gauge,
        &labels,
        watermark,
    ));
    families.push(family(
        "weir_view_watermark_delay_seconds",
        "How far the view's watermark is behind the wall clock.",
        Gauge,
        &labels,
        delay,
    ));

    let s = rows(
        db,
        "SELECT name, view, connector, rows_written, rows_pending, lag_ms, \
                CASE WHEN last_error IS NULL THEN 0 ELSE 1 END FROM weir_sinks",
    )
    .await?;
    let (sink, sink_view, connector) = (texts(&s, 0)?, texts(&s, 1)?, texts(&s, 2)?);
    let labels = [
        ("sink", &sink),
        ("view", &sink_view),
        ("connector", &connector),
    ];
    families.push(family(
        "weir_sink_rows_written",
        "Rows the sink delivered (committed).",
        Counter,
        &labels,
        numbers(&s, 3)?,
    ));
    families.push(family(
        "weir_sink_rows_pending",
        "Rows of the view the sink has not delivered yet.",
        Gauge,
        &labels,
        numbers(&s, 4)?,
    ));
    let lag: Vec<Option<f64>> = numbers(&s, 5)?
        .into_iter()
        .map(|ms| ms.map(|ms| ms / 1000.0))
        .collect();
    families.push(family(
        "weir_sink_lag_seconds",
        "How long the oldest undelivered row has waited.",
        Gauge,
        &labels,
        lag,
    ));
    families.push(family(
        "weir_sink_error",
        "1 while the sink's last attempt failed (weir_sinks says why).",
        Gauge,
        &labels,
        numbers(&s, 6)?,
    ));

    // The last checkpoint, without an epoch label (a series per epoch would never end).
    let c = rows(
        db,
        "SELECT epoch, duration_ms, bytes, \
                CASE WHEN status IN ('committed', 'recovered') THEN 0 ELSE 1 END AS failed \
         FROM weir_checkpoints ORDER BY epoch DESC LIMIT 1",
    )
    .await?;
    let last = |column: usize, scale: f64| -> Result<Vec<Sample>, String> {
        Ok(numbers(&c, column)?
            .into_iter()
            .flatten()
            .map(|v| (Vec::new(), v * scale))
            .collect())
    };
    for (name, help, column, scale) in [
        (
            "weir_checkpoint_epoch",
            "Epoch of the last checkpoint.",
            0,
            1.0,
        ),
        (
            "weir_checkpoint_duration_seconds",
            "How long the last checkpoint took.",
            1,
            0.001,
        ),
        (
            "weir_checkpoint_bytes",
            "Bytes of state the last checkpoint holds.",
            2,
            1.0,
        ),
        (
            "weir_checkpoint_failed",
            "1 when the last checkpoint failed (weir_checkpoints says why).",
            3,
            1.0,
        ),
    ] {
        families.push(Family {
            name,
            help,
            kind: Gauge,
            samples: last(column, scale)?,
        });
    }

    let w = wire.figures();
    for (name, help, kind, value) in [
        (
            "weir_pgwire_connections",
            "PostgreSQL connections accepted.",
            Counter,
            w.connections_total,
        ),
        (
            "weir_pgwire_open_connections",
            "PostgreSQL connections open.",
            Gauge,
            w.connections_open,
        ),
        (
            "weir_pgwire_statements",
            "Statements run over the PostgreSQL protocol.",
            Counter,
            w.statements_total,
        ),
        (
            "weir_pgwire_statement_errors",
            "Statements over the PostgreSQL protocol that failed.",
            Counter,
            w.errors_total,
        ),
    ] {
        families.push(Family {
            name,
            help,
            kind,
            samples: vec![(Vec::new(), value as f64)],
        });
    }

    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(families)));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(|e| e.to_string())?;
    Ok(text)
}
