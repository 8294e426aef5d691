//! Publication: idempotent runs, a run killed mid-way, two runs at once.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cskpi::config::JobConfig;
use cskpi::run::{RunOptions, run_job};

use super::fixture::{TableFile, generate_dataset, query_outputs, table_files};

/// Every published table's files, by table name.
fn table_bytes(out: &Path) -> Vec<(&'static str, Vec<TableFile>)> {
    cskpi::run::output_tables()
        .iter()
        .map(|t| (t.name, table_files(out, t.name)))
        .collect()
}

async fn generated(dir: &Path, customers: u64) -> JobConfig {
    generate_dataset(dir, customers, 3, "2023-01-01", "2025-12-31").await
}

#[tokio::test]
async fn same_inputs_twice_give_byte_identical_tables() {
    let dir = tempfile::tempdir().unwrap();
    let job = generated(dir.path(), 600).await;
    run_job(&job, &RunOptions::default()).await.unwrap();
    let first = table_bytes(&dir.path().join("out"));
    run_job(&job, &RunOptions::default()).await.unwrap();
    for ((table, a), (_, b)) in first.iter().zip(table_bytes(&dir.path().join("out"))) {
        assert!(*a == b, "{table} differs between two runs");
    }
}

#[tokio::test]
async fn a_run_on_a_locked_output_fails_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let job = generated(dir.path(), 20).await;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let held = std::fs::File::create(out.join(".cskpi.lock")).unwrap();
    held.lock().unwrap();
    let err = run_job(&job, &RunOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("another cskpi run"), "{err}");
    assert_eq!(err.exit_code(), cskpi::error::exit_code::OUTPUT);
    held.unlock().unwrap();
    run_job(&job, &RunOptions::default()).await.unwrap();
}

/// Kills runs at several points of their life; after each, every table is
/// still one readable Parquet file, from this run or the last good one.
#[tokio::test]
async fn a_killed_run_leaves_the_previous_outputs_readable() {
    let dir = tempfile::tempdir().unwrap();
    generated(dir.path(), 3000).await;
    let job = dir.path().join("job.toml");
    // Killed runs cannot remove their scratch directory: keep it in here.
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace("[run]\n", "[run]\nwork_dir = \"scratch\"\n"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_cskpi"))
            .args(["run", "--config"])
            .arg(&job)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let started = Instant::now();
    assert!(run().wait().unwrap().success());
    let full = started.elapsed();
    let good: Vec<Vec<String>> = query_outputs(&out, "SELECT COUNT(*) FROM mrr_movements").await;
    let good_files = table_bytes(&out);
    assert!(
        good_files.iter().any(|(_, files)| files.len() > 1),
        "some tables are partitioned"
    );

    for fraction in [0.2, 0.5, 0.8, 0.95] {
        let mut child = run();
        std::thread::sleep(full.mul_f64(fraction));
        let _ = child.kill(); // SIGKILL: no cleanup runs
        child.wait().unwrap();
        // Same inputs: whichever run each table is from, its files are
        // exactly the complete files of a finished run.
        for ((table, files), (_, good)) in table_bytes(&out).iter().zip(&good_files) {
            assert!(files == good, "{table} after a kill at {fraction}");
        }
        // Same inputs, same as_of: whichever run a table is from, it is whole.
        let now = query_outputs(&out, "SELECT COUNT(*) FROM mrr_movements").await;
        assert_eq!(now, good, "kill at {fraction}");
        let manifest = std::fs::read_to_string(out.join("_manifest.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&manifest).unwrap();
    }
    // The next run cleans what the killed ones left.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut child = run();
    assert!(child.wait().unwrap().success());
    assert!(Instant::now() < deadline);
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".cskpi-staging"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
