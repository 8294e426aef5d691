//! `cskpi bench`: generates a synthetic data set (or reuses one) and runs the
//! whole job on it, reporting wall time, throughput and peak memory. Speed
//! and memory goals are read from these numbers, never asserted by tests.

use std::path::Path;
use std::time::Instant;

use chrono::NaiveDate;

use crate::config::JobConfig;
use crate::datagen::{GenOptions, generate};
use crate::error::Error;
use crate::run::{RunOptions, run_job};

/// Peak resident memory of this process so far (Linux), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Generates `customers` customers into `dir` unless a job is already there,
/// then runs it; prints one line per measure.
pub async fn run_benchmark(customers: u64, dir: &Path) -> Result<(), Error> {
    let job_path = dir.join("job.toml");
    if !job_path.exists() {
        let started = Instant::now();
        let summary = generate(
            &GenOptions {
                customers,
                seed: 42,
                start: NaiveDate::from_ymd_opt(2023, 7, 1).expect("valid date"),
                end: NaiveDate::from_ymd_opt(2026, 6, 30).expect("valid date"),
                bad_row_rate: 0.001,
            },
            dir,
        )?;
        println!(
            "gen     {customers} customers in {:.2} s ({summary})",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("gen     reusing {}", job_path.display());
    }
    let job = JobConfig::load(&job_path)?;
    let started = Instant::now();
    let report = run_job(&job, &RunOptions::default()).await?;
    let seconds = started.elapsed().as_secs_f64();
    let rows_in: u64 = report.inputs.iter().map(|c| c.visible).sum();
    println!(
        "run     {rows_in} input rows in {seconds:.2} s ({:.0} rows/s)",
        rows_in as f64 / seconds
    );
    for (table, rows) in &report.outputs {
        println!("        {table:<18} {rows:>10} rows");
    }
    if let Some(peak) = peak_rss_mib() {
        println!("memory  peak RSS {peak:.0} MiB");
    }
    Ok(())
}
