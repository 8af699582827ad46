//! Which window function calls a streaming view can run incrementally, and their per-key
//! state machines: Weir's detectors and `anomaly_alert`, `lag` and `lead`, and rolling aggregates over
//! frames that end at the current row. The streaming planner (weir-sql) asks here for every
//! `f(…) OVER (PARTITION BY … ORDER BY ts …)` of a materialized view.

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result, ScalarValue, plan_datafusion_err};
use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;

use weir_engine::function_library::{BoundWindowCall, WindowCall};

use crate::keyed::KeyedWindowFunction;
use crate::lag::{LagFunction, LeadFunction};
use crate::rolling::{Aggregate, FrameStart, RollingFunction};

/// The incremental form of `call`, and the arguments to evaluate for it (the call's own, plus
/// the event time for rolling aggregates, which is `order_by`). None when Weir has no
/// incremental form of the function; an error when it has one but not for this call.
pub fn streaming_window_function(
    call: &WindowCall<'_>,
    order_by: &Arc<dyn PhysicalExpr>,
) -> Option<Result<BoundWindowCall>> {
    match call.function {
        WindowFunctionDefinition::WindowUDF(udf) => {
            if let Some(detector) = crate::functions::keyed_window_function(udf, call.args) {
                return Some(detector.map(|f| (f, call.args.to_vec())));
            }
            let name = udf.name().to_ascii_lowercase();
            (name == "lag" || name == "lead")
                .then(|| shift(&name, call.args).map(|f| (f, call.args.to_vec())))
        }
        WindowFunctionDefinition::AggregateUDF(udaf) => {
            let aggregate = Aggregate::named(udaf.name())?;
            Some(rolling(udaf.name(), aggregate, call, order_by))
        }
    }
}

fn literal(expr: Option<&Arc<dyn PhysicalExpr>>) -> Option<ScalarValue> {
    expr.and_then(|e| e.as_ref().downcast_ref::<Literal>())
        .map(|l| l.value().clone())
}

/// `lag` or `lead`: (x, offset = 1, default = NULL), both constants.
fn shift(name: &str, args: &[Arc<dyn PhysicalExpr>]) -> Result<Arc<dyn KeyedWindowFunction>> {
    let offset = match (args.get(1), literal(args.get(1))) {
        (None, _) => 1,
        (Some(_), Some(v)) if !v.is_null() => {
            match v.cast_to(&datafusion::arrow::datatypes::DataType::Int64)? {
                ScalarValue::Int64(Some(n)) if n >= 0 => n as usize,
                _ => {
                    return Err(plan_datafusion_err!(
                        "{name}: the offset must be a non-negative integer, got {v}"
                    ));
                }
            }
        }
        (Some(e), _) => {
            return Err(plan_datafusion_err!(
                "{name}: the offset must be a constant, not {e}"
            ));
        }
    };
    let default = match (args.get(2), literal(args.get(2))) {
        (None, _) => ScalarValue::Null,
        (Some(_), Some(v)) => v,
        (Some(e), None) => {
            return Err(plan_datafusion_err!(
                "{name}: the default must be a constant, not {e}"
            ));
        }
    };
    Ok(if name == "lead" {
        Arc::new(LeadFunction::new(offset, default))
    } else {
        Arc::new(LagFunction::new(offset, default))
    })
}

/// A call Weir cannot run incrementally; the planner prefixes "not supported in a streaming
/// view".
fn unsupported(message: String) -> DataFusionError {
    DataFusionError::NotImplemented(message)
}

fn rolling(
    name: &str,
    aggregate: Aggregate,
    call: &WindowCall<'_>,
    order_by: &Arc<dyn PhysicalExpr>,
) -> Result<BoundWindowCall> {
    let frame = call.frame;
    if frame.end_bound != WindowFrameBound::CurrentRow {
        return Err(unsupported(format!(
            "{name}(…) OVER (… {} BETWEEN … AND {}) (a streaming view's frames end at CURRENT ROW: rows after the \
             current one are not known when it is released)",
            frame.units, frame.end_bound
        )));
    }
    let bound = |value: &ScalarValue| -> Result<FrameStart> {
        if value.is_null() {
            return Ok(FrameStart::Unbounded);
        }
        match (frame.units, value) {
            (WindowFrameUnits::Rows, v) => {
                match v.cast_to(&datafusion::arrow::datatypes::DataType::UInt64)? {
                    ScalarValue::UInt64(Some(n)) => Ok(FrameStart::Rows(n)),
                    _ => Err(plan_datafusion_err!(
                        "{name}: ROWS {v} PRECEDING needs a number of rows"
                    )),
                }
            }
            (WindowFrameUnits::Range, ScalarValue::IntervalMonthDayNano(Some(v)))
                if v.months == 0 =>
            {
                Ok(FrameStart::Range(
                    i64::from(v.days)
                        .saturating_mul(86_400_000_000_000)
                        .saturating_add(v.nanoseconds),
                ))
            }
            (WindowFrameUnits::Range, ScalarValue::IntervalDayTime(Some(v))) => {
                Ok(FrameStart::Range(
                    i64::from(v.days) * 86_400_000_000_000 + i64::from(v.milliseconds) * 1_000_000,
                ))
            }
            (WindowFrameUnits::Range, v) if v.data_type().is_integer() => {
                match v.cast_to(&datafusion::arrow::datatypes::DataType::Int64)? {
                    ScalarValue::Int64(Some(n)) => Ok(FrameStart::Range(n)),
                    _ => Err(plan_datafusion_err!("{name}: RANGE {v} PRECEDING")),
                }
            }
            (units, v) => Err(unsupported(format!(
                "{name}(…) OVER (… {units} {v} PRECEDING) (use ROWS n PRECEDING, or RANGE INTERVAL '…' PRECEDING \
                 in days, hours, minutes or seconds)"
            ))),
        }
    };
    let (start, peers) = match (&frame.units, &frame.start_bound) {
        (WindowFrameUnits::Groups, _) => {
            return Err(unsupported(format!(
                "{name}(…) OVER (… GROUPS …) (use ROWS or RANGE)"
            )));
        }
        (units, WindowFrameBound::CurrentRow) => (
            if *units == WindowFrameUnits::Rows {
                FrameStart::Rows(0)
            } else {
                FrameStart::Range(0)
            },
            *units == WindowFrameUnits::Range,
        ),
        (units, WindowFrameBound::Preceding(v)) => (bound(v)?, *units == WindowFrameUnits::Range),
        (_, WindowFrameBound::Following(_)) => {
            return Err(unsupported(format!(
                "{name}(…) OVER (… BETWEEN … FOLLOWING …) (a streaming view's frames end at CURRENT ROW)"
            )));
        }
    };
    let input = match (aggregate, call.args.first()) {
        (Aggregate::Count, None) => None,
        (_, Some(arg)) => {
            let t = arg.data_type(call.input)?;
            if !(t.is_numeric() || t.is_null() || aggregate == Aggregate::Count) {
                return Err(unsupported(format!(
                    "{name}(…) OVER (…) of {t} values (rolling aggregates take numbers)"
                )));
            }
            Some(0)
        }
        (_, None) => return Err(plan_datafusion_err!("{name} needs an argument")),
    };
    let mut args = call.args.to_vec();
    args.truncate(1);
    args.push(Arc::clone(order_by));
    let time = args.len() - 1;
    Ok((
        Arc::new(RollingFunction::new(
            name, aggregate, start, peers, input, time,
        )),
        args,
    ))
}
