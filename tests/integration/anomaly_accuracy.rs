//! Accuracy floors of the anomaly detectors on labelled data sets shipped in PyPI wheels
//! (anomaly.md §7): the references measured on this kind of machine must not be undercut. The
//! goals, and µs per event, are in the `anomaly` bench and BENCHMARKS.md.

use datafusion::common::ScalarValue;

#[path = "../../benches/common/accuracy.rs"]
mod accuracy;

use accuracy::{bind, pr_auc, roc_auc, score, score_rows, shuttle_per_feature, tcpd_f1, ucr_hit};

fn int(v: i64) -> ScalarValue {
    ScalarValue::Int64(Some(v))
}

#[test]
fn tcpd_f1_reproduces_the_zero_baseline() {
    let series = accuracy::tcpd();
    let mean = series
        .iter()
        .map(|(_, _, a)| tcpd_f1(&[], a, 5))
        .sum::<f64>()
        / series.len() as f64;
    assert!((mean - 0.483).abs() < 0.001, "zero baseline {mean}");
}

#[test]
fn shuttle_online_zscore_keeps_the_reference_floor() {
    let (rows, labels) = accuracy::shuttle();
    // The reference's protocol: learn every row, judge from the second one.
    let z = bind(
        "anomaly_zscore",
        &[
            ("method", ScalarValue::from("cumulative")),
            ("min_samples", int(2)),
            ("learn_anomalies", ScalarValue::Boolean(Some(true))),
        ],
    );
    let scored = shuttle_per_feature(&z, &rows);
    let (roc, pr) = (
        roc_auc(&scored.scores, &labels),
        pr_auc(&scored.scores, &labels),
    );
    println!("shuttle zscore cumulative, reference protocol: ROC-AUC {roc:.4} PR-AUC {pr:.4}");
    // The online z-score reference (0.988 / 0.883), which also beats river's LODA (0.972 / 0.712).
    assert!(roc >= 0.988 && pr >= 0.882, "ROC-AUC {roc} PR-AUC {pr}");
    // With Weir's defaults (warm-up, anomalies learned clipped) ROC-AUC is higher and PR-AUC lower.
    let defaults = shuttle_per_feature(
        &bind(
            "anomaly_zscore",
            &[("method", ScalarValue::from("cumulative"))],
        ),
        &rows,
    );
    let (roc, pr) = (
        roc_auc(&defaults.scores, &labels),
        pr_auc(&defaults.scores, &labels),
    );
    println!("shuttle zscore cumulative, defaults: ROC-AUC {roc:.4} PR-AUC {pr:.4}");
    assert!(
        roc >= 0.972 && pr >= 0.712,
        "defaults: ROC-AUC {roc} PR-AUC {pr} (LODA's floor)"
    );
}

#[test]
fn shuttle_multivariate_detectors_keep_their_reference_floors() {
    let (rows, labels) = accuracy::shuttle();
    // Floors are the streaming references of anomaly.md §4.3: river's LODA (0.972 / 0.712) for
    // PCA and the isolation forest, river's HalfSpaceTrees (0.961 / 0.596) for ours. k-means
    // measures 0.914 / 0.524 here, below linfa's reference protocol (0.950 / 0.730, which scales
    // by a global range): its floor is our own figure until that gap is closed.
    for (function, floor_roc, floor_pr) in [
        ("anomaly_pca", 0.972, 0.712),
        ("anomaly_hst", 0.961, 0.596),
        ("anomaly_iforest", 0.972, 0.712),
        ("anomaly_kmeans", 0.913, 0.524),
    ] {
        let scored = score_rows(&bind(function, &[]), &rows);
        let (roc, pr) = (
            roc_auc(&scored.scores, &labels),
            pr_auc(&scored.scores, &labels),
        );
        println!(
            "shuttle {function}: ROC-AUC {roc:.4} PR-AUC {pr:.4} ({:.2} µs/event in this profile)",
            scored.nanos_per_event / 1000.0
        );
        assert!(
            roc >= floor_roc && pr >= floor_pr,
            "{function}: ROC-AUC {roc} PR-AUC {pr}"
        );
    }
}

#[test]
fn ucr135_mad_on_first_differences_hits_the_anomaly() {
    let (values, labels) = accuracy::ucr135();
    let d = bind("anomaly_diff", &[("window", int(512))]);
    let scored = score(&d, &values);
    let (scores, labels) = (&scored.scores[1200..], &labels[1200..]);
    let pr = pr_auc(scores, labels);
    println!(
        "ucr135 anomaly_diff mad 512: hit {} PR-AUC {pr:.4} ROC-AUC {:.4}",
        ucr_hit(scores, labels, 100),
        roc_auc(scores, labels)
    );
    assert!(ucr_hit(scores, labels, 100));
    assert!(pr >= 0.719, "PR-AUC {pr}");
}

#[test]
fn tcpd_change_detectors_keep_the_reference_floors() {
    let series = accuracy::tcpd();
    // CUSUM: the reference CUSUM's 0.343. Page–Hinkley measures 0.248 here against river's 0.274
    // (same defaults; the gap is not explained yet): its floor is our own figure until it is.
    for (function, floor) in [
        ("changepoint_cusum", 0.343),
        ("changepoint_page_hinkley", 0.248),
    ] {
        let detector = bind(function, &[]);
        let f1: Vec<f64> = series
            .iter()
            .map(|(_, values, annotations)| {
                tcpd_f1(&score(&detector, values).alarms, annotations, 5)
            })
            .collect();
        let mean = f1.iter().sum::<f64>() / f1.len() as f64;
        println!("tcpd {function}: mean F1 {mean:.3} per series {f1:.3?}");
        assert!(mean >= floor, "{function}: mean F1 {mean}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anomaly_alerts_example_finds_the_injected_anomalies() {
    // The example as shipped, with the paced generator made a bounded, fast one.
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let example =
        std::fs::read_to_string(root.join("examples/anomaly_alerts.sql")).expect("example");
    let bounded = example.replace(
        "rate = '500'",
        "rate = 'unbounded', events = '100000', seed = '11', start_time = '2024-01-01T00:00:00Z'",
    );
    assert_ne!(bounded, example, "the example's generator options changed");
    let session = weir::database().build().expect("database").session();
    session.execute_all(&bounded).await.expect("example");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let status = crate::harness::query_rows(
            &session,
            "SELECT string_agg(status, ',' ORDER BY name) FROM weir_views",
        )
        .await;
        if status.first().map(String::as_str) == Some("finished,finished,finished") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "views did not finish: {status:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let confusion = crate::harness::query_rows(
        &session,
        "SELECT is_anomaly, verdict['is_anomaly'], count(*) FROM sensor_verdicts WHERE NOT verdict['warmup'] GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
    let count = |label: &str, flagged: &str| {
        confusion
            .iter()
            .find(|r| r.starts_with(&format!("{label} | {flagged} |")))
            .and_then(|r| r.rsplit(" | ").next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let recall = count("t", "t") / (count("t", "t") + count("t", "f"));
    let false_rate = count("f", "t") / (count("f", "t") + count("f", "f"));
    println!(
        "example: confusion {confusion:?} recall {recall:.3} false-alarm rate {false_rate:.5}"
    );
    assert!(recall >= 0.9, "recall {recall}: {confusion:?}");
    assert!(
        false_rate <= 0.01,
        "false-alarm rate {false_rate}: {confusion:?}"
    );
    let events = crate::harness::query_rows(
        &session,
        "SELECT event, count(*) FROM sensor_alerts GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert!(
        events.iter().any(|e| e.starts_with("OPEN | ")),
        "{events:?}"
    );
    assert!(
        events.iter().all(|e| ["OPEN", "ESCALATE", "CLOSE"]
            .iter()
            .any(|k| e.starts_with(k))),
        "{events:?}"
    );
}
