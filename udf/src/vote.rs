//! `anomaly_vote`: one verdict from several detectors' results on the same row.
//!
//! ```sql
//! SELECT sensor_id, ts,
//!        anomaly_vote(ARRAY[mad, z, shift], weights => ARRAY[0.5, 0.3, 0.2]) AS verdict
//! FROM (SELECT sensor_id, ts,
//!              anomaly_mad(temperature) OVER w AS mad,
//!              anomaly_zscore(temperature, method => 'ewma') OVER w AS z,
//!              changepoint_cusum(temperature) OVER w AS shift
//!       FROM readings WINDOW w AS (PARTITION BY sensor_id ORDER BY ts));
//! ```
//!
//! Results in warm-up or NULL are left out. `method =>`:
//! - `'weighted_p'` (default): each p-value becomes a one-sided normal deviate zᵢ = Φ⁻¹(1 − pᵢ);
//!   Z = Σ wᵢzᵢ / Σ wᵢ; p = 1 − Φ(Z). Detectors watching the same values are far from
//!   independent, so their deviates are averaged rather than added (Stouffer's Σ wᵢzᵢ / √Σ wᵢ²
//!   would count shared evidence twice and flag ~7× too many normal rows on the sensors
//!   generator).
//! - `'max'`: the most severe input decides; p = min pᵢ × k (Bonferroni, capped at 1).
//! - `'quorum'`: the severity at least `quorum` (default 2) inputs reach; p = the quorum-th
//!   smallest pᵢ.
//!
//! score = Φ⁻¹(1 − p) (higher = more anomalous). Severity for `'weighted_p'` comes from p:
//! WARNING at p ≤ `warn` (default 2.7e-3, ≈ 3σ), CRITICAL at p ≤ `crit` (5.7e-7, ≈ 5σ).
//! `expected` and the band come from the highest-weighted input that is not warming up;
//! `direction` is the weighted majority of the anomalous inputs' directions.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StringArray, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::result::{
    Assessment, Direction, ResultBuilder, Severity, clamp_p, normal_upper_quantile, result_type,
};

/// The `anomaly_vote` scalar function.
#[derive(Debug)]
pub struct AnomalyVote {
    signature: Signature,
}

impl PartialEq for AnomalyVote {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for AnomalyVote {}

impl Hash for AnomalyVote {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "anomaly_vote".hash(state);
    }
}

/// Parameter names, in order.
pub const VOTE_PARAMS: [&str; 6] = ["results", "weights", "method", "quorum", "warn", "crit"];

impl AnomalyVote {
    /// The function.
    pub fn try_new() -> Result<Self> {
        Ok(Self {
            signature: Signature::user_defined(Volatility::Immutable)
                .with_parameter_names(VOTE_PARAMS.to_vec())?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Method {
    WeightedP,
    Max,
    Quorum(usize),
}

/// One input's fields for a row.
struct Vote {
    p: f64,
    weight: f64,
    severity: Severity,
    expected: Option<f64>,
    band: Option<(f64, f64)>,
    direction: Option<Direction>,
    n: u64,
}

impl ScalarUDFImpl for AnomalyVote {
    fn name(&self) -> &str {
        "anomaly_vote"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let mut types = arg_types.to_vec();
        match types.first() {
            Some(DataType::List(item)) if matches!(item.data_type(), DataType::Struct(_)) => {}
            other => {
                return plan_err!(
                    "anomaly_vote: results must be ARRAY[r1, r2, …] of detector results, got {other:?}"
                );
            }
        }
        if let Some(w) = types.get_mut(1)
            && !w.is_null()
        {
            *w = DataType::new_list(DataType::Float64, true);
        }
        Ok(types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(result_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let scalar = |i: usize| match args.args.get(i) {
            None => Ok(None),
            Some(ColumnarValue::Scalar(s)) if s.is_null() => Ok(None),
            Some(ColumnarValue::Scalar(s)) => Ok(Some(s.clone())),
            Some(ColumnarValue::Array(_)) => {
                exec_err!("anomaly_vote: {} must be a constant", VOTE_PARAMS[i])
            }
        };
        let weights: Option<Vec<f64>> = match scalar(1)? {
            Some(ScalarValue::List(list)) => {
                let values = list.value(0);
                let values = values.as_primitive::<Float64Type>();
                Some(values.iter().map(|w| w.unwrap_or(0.0).max(0.0)).collect())
            }
            _ => None,
        };
        let method = match scalar(2)? {
            None => Method::WeightedP,
            Some(ScalarValue::Utf8(Some(m))) | Some(ScalarValue::Utf8View(Some(m))) => {
                match m.to_ascii_lowercase().as_str() {
                    "weighted_p" => Method::WeightedP,
                    "max" => Method::Max,
                    "quorum" => {
                        let quorum = match scalar(3)? {
                            Some(q) => match q.cast_to(&DataType::Int64)? {
                                ScalarValue::Int64(Some(q)) if q >= 1 => q as usize,
                                _ => {
                                    return exec_err!(
                                        "anomaly_vote: quorum must be a positive integer"
                                    );
                                }
                            },
                            None => 2,
                        };
                        Method::Quorum(quorum)
                    }
                    other => {
                        return exec_err!(
                            "anomaly_vote: method must be 'weighted_p', 'max' or 'quorum', got '{other}'"
                        );
                    }
                }
            }
            Some(other) => return exec_err!("anomaly_vote: method must be text, got {other}"),
        };
        let threshold = |i: usize, default: f64| -> Result<f64> {
            match scalar(i)? {
                None => Ok(default),
                Some(s) => match s.cast_to(&DataType::Float64)? {
                    ScalarValue::Float64(Some(p)) if p > 0.0 && p < 1.0 => Ok(p),
                    _ => exec_err!("anomaly_vote: {} is a p-value in (0, 1)", VOTE_PARAMS[i]),
                },
            }
        };
        let (warn_p, crit_p) = (threshold(4, 2.7e-3)?, threshold(5, 5.7e-7)?);
        let results = match args.args.first() {
            Some(ColumnarValue::Array(a)) => Arc::clone(a),
            Some(ColumnarValue::Scalar(s)) => s.to_array_of_size(rows)?,
            None => return exec_err!("anomaly_vote: missing results"),
        };
        let list = results.as_list::<i32>();
        let Some(items) = list.values().as_struct_opt() else {
            return exec_err!("anomaly_vote: results must be detector results");
        };
        let fields = Fields::of(items)?;
        let mut out = ResultBuilder::with_capacity(rows);
        let mut votes = Vec::new();
        for row in 0..list.len() {
            if list.is_null(row) {
                out.append_null();
                continue;
            }
            let offsets = list.value_offsets();
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            votes.clear();
            let mut any_valid = false;
            for (position, i) in (start..end).enumerate() {
                if items.is_null(i) || fields.p.is_null(i) {
                    any_valid |= items.is_valid(i);
                    continue;
                }
                any_valid = true;
                if fields.warmup.is_valid(i) && fields.warmup.value(i) {
                    continue;
                }
                let weight = weights
                    .as_ref()
                    .map_or(1.0, |w| w.get(position).copied().unwrap_or(0.0));
                votes.push(Vote {
                    p: clamp_p(fields.p.value(i)),
                    weight,
                    severity: fields
                        .severity
                        .is_valid(i)
                        .then(|| Severity::parse(fields.severity.value(i)))
                        .flatten()
                        .unwrap_or(Severity::Normal),
                    expected: fields
                        .expected
                        .is_valid(i)
                        .then(|| fields.expected.value(i)),
                    band: (fields.lower.is_valid(i) && fields.upper.is_valid(i))
                        .then(|| (fields.lower.value(i), fields.upper.value(i))),
                    direction: fields
                        .direction
                        .is_valid(i)
                        .then(|| match fields.direction.value(i) {
                            "HIGH" => Some(Direction::High),
                            "LOW" => Some(Direction::Low),
                            _ => None,
                        })
                        .flatten(),
                    n: if fields.n.is_valid(i) {
                        fields.n.value(i).max(0) as u64
                    } else {
                        0
                    },
                });
            }
            if !any_valid {
                out.append_null();
                continue;
            }
            if votes.iter().all(|v| v.weight <= 0.0) {
                out.append_warmup(None, 0);
                continue;
            }
            combine(&votes, method, warn_p, crit_p, &mut out);
        }
        Ok(ColumnarValue::Array(out.finish()?))
    }
}

fn combine(votes: &[Vote], method: Method, warn_p: f64, crit_p: f64, out: &mut ResultBuilder) {
    let by_p = |severity: Severity, p: f64| {
        if p <= crit_p {
            Severity::Critical
        } else if p <= warn_p {
            Severity::Warning
        } else {
            severity
        }
    };
    let (p, severity) = match method {
        Method::WeightedP => {
            let (num, den) = votes
                .iter()
                .filter(|v| v.weight > 0.0)
                .fold((0.0, 0.0), |(num, den), v| {
                    (num + v.weight * normal_upper_quantile(v.p), den + v.weight)
                });
            let z = num / den;
            let p = clamp_p(0.5 * libm::erfc(z / std::f64::consts::SQRT_2));
            (p, by_p(Severity::Normal, p))
        }
        Method::Max => {
            let k = votes.len() as f64;
            let min_p = votes.iter().map(|v| v.p).fold(1.0, f64::min);
            let worst = votes
                .iter()
                .map(|v| v.severity)
                .max()
                .unwrap_or(Severity::Normal);
            (clamp_p(min_p * k), worst)
        }
        Method::Quorum(q) => {
            let mut ps: Vec<f64> = votes.iter().map(|v| v.p).collect();
            ps.sort_by(f64::total_cmp);
            let mut severities: Vec<Severity> = votes.iter().map(|v| v.severity).collect();
            severities.sort_by(|a, b| b.cmp(a));
            let p = ps.get(q - 1).copied().unwrap_or(1.0);
            (
                p,
                severities.get(q - 1).copied().unwrap_or(Severity::Normal),
            )
        }
    };
    let lead = votes
        .iter()
        .filter(|v| v.weight > 0.0)
        .max_by(|a, b| a.weight.total_cmp(&b.weight));
    let lean: f64 = votes
        .iter()
        .filter(|v| v.severity != Severity::Normal)
        .map(|v| match v.direction {
            Some(Direction::High) => v.weight,
            Some(Direction::Low) => -v.weight,
            None => 0.0,
        })
        .sum();
    let direction = if lean > 0.0 {
        Some(Direction::High)
    } else if lean < 0.0 {
        Some(Direction::Low)
    } else {
        None
    };
    let expected = lead.and_then(|v| v.expected).unwrap_or(f64::NAN);
    let assessment = Assessment {
        score: normal_upper_quantile(p).max(0.0),
        p_value: p,
        expected,
        spread: None,
        direction,
    };
    let n = votes.iter().map(|v| v.n).max().unwrap_or(0);
    out.append(&assessment, severity, lead.and_then(|v| v.band), n);
}

/// The result struct's fields as typed arrays.
struct Fields<'a> {
    p: &'a Float64Array,
    severity: &'a StringArray,
    expected: &'a Float64Array,
    lower: &'a Float64Array,
    upper: &'a Float64Array,
    direction: &'a StringArray,
    warmup: &'a BooleanArray,
    n: &'a Int64Array,
}

impl<'a> Fields<'a> {
    fn of(items: &'a StructArray) -> Result<Self> {
        fn field<'b, T: 'static>(items: &'b StructArray, name: &str) -> Result<&'b T> {
            let column: Option<&'b ArrayRef> = items.column_by_name(name);
            match column.and_then(|c| c.as_any().downcast_ref::<T>()) {
                Some(c) => Ok(c),
                None => exec_err!(
                    "anomaly_vote: results must be detector results (field {name} missing or of another type)"
                ),
            }
        }
        Ok(Self {
            p: field(items, "p_value")?,
            severity: field(items, "severity")?,
            expected: field(items, "expected")?,
            lower: field(items, "lower")?,
            upper: field(items, "upper")?,
            direction: field(items, "direction")?,
            warmup: field(items, "warmup")?,
            n: field(items, "n")?,
        })
    }
}
