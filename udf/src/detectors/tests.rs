//! Behaviour every detector shares: warm-up, constant input, NULLs, spikes, state that survives
//! a save and load, and batch-by-batch evaluation equal to one pass.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StructArray};
use datafusion::arrow::datatypes::Float64Type;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal};

use crate::functions::detector_functions;
use crate::keyed::KeyedWindowFunction;

const DETECTORS: [&str; 7] = [
    "anomaly_zscore",
    "anomaly_ewma",
    "anomaly_mad",
    "anomaly_diff",
    "anomaly_seasonal",
    "changepoint_cusum",
    "changepoint_page_hinkley",
];

/// Binds `name(x, <named constants>)` without event time.
pub(crate) fn bind(name: &str, constants: &[(&str, ScalarValue)]) -> Arc<dyn KeyedWindowFunction> {
    let functions = detector_functions().unwrap_or_default();
    let Some(function) = functions
        .iter()
        .find(|f| datafusion::logical_expr::WindowUDFImpl::name(*f) == name)
    else {
        panic!("no detector {name}");
    };
    let params = function.params();
    let mut args: Vec<Arc<dyn PhysicalExpr>> = vec![Arc::new(Column::new("x", 0))];
    let last = constants
        .iter()
        .filter_map(|(n, _)| params.iter().position(|p| p.name == *n))
        .max()
        .unwrap_or(0);
    for spec in &params[1..=last] {
        let value = constants
            .iter()
            .find(|(n, _)| *n == spec.name)
            .map_or(ScalarValue::Null, |(_, v)| v.clone());
        args.push(Arc::new(Literal::new(value)));
    }
    match function.bind(&args[..=last]) {
        Ok(f) => f,
        Err(e) => panic!("bind {name}: {e}"),
    }
}

fn run(function: &Arc<dyn KeyedWindowFunction>, values: Vec<Option<f64>>) -> StructArray {
    let input: ArrayRef = Arc::new(Float64Array::from(values));
    let mut state = function.new_state();
    match state.evaluate(&[input]) {
        Ok(out) => out.as_struct().clone(),
        Err(e) => panic!("evaluate: {e}"),
    }
}

fn f64s(result: &StructArray, field: &str) -> Vec<Option<f64>> {
    result
        .column_by_name(field)
        .map(|c| c.as_primitive::<Float64Type>().iter().collect())
        .unwrap_or_default()
}

fn strings(result: &StructArray, field: &str) -> Vec<Option<String>> {
    result
        .column_by_name(field)
        .map(|c| {
            c.as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn bools(result: &StructArray, field: &str) -> Vec<Option<bool>> {
    result
        .column_by_name(field)
        .map(|c| c.as_boolean().iter().collect())
        .unwrap_or_default()
}

/// A noisy but deterministic series around 20.
fn noise(n: usize) -> Vec<Option<f64>> {
    let mut seed = 42u64;
    (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Some(20.0 + ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5))
        })
        .collect()
}

#[test]
fn warm_up_is_explicit_and_never_guesses() {
    for name in DETECTORS {
        let result = run(&bind(name, &[]), noise(40));
        let warmup = bools(&result, "warmup");
        let scores = f64s(&result, "score");
        assert_eq!(warmup[0], Some(true), "{name}");
        assert_eq!(scores[0], None, "{name}: no score during warm-up");
        assert_eq!(bools(&result, "is_anomaly")[0], Some(false), "{name}");
        assert_eq!(
            strings(&result, "severity")[0].as_deref(),
            Some("NORMAL"),
            "{name}"
        );
        assert_eq!(warmup[39], Some(false), "{name}: judging after 30 samples");
        assert!(scores[39].is_some_and(f64::is_finite), "{name}");
    }
}

#[test]
fn constant_input_scores_finite() {
    for name in DETECTORS {
        let mut values = vec![Some(5.0); 100];
        values.push(Some(5.0));
        values.push(Some(6.0));
        let result = run(&bind(name, &[]), values);
        let scores = f64s(&result, "score");
        let p = f64s(&result, "p_value");
        for (i, s) in scores.iter().enumerate().skip(31) {
            let s = s.unwrap_or(f64::NAN);
            assert!(s.is_finite(), "{name}: score {s} at {i}");
            let p = p[i].unwrap_or(f64::NAN);
            assert!(p > 0.0 && p <= 1.0, "{name}: p {p} at {i}");
        }
        assert!(
            scores[100].unwrap_or(f64::NAN) < 1.0,
            "{name}: the constant itself is normal"
        );
        for field in ["expected", "lower", "upper"] {
            assert!(
                f64s(&result, field).iter().flatten().all(|v| v.is_finite()),
                "{name}: {field}"
            );
        }
        if name != "changepoint_page_hinkley" {
            // Page–Hinkley measures in the input's unit: a step of 1 is below its λ = 50.
            assert_eq!(
                strings(&result, "severity")[101].as_deref(),
                Some("CRITICAL"),
                "{name}: a change from a constant"
            );
        }
    }
}

#[test]
fn nulls_give_null_results_and_leave_the_state_alone() {
    for name in DETECTORS {
        let function = bind(name, &[]);
        let clean = noise(60);
        let mut holes = Vec::new();
        for (i, v) in clean.iter().enumerate() {
            holes.push(*v);
            if i % 7 == 3 {
                holes.push(None);
                holes.push(Some(f64::NAN));
            }
        }
        let with = run(&function, holes.clone());
        let without = run(&function, clean);
        let kept: Vec<usize> = holes
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some_and(f64::is_finite))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(with.null_count(), holes.len() - kept.len(), "{name}");
        let scores = f64s(&with, "score");
        let kept_scores: Vec<Option<f64>> = kept.iter().map(|&i| scores[i]).collect();
        assert_eq!(kept_scores, f64s(&without, "score"), "{name}");
    }
}

#[test]
fn spikes_are_flagged_with_direction() {
    for name in [
        "anomaly_zscore",
        "anomaly_ewma",
        "anomaly_mad",
        "anomaly_diff",
        "anomaly_seasonal",
    ] {
        let mut values = noise(200);
        values[150] = Some(40.0);
        values[170] = Some(0.0);
        let result = run(&bind(name, &[]), values);
        let severity = strings(&result, "severity");
        let direction = strings(&result, "direction");
        assert_eq!(severity[150].as_deref(), Some("CRITICAL"), "{name}");
        assert_eq!(direction[150].as_deref(), Some("HIGH"), "{name}");
        assert_eq!(severity[170].as_deref(), Some("CRITICAL"), "{name}");
        assert_eq!(direction[170].as_deref(), Some("LOW"), "{name}");
        let false_alarms = severity
            .iter()
            .enumerate()
            .filter(|(i, s)| ![150, 151, 170, 171].contains(i) && s.as_deref() != Some("NORMAL"))
            .count();
        assert!(false_alarms <= 2, "{name}: {false_alarms} false alarms");
    }
}

#[test]
fn change_detectors_flag_a_level_shift_once() {
    let mut values = noise(400);
    for v in values.iter_mut().skip(200) {
        *v = v.map(|x| x + 2.0);
    }
    for (name, constants) in [
        ("changepoint_cusum", vec![]),
        (
            "changepoint_page_hinkley",
            vec![("lambda", ScalarValue::Float64(Some(10.0)))],
        ),
    ] {
        let result = run(&bind(name, &constants), values.clone());
        let alarms: Vec<usize> = bools(&result, "is_anomaly")
            .iter()
            .enumerate()
            .filter(|(_, a)| **a == Some(true))
            .map(|(i, _)| i)
            .collect();
        assert!(
            alarms.first().is_some_and(|&i| (200..230).contains(&i)),
            "{name}: alarms {alarms:?}"
        );
        assert!(
            alarms.iter().filter(|&&i| i < 200).count() == 0,
            "{name}: false alarms {alarms:?}"
        );
        assert!(alarms.len() <= 4, "{name}: one shift, alarms {alarms:?}");
        assert_eq!(
            strings(&result, "direction")[alarms[0]].as_deref(),
            Some("HIGH"),
            "{name}"
        );
    }
}

#[test]
fn saved_state_continues_where_it_stopped() {
    for name in DETECTORS {
        let function = bind(name, &[("window", ScalarValue::Int64(Some(50)))]);
        let values = noise(300);
        let whole = run(&function, values.clone());
        let mut state = function.new_state();
        let mut parts: Vec<ArrayRef> = Vec::new();
        for chunk in values.chunks(37) {
            let bytes = state.save().unwrap_or_default();
            state = function
                .load_state(&bytes)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let input: ArrayRef = Arc::new(Float64Array::from(chunk.to_vec()));
            parts.push(
                state
                    .evaluate(&[input])
                    .unwrap_or_else(|e| panic!("{name}: {e}")),
            );
        }
        let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        let joined = datafusion::arrow::compute::concat(&refs).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(joined.as_struct(), &whole, "{name}");
    }
}

#[test]
fn bad_parameters_are_plan_errors() {
    let functions = detector_functions().unwrap_or_default();
    let Some(mad) = functions
        .iter()
        .find(|f| datafusion::logical_expr::WindowUDFImpl::name(*f) == "anomaly_mad")
    else {
        panic!("no anomaly_mad");
    };
    let x: Arc<dyn PhysicalExpr> = Arc::new(Column::new("x", 0));
    for (window, needle) in [
        (ScalarValue::Int64(Some(0)), "must be positive"),
        (
            ScalarValue::Utf8(Some("big".into())),
            "number of rows or an INTERVAL",
        ),
        (
            ScalarValue::new_interval_mdn(0, 0, 60_000_000_000),
            "needs event time",
        ),
    ] {
        let err = mad
            .bind(&[Arc::clone(&x), Arc::new(Literal::new(window))])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
    let err = mad
        .bind(&[Arc::clone(&x), Arc::clone(&x)])
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be a constant"), "{err}");
}
