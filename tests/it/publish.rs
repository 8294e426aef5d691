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

/// Spec 5: each table directory reads as one table, with its spec types,
/// by DataFusion's and pyarrow's defaults (hive inference on): its files
/// sit side by side, each with every column, names as Utf8.
#[tokio::test]
async fn published_tables_read_as_one_table_with_plain_strings() {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let dir = tempfile::tempdir().unwrap();
    let job = generated(dir.path(), 300).await;
    run_job(&job, &RunOptions::default()).await.unwrap();
    let out = dir.path().join("out");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    let rows_of = |table: &str| -> u64 {
        manifest["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["table"] == table)
            .unwrap()["rows"]
            .as_u64()
            .unwrap()
    };
    fn has_view(t: &DataType) -> bool {
        match t {
            DataType::Utf8View | DataType::BinaryView => true,
            DataType::List(f) | DataType::LargeList(f) | DataType::Map(f, _) => {
                has_view(f.data_type())
            }
            DataType::Struct(fields) => fields.iter().any(|f| has_view(f.data_type())),
            _ => false,
        }
    }

    let ctx = datafusion::prelude::SessionContext::new();
    for table in cskpi::run::output_tables() {
        let name = table.name;
        let table_dir = out.join(name);
        let files: Vec<_> = std::fs::read_dir(&table_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            files.iter().all(|f| f.is_file()),
            "{name}: no subfolders, {files:?}"
        );
        if name == "mrr_movements" {
            assert!(files.len() > 1, "{name}: one file per month, {files:?}");
        }
        for file in &files {
            let schema =
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap())
                    .unwrap()
                    .schema()
                    .clone();
            for field in schema.fields() {
                assert!(!has_view(field.data_type()), "{file:?}: {field}");
                if ["month", "as_of"].contains(&field.name().as_str()) {
                    assert_eq!(field.data_type(), &DataType::Date32, "{file:?}");
                }
            }
        }
        ctx.sql(&format!(
            "CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{}/'",
            table_dir.display()
        ))
        .await
        .unwrap();
        let counted = query_outputs_in(&ctx, &format!("SELECT COUNT(*) FROM {name}")).await;
        assert_eq!(
            counted,
            [[rows_of(name).to_string()]],
            "{name} in DataFusion"
        );
    }

    // pyarrow's default read of a directory (hive partitioning inferred).
    let script = r#"
import sys, pyarrow.parquet as pq
for table in sys.argv[2:]:
    t = pq.read_table(f"{sys.argv[1]}/{table}")
    print(table, t.num_rows, ";".join(f"{f.name}:{f.type}" for f in t.schema))
"#;
    let names: Vec<&str> = cskpi::run::output_tables().iter().map(|t| t.name).collect();
    let read = Command::new("python3")
        .args(["-c", script])
        .arg(&out)
        .args(&names)
        .output()
        .expect("python3");
    assert!(
        read.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    let lines = String::from_utf8(read.stdout).unwrap();
    assert_eq!(lines.lines().count(), names.len(), "{lines}");
    for line in lines.lines() {
        let mut parts = line.splitn(3, ' ');
        let (table, rows, fields) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap_or(""),
        );
        assert_eq!(rows, rows_of(table).to_string(), "{table} in pyarrow");
        assert!(!fields.contains("view"), "{table}: {fields}");
        for column in ["month", "as_of"] {
            if let Some(at) = fields.find(&format!("{column}:")) {
                assert!(
                    fields[at..].starts_with(&format!("{column}:date32[day]")),
                    "{table}: {fields}"
                );
            }
        }
    }
}

async fn query_outputs_in(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
) -> Vec<Vec<String>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    super::fixture::batches_to_rows(&batches)
}
