//! Properties on generated data: the MRR bridge and the generator's promises.

use std::path::Path;

use cskpi::config::JobConfig;
use cskpi::run::{RunOptions, run_job};

use super::fixture::{generate_dataset, input_names, query_outputs};

fn dataset(dir: &Path, customers: u64, seed: u64) -> JobConfig {
    generate_dataset(dir, customers, seed, "2024-01-01", "2025-06-30")
}

async fn generate_and_run(dir: &Path, customers: u64) {
    let job = dataset(dir, customers, 7);
    run_job(&job, &RunOptions::default()).await.unwrap();
}

#[tokio::test]
async fn mrr_bridge_holds_per_segment_and_month() {
    let dir = tempfile::tempdir().unwrap();
    generate_and_run(dir.path(), 400).await;
    let out = dir.path().join("out");

    // mrr(M) = mrr(M-1) + net_new_mrr, up to 0.005 per customer; and the
    // segments add up to 'all'.
    let rows = query_outputs(
        &out,
        "SELECT m.month, m.segment, m.mrr, p.mrr, m.net_new_mrr, m.paying_customers, p.paying_customers \
         FROM mrr_monthly m JOIN mrr_monthly p \
           ON p.segment = m.segment AND p.month = CAST(m.month - INTERVAL '1 month' AS DATE) \
         ORDER BY 1, 2",
    )
    .await;
    assert!(
        rows.len() > 40,
        "expected many month-segment pairs, got {}",
        rows.len()
    );
    let mut nonzero = 0;
    for r in &rows {
        let (mrr, prev, net): (f64, f64, f64) = (
            r[2].parse().unwrap(),
            r[3].parse().unwrap(),
            r[4].parse().unwrap(),
        );
        let customers: f64 = r[5].parse::<f64>().unwrap() + r[6].parse::<f64>().unwrap() + 1.0;
        assert!(
            (mrr - prev - net).abs() <= 0.005 * customers,
            "bridge broken in {r:?}"
        );
        if net.abs() > 0.0 {
            nonzero += 1;
        }
    }
    assert!(nonzero > 10, "the generated data should move MRR");

    let sums = query_outputs(
        &out,
        "SELECT a.month, a.mrr, SUM(s.mrr) FROM mrr_monthly a JOIN mrr_monthly s \
           ON s.month = a.month AND s.segment <> 'all' \
         WHERE a.segment = 'all' GROUP BY a.month, a.mrr",
    )
    .await;
    for r in sums {
        let (all, parts): (f64, f64) = (r[1].parse().unwrap(), r[2].parse().unwrap());
        assert!((all - parts).abs() < 1e-6, "{r:?}");
    }

    // Every movement kind shows up in 400 customers over 18 months.
    let kinds = query_outputs(
        &out,
        "SELECT DISTINCT movement FROM mrr_movements ORDER BY 1",
    )
    .await;
    let kinds: Vec<&str> = kinds.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "churn",
            "contraction",
            "expansion",
            "flat",
            "new",
            "reactivation"
        ]
    );

    // Deliberately broken rows end up in rejects, under the ratio limit.
    let rejects = query_outputs(&out, "SELECT COUNT(*) FROM rejects").await;
    assert!(rejects[0][0].parse::<u64>().unwrap() > 0);
}

#[test]
fn same_seed_same_files_other_seed_other_files() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    dataset(a.path(), 50, 1);
    dataset(b.path(), 50, 1);
    dataset(c.path(), 50, 2);
    for t in input_names() {
        let file = format!("{t}.parquet");
        let (x, y) = (
            std::fs::read(a.path().join(&file)).unwrap(),
            std::fs::read(b.path().join(&file)).unwrap(),
        );
        assert_eq!(x, y, "{t} differs between two runs with the same seed");
    }
    assert_ne!(
        std::fs::read(a.path().join("orders.parquet")).unwrap(),
        std::fs::read(c.path().join("orders.parquet")).unwrap()
    );
}

#[test]
fn committed_sample_is_small_and_complete() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples");
    let mut total = 0;
    for t in input_names() {
        let meta = std::fs::metadata(dir.join(format!("{t}.parquet"))).unwrap();
        total += meta.len();
    }
    assert!(total < 5 * 1024 * 1024, "data-samples is {total} bytes");
    assert!(JobConfig::load(&dir.join("job.toml")).is_ok());
}
