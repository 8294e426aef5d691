//! `cskpi bench`: generates a synthetic data set (or reuses one), measures
//! the scan floor (reading every input column once) and times a whole run,
//! reporting each stage, throughput, peak memory and output sizes. Speed and
//! memory goals are read from these numbers, never asserted by tests.
//!
//! Every measure is printed as `bench <name> <value>` so that
//! `benches/run.sh` can put it beside the DuckDB peer's numbers.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use futures::StreamExt;

use crate::config::JobConfig;
use crate::datagen::{
    DEFAULT_ROWS_PER_FILE, GENERATOR_VERSION, GenOptions, Layout, generate, generator_version_of,
};
use crate::error::Error;
use crate::run::{RunOptions, run_job};
use crate::views::open_inputs;

/// Peak resident memory of this process (Linux), in MiB: since the start,
/// or since the last `reset_peak_rss`.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Starts a new peak-RSS measurement (Linux: writing 5 to clear_refs resets
/// VmHWM), so the run's peak is not the floor's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The benchmark's data set in `dir`: generated (seed 42, 2023-07 ..
/// 2026-06, 0.1% bad rows) unless a `job.toml` is already there; one that
/// another version of the generator made is refused (its timings would not
/// compare). Returns the job file's path.
pub async fn prepare_data(customers: u64, layout: Layout, dir: &Path) -> Result<PathBuf, Error> {
    let job_path = dir.join("job.toml");
    if let Ok(text) = std::fs::read_to_string(&job_path)
        && let Some(version) = generator_version_of(&text)
        && version != Some(GENERATOR_VERSION)
    {
        let made_by = version.map_or("a generator from before versions".into(), |v| {
            format!("generator version {v}")
        });
        return Err(Error::Usage(format!(
            "{}: made by {made_by}, this cskpi's is version {GENERATOR_VERSION}: \
             remove the folder to generate it again, or pass another --dir",
            dir.display()
        )));
    }
    if !job_path.exists() {
        let started = Instant::now();
        let summary = generate(
            &GenOptions {
                customers,
                seed: 42,
                start: NaiveDate::from_ymd_opt(2023, 7, 1).expect("valid date"),
                end: NaiveDate::from_ymd_opt(2026, 6, 30).expect("valid date"),
                bad_row_rate: 0.001,
                layout,
                rows_per_file: DEFAULT_ROWS_PER_FILE,
            },
            dir,
        )
        .await?;
        println!("# generated {customers} customers, {layout:?} layout ({summary})");
        println!("bench gen_seconds {:.2}", started.elapsed().as_secs_f64());
    } else {
        println!("# reusing {}", job_path.display());
    }
    Ok(job_path)
}

/// Measures the scan floor and a whole run of `job` (see the module doc).
pub async fn run_benchmark(customers: u64, job: &JobConfig) -> Result<(), Error> {
    println!("bench customers {customers}");

    let (rows, seconds) = scan_floor(job).await?;
    println!("bench input_bytes {}", input_bytes(job).await?);
    println!("bench floor_rows {rows}");
    println!("bench floor_seconds {seconds:.2}");

    reset_peak_rss();
    let started = Instant::now();
    let report = run_job(job, &RunOptions::default()).await?;
    let seconds = started.elapsed().as_secs_f64();
    let rows_in: u64 = report.inputs.iter().map(|c| c.visible).sum();
    for (stage, stage_seconds) in &report.timings {
        println!("bench stage_seconds.{stage} {stage_seconds:.2}");
    }
    println!("bench run_seconds {seconds:.2}");
    println!("bench rows_in {rows_in}");
    println!("bench rows_per_second {:.0}", rows_in as f64 / seconds);
    if let Some(peak) = peak_rss_mib() {
        println!("bench peak_rss_mib {peak:.0}");
    }
    let out = Path::new(&report.output_path);
    for (table, rows) in &report.outputs {
        println!("bench output_rows.{table} {rows}");
        println!("bench output_bytes.{table} {}", dir_bytes(&out.join(table)));
    }
    Ok(())
}

/// The scan floor: the time DataFusion takes to read every column of every
/// input once (all partitions in parallel, batches decoded and dropped).
pub async fn scan_floor(job: &JobConfig) -> Result<(u64, f64), Error> {
    let (ctx, registered) = open_inputs(job).await?;
    let started = Instant::now();
    let mut rows = 0u64;
    for input in &registered {
        let frame = ctx.table(format!("{}_input", input.table)).await?;
        let mut stream = frame.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            rows += batch?.num_rows() as u64;
        }
    }
    Ok((rows, started.elapsed().as_secs_f64()))
}

/// Bytes of every Parquet file of the job's inputs.
async fn input_bytes(job: &JobConfig) -> Result<u64, Error> {
    let (_, registered) = open_inputs(job).await?;
    Ok(registered
        .iter()
        .flat_map(|input| &input.files)
        .map(|file| file.size)
        .sum())
}

/// Bytes of every file under `path` (a table's file or directory).
fn dir_bytes(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| dir_bytes(&e.path()))
            .sum(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn data_from_another_generator_version_is_refused_and_other_data_reused() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("job.toml");
        std::fs::write(
            &job,
            "# Made by `cskpi gen --customers 10 --seed 42 --layout date`.\n[input]\n",
        )
        .unwrap();
        let err = prepare_data(10, Layout::Date, dir.path())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(err.to_string().contains("remove the folder"), "{err}");
        std::fs::write(&job, "# my own data\n[input]\n").unwrap();
        assert_eq!(
            prepare_data(10, Layout::Date, dir.path()).await.unwrap(),
            job
        );
    }
}
