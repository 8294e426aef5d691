//! `cskpi sql`: scripted (-c, -f, stdin) in every format, read back; and
//! the interactive shell through a pseudo-terminal.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use expectrl::session::OsSession;
use expectrl::{ControlCode, Expect, Session};

use super::fixture::{Fixture, generate_dataset, query_outputs, sub};

/// Two customers, one paying 100 a month from January 2025; run once so
/// `last_run` has tables.
async fn fixture() -> Fixture {
    let mut f = Fixture::new();
    f.customers(&[
        ("A", "2025-01-01", None, Some("smb")),
        ("B", "2025-02-01", None, Some("enterprise")),
    ]);
    f.orders(&[
        sub("O1", "A", "2025-01-01", "2025-02-01", 100.0),
        sub("O2", "A", "2025-02-01", "2025-03-01", 100.0),
    ]);
    f.no_tickets();
    f.surveys(&[
        ("R1", "A", "2025-02-10 10:00", "nps", 9.0),
        ("R2", "B", "2025-02-10 10:00", "nps", 3.0),
        ("R3", "A", "2025-02-10 10:00", "csat", 5.0),
    ]);
    f.job_extra = "[run]\nfrom = '2025-01'\nas_of = '2025-02-28'\n".into();
    std::fs::write(f.dir.path().join("job.toml"), f.job_text()).unwrap();
    f.run("2025-02-28").await.unwrap();
    f
}

fn cskpi_sql(f: &Fixture, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cskpi"))
        .args(["sql", "--config"])
        .arg(f.dir.path().join("job.toml"))
        .args(args)
        .env("HOME", f.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

const QUERY: &str = "SELECT customer_id, signup_date FROM customers ORDER BY customer_id;";

#[tokio::test]
async fn every_format_reads_back() {
    let f = fixture().await;

    let csv = stdout(&cskpi_sql(&f, &["-c", QUERY, "--format", "csv"]));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        ["customer_id,signup_date", "A,2025-01-01", "B,2025-02-01"]
    );

    let json = stdout(&cskpi_sql(&f, &["-c", QUERY, "--format", "json"]));
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value[1]["customer_id"], "B");
    assert_eq!(value[1]["signup_date"], "2025-02-01");
    assert_eq!(value.as_array().unwrap().len(), 2);

    let ndjson = stdout(&cskpi_sql(&f, &["-c", QUERY, "--format", "ndjson"]));
    let rows: Vec<serde_json::Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["customer_id"], "A");

    let table = stdout(&cskpi_sql(&f, &["-c", QUERY]));
    assert!(table.contains("| customer_id | signup_date |"), "{table}");
    assert!(table.contains("| B           | 2025-02-01  |"), "{table}");

    let parquet = f.dir.path().join("result.parquet");
    let path = parquet.to_str().unwrap();
    stdout(&cskpi_sql(
        &f,
        &["-c", QUERY, "--format", "parquet", "-o", path],
    ));
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_parquet("result", path, Default::default())
        .await
        .unwrap();
    let rows = super::fixture::batches_to_rows(
        &ctx.sql("SELECT * FROM result")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap(),
    );
    assert_eq!(
        rows,
        [["A", "2025-01-01"], ["B", "2025-02-01"]].map(|r| r.map(String::from).to_vec())
    );

    // Parquet without -o is a usage error.
    let o = cskpi_sql(&f, &["-c", QUERY, "--format", "parquet"]);
    assert_eq!(o.status.code(), Some(cskpi::error::exit_code::USAGE));
}

#[tokio::test]
async fn views_last_run_udfs_files_and_stdin() {
    let f = fixture().await;
    // Views filtered on a join key with a constant (which sort-merge joins
    // over the views cannot plan in DataFusion 55; the shell uses hash joins).
    let csv = stdout(&cskpi_sql(
        &f,
        &[
            "-c",
            "SELECT segment, mrr FROM mrr_monthly WHERE month = DATE '2025-02-01' ORDER BY segment;",
            "-c",
            "SELECT segment, nps, csat_responses FROM survey_monthly WHERE month = DATE '2025-02-01' ORDER BY segment;",
            "--format",
            "csv",
        ],
    ));
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        [
            "segment,mrr",
            "all,100.0",
            "enterprise,0.0",
            "smb,100.0",
            "segment,nps,csat_responses",
            "all,0.0,1",
            "enterprise,-100.0,0",
            "smb,100.0,1"
        ]
    );

    // A KPI view, the published table of the last run, and a UDAF.
    let csv = stdout(&cskpi_sql(
        &f,
        &[
            "-c",
            "SELECT mrr FROM mrr_monthly WHERE segment = 'all' AND month = DATE '2025-02-01';",
            "-c",
            "SELECT mrr FROM last_run.mrr_monthly WHERE segment = 'all' AND month = DATE '2025-02-01';",
            "-c",
            "SELECT nps(s) AS n FROM (VALUES (10.0), (0.0), (9.0)) t(s);",
            "--format",
            "csv",
        ],
    ));
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        ["mrr", "100.0", "mrr", "100.0", "n", "33.333333333333336"]
    );

    // -f with several statements and backslash commands, \i included.
    let inner = f.dir.path().join("inner.sql");
    std::fs::write(&inner, "SELECT 2 AS two;\n").unwrap();
    let file = f.dir.path().join("q.sql");
    std::fs::write(
        &file,
        format!(
            "\\pset format csv\nSELECT 1 AS one;\n\\i {}\nSELECT 'x;y' AS s\n",
            inner.display()
        ),
    )
    .unwrap();
    let out = stdout(&cskpi_sql(&f, &["-f", file.to_str().unwrap()]));
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("Output format"))
        .collect();
    assert_eq!(lines, ["one", "1", "two", "2", "s", "x;y"]);
    // \d NAME of a last_run table.
    let described = stdout(&cskpi_sql(
        &f,
        &["-c", "\\d last_run.csi_index", "--format", "csv"],
    ));
    assert!(described.contains("csi,Float64,YES"), "{described}");
    // with each KPI column's meaning
    assert!(
        described.contains("gof,Float64,YES,Goodness of fit of the CSI model: sqrt("),
        "{described}"
    );

    // SQL piped on stdin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_cskpi"))
        .args(["sql", "--format", "ndjson", "--config"])
        .arg(f.dir.path().join("job.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT COUNT(*) AS n FROM customers;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out).trim(), "{\"n\":2}");

    // \d lists the views; SHOW TABLES works through information_schema.
    let listing = stdout(&cskpi_sql(&f, &["-c", "\\d", "--format", "csv"]));
    assert!(
        listing.contains("public,retention_monthly,VIEW"),
        "{listing}"
    );
    assert!(
        listing.contains("last_run,retention_monthly,BASE TABLE"),
        "{listing}"
    );
    let shown = stdout(&cskpi_sql(&f, &["-c", "SHOW TABLES;", "--format", "csv"]));
    assert!(shown.contains("customer_health"), "{shown}");

    // A reader that stops early (`| head -1`) is not an error.
    let mut child = Command::new(env!("CARGO_BIN_EXE_cskpi"))
        .args([
            "sql",
            "--format",
            "csv",
            "-c",
            "SELECT * FROM range(0, 3000000);",
            "--config",
        ])
        .arg(f.dir.path().join("job.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Read;
        let mut first = [0u8; 16];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        drop(child.stdout.take());
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A bad statement: non-zero exit, one clear line.
    let o = cskpi_sql(&f, &["-c", "SELEC 1;"]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr
            .trim()
            .lines()
            .last()
            .unwrap()
            .starts_with("cskpi: error:"),
        "{stderr}"
    );
}

/// `\?` lists every command and every function the session has from cskpi
/// (the registry, not a hand-kept list); a wrong command exits 2.
#[tokio::test]
async fn help_lists_the_commands_and_every_cskpi_function() {
    let f = fixture().await;
    let help = stdout(&cskpi_sql(&f, &["-c", "\\?"]));
    for command in ["\\d NAME", "\\i FILE", "\\pset format", "\\q"] {
        assert!(help.contains(command), "{command} missing:\n{help}");
    }
    let functions = cskpi::engine::udf::names();
    assert!(functions.iter().any(|name| name == "key_hash"));
    for name in &functions {
        assert!(help.contains(name.as_str()), "{name} missing:\n{help}");
    }
    let wrong = cskpi_sql(&f, &["-c", "\\pset format xml"]);
    assert_eq!(wrong.status.code(), Some(cskpi::error::exit_code::USAGE));
}

/// The shell, and `cskpi validate`, keep the checked inputs in a scratch,
/// as a run does, so a small memory pool is enough: on 5,000 generated
/// customers with 64 MB, opening the shell and reading a KPI view over
/// every input works (over the bare views, opening ran out of that pool,
/// and of 16 GB at 1M customers) and agrees with a run's published table,
/// and so does validating; the scratch is gone after a query, after a
/// failed one, and after validating.
#[tokio::test]
async fn sql_and_validate_fit_a_small_pool_and_remove_their_scratch() {
    let dir = tempfile::tempdir().unwrap();
    generate_dataset(dir.path(), 5000, 7, "2024-01-01", "2025-06-30").await;
    let job = dir.path().join("job.toml");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let cskpi = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cskpi"))
            .args(args)
            .arg("--config")
            .arg(&job)
            .args(["--memory-limit", "64M", "--temp-dir"])
            .arg(&scratch)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ran = cskpi(&["run"]);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let bands =
        "SELECT band, COUNT(*) AS customers FROM customer_health GROUP BY band ORDER BY band";
    let published: Vec<String> = query_outputs(&dir.path().join("out"), bands)
        .await
        .into_iter()
        .map(|row| row.join(","))
        .collect();
    assert_eq!(published.len(), 3, "{published:?}");

    let queried = stdout(&cskpi(&[
        "sql",
        "-c",
        &format!("{bands};"),
        "--format",
        "csv",
    ]));
    assert_eq!(queried.lines().skip(1).collect::<Vec<_>>(), published);
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

    let failed = cskpi(&["sql", "-c", "SELECT * FROM no_such_table;"]);
    assert!(!failed.status.success());
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

    let validated = stdout(&cskpi(&["validate"]));
    assert!(
        validated.contains("ok: a run would go ahead"),
        "{validated}"
    );
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
}

fn spawn_shell(f: &Fixture) -> OsSession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cskpi"));
    command
        .args(["sql", "--config"])
        .arg(f.dir.path().join("job.toml"))
        .env("HOME", f.dir.path())
        .env("TERM", "dumb");
    let mut session = Session::spawn(command).unwrap();
    session.set_expect_timeout(Some(Duration::from_secs(60)));
    session
}

#[tokio::test]
async fn interactive_shell_through_a_pty() {
    let f = fixture().await;
    let mut shell = spawn_shell(&f);
    shell.expect("cskpi> ").unwrap();

    // A query over two lines, with its result and footer.
    shell
        .send_line("SELECT COUNT(*) AS customers_seen")
        .unwrap();
    shell.send_line("FROM customers;").unwrap();
    shell.expect("customers_seen").unwrap();
    shell.expect("1 row in").unwrap();

    // A syntax error leaves the shell usable.
    shell.send_line("SELEC oops;").unwrap();
    shell.expect("Error:").unwrap();
    shell.send_line("SELECT 40 + 2 AS answer;").unwrap();
    shell.expect("42").unwrap();

    // \d and \d NAME.
    shell.send_line("\\d").unwrap();
    shell.expect("retention_monthly").unwrap();
    shell.send_line("\\d mrr_monthly").unwrap();
    shell.expect("quick_ratio").unwrap();

    // Ctrl-C cancels a long query; the shell goes on.
    shell
        .send_line("SELECT COUNT(*) FROM range(0, 1000000000000) a WHERE a.value % 7 = 3;")
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    shell.send(ControlCode::EndOfText).unwrap();
    shell.expect("Query cancelled.").unwrap();
    shell.send_line("SELECT 'still here' AS s;").unwrap();
    shell.expect("still here").unwrap();

    // Ctrl-D quits.
    shell.send(ControlCode::EndOfTransmission).unwrap();
    let status = shell.get_process().wait().unwrap();
    assert!(
        format!("{status:?}").contains("Exited") && format!("{status:?}").ends_with(", 0)"),
        "{status:?}"
    );
    assert!(Path::new(&f.dir.path().join(".cskpi_history")).exists());
}
