//! The one result type every detector returns, so detectors compose (`anomaly_vote`) and alerts
//! are uniform whatever produced them.
//!
//! ```text
//! STRUCT<score DOUBLE, p_value DOUBLE, is_anomaly BOOLEAN, severity TEXT, expected DOUBLE,
//!        lower DOUBLE, upper DOUBLE, direction TEXT, warmup BOOLEAN, n BIGINT>
//! ```
//!
//! - `score` is the detector's native magnitude, always "higher = more anomalous";
//! - `p_value` is a tail probability in (0, 1] (lower = more anomalous), comparable across
//!   detectors; it is what `anomaly_vote` combines;
//! - `severity` is 'NORMAL' | 'WARNING' | 'CRITICAL' from the score against `warn` / `crit`;
//! - `lower` / `upper` is the band at the WARNING threshold around `expected`;
//! - during warm-up (`warmup = true`) score, p-value, band and direction are NULL and
//!   `is_anomaly` is false: a detector that has not seen enough never guesses, and never says
//!   `inf`;
//! - a row whose input is NULL gets a NULL struct and leaves the state untouched.

use std::sync::Arc;

use datafusion::arrow::array::NullBufferBuilder;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use serde::{Deserialize, Serialize};

/// Field names of the result struct, in order.
pub const RESULT_FIELDS: [&str; 10] = [
    "score",
    "p_value",
    "is_anomaly",
    "severity",
    "expected",
    "lower",
    "upper",
    "direction",
    "warmup",
    "n",
];

/// The Arrow type of every detector's result.
pub fn result_type() -> DataType {
    DataType::Struct(result_fields())
}

/// The result struct's fields.
pub fn result_fields() -> Fields {
    Fields::from(vec![
        Field::new("score", DataType::Float64, true),
        Field::new("p_value", DataType::Float64, true),
        Field::new("is_anomaly", DataType::Boolean, true),
        Field::new("severity", DataType::Utf8, true),
        Field::new("expected", DataType::Float64, true),
        Field::new("lower", DataType::Float64, true),
        Field::new("upper", DataType::Float64, true),
        Field::new("direction", DataType::Utf8, true),
        Field::new("warmup", DataType::Boolean, true),
        Field::new("n", DataType::Int64, true),
    ])
}

/// How bad a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Within the WARNING band.
    Normal,
    /// At or past `warn`.
    Warning,
    /// At or past `crit`.
    Critical,
}

impl Severity {
    /// The SQL text of the severity.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Normal => "NORMAL",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }

    /// Parses the SQL text (case-insensitive).
    pub fn parse(text: &str) -> Option<Severity> {
        match text.to_ascii_uppercase().as_str() {
            "NORMAL" => Some(Severity::Normal),
            "WARNING" => Some(Severity::Warning),
            "CRITICAL" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// Which side of the expected value a row lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Above the baseline.
    High,
    /// Below the baseline.
    Low,
}

impl Direction {
    /// The SQL text of the direction.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::High => "HIGH",
            Direction::Low => "LOW",
        }
    }

    /// The direction of `x` relative to `expected` (None when equal).
    pub fn of(x: f64, expected: f64) -> Option<Direction> {
        if x > expected {
            Some(Direction::High)
        } else if x < expected {
            Some(Direction::Low)
        } else {
            None
        }
    }
}

/// WARNING and CRITICAL thresholds in the detector's native score unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Score at which a row becomes a WARNING.
    pub warn: f64,
    /// Score at which a row becomes CRITICAL.
    pub crit: f64,
}

impl Thresholds {
    /// The severity of `score`.
    pub fn severity(&self, score: f64) -> Severity {
        if score >= self.crit {
            Severity::Critical
        } else if score >= self.warn {
            Severity::Warning
        } else {
            Severity::Normal
        }
    }
}

/// What a detector says about one row, before thresholds are applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assessment {
    /// Native score, higher = more anomalous, finite.
    pub score: f64,
    /// Tail probability in (0, 1].
    pub p_value: f64,
    /// Baseline centre.
    pub expected: f64,
    /// Baseline spread in the score's unit (score = |x − expected| / spread for z-like
    /// detectors), giving the band `expected ± warn · spread`; None when the detector has no band.
    pub spread: Option<f64>,
    /// Side of the baseline the row is on.
    pub direction: Option<Direction>,
}

/// Two-sided tail probability of a standard normal deviate `z`, never 0 (so `ln p` is finite).
pub fn normal_two_sided_p(z: f64) -> f64 {
    clamp_p(libm::erfc(z.abs() / std::f64::consts::SQRT_2))
}

/// The z with P(Z > z) = p for a standard normal Z (Acklam's rational approximation, refined by
/// one Halley step against `erfc`: accurate to ~1e-15). Used to put p-values on one scale.
pub fn normal_upper_quantile(p: f64) -> f64 {
    let p = clamp_p(p);
    if p >= 1.0 {
        // P(Z > z) = 1 only at −∞; a finite stand-in far below any threshold.
        return -40.0;
    }
    // Lower-tail quantile of q = 1 − p, computed from p directly where p is small.
    let q = 1.0 - p;
    #[allow(clippy::excessive_precision)]
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    #[allow(clippy::excessive_precision)]
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    #[allow(clippy::excessive_precision)]
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    #[allow(clippy::excessive_precision)]
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |t: f64| {
        let r = (-2.0 * t.ln()).sqrt();
        (((((C[0] * r + C[1]) * r + C[2]) * r + C[3]) * r + C[4]) * r + C[5])
            / ((((D[0] * r + D[1]) * r + D[2]) * r + D[3]) * r + 1.0)
    };
    let mut x = if q < 0.02425 {
        tail(q)
    } else if p < 0.02425 {
        -tail(p)
    } else {
        let r = q - 0.5;
        let s = r * r;
        (((((A[0] * s + A[1]) * s + A[2]) * s + A[3]) * s + A[4]) * s + A[5]) * r
            / (((((B[0] * s + B[1]) * s + B[2]) * s + B[3]) * s + B[4]) * s + 1.0)
    };
    // Halley refinement on the upper tail: e = P(Z > x) − p.
    let e = 0.5 * libm::erfc(x / std::f64::consts::SQRT_2) - p;
    let u = -e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    if u.is_finite() {
        x -= u / (1.0 + x * u / 2.0);
    }
    x
}

/// Clamps a probability into (0, 1].
pub fn clamp_p(p: f64) -> f64 {
    if p.is_nan() {
        1.0
    } else {
        p.clamp(f64::MIN_POSITIVE, 1.0)
    }
}

/// Builds a column of results, field by field (no per-row `ScalarValue`s).
#[derive(Debug)]
pub struct ResultBuilder {
    score: Float64Builder,
    p_value: Float64Builder,
    is_anomaly: BooleanBuilder,
    severity: StringBuilder,
    expected: Float64Builder,
    lower: Float64Builder,
    upper: Float64Builder,
    direction: StringBuilder,
    warmup: BooleanBuilder,
    n: Int64Builder,
    validity: NullBufferBuilder,
}

impl ResultBuilder {
    /// A builder for `rows` results.
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            score: Float64Builder::with_capacity(rows),
            p_value: Float64Builder::with_capacity(rows),
            is_anomaly: BooleanBuilder::with_capacity(rows),
            severity: StringBuilder::with_capacity(rows, rows * 8),
            expected: Float64Builder::with_capacity(rows),
            lower: Float64Builder::with_capacity(rows),
            upper: Float64Builder::with_capacity(rows),
            direction: StringBuilder::with_capacity(rows, rows * 4),
            warmup: BooleanBuilder::with_capacity(rows),
            n: Int64Builder::with_capacity(rows),
            validity: NullBufferBuilder::new(rows),
        }
    }

    /// A NULL result (the input was NULL).
    pub fn append_null(&mut self) {
        self.score.append_null();
        self.p_value.append_null();
        self.is_anomaly.append_null();
        self.severity.append_null();
        self.expected.append_null();
        self.lower.append_null();
        self.upper.append_null();
        self.direction.append_null();
        self.warmup.append_null();
        self.n.append_null();
        self.validity.append_null();
    }

    /// A warm-up result: not enough samples to judge the row.
    pub fn append_warmup(&mut self, expected: Option<f64>, n: u64) {
        self.score.append_null();
        self.p_value.append_null();
        self.is_anomaly.append_value(false);
        self.severity.append_value(Severity::Normal.as_str());
        self.expected
            .append_option(expected.filter(|e| e.is_finite()));
        self.lower.append_null();
        self.upper.append_null();
        self.direction.append_null();
        self.warmup.append_value(true);
        self.n.append_value(n as i64);
        self.validity.append_non_null();
    }

    /// A judged row.
    pub fn append(
        &mut self,
        assessment: &Assessment,
        severity: Severity,
        band: Option<(f64, f64)>,
        n: u64,
    ) {
        self.score.append_value(finite(assessment.score));
        self.p_value.append_value(clamp_p(assessment.p_value));
        self.is_anomaly.append_value(severity != Severity::Normal);
        self.severity.append_value(severity.as_str());
        self.expected
            .append_option(Some(assessment.expected).filter(|e| e.is_finite()));
        match band.filter(|(l, u)| l.is_finite() && u.is_finite()) {
            Some((lower, upper)) => {
                self.lower.append_value(lower);
                self.upper.append_value(upper);
            }
            None => {
                self.lower.append_null();
                self.upper.append_null();
            }
        }
        self.direction
            .append_option(assessment.direction.map(Direction::as_str));
        self.warmup.append_value(false);
        self.n.append_value(n as i64);
        self.validity.append_non_null();
    }

    /// The finished struct column.
    pub fn finish(self) -> datafusion::common::Result<ArrayRef> {
        let (fields, columns, validity) = self.parts();
        Ok(Arc::new(StructArray::try_new(fields, columns, validity)?))
    }

    /// The finished struct column with one more field (a multivariate detector's attribution).
    pub fn finish_with(
        self,
        (name, extra): (&str, ArrayRef),
    ) -> datafusion::common::Result<ArrayRef> {
        let (fields, mut columns, validity) = self.parts();
        let mut fields: Vec<FieldRef> = fields.iter().cloned().collect();
        fields.push(Arc::new(Field::new(name, extra.data_type().clone(), true)));
        columns.push(extra);
        Ok(Arc::new(StructArray::try_new(
            Fields::from(fields),
            columns,
            validity,
        )?))
    }

    fn parts(
        mut self,
    ) -> (
        Fields,
        Vec<ArrayRef>,
        Option<datafusion::arrow::buffer::NullBuffer>,
    ) {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.score.finish()),
            Arc::new(self.p_value.finish()),
            Arc::new(self.is_anomaly.finish()),
            Arc::new(self.severity.finish()),
            Arc::new(self.expected.finish()),
            Arc::new(self.lower.finish()),
            Arc::new(self.upper.finish()),
            Arc::new(self.direction.finish()),
            Arc::new(self.warmup.finish()),
            Arc::new(self.n.finish()),
        ];
        (result_fields(), columns, self.validity.finish())
    }
}

/// Scores are finite by construction; this keeps a pathological input (±inf readings) from
/// leaking `inf` into results anyway.
fn finite(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-f64::MAX, f64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_values_are_two_sided_normal_tails() {
        assert!((normal_two_sided_p(0.0) - 1.0).abs() < 1e-12);
        assert!((normal_two_sided_p(3.0) - 2.6998e-3).abs() < 1e-6);
        assert!((normal_two_sided_p(-3.0) - 2.6998e-3).abs() < 1e-6);
        assert!(normal_two_sided_p(1e6) > 0.0);
    }

    #[test]
    fn upper_quantiles_invert_the_tail() {
        for p in [0.5, 0.1, 0.025, 2.7e-3, 1e-6, 1e-12, 1e-300] {
            let z = normal_upper_quantile(p);
            let back = 0.5 * libm::erfc(z / std::f64::consts::SQRT_2);
            assert!((back - p).abs() / p < 1e-9, "p {p} z {z} back {back}");
        }
        assert!((normal_upper_quantile(0.5)).abs() < 1e-12);
        assert!(normal_upper_quantile(1.0).is_finite());
    }

    #[test]
    fn thresholds_grade_scores() {
        let t = Thresholds {
            warn: 3.0,
            crit: 5.0,
        };
        assert_eq!(t.severity(2.9), Severity::Normal);
        assert_eq!(t.severity(3.0), Severity::Warning);
        assert_eq!(t.severity(7.0), Severity::Critical);
    }
}
