//! The aggregate form: `anomaly_mad_agg(x)` and `anomaly_zscore_agg(x)` judge a group's values
//! against the group itself and return the result of its most extreme value.
//!
//! ```sql
//! -- Per sensor and minute: the reading furthest from that minute's median, and how bad it is.
//! CREATE MATERIALIZED VIEW minute_outliers AS
//! SELECT sensor_id, window_start, anomaly_mad_agg(temperature, warn => 4) AS worst
//! FROM TUMBLE(readings, ts, INTERVAL '1 minute')
//! GROUP BY sensor_id, window_start, window_end;
//! ```
//!
//! Where the window form asks "is this row unusual given the key's history?", the aggregate
//! form asks "does this group hold an outlier?" (a burst of readings, a batch of parts, one
//! window of a HOP). It is order-free, so it runs in any GROUP BY, in streaming window
//! aggregates (with checkpoints: the state is the group's values), two-phase (`merge_batch`
//! concatenates) and over sliding frames (`retract_batch` removes values).
//!
//! - `anomaly_mad_agg`: the modified z-score of the value furthest from the group's median,
//!   0.6745·|x − median| / MAD (robust: the outlier does not hide itself); WARNING 3.5,
//!   CRITICAL 5.
//! - `anomaly_zscore_agg`: the z-score of the value furthest from the mean, against the mean and
//!   σ of the *other* values (leave-one-out, so one outlier cannot inflate the σ it is judged
//!   by); WARNING 3, CRITICAL 5.
//!
//! `expected` is the group's median or mean, the band is `expected ± warn·σ`, `n` the group's
//! size; groups smaller than `min_samples` (default 8) are warm-up. NULL and non-finite values
//! are ignored.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_datafusion_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use crate::detectors::moments::spread_floor;
use crate::params::{ParamSpec, Params, constant, input};
use crate::result::{
    Assessment, Direction, ResultBuilder, Thresholds, normal_two_sided_p, result_type,
};

/// 0.6745 = Φ⁻¹(0.75): MAD / 0.6745 estimates σ for normal data.
const MAD_TO_SIGMA: f64 = 0.674_489_750_196_081_7;

/// Parameters of both aggregate detectors.
pub static AGGREGATE_PARAMS: [ParamSpec; 4] = [
    input("x"),
    constant("warn"),
    constant("crit"),
    constant("min_samples"),
];

/// How a group's extreme value is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Method {
    Mad,
    ZScore,
}

/// `anomaly_mad_agg` or `anomaly_zscore_agg`.
#[derive(Debug)]
pub struct GroupOutlier {
    name: &'static str,
    method: Method,
    signature: Signature,
}

impl PartialEq for GroupOutlier {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for GroupOutlier {}

impl std::hash::Hash for GroupOutlier {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl GroupOutlier {
    /// Both aggregate detectors.
    pub fn all() -> Result<Vec<GroupOutlier>> {
        let signature = || {
            Signature::user_defined(Volatility::Immutable)
                .with_parameter_names(AGGREGATE_PARAMS.iter().map(|p| p.name).collect::<Vec<_>>())
        };
        Ok(vec![
            GroupOutlier {
                name: "anomaly_mad_agg",
                method: Method::Mad,
                signature: signature()?,
            },
            GroupOutlier {
                name: "anomaly_zscore_agg",
                method: Method::ZScore,
                signature: signature()?,
            },
        ])
    }
}

impl AggregateUDFImpl for GroupOutlier {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.is_empty() || arg_types.len() > AGGREGATE_PARAMS.len() {
            return plan_err!(
                "{} takes 1 to {} arguments, got {}",
                self.name,
                AGGREGATE_PARAMS.len(),
                arg_types.len()
            );
        }
        if !(arg_types[0].is_numeric() || arg_types[0].is_null()) {
            return plan_err!("{}: x must be numeric, got {}", self.name, arg_types[0]);
        }
        Ok(std::iter::once(DataType::Float64)
            .chain(arg_types[1..].iter().cloned())
            .collect())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(result_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let item = Arc::new(Field::new_list_field(DataType::Float64, true));
        Ok(vec![Arc::new(Field::new(
            format!("{}_values", args.name),
            DataType::List(item),
            true,
        ))])
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let params = Params::from_exprs(self.name, &AGGREGATE_PARAMS, acc_args.exprs)?;
        let (warn, crit) = match self.method {
            Method::Mad => (3.5_f64, 5.0_f64),
            Method::ZScore => (3.0_f64, 5.0_f64),
        };
        let warn = params.positive("warn", warn)?;
        let crit = params.positive("crit", crit.max(warn))?;
        if crit < warn {
            return plan_err!(
                "{}: crit ({crit}) must not be below warn ({warn})",
                self.name
            );
        }
        Ok(Box::new(GroupValues {
            method: self.method,
            thresholds: Thresholds { warn, crit },
            min_samples: params.count("min_samples", 8)?.max(2) as usize,
            values: Vec::new(),
            sorted: true,
        }))
    }
}

/// A group's values.
#[derive(Debug)]
struct GroupValues {
    method: Method,
    thresholds: Thresholds,
    min_samples: usize,
    values: Vec<f64>,
    /// Whether `values` is in order (appends leave it unsorted until it is needed).
    sorted: bool,
}

impl GroupValues {
    fn sort(&mut self) {
        if !self.sorted {
            self.values.sort_by(f64::total_cmp);
            self.sorted = true;
        }
    }

    fn append(&mut self, values: &ArrayRef) -> Result<()> {
        let values = cast(values, &DataType::Float64)?;
        let values = values.as_primitive::<Float64Type>();
        let before = self.values.len();
        self.values
            .extend(values.iter().flatten().filter(|v| v.is_finite()));
        self.sorted &= self.values.len() == before;
        Ok(())
    }

    /// Judges the extreme value: (assessment, spread) or None for a group too small.
    fn judge(&mut self) -> Option<(Assessment, f64)> {
        self.sort();
        let v = &self.values;
        let n = v.len();
        if n < self.min_samples {
            return None;
        }
        let (lowest, highest) = (v[0], v[n - 1]);
        let (expected, sigma, x) = match self.method {
            Method::Mad => {
                let median = median_of_sorted(v);
                let mut deviations: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
                deviations.sort_by(f64::total_cmp);
                let mad = median_of_sorted(&deviations);
                let sigma = spread_floor(mad / MAD_TO_SIGMA, median);
                let x = if highest - median >= median - lowest {
                    highest
                } else {
                    lowest
                };
                (median, sigma, x)
            }
            Method::ZScore => {
                let mean = v.iter().sum::<f64>() / n as f64;
                let (x, skip) = if highest - mean >= mean - lowest {
                    (highest, n - 1)
                } else {
                    (lowest, 0)
                };
                // Mean and σ of the others.
                let others = v
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != skip)
                    .map(|(_, &y)| y);
                let count = (n - 1) as f64;
                let mean_others = others.clone().sum::<f64>() / count;
                let variance = others.map(|y| (y - mean_others).powi(2)).sum::<f64>() / count;
                (mean_others, spread_floor(variance.sqrt(), mean_others), x)
            }
        };
        let score = (x - expected).abs() / sigma;
        let assessment = Assessment {
            score,
            p_value: normal_two_sided_p(score),
            expected,
            spread: Some(sigma),
            direction: Direction::of(x, expected),
        };
        Some((assessment, sigma))
    }
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

impl Accumulator for GroupValues {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let column = values
            .first()
            .ok_or_else(|| exec_datafusion_err!("anomaly aggregate: missing input"))?;
        self.append(column)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let column = values
            .first()
            .ok_or_else(|| exec_datafusion_err!("anomaly aggregate: missing input"))?;
        let column = cast(column, &DataType::Float64)?;
        self.sort();
        for x in column
            .as_primitive::<Float64Type>()
            .iter()
            .flatten()
            .filter(|v| v.is_finite())
        {
            if let Ok(at) = self.values.binary_search_by(|v| v.total_cmp(&x)) {
                self.values.remove(at);
            }
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut out = ResultBuilder::with_capacity(1);
        match self.judge() {
            Some((a, sigma)) => {
                let severity = self.thresholds.severity(a.score);
                let band = (
                    a.expected - self.thresholds.warn * sigma,
                    a.expected + self.thresholds.warn * sigma,
                );
                out.append(&a, severity, Some(band), self.values.len() as u64);
            }
            None if self.values.is_empty() => out.append_null(),
            None => {
                let centre = match self.method {
                    Method::Mad => median_of_sorted(&self.values),
                    Method::ZScore => self.values.iter().sum::<f64>() / self.values.len() as f64,
                };
                out.append_warmup(Some(centre), self.values.len() as u64);
            }
        }
        ScalarValue::try_from_array(&out.finish()?, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.values.capacity() * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.sort();
        let values: ArrayRef = Arc::new(Float64Array::from(self.values.clone()));
        let list = ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Float64, true)),
            OffsetBuffer::from_lengths([values.len()]),
            values,
            None,
        )?;
        Ok(vec![ScalarValue::List(Arc::new(list))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states
            .first()
            .ok_or_else(|| exec_datafusion_err!("anomaly aggregate: missing state"))?;
        let lists = lists.as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_valid(i) {
                self.append(&lists.value(i))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn group(method: Method, values: &[f64]) -> GroupValues {
        let mut g = GroupValues {
            method,
            thresholds: Thresholds {
                warn: 3.0,
                crit: 5.0,
            },
            min_samples: 8,
            values: Vec::new(),
            sorted: true,
        };
        let array: ArrayRef = Arc::new(Float64Array::from(values.to_vec()));
        g.update_batch(&[array]).unwrap();
        g
    }

    fn field(result: &ScalarValue, name: &str) -> ScalarValue {
        let ScalarValue::Struct(s) = result else {
            panic!("{result:?}")
        };
        ScalarValue::try_from_array(s.column_by_name(name).unwrap(), 0).unwrap()
    }

    #[test]
    fn the_extreme_value_is_judged_against_the_rest_of_its_group() {
        let mut values: Vec<f64> = (0..50).map(|i| 20.0 + f64::from(i % 7) * 0.1).collect();
        values.push(35.0);
        for method in [Method::Mad, Method::ZScore] {
            let result = group(method, &values).evaluate().unwrap();
            assert_eq!(
                field(&result, "severity"),
                ScalarValue::from("CRITICAL"),
                "{method:?}"
            );
            assert_eq!(field(&result, "direction"), ScalarValue::from("HIGH"));
            assert_eq!(field(&result, "n"), ScalarValue::Int64(Some(51)));
            // Without the outlier the group is normal.
            let result = group(method, &values[..50]).evaluate().unwrap();
            assert_eq!(
                field(&result, "severity"),
                ScalarValue::from("NORMAL"),
                "{method:?}"
            );
        }
    }

    #[test]
    fn small_groups_warm_up_constant_groups_stay_finite_and_empty_groups_are_null() {
        let result = group(Method::Mad, &[1.0, 2.0, 3.0]).evaluate().unwrap();
        assert_eq!(field(&result, "warmup"), ScalarValue::Boolean(Some(true)));
        assert_eq!(field(&result, "expected"), ScalarValue::Float64(Some(2.0)));
        let result = group(Method::ZScore, &[5.0; 20]).evaluate().unwrap();
        assert_eq!(field(&result, "score"), ScalarValue::Float64(Some(0.0)));
        let result = group(Method::ZScore, &[]).evaluate().unwrap();
        assert!(result.is_null());
    }

    #[test]
    fn merging_states_and_retracting_values_equal_the_group_built_directly() {
        let values: Vec<f64> = (0..40)
            .map(|i| f64::from(i * 37 % 11))
            .chain([60.0])
            .collect();
        let mut whole = group(Method::Mad, &values);
        let mut left = group(Method::Mad, &values[..20]);
        let right = group(Method::Mad, &values[20..]).state().unwrap();
        let state = right[0].to_array().unwrap();
        left.merge_batch(&[state]).unwrap();
        assert_eq!(left.evaluate().unwrap(), whole.evaluate().unwrap());
        let outlier: ArrayRef = Arc::new(Float64Array::from(vec![60.0]));
        whole.retract_batch(&[outlier]).unwrap();
        assert_eq!(
            whole.evaluate().unwrap(),
            group(Method::Mad, &values[..40]).evaluate().unwrap()
        );
    }
}
