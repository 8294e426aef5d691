//! A loopback Ballista cluster of real processes: the test starts
//! `cskpi scheduler` and two `cskpi executor`s (one core each) on free ports
//! of 127.0.0.1, waits until both executors have registered, and kills them
//! when dropped. Queries sent to it with cskpi's functions, a job's own
//! taxonomy and in-memory tables must give what a local session gives.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cskpi::engine::session;
use cskpi::feedback::Taxonomy;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::fixture::{batches_to_rows, floats, ints, strs, write_parquet};

/// The line an executor logs once the scheduler has registered it
/// (Ballista 55.0.0, pinned).
const REGISTERED: &str = "Executor registration succeed";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process of the cluster, its log collected as it comes.
struct Process {
    name: String,
    child: Child,
    log: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
}

impl Process {
    fn start(name: &str, args: &[String], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cskpi"))
            .args(args)
            .envs(envs.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (send, lines) = mpsc::channel();
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                kept.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = send.send(line);
            }
        });
        Process {
            name: name.into(),
            child,
            log,
            lines,
        }
    }

    fn wait_for_line(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        panic!(
            "{} did not log {needle:?} within {timeout:?}; its log:\n{}",
            self.name,
            self.log.lock().unwrap()
        );
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A failing test shows what the cluster said.
        if std::thread::panicking() {
            let log = self.log.lock().unwrap();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of the {} log:", self.name);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Cluster {
    pub url: String,
    processes: Vec<Process>,
    _work: tempfile::TempDir,
}

/// The line an executor logs as it starts a task.
const TASK_STARTED: &str = "Execute task";

impl Cluster {
    /// SIGKILLs executor `index` once it has started `tasks` tasks; the
    /// thread answers whether it did (the executor may run fewer).
    fn kill_executor_after_tasks(
        &mut self,
        index: usize,
        tasks: usize,
    ) -> std::thread::JoinHandle<bool> {
        let executor = &mut self.processes[1 + index];
        let lines = std::mem::replace(&mut executor.lines, mpsc::channel().1);
        let pid = executor.child.id().to_string();
        std::thread::spawn(move || {
            let mut started = 0;
            for line in lines.iter() {
                if line.contains(TASK_STARTED) {
                    started += 1;
                }
                if started == tasks {
                    return Command::new("kill")
                        .args(["-KILL", &pid])
                        .status()
                        .is_ok_and(|s| s.success());
                }
            }
            false
        })
    }

    pub fn start(executors: usize) -> Self {
        Self::start_with_env(executors, &[])
    }

    /// With `envs` in every process's environment (the nodes' own S3
    /// credentials).
    pub fn start_with_env(executors: usize, envs: &[(&str, &str)]) -> Self {
        let work = tempfile::tempdir().unwrap();
        let port = free_port();
        let scheduler = Process::start(
            "scheduler",
            &[
                "scheduler".into(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--external-host".into(),
                "127.0.0.1".into(),
            ],
            envs,
        );
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(address).is_err() {
            assert!(
                Instant::now() < deadline,
                "the scheduler did not listen on {address}; its log:\n{}",
                scheduler.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut processes = vec![scheduler];
        for i in 0..executors {
            let work_dir = work.path().join(format!("executor-{i}"));
            let executor = Process::start(
                &format!("executor {i}"),
                &[
                    "executor".into(),
                    "--scheduler".into(),
                    format!("127.0.0.1:{port}"),
                    "--bind".into(),
                    "127.0.0.1".into(),
                    "--external-host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    free_port().to_string(),
                    "--grpc-port".into(),
                    free_port().to_string(),
                    "--cores".into(),
                    "1".into(),
                    "--memory-limit".into(),
                    "1G".into(),
                    "--work-dir".into(),
                    work_dir.display().to_string(),
                ],
                envs,
            );
            executor.wait_for_line(REGISTERED, Duration::from_secs(60));
            processes.push(executor);
        }
        Cluster {
            url: format!("df://127.0.0.1:{port}"),
            processes,
            _work: work,
        }
    }
}

fn local_state() -> datafusion::execution::SessionState {
    session::context(
        session::session_config().unwrap(),
        session::runtime(None, None).unwrap(),
    )
    .state()
}

/// A driver's session on `cluster`, with the job taxonomy.
async fn remote_session(cluster: &Cluster) -> SessionContext {
    cskpi::cluster::connect(
        &cluster.url,
        local_state(),
        job_taxonomy(),
        Default::default(),
        Duration::from_secs(600),
    )
    .await
    .unwrap()
}

/// A taxonomy no built-in theme shares a keyword with.
fn job_taxonomy() -> Arc<Taxonomy> {
    let themes = BTreeMap::from([
        ("zebra".to_string(), vec!["stripes".to_string()]),
        (
            "lantern".to_string(),
            vec!["đèn lồng".to_string(), "lamp".to_string()],
        ),
    ]);
    Arc::new(Taxonomy::new(&themes).unwrap())
}

/// Survey answers as Parquet plus a small in-memory table of segments,
/// registered in `ctx`.
async fn register_inputs(ctx: &SessionContext, dir: &Path) {
    let path = dir.join("answers.parquet");
    if !path.exists() {
        write_parquet(
            &path,
            vec![
                (
                    "customer_id",
                    strs(["a", "a", "b", "b", "c", "c", "d"].into_iter().map(Some)),
                ),
                (
                    "survey",
                    strs(
                        ["nps", "nps", "nps", "csat", "nps", "csat", "nps"]
                            .into_iter()
                            .map(Some),
                    ),
                ),
                (
                    "score",
                    floats([10.0, 9.0, 6.0, 5.0, 8.0, 2.0, 10.0].into_iter().map(Some)),
                ),
                (
                    "comment",
                    strs(
                        [
                            Some("Stripes everywhere"),
                            None,
                            Some("the lamp is broken"),
                            Some("đèn lồng đẹp and stripes"),
                            Some("fine"),
                            Some("slow support"),
                            Some("invoice wrong"),
                        ]
                        .into_iter(),
                    ),
                ),
            ],
        );
    }
    ctx.register_parquet(
        "answers",
        path.to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("segment", DataType::Utf8, false),
    ]));
    let segments = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            strs(["a", "b", "c"].into_iter().map(Some)),
            strs(["smb", "smb", "enterprise"].into_iter().map(Some)),
        ],
    )
    .unwrap();
    let table = MemTable::try_new(schema, vec![vec![segments]]).unwrap();
    ctx.register_table("segments", Arc::new(table)).unwrap();
}

/// A query's rows; a query that hangs on the cluster fails the test.
async fn rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let answer = async { ctx.sql(sql).await.unwrap().collect().await.unwrap() };
    let batches = tokio::time::timeout(Duration::from_secs(120), answer)
        .await
        .unwrap_or_else(|_| panic!("no answer within 2 minutes: {sql}"));
    batches_to_rows(&batches)
}

const QUERIES: [&str; 5] = [
    // cskpi's aggregates, grouped by a segment from the in-memory table
    "SELECT COALESCE(s.segment, 'none') AS segment, \
            nps(a.score) FILTER (WHERE a.survey = 'nps') AS nps, \
            csat(a.score) FILTER (WHERE a.survey = 'csat') AS csat, \
            COUNT(*) AS answers \
     FROM answers a LEFT JOIN segments s ON s.customer_id = a.customer_id \
     GROUP BY 1 ORDER BY 1",
    // the job's taxonomy, and a scalar UDF of every kind
    "SELECT customer_id, score, array_to_string(comment_themes(comment), ',') AS themes, \
            comment_sentiment(comment) IS NOT NULL AS has_sentiment, \
            key_hash(customer_id, survey) = key_hash(customer_id, survey) AS same_hash, \
            to_json(named_struct('id', customer_id, 'score', score)) AS raw \
     FROM answers ORDER BY customer_id, score",
    // a shuffle: every answer of a customer repartitioned by customer
    "SELECT customer_id, COUNT(*) AS n, SUM(score) AS total \
     FROM answers GROUP BY customer_id HAVING COUNT(*) > 1 ORDER BY customer_id",
    // a union with a literal branch (cskpi's 'all' rows): on Ballista 55.0.0
    // such a job never finished without cluster::leaves
    "SELECT 'all' AS survey UNION SELECT DISTINCT survey FROM answers ORDER BY 1",
    "SELECT s, COUNT(*) AS n FROM (SELECT 'all' AS s UNION ALL SELECT survey FROM answers) \
     GROUP BY s ORDER BY s",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_cluster_answers_as_a_local_session_does() {
    let cluster = Cluster::start(2);
    let dir = tempfile::tempdir().unwrap();

    let local = SessionContext::new_with_state(local_state());
    cskpi::engine::udf::register_all(&local, job_taxonomy());
    register_inputs(&local, dir.path()).await;
    let remote = remote_session(&cluster).await;
    register_inputs(&remote, dir.path()).await;

    for query in QUERIES {
        assert_eq!(
            rows(&remote, query).await,
            rows(&local, query).await,
            "{query}"
        );
    }

    // Worked out by hand: smb is a (10, 9: two promoters) and b (6: a
    // detractor), NPS 100 * (2 - 1) / 3, and b's csat 5 (positive); c is
    // enterprise (8: passive, NPS 0; csat 2, below 4: 0%), d none (10).
    let by_segment = rows(&remote, QUERIES[0]).await;
    assert_eq!(by_segment[0][0], "enterprise");
    assert_eq!(&by_segment[0][1..], ["0.0", "0.0", "2"]);
    assert_eq!(by_segment[1][0], "none");
    assert_eq!(&by_segment[1][1..3], ["100.0", "NULL"]);
    assert_eq!(by_segment[2][0], "smb");
    assert!(by_segment[2][1].starts_with("33.33"), "{by_segment:?}");
    assert_eq!(&by_segment[2][2..], ["100.0", "4"]);
    // The executors used the job's themes, not the built-in ones (which
    // know "invoice" and "slow", and neither stripes nor lanterns).
    let themes: Vec<(String, String)> = rows(&remote, QUERIES[1])
        .await
        .into_iter()
        .map(|r| (r[0].clone(), r[2].clone()))
        .collect();
    // 'all' and the two surveys; seven answers (five nps) plus the 'all' row.
    assert_eq!(
        rows(&remote, QUERIES[3]).await,
        [["all"], ["csat"], ["nps"]].map(|r| r.map(String::from).to_vec())
    );
    assert_eq!(
        rows(&remote, QUERIES[4]).await,
        [["all", "1"], ["csat", "2"], ["nps", "5"]].map(|r| r.map(String::from).to_vec())
    );
    assert_eq!(
        themes,
        [
            ("a", "NULL"),
            ("a", "zebra"),
            ("b", "lantern,zebra"),
            ("b", "lantern"),
            ("c", ""),
            ("c", ""),
            ("d", ""),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
}

/// `rows` strings of 200 letters that LZ4 cannot shrink much, keyed by a
/// permutation of 0..rows so that sorting moves every row.
fn write_long_strings(path: &Path, rows: u64) {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut letter = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        char::from(b'a' + (state % 26) as u8)
    };
    // 7919 is prime and no factor of `rows`: i -> 7919 i mod rows permutes.
    let keys: Vec<Option<i64>> = (0..rows).map(|i| Some((i * 7919 % rows) as i64)).collect();
    let texts: Vec<String> = keys
        .iter()
        .map(|k| {
            format!(
                "{:06}-{}",
                k.unwrap(),
                (0..193).map(|_| letter()).collect::<String>()
            )
        })
        .collect();
    write_parquet(
        path,
        vec![
            ("k", ints(keys.into_iter())),
            ("s", strs(texts.iter().map(|t| Some(t.as_str())))),
        ],
    );
}

/// A sorted stage's batches point into every string buffer its sort held
/// (string views), so each one would travel as the whole stage's strings:
/// 32 MB here, over the 16 MiB a gRPC message may carry between Ballista
/// processes. cskpi compacts batches where they leave a stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_long_strings_over_a_grpc_message_come_back_from_a_loopback_cluster() {
    const ROWS: u64 = 160_000;
    let cluster = Cluster::start(2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long_strings.parquet");
    write_long_strings(&path, ROWS);

    let local = SessionContext::new_with_state(local_state());
    let remote = remote_session(&cluster).await;
    for ctx in [&local, &remote] {
        ctx.register_parquet(
            "long_strings",
            path.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    }
    for query in [
        "SELECT k, s FROM long_strings ORDER BY k",
        // a shuffle by string, then a merge of sorted partitions
        "SELECT s, COUNT(*) AS n FROM long_strings GROUP BY s ORDER BY s",
    ] {
        let answer = rows(&remote, query).await;
        assert_eq!(answer.len(), ROWS as usize, "{query}");
        assert_eq!(answer, rows(&local, query).await, "{query}");
    }
    // Every key once, in order, each with its own text.
    let sorted = rows(&remote, "SELECT k, s FROM long_strings ORDER BY k").await;
    for (i, row) in sorted.iter().enumerate() {
        assert_eq!(row[0], i.to_string());
        assert!(row[1].starts_with(&format!("{i:06}-")), "{row:?}");
    }
}

#[tokio::test]
async fn a_scheduler_that_is_down_is_named_in_one_line() {
    let port = free_port();
    let started = Instant::now();
    let Err(error) = cskpi::cluster::connect(
        &format!("df://127.0.0.1:{port}"),
        local_state(),
        job_taxonomy(),
        Default::default(),
        Duration::from_secs(600),
    )
    .await
    else {
        panic!("connected to a scheduler that is not there");
    };
    assert!(started.elapsed() < Duration::from_secs(30));
    let line = cskpi::error::one_line(&error);
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(line.contains("no Ballista scheduler answers"), "{line}");
}

/// Every output file of the runs publishing to `a` and `b`, byte for byte
/// (the manifest aside: it names the run).
fn assert_same_tables(a: &Path, b: &Path) {
    for table in cskpi::run::output_tables() {
        let (here, there) = (
            crate::fixture::table_files(a, table.name),
            crate::fixture::table_files(b, table.name),
        );
        assert!(!here.is_empty(), "{}", table.name);
        let names =
            |files: &[(String, Vec<u8>)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&there), names(&here), "{}", table.name);
        for ((name, mine), (_, theirs)) in here.iter().zip(&there) {
            assert!(
                mine == theirs,
                "{}/{name} differs between {} and {}",
                table.name,
                a.display(),
                b.display()
            );
        }
    }
}

/// `job` on `cluster` (inputs, output and scratch on this machine's disk,
/// which the loopback cluster shares), failing the test after 10 minutes.
async fn run_on(
    cluster: &Cluster,
    job: &cskpi::config::JobConfig,
    scratch: &Path,
    options: &cskpi::run::RunOptions,
) -> Result<cskpi::run::RunReport, cskpi::error::Error> {
    let mut job = job.clone();
    job.cluster.scheduler = Some(cluster.url.clone());
    job.cluster.shared_fs = true;
    job.run.temp_dir = Some(scratch.display().to_string());
    // A query of these data sets takes seconds: one that hangs (Ballista
    // 55 after a lost executor, cluster/quiet.rs) fails the run.
    job.cluster.quiet_limit_seconds = 60;
    tokio::time::timeout(Duration::from_secs(600), cskpi::run::run_job(&job, options))
        .await
        .expect("the cluster run did not finish within 10 minutes")
}

/// `job` publishing to `out`.
fn publishing_to(job: &cskpi::config::JobConfig, out: &Path) -> cskpi::config::JobConfig {
    let mut job = job.clone();
    job.output.path = format!("{}/", out.display());
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_samples_and_a_generated_data_set_on_a_loopback_cluster_publish_a_local_runs_bytes() {
    let cluster = Cluster::start(2);
    let dir = tempfile::tempdir().unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples/job.toml");
    let samples = cskpi::config::JobConfig::load(&samples).unwrap();
    // Production's layout: events in date order over many files, usage
    // partitioned by month, Decimal money.
    let generated_dir = dir.path().join("generated");
    cskpi::datagen::generate(
        &cskpi::datagen::GenOptions {
            customers: 1_500,
            seed: 19,
            start: crate::fixture::date("2024-01-01"),
            end: crate::fixture::date("2025-06-30"),
            bad_row_rate: 0.002,
            layout: cskpi::datagen::Layout::Date,
            rows_per_file: 4_000,
        },
        &generated_dir,
    )
    .await
    .unwrap();
    let generated = cskpi::config::JobConfig::load(&generated_dir.join("job.toml")).unwrap();

    let options = cskpi::run::RunOptions::default();
    for (name, job) in [("samples", samples), ("generated", generated)] {
        let (local_out, cluster_out) = (
            dir.path().join(format!("{name}-local")),
            dir.path().join(format!("{name}-cluster")),
        );
        let here = cskpi::run::run_job(&publishing_to(&job, &local_out), &options)
            .await
            .unwrap();
        let there = run_on(
            &cluster,
            &publishing_to(&job, &cluster_out),
            &dir.path().join(format!("{name}-scratch")),
            &options,
        )
        .await
        .unwrap();
        assert_eq!(there.outputs, here.outputs, "{name}");
        assert_eq!(
            serde_json::to_value(&there.inputs).unwrap(),
            serde_json::to_value(&here.inputs).unwrap(),
            "{name}"
        );
        assert!(
            here.inputs.iter().any(|i| i.rejected > 0),
            "{name}: no bad rows"
        );
        assert_same_tables(&local_out, &cluster_out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_mid_run_gives_the_same_tables_or_one_line_and_the_previous_tables() {
    let mut cluster = Cluster::start(2);
    let dir = tempfile::tempdir().unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples/job.toml");
    let job = cskpi::config::JobConfig::load(&samples).unwrap();
    let (out, expected) = (dir.path().join("out"), dir.path().join("expected"));
    let as_of = |day: &str| cskpi::run::RunOptions {
        as_of: Some(crate::fixture::date(day)),
        ..Default::default()
    };
    // The previous run's tables (another month: a mix would show), and
    // what the killed run must publish if it succeeds.
    let previous = as_of("2026-05-31");
    let this = as_of("2026-06-30");
    cskpi::run::run_job(&publishing_to(&job, &out), &previous)
        .await
        .unwrap();
    let before = dir.path().join("before");
    copy_dir(&out, &before);
    cskpi::run::run_job(&publishing_to(&job, &expected), &this)
        .await
        .unwrap();

    let killed = cluster.kill_executor_after_tasks(1, 40);
    let result = run_on(
        &cluster,
        &publishing_to(&job, &out),
        &dir.path().join("scratch"),
        &this,
    )
    .await;
    assert!(
        killed.join().unwrap(),
        "the executor ran fewer than 40 tasks"
    );
    match result {
        Ok(_) => assert_same_tables(&expected, &out),
        Err(error) => {
            let line = cskpi::error::one_line(&error);
            assert!(!line.is_empty() && !line.contains('\n'), "{line}");
            eprintln!("the run failed as it may: {line}");
            assert_same_tables(&before, &out);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_inputs_scratch_and_outputs_on_a_loopback_cluster_publish_a_local_runs_bytes() {
    let moto = crate::s3::start_moto();
    // The nodes' own credentials (moto takes any); the job names only the
    // endpoint and region.
    let creds = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let cluster = Cluster::start_with_env(2, &creds);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    crate::fixture::generate_dataset(&data, 150, 23, "2024-06-01", "2025-05-31").await;
    crate::s3::create_bucket(&moto.endpoint, "cs-cluster");
    crate::s3::upload_dir(&moto.endpoint, "cs-cluster", "exports", &data).await;

    let local_out = dir.path().join("local-out");
    let local = publishing_to(
        &cskpi::config::JobConfig::load(&data.join("job.toml")).unwrap(),
        &local_out,
    );
    cskpi::run::run_job(&local, &cskpi::run::RunOptions::default())
        .await
        .unwrap();

    // The generated job with its inputs and output on S3.
    let mut text = std::fs::read_to_string(data.join("job.toml")).unwrap();
    for table in crate::fixture::input_names() {
        text = text.replace(
            &format!("{table} = \"{table}.parquet\""),
            &format!("{table} = \"s3://cs-cluster/exports/{table}/\""),
        );
    }
    text = text.replace("path = \"out/\"", "path = \"s3://cs-cluster/kpis/\"");
    assert!(
        !text.contains(".parquet\"") && text.contains("s3://cs-cluster/kpis/"),
        "{text}"
    );
    text.push_str(&format!(
        "\n[s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\nallow_http = true\n",
        moto.endpoint
    ));
    let job = dir.path().join("cluster-job.toml");
    std::fs::write(&job, text).unwrap();
    // Inputs, scratch (the views the run stores, which the executors read)
    // and outputs on S3: nothing on a shared file system.
    let run = Command::new(env!("CARGO_BIN_EXE_cskpi"))
        .args(["run", "--config"])
        .arg(&job)
        .args(["--cluster", &cluster.url])
        .args(["--temp-dir", "s3://cs-cluster/scratch/"])
        .envs(creds)
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let store = crate::s3::s3_store(&moto.endpoint, "cs-cluster");
    // The run removed its scratch.
    assert_eq!(
        crate::s3::keys_under(&store, "scratch").await,
        Vec::<String>::new()
    );
    for table in cskpi::run::output_tables() {
        let here = crate::fixture::table_files(&local_out, table.name);
        assert!(!here.is_empty(), "{}", table.name);
        let prefix = format!("kpis/{}/", table.name);
        let mut keys = crate::s3::keys_under(&store, &prefix).await;
        keys.sort();
        let names: Vec<String> = keys.iter().map(|k| k[prefix.len()..].to_string()).collect();
        assert_eq!(
            names,
            here.iter().map(|f| f.0.clone()).collect::<Vec<_>>(),
            "{}",
            table.name
        );
        for (key, (name, bytes)) in keys.iter().zip(&here) {
            let there = crate::s3::object_bytes(&store, key).await;
            assert!(
                there == *bytes,
                "{}/{name} differs between the local run and the cluster's on S3",
                table.name
            );
        }
    }
}
