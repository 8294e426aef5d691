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

use crate::fixture::{batches_to_rows, floats, strs, write_parquet};

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
    fn start(name: &str, args: &[String]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cskpi"))
            .args(args)
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
    _processes: Vec<Process>,
    _work: tempfile::TempDir,
}

impl Cluster {
    pub fn start(executors: usize) -> Self {
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
            );
            executor.wait_for_line(REGISTERED, Duration::from_secs(60));
            processes.push(executor);
        }
        Cluster {
            url: format!("df://127.0.0.1:{port}"),
            _processes: processes,
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

async fn rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    batches_to_rows(&ctx.sql(sql).await.unwrap().collect().await.unwrap())
}

const QUERIES: [&str; 3] = [
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
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_cluster_answers_as_a_local_session_does() {
    let cluster = Cluster::start(2);
    let dir = tempfile::tempdir().unwrap();

    let local = SessionContext::new_with_state(local_state());
    cskpi::engine::udf::register_all(&local, job_taxonomy());
    register_inputs(&local, dir.path()).await;
    let remote = cskpi::cluster::connect(&cluster.url, local_state(), job_taxonomy())
        .await
        .unwrap();
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

#[tokio::test]
async fn a_scheduler_that_is_down_is_named_in_one_line() {
    let port = free_port();
    let started = Instant::now();
    let Err(error) = cskpi::cluster::connect(
        &format!("df://127.0.0.1:{port}"),
        local_state(),
        job_taxonomy(),
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
