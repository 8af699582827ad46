//! `generator = 'sensors'`: a deterministic IoT simulator.
//!
//! Every reading is a pure function of `(seed, index)`: reading `i` comes from sensor
//! `i mod sensors` at event time `start_time + i / rate`, its values from a ChaCha stream
//! positioned at `i`. So every view reading the source sees the same rows, and a test can
//! recompute any of them.
//!
//! Values: temperature follows a slow daily-ish sine per sensor plus Gaussian noise; humidity,
//! pressure and vibration likewise. With probability `anomaly_rate` a reading is an injected
//! anomaly (a temperature jump of 8–15 °C and five times the vibration), flagged in the
//! ground-truth column `is_anomaly`. `out_of_order` shifts each event time back by a random
//! amount up to that duration, so rows arrive out of order the way real sensors' do.
//!
//! Options: `sensors` (100), `out_of_order` (`'0s'`), `anomaly_rate` (0.001), and the shared
//! ones (`rate` default 1000 readings/s, `batch_size` 1024). With `rate = 'unbounded'` rows are
//! produced as fast as the pipeline takes them and event time advances one second per `sensors`
//! readings.

use std::f64::consts::TAU;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, RecordBatch, StringBuilder,
    TimestampNanosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use weir_engine::source::{SourceProvider, SourceSpec};
use weir_engine::{EngineError, Result};

use super::{CommonOptions, Generator, GeneratorProvider};
use crate::schema::Projection;

/// 64-bit draws consumed per reading; fixed so reading `i` can be found by seeking.
const DRAWS_PER_READING: u128 = 8;

/// Settings of the sensor generator.
#[derive(Debug, Clone)]
pub struct SensorConfig {
    /// Number of sensors (readings go round-robin over them).
    pub sensors: u64,
    /// Events per wall-clock second, or None for unbounded.
    pub rate: Option<f64>,
    /// Random seed.
    pub seed: u64,
    /// Stop after this many readings.
    pub events: Option<u64>,
    /// Event time of reading 0, in nanoseconds since the epoch.
    pub start_nanos: i64,
    /// Maximum backwards shift of event time.
    pub out_of_order: Duration,
    /// Probability of an injected anomaly.
    pub anomaly_rate: f64,
}

impl SensorConfig {
    /// Nanoseconds of event time between consecutive readings.
    fn step_nanos(&self) -> f64 {
        let per_second = self.rate.unwrap_or(self.sensors as f64);
        1e9 / per_second
    }
}

/// The natural columns of the sensor generator.
pub fn sensor_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new("equipment_id", DataType::Utf8, false),
        Field::new("temperature", DataType::Float64, false),
        Field::new("humidity", DataType::Float64, false),
        Field::new("pressure", DataType::Float64, false),
        Field::new("vibration", DataType::Float64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
            false,
        ),
        Field::new("is_anomaly", DataType::Boolean, false),
    ]))
}

/// Builds a sensors source from its options.
pub(super) fn provider(spec: &mut SourceSpec) -> Result<Arc<dyn SourceProvider>> {
    let o = &mut spec.options;
    let sensors = o.take_parsed::<u64>("sensors")?.unwrap_or(100);
    if sensors == 0 {
        return Err(EngineError::User(
            "datagen: sensors must be at least 1".into(),
        ));
    }
    let mut common = CommonOptions::take(o, Some(1000.0), 1024)?;
    // Each sensor reads once per second of event time unless a rate paces it.
    let notice = common.settle_start(common.rate.unwrap_or(sensors as f64));
    let out_of_order = o.take_duration("out_of_order")?.unwrap_or(Duration::ZERO);
    let anomaly_rate = o.take_parsed::<f64>("anomaly_rate")?.unwrap_or(0.001);
    if !(0.0..=1.0).contains(&anomaly_rate) {
        return Err(EngineError::User(
            "datagen: anomaly_rate must be between 0 and 1".into(),
        ));
    }
    let config = SensorConfig {
        sensors,
        rate: common.rate,
        seed: common.seed,
        events: common.events,
        start_nanos: common.start_nanos,
        out_of_order,
        anomaly_rate,
    };
    let natural = sensor_schema();
    let projection =
        Projection::declared_or_all(&natural, spec.columns.as_ref(), "datagen 'sensors'")?;
    let table = SensorTable {
        generator: SensorGenerator::new(config),
        projection,
    };
    Ok(Arc::new(
        GeneratorProvider::new(table, common).with_notice(notice),
    ))
}

/// The sensor generator fitted to a source's declared columns.
#[derive(Debug)]
struct SensorTable {
    generator: SensorGenerator,
    projection: Projection,
}

impl Generator for SensorTable {
    fn schema(&self) -> SchemaRef {
        self.projection.schema()
    }

    fn rows(&self, start: u64, n: usize) -> Result<RecordBatch> {
        self.projection.apply(&self.generator.readings(start, n)?)
    }
}

/// Produces readings by index.
#[derive(Debug, Clone)]
pub struct SensorGenerator {
    config: SensorConfig,
    sensor_ids: Vec<String>,
    equipment_ids: Vec<String>,
}

impl SensorGenerator {
    /// A generator at reading 0.
    pub fn new(config: SensorConfig) -> Self {
        let equipment = (config.sensors / 8).max(1);
        let sensor_ids = (0..config.sensors)
            .map(|s| format!("sensor-{s:04}"))
            .collect();
        let equipment_ids = (0..config.sensors)
            .map(|s| format!("eq-{:03}", s % equipment))
            .collect();
        Self {
            config,
            sensor_ids,
            equipment_ids,
        }
    }

    /// Readings `[start, start + n)` (fewer when `events` ends sooner) as a batch of
    /// [`sensor_schema`].
    pub fn readings(&self, start: u64, n: usize) -> Result<RecordBatch> {
        let n = match self.config.events {
            Some(e) => n.min(e.saturating_sub(start) as usize),
            None => n,
        };
        let c = &self.config;
        let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
        rng.set_word_pos(u128::from(start) * DRAWS_PER_READING * 2);
        let mut sensor = StringBuilder::with_capacity(n, n * 11);
        let mut equipment = StringBuilder::with_capacity(n, n * 6);
        let mut temperature = Float64Builder::with_capacity(n);
        let mut humidity = Float64Builder::with_capacity(n);
        let mut pressure = Float64Builder::with_capacity(n);
        let mut vibration = Float64Builder::with_capacity(n);
        let mut ts = TimestampNanosecondBuilder::with_capacity(n);
        let mut anomaly = BooleanBuilder::with_capacity(n);
        let step = c.step_nanos();
        let jitter = c.out_of_order.as_nanos() as f64;
        for k in 0..n as u64 {
            let i = start + k;
            let s = (i % c.sensors) as usize;
            let draws: [f64; DRAWS_PER_READING as usize] =
                std::array::from_fn(|_| unit(rng.next_u64()));
            let t = c.start_nanos.saturating_add((i as f64 * step) as i64);
            let t = t.saturating_sub((draws[0] * jitter) as i64);
            let hours = t as f64 / 3.6e12;
            let phase = s as f64 * 0.37;
            let is_anomaly = draws[1] < c.anomaly_rate;
            let mut temp = 20.0
                + (s % 10) as f64
                + 3.0 * (TAU * hours / 24.0 + phase).sin()
                + 0.3 * normal(draws[2], draws[3]);
            let mut vib = 0.5 + 0.1 * normal(draws[4], draws[5]).abs();
            if is_anomaly {
                let sign = if draws[6] < 0.5 { -1.0 } else { 1.0 };
                temp += sign * (8.0 + 7.0 * draws[7]);
                vib *= 5.0;
            }
            sensor.append_value(&self.sensor_ids[s]);
            equipment.append_value(&self.equipment_ids[s]);
            temperature.append_value(temp);
            humidity
                .append_value(45.0 + 10.0 * (TAU * hours / 24.0 + phase + 1.0).sin() + draws[4]);
            pressure.append_value(1013.0 + 2.0 * (draws[5] - 0.5));
            vibration.append_value(vib);
            ts.append_value(t);
            anomaly.append_value(is_anomaly);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(sensor.finish()),
            Arc::new(equipment.finish()),
            Arc::new(temperature.finish()),
            Arc::new(humidity.finish()),
            Arc::new(pressure.finish()),
            Arc::new(vibration.finish()),
            Arc::new(ts.finish().with_timezone("+00:00")),
            Arc::new(anomaly.finish()),
        ];
        Ok(RecordBatch::try_new(sensor_schema(), columns)?)
    }
}

/// A uniform draw in [0, 1) from 53 random bits.
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal draw (Box–Muller) from two uniforms.
fn normal(u1: f64, u2: f64) -> f64 {
    let u1 = u1.max(f64::MIN_POSITIVE);
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Float64Type;

    fn config() -> SensorConfig {
        SensorConfig {
            sensors: 10,
            rate: None,
            seed: 7,
            events: Some(100),
            start_nanos: 0,
            out_of_order: Duration::ZERO,
            anomaly_rate: 0.1,
        }
    }

    #[test]
    fn deterministic_and_seekable() -> Result<()> {
        let a = SensorGenerator::new(config());
        let whole = a.readings(0, 50)?;
        let tail = SensorGenerator::new(config()).readings(20, 30)?;
        let t_whole = whole.column(2).as_primitive::<Float64Type>();
        let t_tail = tail.column(2).as_primitive::<Float64Type>();
        assert_eq!(t_whole.value(20), t_tail.value(0));
        assert_eq!(t_whole.value(49), t_tail.value(29));
        Ok(())
    }

    #[test]
    fn stops_after_events() -> Result<()> {
        let g = SensorGenerator::new(config());
        assert_eq!(g.readings(0, 80)?.num_rows(), 80);
        assert_eq!(g.readings(80, 80)?.num_rows(), 20);
        assert_eq!(g.readings(160, 80)?.num_rows(), 0);
        Ok(())
    }

    #[test]
    fn injects_labelled_anomalies() -> Result<()> {
        let g = SensorGenerator::new(SensorConfig {
            events: Some(10_000),
            ..config()
        });
        let b = g.readings(0, 10_000)?;
        let flagged = b.column(7).as_boolean().true_count();
        assert!((700..1300).contains(&flagged), "{flagged}");
        Ok(())
    }
}
