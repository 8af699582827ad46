//! Rolling aggregates over a key's recent rows, for streaming OVER windows:
//! `avg(x) OVER (PARTITION BY k ORDER BY ts ROWS 9 PRECEDING)`,
//! `max(x) OVER (… RANGE INTERVAL '5 minutes' PRECEDING)`, and the running form
//! `sum(x) OVER (PARTITION BY k ORDER BY ts)` (from the first row).
//!
//! ```sql
//! CREATE MATERIALIZED VIEW smoothed AS
//! SELECT sensor_id, ts, temperature,
//!        avg(temperature) OVER (PARTITION BY sensor_id ORDER BY ts ROWS 9 PRECEDING) AS avg10,
//!        max(temperature) OVER (PARTITION BY sensor_id ORDER BY ts RANGE INTERVAL '1 minute' PRECEDING) AS max1m
//! FROM readings;
//! ```
//!
//! Per key the state is the frame's rows (event time and value: NULLs occupy ROWS frames too)
//! plus running sums (count, sum, sum of squares by Welford) and, for min / max, a monotonic
//! deque; every row is O(1) amortised whatever the frame's length, and the running form keeps
//! no rows at all. A RANGE frame ends at the current row's last peer (rows with the same event
//! time), as in SQL: peers are released together, since the watermark passes them at once.
//!
//! Supported: count, sum, avg, min, max, stddev / stddev_samp, stddev_pop, var / var_samp,
//! var_pop over numeric inputs, with frames ending at CURRENT ROW (a frame reaching FOLLOWING
//! rows would hold every row back until its followers arrive). Results are computed in DOUBLE
//! and cast to the type the plan declares (exact for integer sums below 2^53).

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Builder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampNanosecondType};
use datafusion::common::{Result, exec_datafusion_err};
use serde::{Deserialize, Serialize};

use crate::detectors::moments::Welford;
use crate::keyed::{KeyedWindowFunction, WindowState};

/// The aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Non-NULL values.
    Count,
    /// Sum.
    Sum,
    /// Mean.
    Avg,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Standard deviation; `true` for the population form.
    Stddev(bool),
    /// Variance; `true` for the population form.
    Variance(bool),
}

impl Aggregate {
    /// The aggregate called `name`, if supported.
    pub fn named(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "count" => Aggregate::Count,
            "sum" => Aggregate::Sum,
            "avg" | "mean" => Aggregate::Avg,
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            "stddev" | "stddev_samp" => Aggregate::Stddev(false),
            "stddev_pop" => Aggregate::Stddev(true),
            "var" | "var_samp" | "variance" => Aggregate::Variance(false),
            "var_pop" => Aggregate::Variance(true),
            _ => return None,
        })
    }
}

/// Where a frame starts (it always ends at the current row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStart {
    /// From the key's first row.
    Unbounded,
    /// `n PRECEDING` rows.
    Rows(u64),
    /// `span PRECEDING` in event time (nanoseconds, or the ORDER BY column's units).
    Range(i64),
}

/// One rolling aggregate call.
#[derive(Debug)]
pub struct RollingFunction {
    name: String,
    aggregate: Aggregate,
    start: FrameStart,
    /// RANGE frames (and the default frame) include the current row's peers.
    peers: bool,
    /// Argument index of the value (None for `count(*)`).
    input: Option<usize>,
    /// Argument index of the event time.
    time: usize,
}

impl RollingFunction {
    /// `aggregate(args[input]) OVER (… frame)`, with the event time at `args[time]`.
    pub fn new(
        name: &str,
        aggregate: Aggregate,
        start: FrameStart,
        peers: bool,
        input: Option<usize>,
        time: usize,
    ) -> Self {
        Self {
            name: name.to_string(),
            aggregate,
            start,
            peers,
            input,
            time,
        }
    }
}

impl KeyedWindowFunction for RollingFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn new_state(&self) -> Box<dyn WindowState> {
        Box::new(RollingState {
            aggregate: self.aggregate,
            start: self.start,
            peers: self.peers,
            input: self.input,
            time: self.time,
            saved: Frame::default(),
        })
    }

    fn load_state(&self, bytes: &[u8]) -> Result<Box<dyn WindowState>> {
        let mut saved: Frame = postcard::from_bytes(bytes).map_err(|e| {
            exec_datafusion_err!("{}: checkpointed state does not decode: {e}", self.name)
        })?;
        saved.rebuild();
        Ok(Box::new(RollingState {
            aggregate: self.aggregate,
            start: self.start,
            peers: self.peers,
            input: self.input,
            time: self.time,
            saved,
        }))
    }
}

/// The frame of one key.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Frame {
    /// Rows in the frame, oldest first: (event time, value); empty for the running form.
    rows: VecDeque<(i64, Option<f64>)>,
    /// Sequence number of `rows[0]`.
    first: u64,
    /// Moments of the frame's non-NULL values.
    moments: Welford,
    sum: f64,
    /// Running min / max of the unbounded form.
    min: Option<f64>,
    max: Option<f64>,
    /// Monotonic deques of (sequence number, value) for sliding min / max; rebuilt on load.
    #[serde(skip)]
    minima: VecDeque<(u64, f64)>,
    #[serde(skip)]
    maxima: VecDeque<(u64, f64)>,
}

impl Frame {
    fn push(&mut self, aggregate: Aggregate, start: FrameStart, ts: i64, x: Option<f64>) {
        if let Some(v) = x {
            self.moments.add(v);
            self.sum += v;
            self.min = Some(self.min.map_or(v, |m| m.min(v)));
            self.max = Some(self.max.map_or(v, |m| m.max(v)));
        }
        if start == FrameStart::Unbounded {
            return;
        }
        let seq = self.first + self.rows.len() as u64;
        self.rows.push_back((ts, x));
        if let (Some(v), Aggregate::Min | Aggregate::Max) = (x, aggregate) {
            self.push_extreme(seq, v, aggregate == Aggregate::Min);
        }
        // Evict what fell out of the frame, after adding (the order DataFusion's sliding
        // accumulators use, so sums round the same way).
        while let Some(&(old_ts, old)) = self.rows.front() {
            let outside = match start {
                FrameStart::Rows(n) => self.rows.len() as u64 > n + 1,
                FrameStart::Range(span) => old_ts < ts.saturating_sub(span),
                FrameStart::Unbounded => false,
            };
            if !outside {
                break;
            }
            self.rows.pop_front();
            if let Some(v) = old {
                self.moments.remove(v);
                self.sum -= v;
            }
            let gone = self.first;
            self.first += 1;
            while self.minima.front().is_some_and(|&(s, _)| s <= gone) {
                self.minima.pop_front();
            }
            while self.maxima.front().is_some_and(|&(s, _)| s <= gone) {
                self.maxima.pop_front();
            }
        }
    }

    fn push_extreme(&mut self, seq: u64, v: f64, minimum: bool) {
        let deque = if minimum {
            &mut self.minima
        } else {
            &mut self.maxima
        };
        while deque
            .back()
            .is_some_and(|&(_, b)| if minimum { b >= v } else { b <= v })
        {
            deque.pop_back();
        }
        deque.push_back((seq, v));
    }

    fn value(&self, aggregate: Aggregate, start: FrameStart) -> Option<f64> {
        let n = self.moments.n();
        let sliding = start != FrameStart::Unbounded;
        match aggregate {
            Aggregate::Count => Some(n as f64),
            _ if n == 0 => None,
            Aggregate::Sum => Some(self.sum),
            Aggregate::Avg => Some(self.sum / n as f64),
            Aggregate::Min if sliding => self.minima.front().map(|m| m.1),
            Aggregate::Max if sliding => self.maxima.front().map(|m| m.1),
            Aggregate::Min => self.min,
            Aggregate::Max => self.max,
            Aggregate::Stddev(population) | Aggregate::Variance(population) => {
                if !population && n < 2 {
                    return None;
                }
                let divisor = if population { n as f64 } else { (n - 1) as f64 };
                let variance = self.moments.m2() / divisor;
                Some(if matches!(aggregate, Aggregate::Stddev(_)) {
                    variance.sqrt()
                } else {
                    variance
                })
            }
        }
    }

    fn rebuild(&mut self) {
        let rows: Vec<(u64, f64)> = self
            .rows
            .iter()
            .enumerate()
            .filter_map(|(i, &(_, x))| x.map(|v| (self.first + i as u64, v)))
            .collect();
        for (seq, v) in rows {
            self.push_extreme(seq, v, true);
            self.push_extreme(seq, v, false);
        }
    }
}

#[derive(Debug)]
struct RollingState {
    aggregate: Aggregate,
    start: FrameStart,
    peers: bool,
    input: Option<usize>,
    time: usize,
    saved: Frame,
}

impl WindowState for RollingState {
    fn evaluate(&mut self, args: &[ArrayRef]) -> Result<ArrayRef> {
        let times = args
            .get(self.time)
            .ok_or_else(|| exec_datafusion_err!("rolling aggregate: missing event time"))?;
        let times = cast(times, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
        let times = times.as_primitive::<TimestampNanosecondType>();
        let raw = self.input.and_then(|i| args.get(i));
        // count(x) needs only which rows are NULL, of any type; the others need numbers.
        let values = match raw {
            Some(v) if self.aggregate != Aggregate::Count => Some(cast(v, &DataType::Float64)?),
            _ => None,
        };
        let values = values.as_ref().map(|v| v.as_primitive::<Float64Type>());
        let n = times.len();
        let mut out: Vec<Option<f64>> = Vec::with_capacity(n);
        for i in 0..n {
            let ts = if times.is_valid(i) {
                times.value(i)
            } else {
                i64::MIN
            };
            // count(*) counts every row; other aggregates skip NULL and non-finite values.
            let x = match (values, raw) {
                (Some(v), _) if v.is_valid(i) => Some(v.value(i)),
                (Some(_), _) => None,
                (None, Some(r)) if r.is_null(i) => None,
                (None, _) => Some(1.0),
            };
            self.saved.push(self.aggregate, self.start, ts, x);
            out.push(self.saved.value(self.aggregate, self.start));
        }
        if self.peers {
            // A row's RANGE frame reaches its last peer: rows of one event time share a value.
            let mut end = n;
            while end > 0 {
                let mut start = end - 1;
                while start > 0 && times.value(start - 1) == times.value(end - 1) {
                    start -= 1;
                }
                let last = out[end - 1];
                out[start..end].fill(last);
                end = start;
            }
        }
        let mut builder = Float64Builder::with_capacity(n);
        builder.extend(out);
        Ok(Arc::new(builder.finish()))
    }

    fn save(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(&self.saved)
            .map_err(|e| exec_datafusion_err!("rolling aggregate: state does not encode: {e}"))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.saved.rows.capacity() * 24
            + (self.saved.minima.capacity() + self.saved.maxima.capacity()) * 16
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use datafusion::arrow::array::{Float64Array, Int64Array, TimestampNanosecondArray};

    use super::*;

    /// Rows of one key: (event time, value), with NULLs and repeated event times.
    fn rows() -> Vec<(i64, Option<f64>)> {
        let mut seed = 3u64;
        let mut ts = 0;
        (0..400)
            .map(|i| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ts += [0, 1, 1, 2, 5][(seed >> 60) as usize % 5];
                let v = ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 10.0;
                (ts, if i % 17 == 5 { None } else { Some(v) })
            })
            .collect()
    }

    /// The frame of row `i`, computed from scratch.
    fn naive(
        rows: &[(i64, Option<f64>)],
        i: usize,
        aggregate: Aggregate,
        start: FrameStart,
        peers: bool,
    ) -> Option<f64> {
        let mut end = i;
        while peers && end + 1 < rows.len() && rows[end + 1].0 == rows[i].0 {
            end += 1;
        }
        let first = match start {
            FrameStart::Unbounded => 0,
            FrameStart::Rows(n) => end.saturating_sub(n as usize),
            FrameStart::Range(span) => rows
                .iter()
                .position(|r| r.0 >= rows[end].0 - span)
                .unwrap_or(0),
        };
        let values: Vec<f64> = rows[first..=end].iter().filter_map(|r| r.1).collect();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let m2: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
        match aggregate {
            Aggregate::Count => Some(n),
            _ if values.is_empty() => None,
            Aggregate::Sum => Some(values.iter().sum()),
            Aggregate::Avg => Some(mean),
            Aggregate::Min => values.iter().copied().reduce(f64::min),
            Aggregate::Max => values.iter().copied().reduce(f64::max),
            Aggregate::Variance(true) => Some(m2 / n),
            Aggregate::Stddev(false) if n >= 2.0 => Some((m2 / (n - 1.0)).sqrt()),
            Aggregate::Variance(false) if n >= 2.0 => Some(m2 / (n - 1.0)),
            _ => None,
        }
    }

    #[test]
    fn every_aggregate_and_frame_equals_recomputing_the_frame_across_batches_and_restores() {
        let data = rows();
        let aggregates = [
            Aggregate::Count,
            Aggregate::Sum,
            Aggregate::Avg,
            Aggregate::Min,
            Aggregate::Max,
            Aggregate::Stddev(false),
            Aggregate::Variance(true),
            Aggregate::Variance(false),
        ];
        let frames = [
            (FrameStart::Unbounded, true),
            (FrameStart::Rows(0), false),
            (FrameStart::Rows(9), false),
            (FrameStart::Range(7), true),
            (FrameStart::Range(0), true),
        ];
        for aggregate in aggregates {
            for (start, peers) in frames {
                let function = RollingFunction::new("f", aggregate, start, peers, Some(0), 1);
                let mut state = function.new_state();
                let mut got = Vec::new();
                // Batches end between peers' groups, as watermark flushes do.
                let mut from = 0;
                for (k, cut) in [37, 150, 151, 290, data.len()].into_iter().enumerate() {
                    let mut cut = cut;
                    while cut < data.len() && data[cut].0 == data[cut - 1].0 {
                        cut += 1;
                    }
                    let cut = cut.max(from);
                    let part = &data[from..cut];
                    let values: ArrayRef = Arc::new(Float64Array::from(
                        part.iter().map(|r| r.1).collect::<Vec<_>>(),
                    ));
                    let times: ArrayRef = Arc::new(TimestampNanosecondArray::from(
                        part.iter().map(|r| r.0).collect::<Vec<_>>(),
                    ));
                    let out = state.evaluate(&[values, times]).unwrap();
                    got.extend(out.as_primitive::<Float64Type>().iter());
                    if k % 2 == 1 {
                        let bytes = state.save().unwrap();
                        state = function.load_state(&bytes).unwrap();
                    }
                    from = cut;
                }
                assert_eq!(got.len(), data.len());
                for (i, g) in got.iter().enumerate() {
                    let want = naive(&data, i, aggregate, start, peers);
                    let close = match (g, want) {
                        (Some(g), Some(w)) => (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                        (None, None) => true,
                        _ => false,
                    };
                    assert!(close, "{aggregate:?} {start:?} row {i}: {g:?} vs {want:?}");
                }
            }
        }
    }

    #[test]
    fn count_star_counts_rows_and_count_of_text_skips_nulls() {
        let function = RollingFunction::new(
            "count",
            Aggregate::Count,
            FrameStart::Rows(2),
            false,
            Some(0),
            1,
        );
        let mut state = function.new_state();
        let text: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(vec![
            Some("a"),
            None,
            Some("b"),
            Some("c"),
        ]));
        let times: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3, 4]));
        let out = state.evaluate(&[text, times]).unwrap();
        let counts: Vec<Option<f64>> = out.as_primitive::<Float64Type>().iter().collect();
        assert_eq!(counts, vec![Some(1.0), Some(1.0), Some(2.0), Some(2.0)]);
    }
}
