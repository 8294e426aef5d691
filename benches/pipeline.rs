//! `cargo bench --bench pipeline`: the `cskpi bench` measurement in the
//! release profile. Size with CSKPI_BENCH_CUSTOMERS (default 20000), layout
//! with CSKPI_BENCH_LAYOUT (date or customer, default date); point
//! CSKPI_BENCH_DIR at a directory to keep the data between runs.

use std::path::PathBuf;

fn main() {
    let customers: u64 = std::env::var("CSKPI_BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let layout = match std::env::var("CSKPI_BENCH_LAYOUT").as_deref() {
        Ok("customer") => cskpi::datagen::Layout::Customer,
        _ => cskpi::datagen::Layout::Date,
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var("CSKPI_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join(format!("gen-{customers}")));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(async {
            let job_path = cskpi::cli::bench::prepare_data(customers, layout, &dir).await?;
            let job = cskpi::config::JobConfig::load(&job_path)?;
            cskpi::cli::bench::run_benchmark(customers, &job).await
        })
        .unwrap();
}
