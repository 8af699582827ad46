//! Behaviour every multivariate detector shares: warm-up, constant input, NULLs, finding an
//! outlier and naming the input responsible, state that survives a save and load, and
//! batch-by-batch evaluation equal to one pass.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal};

use crate::detectors::tests::bind;
use crate::functions::detector_functions;
use crate::keyed::KeyedWindowFunction;

const DETECTORS: [&str; 4] = [
    "anomaly_pca",
    "anomaly_kmeans",
    "anomaly_hst",
    "anomaly_iforest",
];

/// Small settings so the tests warm up quickly.
fn quick(name: &str) -> Arc<dyn KeyedWindowFunction> {
    let int = |v| ScalarValue::Int64(Some(v));
    match name {
        "anomaly_kmeans" => bind(name, &[("k", int(2)), ("batch", int(50))]),
        "anomaly_hst" => bind(name, &[("window", int(200))]),
        "anomaly_iforest" => bind(name, &[("window", int(256)), ("sample", int(64))]),
        _ => bind(name, &[]),
    }
}

/// Rows of (a, b, c): b follows a, c is independent noise.
fn rows(n: usize) -> Vec<Option<[f64; 3]>> {
    let mut seed = 7u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5
    };
    (0..n)
        .map(|_| {
            let a = 10.0 + 2.0 * next();
            Some([a, 2.0 * a + 0.1 * next(), 5.0 + next()])
        })
        .collect()
}

fn input(rows: &[Option<[f64; 3]>]) -> ArrayRef {
    let column = |j: usize| -> ArrayRef {
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.map(|r| r[j])).collect::<Vec<_>>(),
        ))
    };
    let fields = vec![
        Arc::new(Field::new("a", DataType::Float64, true)),
        Arc::new(Field::new("b", DataType::Float64, true)),
        Arc::new(Field::new("c", DataType::Float64, true)),
    ];
    let nulls = rows.iter().map(Option::is_some).collect::<Vec<_>>();
    Arc::new(StructArray::new(
        fields.into(),
        vec![column(0), column(1), column(2)],
        Some(nulls.into()),
    ))
}

fn evaluate(
    state: &mut Box<dyn crate::keyed::WindowState>,
    rows: &[Option<[f64; 3]>],
) -> StructArray {
    state.evaluate(&[input(rows)]).unwrap().as_struct().clone()
}

fn f64s(result: &StructArray, field: &str) -> Vec<Option<f64>> {
    result
        .column_by_name(field)
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

fn bools(result: &StructArray, field: &str) -> Vec<Option<bool>> {
    result
        .column_by_name(field)
        .unwrap()
        .as_boolean()
        .iter()
        .collect()
}

#[test]
fn warm_up_is_explicit_and_scores_are_finite_on_constant_input() {
    for name in DETECTORS {
        let function = quick(name);
        let mut state = function.new_state();
        let constant = vec![Some([1.0, 2.0, 3.0]); 600];
        let result = evaluate(&mut state, &constant);
        let warmup = bools(&result, "warmup");
        assert_eq!(warmup[0], Some(true), "{name}");
        assert!(warmup.contains(&Some(false)), "{name} never left warm-up");
        for (i, score) in f64s(&result, "score").iter().enumerate() {
            assert!(
                score.is_none_or(f64::is_finite),
                "{name} row {i}: {score:?}"
            );
            if warmup[i] == Some(true) {
                assert!(score.is_none(), "{name} guessed during warm-up");
            }
        }
        // A different row after a constant history: large, finite, flagged.
        let other = evaluate(&mut state, &[Some([1.0, 9.0, 3.0])]);
        assert!(
            f64s(&other, "score")[0].is_some_and(f64::is_finite),
            "{name}"
        );
        assert_eq!(bools(&other, "is_anomaly")[0], Some(true), "{name}");
    }
}

#[test]
fn a_null_row_gets_a_null_result_and_leaves_the_state_alone() {
    for name in DETECTORS {
        let function = quick(name);
        let data = rows(700);
        let mut with_nulls: Vec<Option<[f64; 3]>> = Vec::new();
        for (i, r) in data.iter().enumerate() {
            with_nulls.push(*r);
            if i % 50 == 0 {
                with_nulls.push(None);
                with_nulls.push(Some([f64::NAN, 1.0, 1.0]));
            }
        }
        let plain = evaluate(&mut function.new_state(), &data);
        let gapped = evaluate(&mut function.new_state(), &with_nulls);
        assert_eq!(gapped.null_count(), 2 * 14, "{name}");
        let kept: Vec<Option<f64>> = f64s(&gapped, "score")
            .into_iter()
            .zip(0..)
            .filter(|(_, i)| gapped.is_valid(*i))
            .map(|(s, _)| s)
            .collect();
        assert_eq!(kept, f64s(&plain, "score"), "{name}");
    }
}

#[test]
fn an_outlier_is_found_and_attributed_to_the_input_that_broke_the_pattern() {
    for name in DETECTORS {
        let function = quick(name);
        let mut state = function.new_state();
        evaluate(&mut state, &rows(1500));
        // b far off its relation to a (and off its own range).
        let result = evaluate(&mut state, &[Some([10.0, 35.0, 5.0])]);
        let p = f64s(&result, "p_value")[0].unwrap();
        assert_eq!(bools(&result, "is_anomaly")[0], Some(true), "{name}: {p}");
        let score = f64s(&result, "score")[0].unwrap();
        let attribution = result.column_by_name("attribution").unwrap().as_struct();
        let shares: Vec<f64> = (0..3)
            .map(|j| attribution.column(j).as_primitive::<Float64Type>().value(0))
            .collect();
        let total: f64 = shares.iter().map(|s| s.abs()).sum();
        assert!(
            (total - score).abs() <= 1e-9 * score.max(1.0),
            "{name}: {shares:?} vs {score}"
        );
        assert!(
            shares[1] > 0.0
                && shares[1].abs() >= shares[0].abs()
                && shares[1].abs() >= shares[2].abs(),
            "{name}: {shares:?}"
        );
        let direction = result
            .column_by_name("direction")
            .unwrap()
            .as_string::<i32>()
            .value(0)
            .to_string();
        assert_eq!(direction, "HIGH", "{name}");
    }
}

#[test]
fn pca_flags_a_broken_correlation_the_inputs_alone_would_not() {
    let function = quick("anomaly_pca");
    let mut state = function.new_state();
    evaluate(&mut state, &rows(1000));
    // a and b are each in range, but b no longer follows a.
    let result = evaluate(
        &mut state,
        &[Some([10.8, 19.2, 5.0]), Some([10.8, 21.6, 5.0])],
    );
    let flagged = bools(&result, "is_anomaly");
    assert_eq!(
        flagged,
        vec![Some(true), Some(false)],
        "{:?}",
        f64s(&result, "score")
    );
}

#[test]
fn state_survives_a_save_and_load_and_batches_equal_one_pass() {
    for name in DETECTORS {
        let function = quick(name);
        let data = rows(1200);
        let whole = evaluate(&mut function.new_state(), &data);
        let mut state = function.new_state();
        let mut parts = Vec::new();
        for (i, chunk) in data.chunks(97).enumerate() {
            if i % 3 == 2 {
                let bytes = state.save().unwrap();
                state = function.load_state(&bytes).unwrap();
            }
            parts.push(evaluate(&mut state, chunk));
        }
        let scores: Vec<Option<f64>> = parts.iter().flat_map(|p| f64s(p, "score")).collect();
        assert_eq!(scores, f64s(&whole, "score"), "{name}");
        let p: Vec<Option<f64>> = parts.iter().flat_map(|p| f64s(p, "p_value")).collect();
        assert_eq!(p, f64s(&whole, "p_value"), "{name}");
        assert!(state.size() > 0);
    }
}

#[test]
fn the_same_seed_gives_the_same_scores_and_bad_settings_are_plan_errors() {
    let data = rows(800);
    for name in ["anomaly_kmeans", "anomaly_hst", "anomaly_iforest"] {
        let a = evaluate(&mut quick(name).new_state(), &data);
        let b = evaluate(&mut quick(name).new_state(), &data);
        assert_eq!(f64s(&a, "score"), f64s(&b, "score"), "{name}");
    }
    let functions = detector_functions().unwrap();
    let kmeans = functions
        .iter()
        .find(|f| datafusion::logical_expr::WindowUDFImpl::name(*f) == "anomaly_kmeans")
        .unwrap();
    let args: Vec<Arc<dyn PhysicalExpr>> = vec![
        Arc::new(Column::new("x", 0)),
        Arc::new(Literal::new(ScalarValue::Int64(Some(0)))),
    ];
    let error = kmeans.bind(&args).unwrap_err().to_string();
    assert!(error.contains("k (0)"), "{error}");
}
