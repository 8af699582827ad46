//! `anomaly_alert`: turns per-row results into incident events, so a sink gets one event per
//! incident instead of one per anomalous row.
//!
//! ```sql
//! CREATE MATERIALIZED VIEW alerts AS
//! SELECT sensor_id, ts, alert['event'] AS event, alert['severity'] AS severity,
//!        alert['started_at'] AS started_at, alert['peak_score'] AS peak_score
//! FROM (SELECT sensor_id, ts,
//!              anomaly_alert(r, min_duration => INTERVAL '3 seconds', cooldown => INTERVAL '30 seconds')
//!                OVER (PARTITION BY sensor_id ORDER BY ts) AS alert
//!       FROM scored)
//! WHERE alert IS NOT NULL;
//! ```
//!
//! Per key, a small state machine over each row's `severity`:
//!
//! ```text
//!  quiet ──abnormal──▶ pending ──abnormal for min_duration──▶ OPEN ──more severe──▶ ESCALATE
//!    ▲                   │ normal                              │ normal
//!    └───────────────────┘                                     ▼
//!    └──────────────── CLOSE ◀── normal for cooldown ── clearing ──abnormal──▶ (same incident)
//! ```
//!
//! `min_duration` and `cooldown` are event time (INTERVAL) or rows (integer); both default to
//! 0 (open on the first abnormal row, close on the first normal one). Rows in warm-up or with a
//! NULL result change nothing. The output is NULL except on event rows: a struct of `event`
//! ('OPEN' | 'ESCALATE' | 'CLOSE'), the incident's `severity`, `started_at`, `rows` (abnormal
//! rows so far) and `peak_score`.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, Int64Builder, NullBufferBuilder, StringBuilder,
    StructArray, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Fields, Float64Type, TimeUnit, TimestampNanosecondType,
};
use datafusion::common::{Result, exec_datafusion_err};
use serde::{Deserialize, Serialize};

use crate::keyed::{KeyedWindowFunction, WindowState};
use crate::params::{Params, Span};
use crate::result::Severity;

/// The struct `anomaly_alert` returns.
pub fn alert_type() -> DataType {
    DataType::Struct(alert_fields())
}

fn alert_fields() -> Fields {
    Fields::from(vec![
        Field::new("event", DataType::Utf8, true),
        Field::new("severity", DataType::Utf8, true),
        Field::new(
            "started_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
        Field::new("rows", DataType::Int64, true),
        Field::new("peak_score", DataType::Float64, true),
    ])
}

/// One `anomaly_alert` call.
#[derive(Debug)]
pub struct AlertFunction {
    min_duration: Span,
    cooldown: Span,
    input: usize,
    time: Option<usize>,
}

impl AlertFunction {
    /// Reads the call's parameters.
    pub fn from_params(params: &Params) -> Result<Self> {
        let span = |name: &str| match params.span(name, Span::Rows(1)) {
            Ok(s) => Ok(s),
            // 0 rows is a valid "no delay" here.
            Err(_) if params.count(name, 1).is_ok_and(|n| n == 0) => Ok(Span::Rows(0)),
            Err(e) => Err(e),
        };
        let min_duration = match span("min_duration")? {
            Span::Rows(n) => Span::Rows(n.saturating_sub(1)),
            t => t,
        };
        Ok(Self {
            min_duration,
            cooldown: match span("cooldown")? {
                Span::Rows(n) => Span::Rows(n.saturating_sub(1)),
                t => t,
            },
            input: params.inputs.first().copied().unwrap_or(0),
            time: params.time,
        })
    }
}

impl KeyedWindowFunction for AlertFunction {
    fn name(&self) -> &str {
        "anomaly_alert"
    }

    fn new_state(&self) -> Box<dyn WindowState> {
        Box::new(AlertState {
            min_duration: self.min_duration,
            cooldown: self.cooldown,
            input: self.input,
            time: self.time,
            saved: Saved::default(),
        })
    }

    fn load_state(&self, bytes: &[u8]) -> Result<Box<dyn WindowState>> {
        let saved = postcard::from_bytes(bytes).map_err(|e| {
            exec_datafusion_err!("anomaly_alert: checkpointed state does not decode: {e}")
        })?;
        Ok(Box::new(AlertState {
            min_duration: self.min_duration,
            cooldown: self.cooldown,
            input: self.input,
            time: self.time,
            saved,
        }))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
enum Phase {
    #[default]
    Quiet,
    /// Abnormal since `since`, not yet for `min_duration`.
    Pending,
    /// An incident is open.
    Open,
    /// An incident is open and has been normal since `since`.
    Clearing,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    phase: Phase,
    /// Event time (or row number) the current phase's condition began.
    since: i64,
    /// Rows since then.
    since_rows: u64,
    started_at: i64,
    severity: u8,
    rows: u64,
    peak: f64,
    /// Rows seen (the time axis without event time).
    row: i64,
}

#[derive(Debug)]
struct AlertState {
    min_duration: Span,
    cooldown: Span,
    input: usize,
    time: Option<usize>,
    saved: Saved,
}

fn elapsed(span: Span, since: i64, since_rows: u64, now: i64) -> bool {
    match span {
        Span::Rows(n) => since_rows >= n,
        Span::Time(t) => now.saturating_sub(since) >= t,
    }
}

fn level(severity: Severity) -> u8 {
    severity as u8
}

fn severity_of(level: u8) -> Severity {
    match level {
        2 => Severity::Critical,
        1 => Severity::Warning,
        _ => Severity::Normal,
    }
}

impl AlertState {
    /// Advances the machine by one judged row; returns the event, if any.
    fn step(&mut self, severity: Severity, score: f64, ts: i64) -> Option<&'static str> {
        let s = &mut self.saved;
        let abnormal = severity != Severity::Normal;
        match (s.phase, abnormal) {
            (Phase::Quiet, false) => None,
            (Phase::Quiet, true) => {
                *s = Saved {
                    phase: Phase::Pending,
                    since: ts,
                    since_rows: 0,
                    started_at: ts,
                    severity: level(severity),
                    rows: 1,
                    peak: score,
                    row: s.row,
                };
                if elapsed(self.min_duration, s.since, s.since_rows, ts) {
                    s.phase = Phase::Open;
                    return Some("OPEN");
                }
                None
            }
            (Phase::Pending, true) => {
                s.since_rows += 1;
                s.rows += 1;
                s.peak = s.peak.max(score);
                s.severity = s.severity.max(level(severity));
                if elapsed(self.min_duration, s.since, s.since_rows, ts) {
                    s.phase = Phase::Open;
                    return Some("OPEN");
                }
                None
            }
            (Phase::Pending, false) => {
                s.phase = Phase::Quiet;
                None
            }
            (Phase::Open | Phase::Clearing, true) => {
                s.phase = Phase::Open;
                s.rows += 1;
                s.peak = s.peak.max(score);
                if level(severity) > s.severity {
                    s.severity = level(severity);
                    return Some("ESCALATE");
                }
                None
            }
            (Phase::Open, false) => {
                s.phase = Phase::Clearing;
                s.since = ts;
                s.since_rows = 0;
                if elapsed(self.cooldown, s.since, s.since_rows, ts) {
                    s.phase = Phase::Quiet;
                    return Some("CLOSE");
                }
                None
            }
            (Phase::Clearing, false) => {
                s.since_rows += 1;
                if elapsed(self.cooldown, s.since, s.since_rows, ts) {
                    s.phase = Phase::Quiet;
                    return Some("CLOSE");
                }
                None
            }
        }
    }
}

impl WindowState for AlertState {
    fn evaluate(&mut self, args: &[ArrayRef]) -> Result<ArrayRef> {
        let results = args
            .get(self.input)
            .ok_or_else(|| exec_datafusion_err!("anomaly_alert: missing results"))?;
        let Some(results) = results.as_struct_opt() else {
            return Err(exec_datafusion_err!(
                "anomaly_alert: r must be a detector result"
            ));
        };
        let severity = results
            .column_by_name("severity")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| {
                exec_datafusion_err!(
                    "anomaly_alert: r must be a detector result (no severity field)"
                )
            })?;
        let warmup = results
            .column_by_name("warmup")
            .and_then(|c| c.as_boolean_opt());
        let score = match results.column_by_name("score") {
            Some(c) => cast(c, &DataType::Float64)?,
            None => {
                return Err(exec_datafusion_err!(
                    "anomaly_alert: r must be a detector result (no score field)"
                ));
            }
        };
        let score = score.as_primitive::<Float64Type>();
        let times = match self.time.and_then(|i| args.get(i)) {
            Some(t) => Some(cast(t, &DataType::Timestamp(TimeUnit::Nanosecond, None))?),
            None => None,
        };
        let times = times
            .as_ref()
            .map(|t| t.as_primitive::<TimestampNanosecondType>());
        let n = results.len();
        let (mut event, mut sev, mut started, mut rows, mut peak) = (
            StringBuilder::new(),
            StringBuilder::new(),
            TimestampMicrosecondBuilder::with_capacity(n).with_timezone("+00:00"),
            Int64Builder::with_capacity(n),
            Float64Builder::with_capacity(n),
        );
        let mut validity = NullBufferBuilder::new(n);
        for i in 0..n {
            self.saved.row += 1;
            let ts = match times {
                Some(t) if t.is_null(i) => None,
                Some(t) => Some(t.value(i)),
                None => Some(self.saved.row),
            };
            let judged = results.is_valid(i)
                && severity.is_valid(i)
                && !warmup.is_some_and(|w| w.is_valid(i) && w.value(i));
            let fired = match (ts, judged) {
                (Some(ts), true) => {
                    let s = Severity::parse(severity.value(i)).unwrap_or(Severity::Normal);
                    let x = if score.is_valid(i) {
                        score.value(i)
                    } else {
                        0.0
                    };
                    self.step(s, x, ts)
                }
                _ => None,
            };
            match fired {
                Some(e) => {
                    let s = &self.saved;
                    event.append_value(e);
                    sev.append_value(severity_of(s.severity).as_str());
                    started.append_value(if self.time.is_some() {
                        s.started_at / 1000
                    } else {
                        0
                    });
                    rows.append_value(s.rows as i64);
                    peak.append_value(s.peak);
                    validity.append_non_null();
                }
                None => {
                    event.append_null();
                    sev.append_null();
                    started.append_null();
                    rows.append_null();
                    peak.append_null();
                    validity.append_null();
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(event.finish()),
            Arc::new(sev.finish()),
            Arc::new(started.finish()),
            Arc::new(rows.finish()),
            Arc::new(peak.finish()),
        ];
        Ok(Arc::new(StructArray::try_new(
            alert_fields(),
            columns,
            validity.finish(),
        )?))
    }

    fn save(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(&self.saved)
            .map_err(|e| exec_datafusion_err!("anomaly_alert: state does not encode: {e}"))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}
