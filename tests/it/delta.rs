//! Delta Lake outputs (issue 18): each run commits one version per table,
//! the manifest records the versions, time travel gives a past run's rows,
//! a failed run leaves the previous run's tables, vacuum keeps
//! `output.keep_versions` runs. Rows and history are read back by an
//! independent reader, the Python `deltalake` package
//! (tests/delta_reader.py, installed by scripts/test.sh), and compared with
//! cskpi's Parquet output of the same inputs and as_of.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::fixture::generate_dataset;
use super::s3::{create_bucket, s3_store, start_moto};

/// as_of dates inside the generated data: their runs differ.
const AS_OF: [&str; 3] = ["2025-03-31", "2025-04-30", "2025-05-31"];

fn table_names() -> Vec<&'static str> {
    cskpi::run::output_tables().iter().map(|t| t.name).collect()
}

/// A generated data set in `dir/data` with its job.toml.
async fn data_set(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    generate_dataset(&data, 150, 7, "2024-06-01", "2025-05-31").await;
    data
}

/// A job file beside the data set's, publishing to `output` with `extra`
/// lines added to its `[output]` section (and `tail` appended).
fn job(data: &Path, name: &str, output: &str, extra: &str, tail: &str) -> PathBuf {
    let text = std::fs::read_to_string(data.join("job.toml")).unwrap();
    let text = text.replace(
        "path = \"out/\"",
        &format!("path = \"{output}\"\n{extra}\nlock_lease_seconds = 2"),
    );
    let path = data.join(format!("{name}.toml"));
    std::fs::write(&path, format!("{text}\n{tail}")).unwrap();
    path
}

const DELTA: &str = "format = \"delta\"";

struct Ran {
    success: bool,
    stderr: String,
}

fn cskpi(job: &Path, as_of: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cskpi"));
    command
        .args(["run", "--as-of", as_of, "--config"])
        .arg(job)
        .env_remove("CSKPI_FAULT_PUBLISH")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    command
}

fn run_with(job: &Path, as_of: &str, fault: Option<&str>) -> Ran {
    let mut command = cskpi(job, as_of);
    if let Some(fault) = fault {
        command.env("CSKPI_FAULT_PUBLISH", fault);
    }
    let out = command.output().unwrap();
    Ran {
        success: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// A run whose every step of publishing first waits `pause_ms`; when its
/// log shows a line ending in `trigger`, `action` is done (while the run
/// waits before that step).
fn run_until(
    job: &Path,
    as_of: &str,
    pause_ms: u64,
    trigger: &str,
    action: impl FnOnce(&mut Child),
) -> Ran {
    let mut child = cskpi(job, as_of)
        .env("CSKPI_FAULT_PUBLISH", format!("pause={pause_ms}"))
        .env("RUST_LOG", "info,cskpi::output::journal=debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut action = Some(action);
    let mut stderr = String::new();
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if line.ends_with(trigger)
            && let Some(action) = action.take()
        {
            action(&mut child);
        }
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(action.is_none(), "no line ends with {trigger}:\n{stderr}");
    Ran {
        success: status.success(),
        stderr,
    }
}

fn run_ok(job: &Path, as_of: &str) {
    let ran = run_with(job, as_of, None);
    assert!(ran.success, "{}", ran.stderr);
}

fn manifest(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap()
}

/// One JSON object per line of tests/delta_reader.py's output, by table.
fn reader(args: &[&str], storage: Option<&str>) -> BTreeMap<String, Value> {
    let mut command = Command::new("python3");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/delta_reader.py"
        ))
        .args(args);
    if let Some(options) = storage {
        command.env("DELTA_STORAGE_OPTIONS", options);
    }
    let out = command.output().expect("python3");
    assert!(
        out.status.success(),
        "delta_reader.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            (value["table"].as_str().unwrap().to_string(), value)
        })
        .collect()
}

/// Reads every table at `version` with the Python reader and compares
/// its rows with cskpi's Parquet output at `parquet`; returns the tables
/// that differ.
fn differing_tables(
    delta: &str,
    version: &str,
    parquet: &Path,
    storage: Option<&str>,
) -> Vec<String> {
    let mut args = vec!["compare", delta, version, parquet.to_str().unwrap()];
    let names = table_names();
    args.extend(names.iter().copied());
    let compared = reader(&args, storage);
    assert_eq!(compared.len(), names.len());
    compared
        .into_iter()
        .filter(|(_, c)| !c["equal"].as_bool().unwrap())
        .map(|(t, c)| format!("{t}: {}", c["difference"]))
        .collect()
}

fn assert_same_rows(delta: &str, version: &str, parquet: &Path, storage: Option<&str>) {
    let differ = differing_tables(delta, version, parquet, storage);
    assert!(
        differ.is_empty(),
        "{delta} at version {version} differs from {}:\n{}",
        parquet.display(),
        differ.join("\n")
    );
}

/// Per table, its commits newest first: (version, operation, cskpi run id).
fn history(delta: &str) -> BTreeMap<String, Vec<(u64, String, Option<String>)>> {
    let mut args = vec!["history", delta];
    let names = table_names();
    args.extend(names.iter().copied());
    reader(&args, None)
        .into_iter()
        .map(|(table, h)| {
            let commits = h["commits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["version"].as_u64().unwrap(),
                        c["operation"].as_str().unwrap().to_string(),
                        c["cskpi_run_id"].as_str().map(str::to_string),
                    )
                })
                .collect();
            (table, commits)
        })
        .collect()
}

fn versions_in_manifest(manifest: &Value) -> BTreeMap<String, u64> {
    manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["table"].as_str().unwrap().to_string(),
                o["delta_version"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn no_leftovers(out: &Path) {
    for entry in std::fs::read_dir(out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            name != "_publish_journal.json" && !name.starts_with(".cskpi-staging-"),
            "{name} left in {}",
            out.display()
        );
    }
}

/// A data set, its Parquet outputs as of the first two dates
/// (`out-first/`, `out-second/`) and one Delta run as of the first
/// (`out-delta/`): (the data set's directory, the Delta job).
async fn published_once(dir: &Path) -> (PathBuf, PathBuf) {
    let data = data_set(dir).await;
    let delta_job = job(&data, "delta", "out-delta/", DELTA, "");
    let first = job(&data, "first", "out-first/", "", "");
    let second = job(&data, "second", "out-second/", "", "");
    run_ok(&first, AS_OF[0]);
    run_ok(&second, AS_OF[1]);
    run_ok(&delta_job, AS_OF[0]);
    (data, delta_job)
}

#[tokio::test]
async fn two_runs_are_two_versions_readable_by_another_reader_and_by_time_travel() {
    let dir = tempfile::tempdir().unwrap();
    let (data, delta_job) = published_once(dir.path()).await;
    let out = data.join("out-delta");
    let first_manifest = manifest(&out);
    // The report reads the Delta tables (the latest version, not every
    // data file in the directories): its sections are the Parquet run's of
    // the same day, everything but the header (run id, times).
    let sections = |page: &Path| {
        let page = std::fs::read_to_string(page).unwrap();
        let start = page
            .find("<section id=\"revenue\"")
            .expect("a revenue section");
        page[start..].to_string()
    };
    assert_eq!(
        sections(&out.join("report.html")),
        sections(&data.join("out-first/report.html"))
    );
    run_ok(&delta_job, AS_OF[1]);
    // Again after the second run, whose version is the latest.
    assert_eq!(
        sections(&out.join("report.html")),
        sections(&data.join("out-second/report.html"))
    );
    let manifest = manifest(&out);
    no_leftovers(&out);

    assert_eq!(manifest["format"], "delta");
    let names = table_names();
    let versions = versions_in_manifest(&manifest);
    assert_eq!(versions.len(), names.len());
    assert!(versions.values().all(|&v| v == 1), "{versions:?}");
    let runs = manifest["published_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["run_id"], manifest["run_id"]);
    assert_eq!(runs[1]["run_id"], first_manifest["run_id"]);
    assert_eq!(runs[1]["as_of"], AS_OF[0]);
    for name in &names {
        assert_eq!(runs[0]["delta_versions"][name], 1, "{name}");
        assert_eq!(runs[1]["delta_versions"][name], 0, "{name}");
    }

    // The independent reader gets the Parquet output's rows: the latest
    // version is the second run, version 0 the first (time travel).
    let delta = out.to_str().unwrap();
    assert_same_rows(delta, "latest", &data.join("out-second"), None);
    assert_same_rows(delta, "1", &data.join("out-second"), None);
    assert_same_rows(delta, "0", &data.join("out-first"), None);
    // The runs differ, so a mix of the two would show.
    assert!(!differing_tables(delta, "0", &data.join("out-second"), None).is_empty());

    // Each table's history: one overwrite per run, naming the run.
    for (table, commits) in history(delta) {
        let expected = [
            (1, manifest["run_id"].as_str()),
            (0, first_manifest["run_id"].as_str()),
        ];
        assert_eq!(commits.len(), 2, "{table}: {commits:?}");
        for ((version, operation, run_id), (v, id)) in commits.iter().zip(expected) {
            assert_eq!(*version, v, "{table}");
            assert_eq!(operation, "WRITE", "{table}");
            assert_eq!(run_id.as_deref(), id, "{table}");
        }
    }

    // One format per output path.
    let mixed = job(&data, "mixed", "out-first/", DELTA, "");
    let ran = run_with(&mixed, AS_OF[0], None);
    assert!(!ran.success);
    assert!(
        ran.stderr
            .contains("holds parquet tables and the job writes delta"),
        "{}",
        ran.stderr
    );
}

#[tokio::test]
async fn a_failed_second_run_leaves_every_table_at_the_first_runs_version() {
    let dir = tempfile::tempdir().unwrap();
    let (data, delta_job) = published_once(dir.path()).await;
    let out = data.join("out-delta");
    let delta = out.to_str().unwrap().to_string();
    let published = manifest(&out);
    let tables = table_names().len();

    // Failing before the first commit: nothing is committed at all.
    let ran = run_with(&delta_job, AS_OF[1], Some("fail=1"));
    assert!(!ran.success);
    assert_eq!(manifest(&out)["run_id"], published["run_id"]);
    no_leftovers(&out);
    for (table, commits) in history(&delta) {
        assert_eq!(commits.len(), 1, "{table}: {commits:?}");
        assert_eq!(commits[0].0, 0, "{table}");
    }
    assert_same_rows(&delta, "latest", &data.join("out-first"), None);

    // Failing after some tables were committed: those are restored to
    // version 0's contents (a RESTORE commit), the others never moved.
    let committed = tables / 2;
    let ran = run_with(
        &delta_job,
        AS_OF[1],
        Some(&format!("fail={}", committed + 1)),
    );
    assert!(!ran.success, "{}", ran.stderr);
    assert!(ran.stderr.contains("rolled back"), "{}", ran.stderr);
    assert_eq!(manifest(&out), published);
    no_leftovers(&out);
    let after_failure = history(&delta);
    let restored = after_failure
        .values()
        .filter(|commits| commits[0].1 == "RESTORE")
        .count();
    assert_eq!(restored, committed);
    for (table, commits) in &after_failure {
        let latest = commits[0].0;
        assert!(latest == 0 || latest == 2, "{table}: {commits:?}");
    }
    assert_same_rows(&delta, "latest", &data.join("out-first"), None);

    // Killed while publishing, then `cskpi recover`: rolled back too.
    run_until(&delta_job, AS_OF[1], 150, "publishing step=4", |child| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        child.kill().unwrap();
    });
    let recovered = Command::new(env!("CARGO_BIN_EXE_cskpi"))
        .args(["recover", "--config"])
        .arg(&delta_job)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&recovered.stdout);
    assert!(recovered.status.success(), "{said}");
    assert!(said.contains("rolled back"), "{said}");
    assert_eq!(manifest(&out), published);
    no_leftovers(&out);
    assert_same_rows(&delta, "latest", &data.join("out-first"), None);

    // The next run commits after the restores, at the versions its
    // manifest names, with the second as_of's rows.
    // (A vacuum may follow it: the failed runs' files are in no kept version.)
    let before = history(&delta);
    run_ok(&delta_job, AS_OF[1]);
    let published = manifest(&out);
    let versions = versions_in_manifest(&published);
    for (table, commits) in history(&delta) {
        let version = before[&table][0].0 + 1;
        assert_eq!(versions[&table], version, "{table}");
        let commit = commits.iter().find(|c| c.0 == version).unwrap();
        assert_eq!(commit.1, "WRITE", "{table}");
        assert_eq!(commit.2.as_deref(), published["run_id"].as_str(), "{table}");
    }
    assert_same_rows(&delta, "latest", &data.join("out-second"), None);
}

#[tokio::test]
async fn other_writers_are_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (data, delta_job) = published_once(dir.path()).await;
    let out = data.join("out-delta");
    let published = manifest(&out);

    // Another cskpi run holds the output: refused at once, exit 6.
    let held = std::fs::File::open(out.join(".cskpi.lock")).unwrap();
    held.lock().unwrap();
    let refused = cskpi(&delta_job, AS_OF[1]).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("another cskpi run is publishing there"),
        "{stderr}"
    );
    held.unlock().unwrap();

    // A writer that is not cskpi commits to the first table while the run
    // publishes: the run's commit is not at the version it predicted, so
    // it fails with one line and puts every table back.
    let first = table_names()[0];
    let delta = out.to_str().unwrap().to_string();
    // (The run waits 5 s before that step, time enough for Python.)
    let ran = run_until(&delta_job, AS_OF[1], 5000, "publishing step=1", |_| {
        reader(&["foreign-commit", &delta, first], None);
    });
    assert!(!ran.success);
    let last = ran.stderr.lines().last().unwrap();
    assert!(
        last.contains(&out.join(first).display().to_string()),
        "{last}"
    );
    assert!(
        last.contains("another writer committed to the table"),
        "{last}"
    );
    assert_eq!(manifest(&out), published);
    no_leftovers(&out);
    assert_same_rows(&delta, "latest", &data.join("out-first"), None);
    let commits = &history(&delta)[first];
    let operations: Vec<&str> = commits.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(operations[..2], ["RESTORE", "WRITE"], "{commits:?}");
}

#[tokio::test]
async fn vacuum_keeps_exactly_keep_versions_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_set(dir.path()).await;
    let delta_job = job(
        &data,
        "delta",
        "out-delta/",
        &format!("{DELTA}\nkeep_versions = 2"),
        "",
    );
    let second = job(&data, "second", "out-second/", "", "");
    let third = job(&data, "third", "out-third/", "", "");
    run_ok(&second, AS_OF[1]);
    run_ok(&third, AS_OF[2]);
    for as_of in AS_OF {
        run_ok(&delta_job, as_of);
    }
    let out = data.join("out-delta");
    let delta = out.to_str().unwrap();
    let manifest = manifest(&out);
    let runs = manifest["published_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["as_of"], AS_OF[2]);
    assert_eq!(runs[1]["as_of"], AS_OF[1]);

    // The two kept runs read back as they were published.
    assert_same_rows(delta, "2", &data.join("out-third"), None);
    assert_same_rows(delta, "1", &data.join("out-second"), None);

    // On disk, exactly the data files of the two kept versions.
    let names = table_names();
    let files_of = |version: &str| {
        let mut args = vec!["files", delta, version];
        args.extend(names.iter().copied());
        reader(&args, None)
    };
    let (kept_new, kept_old, dropped) = (files_of("2"), files_of("1"), files_of("0"));
    let mut unreadable = 0;
    for name in &names {
        let mut expected = BTreeSet::new();
        for kept in [&kept_new, &kept_old] {
            let files = kept[*name]["files"]
                .as_array()
                .unwrap_or_else(|| panic!("a kept version reads: {}", kept[*name]));
            expected.extend(files.iter().map(|f| f.as_str().unwrap().to_string()));
        }
        let on_disk = data_files(&out.join(name));
        assert_eq!(on_disk, expected, "{name}");
        if dropped[*name].get("error").is_some() {
            unreadable += 1;
        }
    }
    // Version 0 of every table that had rows then lost its files.
    assert!(unreadable >= names.len() / 2, "{dropped:?}");
    assert!(dropped["mrr_monthly"].get("error").is_some());
}

/// The data files of a Delta table directory, relative to it.
fn data_files(table: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .to_string();
            if relative.starts_with("_delta_log") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                files.insert(relative);
            }
        }
    }
    let mut files = BTreeSet::new();
    walk(table, table, &mut files);
    files
}

#[tokio::test]
async fn delta_tables_on_s3_commit_restore_and_read_back() {
    let moto = start_moto();
    create_bucket(&moto.endpoint, "delta");
    let dir = tempfile::tempdir().unwrap();
    let data = data_set(dir.path()).await;
    let s3 = format!(
        "[s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\nallow_http = true\n",
        moto.endpoint
    );
    let delta_job = job(&data, "delta", "s3://delta/kpis/", DELTA, &s3);
    let first = job(&data, "first", "out-first/", "", "");
    let second = job(&data, "second", "out-second/", "", "");
    run_ok(&first, AS_OF[0]);
    run_ok(&second, AS_OF[1]);
    run_ok(&delta_job, AS_OF[0]);
    run_ok(&delta_job, AS_OF[1]);
    let ran = run_with(&delta_job, AS_OF[0], Some("fail=4"));
    assert!(!ran.success);
    assert!(ran.stderr.contains("rolled back"), "{}", ran.stderr);

    let store = s3_store(&moto.endpoint, "delta");
    let bytes = object_store::ObjectStoreExt::get(
        &store,
        &object_store::path::Path::from("kpis/_manifest.json"),
    )
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    let manifest: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(manifest["as_of"], AS_OF[1]);
    assert!(versions_in_manifest(&manifest).values().all(|&v| v == 1));

    let options = serde_json::json!({
        "AWS_ENDPOINT_URL": moto.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    })
    .to_string();
    let delta = "s3://delta/kpis";
    assert_same_rows(delta, "latest", &data.join("out-second"), Some(&options));
    assert_same_rows(delta, "0", &data.join("out-first"), Some(&options));
}
