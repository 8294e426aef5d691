//! `cskpi validate`, `cskpi kpis` and the engine options of `cskpi run`,
//! through the binary.

use std::process::{Command, Output};

use super::fixture::{Fixture, Order, generate_dataset, sub};

fn cskpi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cskpi"))
        .args(args)
        .output()
        .unwrap()
}

/// C1 and C2 with good orders, one order line of an unknown customer and
/// an add-on without its service period: two rejects of four order lines.
fn fixture(max_ratio: f64) -> Fixture {
    let mut f = Fixture::new();
    f.customers(&[
        ("C1", "2025-01-01", None, Some("smb")),
        ("C2", "2025-01-01", None, Some("smb")),
    ]);
    f.orders(&[
        sub("O1", "C1", "2025-01-01", "2025-02-01", 10.0),
        sub("O2", "C2", "2025-01-01", "2025-02-01", 20.0),
        sub("O3", "ZZ", "2025-01-01", "2025-02-01", 20.0),
        Order {
            id: "O4",
            customer: "C1",
            date: "2025-01-05",
            amount: 5.0,
            kind: "addon",
            period: None,
        },
    ]);
    f.no_tickets();
    f.job_extra = format!("[run]\nmax_reject_ratio = {max_ratio}\nas_of = '2025-01-31'\n");
    std::fs::write(f.dir.path().join("job.toml"), f.job_text()).unwrap();
    f
}

fn validate(f: &Fixture) -> Output {
    let job = f.dir.path().join("job.toml");
    cskpi(&["validate", "--config", job.to_str().unwrap()])
}

#[test]
fn validate_reports_rows_and_reasons_and_writes_nothing() {
    let f = fixture(0.6);
    let o = validate(&f);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("orders              4 rows,        2 rejected (50.00%, limit 60.00%)"),
        "{text}"
    );
    assert!(
        text.contains("reject orders     unknown customer_id"),
        "{text}"
    );
    assert!(text.contains("missing service period"), "{text}");
    assert!(text.contains("ok: a run would go ahead"), "{text}");
    assert!(!f.out_dir().exists(), "validate writes nothing");
}

#[test]
fn run_takes_a_memory_limit_and_a_temp_dir_and_leaves_it_empty() {
    let f = fixture(0.6);
    let job = f.dir.path().join("job.toml");
    let temp = f.dir.path().join("scratch");
    let o = cskpi(&[
        "run",
        "--config",
        job.to_str().unwrap(),
        "--memory-limit",
        "256M",
        "--temp-dir",
        temp.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(f.out_dir().join("_manifest.json").exists());
    // Logs to a pipe (a scheduler's log file) carry no colour escapes.
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log:?}");
    // The run kept its intermediate files there and removed them.
    assert_eq!(std::fs::read_dir(&temp).unwrap().count(), 0);

    let o = cskpi(&[
        "run",
        "--config",
        job.to_str().unwrap(),
        "--memory-limit",
        "lots",
    ]);
    // a bad value on the command line is a usage error
    assert_eq!(o.status.code(), Some(cskpi::error::exit_code::USAGE));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("--memory-limit"), "{stderr}");
    assert!(stderr.contains("\"lots\" is not a size"), "{stderr}");

    // in the job file, a configuration error
    let text = std::fs::read_to_string(&job).unwrap();
    let bad = match text.find("[run]\n") {
        Some(at) => format!(
            "{}memory_limit = \"lots\"\n{}",
            &text[..at + 6],
            &text[at + 6..]
        ),
        None => format!("{text}\n[run]\nmemory_limit = \"lots\"\n"),
    };
    let bad_job = f.dir.path().join("bad-memory.toml");
    std::fs::write(&bad_job, bad).unwrap();
    let o = cskpi(&["run", "--config", bad_job.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(cskpi::error::exit_code::CONFIG));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("memory_limit"), "{stderr}");
    assert!(stderr.contains("\"lots\" is not a size"), "{stderr}");
}

#[test]
fn validate_fails_like_a_run_would() {
    let f = fixture(0.25);
    let o = validate(&f);
    assert_eq!(
        o.status.code(),
        Some(cskpi::error::exit_code::TOO_MANY_REJECTS)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("2 rejected"), "{text}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.lines().last().unwrap().contains("orders"),
        "{stderr}"
    );
    assert!(!f.out_dir().exists());

    // A schema error: exit 4, like a run.
    std::fs::write(f.input_dir().join("tickets.parquet"), b"not parquet").unwrap();
    let o = validate(&f);
    assert_eq!(o.status.code(), Some(cskpi::error::exit_code::INPUT_SCHEMA));
}

#[test]
fn kpis_lists_and_explains_every_kpi() {
    let o = cskpi(&["kpis"]);
    assert!(o.status.success());
    let listing = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        listing.lines().count(),
        cskpi::kpi::definitions::all().count()
    );
    assert!(
        listing.contains("retention_monthly.churn_rate"),
        "{listing}"
    );

    let o = cskpi(&["kpis", "nps_moe"]);
    let detail = String::from_utf8_lossy(&o.stdout);
    assert!(
        detail.contains("196 * sqrt((p + d - (p - d)^2) / nps_responses)"),
        "{detail}"
    );
    assert!(
        detail.contains("output:  survey_monthly.nps_moe"),
        "{detail}"
    );
    let o = cskpi(&["kpis", "customer_health.band"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("health_band"));

    let o = cskpi(&["kpis", "no_such_kpi"]);
    assert_eq!(o.status.code(), Some(cskpi::error::exit_code::USAGE));
}

/// docs/KPIS.md is generated from the definitions (`cskpi kpis --markdown`).
#[test]
fn kpi_page_is_generated_from_the_definitions() {
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/KPIS.md")).unwrap();
    assert!(
        page == cskpi::kpi::definitions::markdown(),
        "docs/KPIS.md is stale: run `cargo run -- kpis --markdown > docs/KPIS.md`"
    );
}

/// Every definition names a column that a run really writes.
#[tokio::test]
async fn every_definition_names_a_published_column() {
    let dir = tempfile::tempdir().unwrap();
    let job = generate_dataset(dir.path(), 60, 9, "2024-01-01", "2025-06-30").await;
    cskpi::run::run_job(&job, &Default::default())
        .await
        .unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    for table in cskpi::run::output_tables() {
        ctx.register_parquet(
            table.name,
            &format!("{}/", dir.path().join("out").join(table.name).display()),
            Default::default(),
        )
        .await
        .unwrap();
    }
    for (_, d) in cskpi::kpi::definitions::all() {
        let (table, column) = d.output.split_once('.').unwrap();
        let frame = ctx
            .table(table)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", d.name));
        assert!(
            frame.schema().has_column_with_unqualified_name(column),
            "{}: {table} has no column {column}",
            d.name
        );
    }
}

#[test]
fn sql_dir_replaces_the_bundled_sql() {
    let f = fixture(0.6);
    let job = f.dir.path().join("job.toml");
    let sql = f.dir.path().join("sql");
    std::fs::create_dir(&sql).unwrap();
    let validate_with_sql_dir = || {
        Command::new(env!("CARGO_BIN_EXE_cskpi"))
            .args(["validate", "--config", job.to_str().unwrap()])
            .env("CSKPI_SQL_DIR", &sql)
            .output()
            .unwrap()
    };

    // An empty folder: the first script the command needs is named.
    let o = validate_with_sql_dir();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    let expected = sql.join("validate.sql").display().to_string();
    assert!(stderr.contains(&expected), "{stderr}");

    // A copy of the bundled scripts with one reason reworded: the run uses it.
    let bundled = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    for entry in std::fs::read_dir(bundled).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace("'unknown customer_id'", "'customer not on file'");
        std::fs::write(sql.join(path.file_name().unwrap()), text).unwrap();
    }
    let o = validate_with_sql_dir();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("reject orders     customer not on file"),
        "{text}"
    );
    assert!(!text.contains("unknown customer_id"), "{text}");
}

/// A SIGKILLed run cannot remove its scratch directory; the next run does
/// (and its own as it ends).
#[tokio::test]
async fn the_next_run_removes_a_killed_runs_scratch() {
    let dir = tempfile::tempdir().unwrap();
    generate_dataset(dir.path(), 2000, 5, "2024-01-01", "2025-06-30").await;
    let job = dir.path().join("job.toml");
    let work = dir.path().join("work");
    let args = [
        "run",
        "--config",
        job.to_str().unwrap(),
        "--temp-dir",
        work.to_str().unwrap(),
    ];
    let mut killed = Command::new(env!("CARGO_BIN_EXE_cskpi"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let scratch = loop {
        let owned = std::fs::read_dir(&work).ok().and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .find(|p| p.join("owner").is_file())
        });
        if let Some(scratch) = owned {
            break scratch;
        }
        assert!(
            killed.try_wait().unwrap().is_none(),
            "the run ended before its scratch directory was seen"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(scratch.exists(), "a killed run leaves its scratch");

    let o = cskpi(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!scratch.exists(), "the next run removes it");
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("no longer alive"), "{log}");
    let left: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `--log-format json`: every stderr line is one JSON object; the run id
/// printed on stdout is on every line of the run, each written table says
/// its stage, rows (as the summary counts them) and elapsed time, each
/// stage its elapsed time; a failure is a JSON line with its exit code.
#[test]
fn json_logs_are_one_object_per_line_with_run_stage_table_rows_and_time() {
    let f = fixture(0.6);
    let job = f.dir.path().join("job.toml");
    let o = cskpi(&[
        "run",
        "--config",
        job.to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run_id = stdout.split_whitespace().nth(1).unwrap().to_string();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["span"]["run_id"].as_str() == Some(run_id.as_str())),
        "{lines:?}"
    );
    let written: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["message"] == "written").collect();
    assert_eq!(written.len(), cskpi::run::output_tables().len());
    // The summary on stdout: "  out mrr_monthly   N rows".
    let summary_rows = |table: &str| -> u64 {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(table))
            .unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    for w in &written {
        let table = w["table"].as_str().unwrap();
        assert_eq!(w["rows"].as_u64(), Some(summary_rows(table)), "{w}");
        assert!(w["stage"].is_string() && w["elapsed_s"].is_f64(), "{w}");
    }
    let stages: Vec<&str> = lines
        .iter()
        .filter(|l| l["message"] == "done" && l["elapsed_s"].is_f64())
        .map(|l| l["stage"].as_str().unwrap())
        .collect();
    for stage in ["inputs", "validation", "retention", "mrr", "publishing"] {
        assert!(stages.contains(&stage), "{stage} not in {stages:?}");
    }

    let o = cskpi(&[
        "run",
        "--config",
        "no-such-job.toml",
        "--log-format",
        "json",
    ]);
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stderr).lines().last().unwrap()).unwrap();
    assert_eq!(last["exit_code"], cskpi::error::exit_code::CONFIG);
    assert_eq!(o.status.code(), Some(cskpi::error::exit_code::CONFIG));
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .starts_with("cskpi: error: cannot read job file no-such-job.toml"),
        "{last}"
    );
}
