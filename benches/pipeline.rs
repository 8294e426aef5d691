//! `cargo bench --bench pipeline`: generates a synthetic data set and runs
//! the whole job on it, printing wall time, throughput and peak memory.
//! Size with CSKPI_BENCH_CUSTOMERS (default 20000); point CSKPI_BENCH_DIR at
//! a directory to keep the data between runs.

use std::path::PathBuf;
use std::time::Instant;

use chrono::NaiveDate;
use cskpi::config::JobConfig;
use cskpi::datagen::{GenOptions, generate};
use cskpi::run::{RunOptions, run_job};

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let customers: u64 = std::env::var("CSKPI_BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var("CSKPI_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join(format!("gen-{customers}")));
    let job_path = dir.join("job.toml");
    if !job_path.exists() {
        let started = Instant::now();
        let summary = generate(
            &GenOptions {
                customers,
                seed: 42,
                start: NaiveDate::from_ymd_opt(2023, 7, 1).unwrap(),
                end: NaiveDate::from_ymd_opt(2026, 6, 30).unwrap(),
                bad_row_rate: 0.001,
            },
            &dir,
        )
        .unwrap();
        println!(
            "gen     {customers} customers in {:.2} s ({summary})",
            started.elapsed().as_secs_f64()
        );
    }
    let job = JobConfig::load(&job_path).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let report = runtime
        .block_on(run_job(&job, &RunOptions::default()))
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let rows_in: u64 = report.inputs.iter().map(|c| c.visible).sum();
    println!(
        "run     {customers} customers, {rows_in} input rows in {seconds:.2} s ({:.0} rows/s)",
        rows_in as f64 / seconds
    );
    for (table, rows) in &report.outputs {
        println!("        {table:<18} {rows:>10} rows");
    }
    if let Some(peak) = peak_rss_mib() {
        println!("memory  peak RSS {peak:.0} MiB");
    }
}
