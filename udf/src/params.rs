//! Named parameters of Weir's functions.
//!
//! Every function declares its parameters in order ([`ParamSpec`]); callers may pass them by
//! position or as `name => value`. Weir's SQL layer fills parameters skipped by a named call
//! with NULL (DataFusion requires every position up to the last given one), so NULL means
//! "the default" here. Everything but the per-row inputs must be a constant.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::{DataFusionError, Result, ScalarValue, plan_datafusion_err, plan_err};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;

/// What a parameter holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A per-row input (the value scored).
    Input,
    /// A per-row detector result (a struct).
    Result,
    /// A per-row `ROW(x1, x2, …)` of numeric inputs (multivariate detectors).
    Features,
    /// The per-row event time (filled from `ORDER BY` when not given).
    Time,
    /// A constant.
    Constant,
}

/// One declared parameter.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Its name in `name => value`.
    pub name: &'static str,
    /// What it holds.
    pub kind: ParamKind,
}

/// Shorthand for a per-row input parameter.
pub const fn input(name: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Input,
    }
}

/// Shorthand for a constant parameter.
pub const fn constant(name: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Constant,
    }
}

/// Shorthand for a per-row `ROW(…)` parameter.
pub const fn features(name: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Features,
    }
}

/// Shorthand for a per-row detector-result parameter.
pub const fn result(name: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Result,
    }
}

/// The event-time parameter, always last.
pub const TIME: ParamSpec = ParamSpec {
    name: "ts",
    kind: ParamKind::Time,
};

/// A window or half-life: a number of rows, or a span of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Span {
    /// This many rows.
    Rows(u64),
    /// This many nanoseconds of event time.
    Time(i64),
}

/// The constant arguments of one call, by name, plus where the per-row inputs are.
#[derive(Debug, Clone)]
pub struct Params {
    function: &'static str,
    constants: HashMap<&'static str, ScalarValue>,
    /// Argument index of each per-row input, in declaration order.
    pub inputs: Vec<usize>,
    /// Argument index of the event time, when given.
    pub time: Option<usize>,
}

impl Params {
    /// Reads the arguments of a call of `function` declared as `specs`.
    pub fn from_exprs(
        function: &'static str,
        specs: &[ParamSpec],
        args: &[Arc<dyn PhysicalExpr>],
    ) -> Result<Self> {
        if args.len() > specs.len() {
            return plan_err!(
                "{function} takes at most {} arguments, got {}",
                specs.len(),
                args.len()
            );
        }
        let mut params = Params {
            function,
            constants: HashMap::new(),
            inputs: Vec::new(),
            time: None,
        };
        for (i, spec) in specs.iter().enumerate() {
            let Some(arg) = args.get(i) else {
                if matches!(
                    spec.kind,
                    ParamKind::Input | ParamKind::Result | ParamKind::Features
                ) {
                    return plan_err!("{function}: missing argument {}", spec.name);
                }
                continue;
            };
            match spec.kind {
                ParamKind::Input | ParamKind::Result | ParamKind::Features => params.inputs.push(i),
                ParamKind::Time => params.time = Some(i),
                ParamKind::Constant => {
                    let Some(literal) = arg.as_ref().downcast_ref::<Literal>() else {
                        return plan_err!(
                            "{function}: {} must be a constant, not {arg}",
                            spec.name
                        );
                    };
                    if !literal.value().is_null() {
                        params.constants.insert(spec.name, literal.value().clone());
                    }
                }
            }
        }
        Ok(params)
    }

    fn error(&self, name: &str, expected: &str, got: &ScalarValue) -> DataFusionError {
        plan_datafusion_err!("{}: {name} must be {expected}, got {got}", self.function)
    }

    /// A number (any numeric literal).
    pub fn f64(&self, name: &str, default: f64) -> Result<f64> {
        let Some(value) = self.constants.get(name) else {
            return Ok(default);
        };
        let number = match value.cast_to(&datafusion::arrow::datatypes::DataType::Float64) {
            Ok(ScalarValue::Float64(Some(v)))
                if v.is_finite() && value.data_type().is_numeric() =>
            {
                v
            }
            _ => return Err(self.error(name, "a finite number", value)),
        };
        Ok(number)
    }

    /// A positive number.
    pub fn positive(&self, name: &str, default: f64) -> Result<f64> {
        let v = self.f64(name, default)?;
        if v > 0.0 {
            Ok(v)
        } else {
            plan_err!("{}: {name} must be positive, got {v}", self.function)
        }
    }

    /// A count (a non-negative integer).
    pub fn count(&self, name: &str, default: u64) -> Result<u64> {
        let Some(value) = self.constants.get(name) else {
            return Ok(default);
        };
        match value {
            ScalarValue::Int8(Some(_))
            | ScalarValue::Int16(Some(_))
            | ScalarValue::Int32(Some(_))
            | ScalarValue::Int64(Some(_))
            | ScalarValue::UInt8(Some(_))
            | ScalarValue::UInt16(Some(_))
            | ScalarValue::UInt32(Some(_))
            | ScalarValue::UInt64(Some(_)) => {
                match value.cast_to(&datafusion::arrow::datatypes::DataType::Int64) {
                    Ok(ScalarValue::Int64(Some(v))) if v >= 0 => Ok(v as u64),
                    _ => Err(self.error(name, "a non-negative integer", value)),
                }
            }
            _ => Err(self.error(name, "a non-negative integer", value)),
        }
    }

    /// A boolean.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool> {
        match self.constants.get(name) {
            None => Ok(default),
            Some(ScalarValue::Boolean(Some(b))) => Ok(*b),
            Some(other) => Err(self.error(name, "TRUE or FALSE", other)),
        }
    }

    /// One of `choices` (case-insensitive); returns the matching choice.
    pub fn choice(
        &self,
        name: &str,
        choices: &[&'static str],
        default: &'static str,
    ) -> Result<&'static str> {
        let Some(value) = self.constants.get(name) else {
            return Ok(default);
        };
        let text = match value {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => s,
            other => {
                return Err(self.error(name, &format!("one of '{}'", choices.join("', '")), other));
            }
        };
        choices
            .iter()
            .copied()
            .find(|c| c.eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                plan_datafusion_err!(
                    "{}: {name} must be one of '{}', got '{text}'",
                    self.function,
                    choices.join("', '")
                )
            })
    }

    /// A window or half-life: a positive integer (rows) or an INTERVAL (event time).
    pub fn span(&self, name: &str, default: Span) -> Result<Span> {
        let Some(value) = self.constants.get(name) else {
            return self.check_span(name, default);
        };
        let span = match value {
            ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => Span::Time(
                i64::from(v.days)
                    .saturating_mul(86_400_000_000_000)
                    .saturating_add(v.nanoseconds),
            ),
            ScalarValue::IntervalDayTime(Some(v)) => Span::Time(
                i64::from(v.days) * 86_400_000_000_000 + i64::from(v.milliseconds) * 1_000_000,
            ),
            ScalarValue::DurationSecond(Some(s)) => Span::Time(s.saturating_mul(1_000_000_000)),
            ScalarValue::DurationMillisecond(Some(s)) => Span::Time(s.saturating_mul(1_000_000)),
            ScalarValue::DurationMicrosecond(Some(s)) => Span::Time(s.saturating_mul(1_000)),
            ScalarValue::DurationNanosecond(Some(s)) => Span::Time(*s),
            other if other.data_type().is_integer() => Span::Rows(self.count(name, 0)?),
            other => {
                return Err(self.error(
                    name,
                    "a number of rows or an INTERVAL of days, hours, minutes or seconds",
                    other,
                ));
            }
        };
        self.check_span(name, span)
    }

    fn check_span(&self, name: &str, span: Span) -> Result<Span> {
        match span {
            Span::Rows(0) | Span::Time(..=0) => {
                plan_err!("{}: {name} must be positive", self.function)
            }
            Span::Time(_) if self.time.is_none() => plan_err!(
                "{}: {name} as an INTERVAL needs event time: call it with OVER (… ORDER BY <timestamp>) or pass ts => <timestamp>",
                self.function
            ),
            span => Ok(span),
        }
    }
}
