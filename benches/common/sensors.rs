//! Data set D of anomaly.md §7: the sensors generator's injected anomalies, many keys at once,
//! through the per-key state machines the SQL functions run (one state per sensor, fed each
//! sensor's rows flush by flush, as the streaming OVER operator does).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StructArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field};
use weir_connectors::datagen::{SensorConfig, SensorGenerator};
use weir_udf::{KeyedWindowFunction, WindowState};

/// What one detector did over the sensors.
pub struct SensorRun {
    /// Injected anomalies judged (after warm-up) and how many were flagged.
    pub injected: usize,
    pub found: usize,
    /// Severity of injected rows: NORMAL, WARNING, CRITICAL.
    pub injected_severity: [usize; 3],
    /// Severity of normal rows.
    pub normal_severity: [usize; 3],
    /// False alerts (normal rows flagged) per sensor-day of event time.
    pub false_per_sensor_day: f64,
    /// µs per event including splitting flushes by key, and the same loop without detectors.
    pub micros: f64,
    pub ceiling_micros: f64,
    /// State per key at the end.
    pub bytes_per_key: usize,
}

/// Runs `function` over `sensors` sensors × `per_sensor` readings (one a second each, in
/// flushes of `flush_seconds`), on `temperature` alone or on ROW(temperature, pressure,
/// vibration).
pub fn run(
    function: &Arc<dyn KeyedWindowFunction>,
    multivariate: bool,
    sensors: u64,
    per_sensor: u64,
    flush_seconds: u64,
) -> SensorRun {
    let generator = SensorGenerator::new(SensorConfig {
        sensors,
        rate: None,
        seed: 3,
        events: None,
        start_nanos: 1_704_067_200_000_000_000,
        out_of_order: std::time::Duration::ZERO,
        anomaly_rate: 0.001,
    });
    let mut states: Vec<Box<dyn WindowState>> =
        (0..sensors).map(|_| function.new_state()).collect();
    let rows_per_flush = (sensors * flush_seconds) as usize;
    // Row positions of each sensor inside a flush (readings go round-robin over sensors).
    let positions: Vec<UInt32Array> = (0..sensors)
        .map(|s| {
            UInt32Array::from_iter_values(
                (s..rows_per_flush as u64)
                    .step_by(sensors as usize)
                    .map(|i| i as u32),
            )
        })
        .collect();
    let mut run = SensorRun {
        injected: 0,
        found: 0,
        injected_severity: [0; 3],
        normal_severity: [0; 3],
        false_per_sensor_day: 0.0,
        micros: 0.0,
        ceiling_micros: 0.0,
        bytes_per_key: 0,
    };
    let (mut busy, mut ceiling) = (0.0, 0.0);
    let flushes = per_sensor / flush_seconds;
    for f in 0..flushes {
        let batch = generator
            .readings(f * rows_per_flush as u64, rows_per_flush)
            .expect("readings");
        let input: ArrayRef = if multivariate {
            let fields = ["temperature", "pressure", "vibration"]
                .map(|n| Arc::new(Field::new(n, DataType::Float64, true)));
            let columns = ["temperature", "pressure", "vibration"]
                .map(|n| Arc::clone(batch.column_by_name(n).expect("column")));
            Arc::new(StructArray::new(
                fields.to_vec().into(),
                columns.to_vec(),
                None,
            ))
        } else {
            Arc::clone(batch.column_by_name("temperature").expect("temperature"))
        };
        let labels = batch
            .column_by_name("is_anomaly")
            .expect("is_anomaly")
            .as_boolean()
            .clone();
        // The ceiling: splitting the flush by key, which the operator pays too.
        let start = Instant::now();
        for p in &positions {
            std::hint::black_box(take(&input, p, None).expect("take"));
        }
        ceiling += start.elapsed().as_secs_f64();
        let start = Instant::now();
        let outputs: Vec<ArrayRef> = positions
            .iter()
            .zip(states.iter_mut())
            .map(|(p, state)| {
                state
                    .evaluate(&[take(&input, p, None).expect("take")])
                    .expect("evaluate")
            })
            .collect();
        busy += start.elapsed().as_secs_f64();
        for (p, out) in positions.iter().zip(&outputs) {
            let out = out.as_struct();
            let warmup = out.column_by_name("warmup").expect("warmup").as_boolean();
            let severity = out
                .column_by_name("severity")
                .expect("severity")
                .as_string::<i32>();
            for (k, &row) in p.values().iter().enumerate() {
                if !out.is_valid(k) || warmup.value(k) {
                    continue;
                }
                let level = match severity.value(k) {
                    "CRITICAL" => 2,
                    "WARNING" => 1,
                    _ => 0,
                };
                if labels.value(row as usize) {
                    run.injected += 1;
                    run.found += usize::from(level > 0);
                    run.injected_severity[level] += 1;
                } else {
                    run.normal_severity[level] += 1;
                }
            }
        }
    }
    let events = (flushes * rows_per_flush as u64) as f64;
    let sensor_days = (sensors * flushes * flush_seconds) as f64 / 86_400.0;
    run.false_per_sensor_day =
        (run.normal_severity[1] + run.normal_severity[2]) as f64 / sensor_days;
    run.micros = busy * 1e6 / events;
    run.ceiling_micros = ceiling * 1e6 / events;
    run.bytes_per_key = states.iter().map(|s| s.size()).sum::<usize>() / sensors.max(1) as usize;
    run
}
