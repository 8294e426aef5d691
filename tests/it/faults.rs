//! Publishing under faults (issue 18). Runs whose as_of differs from the
//! published run's (so the two runs' tables differ) are killed (SIGKILL),
//! cut off from S3 (a TCP proxy between cskpi and the S3 server, which the
//! test controls) or made to fail, at seeded steps of publishing. After
//! each, once the publication is finished (by the failed run itself, by
//! `cskpi recover` or by the next run), every table and the manifest are
//! one run's: the previous run's when the new tables were not all in
//! place, the new run's otherwise; no journal and no staging is left.
//! Before that, a reader sees either one run or the journal.
//!
//! `CSKPI_FAULT_PUBLISH=pause=MS` makes every step of publishing wait and
//! each step is logged first, so the test knows which step a fault hits:
//! steps 1..=T come before replacing table 1..=T, T+1 before the journal
//! says every table is in place, T+2 before the manifest, T+3 before the
//! previous files are removed, T+4 before the journal is removed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::fixture::generate_dataset;
use super::s3::{create_bucket, keys_under, s3_store, start_moto};

/// Two as_of dates inside the generated data: their runs differ.
const AS_OF: [&str; 2] = ["2025-04-30", "2025-05-31"];
const PAUSE_MS: u64 = 160;
const JOURNAL: &str = "_publish_journal.json";
/// The S3 lock's lease in the tests' jobs: after a fault, the tests wait
/// it out before the next run or recovery.
const LEASE: Duration = Duration::from_secs(2);

fn wait_for_lease() {
    std::thread::sleep(LEASE + Duration::from_millis(500));
}

fn tables() -> usize {
    cskpi::run::output_tables().len()
}

fn steps() -> usize {
    tables() + 4
}

/// What a reader of the output location sees.
#[derive(Debug)]
struct Seen {
    /// Every file of every table, by path under the output location.
    tables: BTreeMap<String, Vec<u8>>,
    manifest_as_of: Option<String>,
    /// The as_of report.html shows, when there is one.
    report_as_of: Option<String>,
    journal: bool,
    staging: bool,
}

impl Seen {
    /// The index into `runs` of the one run every table and the manifest
    /// come from, if there is one.
    fn which(&self, runs: &[Seen; 2]) -> Option<usize> {
        (0..2).find(|&i| {
            self.tables == runs[i].tables
                && self.manifest_as_of.as_deref() == Some(AS_OF[i])
                && self.report_as_of.as_deref().is_none_or(|r| r == AS_OF[i])
        })
    }

    fn finished(&self) -> bool {
        !self.journal && !self.staging
    }

    fn add(&mut self, relative: &str, bytes: impl FnOnce() -> Vec<u8>) {
        let top = relative.split('/').next().unwrap_or_default();
        if relative == JOURNAL {
            self.journal = true;
        } else if top.starts_with(".cskpi-staging-") {
            self.staging = true;
        } else if relative == "report.html" {
            // A page about another run's numbers would be a mix too.
            let page = String::from_utf8(bytes()).unwrap();
            let marker = "data-kpi=\"as_of\">";
            let at = page.find(marker).expect("the report shows its as_of") + marker.len();
            self.report_as_of = Some(page[at..at + 10].to_string());
        } else if relative == "_manifest.json" {
            let manifest: serde_json::Value = serde_json::from_slice(&bytes()).unwrap();
            self.manifest_as_of = manifest["as_of"].as_str().map(str::to_string);
        } else if !top.starts_with('.') && relative != "_cskpi.lock" {
            self.tables.insert(relative.to_string(), bytes());
        }
    }
}

/// Where the outputs are published.
enum Place {
    Local(PathBuf),
    S3 {
        store: object_store::aws::AmazonS3,
        prefix: String,
    },
}

impl Place {
    async fn seen(&self) -> Seen {
        let mut seen = Seen {
            tables: BTreeMap::new(),
            manifest_as_of: None,
            report_as_of: None,
            journal: false,
            staging: false,
        };
        match self {
            Place::Local(root) => {
                fn walk(root: &Path, dir: &Path, seen: &mut Seen) {
                    for entry in std::fs::read_dir(dir).unwrap() {
                        let path = entry.unwrap().path();
                        if path.is_dir() {
                            walk(root, &path, seen);
                        } else {
                            let relative = path.strip_prefix(root).unwrap().to_string_lossy();
                            seen.add(&relative, || std::fs::read(&path).unwrap());
                        }
                    }
                }
                walk(root, root, &mut seen);
            }
            Place::S3 { store, prefix } => {
                for key in keys_under(store, prefix).await {
                    let bytes = store
                        .get(&ObjectPath::from(key.as_str()))
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap()
                        .to_vec();
                    seen.add(&key[prefix.len() + 1..], || bytes);
                }
            }
        }
        seen
    }
}

/// A TCP proxy in front of the S3 server: `cut` drops every open
/// connection and refuses new ones until `restore`.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (is_cut, conns) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if is_cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mut conns = conns.lock().unwrap();
                conns.push(client.try_clone().unwrap());
                conns.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Proxy { addr, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for conn in self.open.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
}

/// The log line that starts the wait before publishing step `k` (0: the
/// start of publishing).
fn step_line(k: usize) -> String {
    if k == 0 {
        "stage=\"publishing\"".into()
    } else {
        format!("publishing step={k}")
    }
}

struct Finished {
    success: bool,
    log: String,
}

fn cskpi(args: &[&str], job: &Path, envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cskpi"));
    command
        .args(args)
        .arg("--config")
        .arg(job)
        .envs(envs.iter().copied())
        .env_remove("AWS_PROFILE")
        .env_remove("CSKPI_FAULT_PUBLISH")
        .env("RUST_LOG", "info,cskpi::output::journal=debug");
    command
}

/// A whole run, no fault.
fn run(job: &Path, as_of: &str, envs: &[(&str, &str)]) -> Finished {
    let out = cskpi(&["run", "--as-of", as_of], job, envs)
        .output()
        .unwrap();
    Finished {
        success: out.status.success(),
        log: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// `cskpi recover`, which must succeed.
fn recover(job: &Path, envs: &[(&str, &str)]) -> String {
    let out = cskpi(&["recover"], job, envs).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "recover: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A run with slowed publishing; when its log shows a line ending in
/// `trigger`, waits `delay` and applies the fault.
fn run_with_fault(
    job: &Path,
    as_of: &str,
    envs: &[(&str, &str)],
    trigger: &str,
    delay: Duration,
    fault: impl FnOnce(&mut Child),
) -> Finished {
    let mut child = cskpi(&["run", "--as-of", as_of], job, envs)
        .env("CSKPI_FAULT_PUBLISH", format!("pause={PAUSE_MS}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut log = String::new();
    let mut fault = Some(fault);
    for line in received {
        log.push_str(&line);
        log.push('\n');
        if line.ends_with(trigger)
            && let Some(fault) = fault.take()
        {
            std::thread::sleep(delay);
            fault(&mut child);
        }
    }
    reader.join().unwrap();
    let status = child.wait().unwrap();
    assert!(fault.is_none(), "no log line ends with {trigger:?}:\n{log}");
    Finished {
        success: status.success(),
        log,
    }
}

/// The run whose tables a recovery after a fault at step `k` keeps: the
/// previous one until every new table is known to be in place (on S3,
/// until the journal says so), the new one after.
fn kept_after_step(k: usize, previous: usize, new: usize, s3: bool) -> usize {
    let in_place_known = if s3 { tables() + 2 } else { tables() + 1 };
    if k < in_place_known { previous } else { new }
}

/// A generated data set whose job publishes to `output` (a path relative
/// to the job file, or s3://...), with `extra` appended to the job.
async fn data_set(dir: &Path, output: &str, extra: &str) -> PathBuf {
    let data = dir.join("data");
    generate_dataset(&data, 150, 5, "2024-06-01", "2025-05-31").await;
    let job = data.join("job.toml");
    let text = std::fs::read_to_string(&job).unwrap();
    // A killed run's S3 lock keeps others out for LEASE seconds.
    let text = text.replace(
        "path = \"out/\"",
        &format!(
            "path = \"{output}\"\nlock_lease_seconds = {}",
            LEASE.as_secs()
        ),
    );
    // Killed runs cannot remove their scratch: keep it in the test's dir.
    let text = text.replace("[run]\n", "[run]\nwork_dir = \"scratch\"\n");
    std::fs::write(&job, format!("{text}\n{extra}")).unwrap();
    job
}

/// Runs both as_of values to the end: the two runs a reader may see.
async fn reference_runs(job: &Path, place: &Place, envs: &[(&str, &str)]) -> [Seen; 2] {
    let mut runs = Vec::new();
    for as_of in AS_OF {
        let done = run(job, as_of, envs);
        assert!(done.success, "{}", done.log);
        let seen = place.seen().await;
        assert!(seen.finished(), "{seen:?}");
        runs.push(seen);
    }
    assert!(runs[0].tables != runs[1].tables, "the two runs must differ");
    runs.try_into().unwrap()
}

/// SIGKILLs at seeded steps of publishing, alternating which run is
/// published; odd trials are finished by `cskpi recover`, even ones by the
/// next run, which must say what it did.
async fn killed_runs(job: &Path, place: &Place, envs: &[(&str, &str)], s3: bool, seed: u64) {
    let runs = reference_runs(job, place, envs).await;
    let mut current = 1;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for trial in 0..20 {
        let new = 1 - current;
        let k = rng.random_range(0..=steps());
        let delay = Duration::from_millis(rng.random_range(0..PAUSE_MS / 2));
        let killed = run_with_fault(job, AS_OF[new], envs, &step_line(k), delay, kill);
        assert!(!killed.success, "trial {trial}: the run was killed");
        if s3 {
            wait_for_lease();
        }
        let seen = place.seen().await;
        assert!(
            seen.journal || seen.which(&runs).is_some(),
            "trial {trial}, killed at step {k}: a mix of runs without a journal"
        );
        // Killed in the wait before step 1 or later: the journal is written.
        let expected = kept_after_step(k, current, new, s3);
        if trial % 2 == 1 {
            let said = recover(job, envs);
            let verb = if expected == new {
                "rolled forward"
            } else {
                "rolled back"
            };
            assert!(
                !seen.journal || said.contains(verb),
                "trial {trial}, step {k}: {said}"
            );
            let after = place.seen().await;
            assert!(after.finished(), "trial {trial}, step {k}: {after:?}");
            if seen.journal {
                assert_eq!(
                    after.which(&runs),
                    Some(expected),
                    "trial {trial}, step {k}"
                );
            }
            current = after.which(&runs).expect("one run");
        } else {
            let next = run(job, AS_OF[current], envs);
            assert!(next.success, "{}", next.log);
            if seen.journal {
                let verb = if expected == new {
                    "rolled forward"
                } else {
                    "rolled back"
                };
                assert!(
                    next.log.contains(verb),
                    "trial {trial}, step {k}: {}",
                    next.log
                );
            }
            let after = place.seen().await;
            assert!(after.finished(), "trial {trial}: {after:?}");
            assert_eq!(after.which(&runs), Some(current), "trial {trial}");
        }
    }
}

#[tokio::test]
async fn killed_while_publishing_on_disk_the_output_is_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let job = data_set(dir.path(), "out/", "").await;
    let place = Place::Local(dir.path().join("data/out"));
    killed_runs(&job, &place, &[], false, 18).await;
}

/// A step of publishing that fails (a full disk, a refused write) on local
/// disk: the failed run puts the output back to one run itself: the
/// previous one while tables are replaced, the new one once every table is
/// in place (then the run succeeds); a failure while removing the previous
/// files leaves the journal, which the next run or `cskpi recover` removes.
#[tokio::test]
async fn a_failed_step_of_publishing_is_undone_by_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let job = data_set(dir.path(), "out/", "").await;
    let place = Place::Local(dir.path().join("data/out"));
    let runs = reference_runs(&job, &place, &[]).await;
    let mut current = 1;
    for k in 1..=steps() {
        let new = 1 - current;
        let out = cskpi(&["run", "--as-of", AS_OF[new]], &job, &[])
            .env("CSKPI_FAULT_PUBLISH", format!("fail={k}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let seen = place.seen().await;
        if k <= tables() {
            assert!(!out.status.success(), "step {k}");
            assert!(
                stderr
                    .lines()
                    .last()
                    .unwrap()
                    .starts_with("cskpi: error: publishing: step"),
                "{stderr}"
            );
            assert!(seen.finished(), "step {k}: {seen:?}");
            assert_eq!(seen.which(&runs), Some(current), "step {k}");
            continue;
        }
        assert!(out.status.success(), "step {k}: {stderr}");
        assert_eq!(seen.which(&runs), Some(new), "step {k}");
        if k <= tables() + 2 {
            assert!(stderr.contains("rolled forward"), "step {k}: {stderr}");
            assert!(seen.finished(), "step {k}: {seen:?}");
        } else {
            assert!(seen.journal, "step {k}: the journal is removed last");
            assert!(recover(&job, &[]).contains("rolled forward"));
            assert!(place.seen().await.finished());
        }
        current = new;
    }
}

fn moto_addr(endpoint: &str) -> SocketAddr {
    endpoint.trim_start_matches("http://").parse().unwrap()
}

/// The job's `[s3]` section for a server at `endpoint`.
fn s3_section(endpoint: &str) -> String {
    format!("[s3]\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\nallow_http = true\n")
}

const CREDENTIALS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
];

#[tokio::test]
async fn killed_while_publishing_on_s3_the_output_is_one_run() {
    let moto = start_moto();
    create_bucket(&moto.endpoint, "faults");
    let dir = tempfile::tempdir().unwrap();
    let s3 = s3_section(&moto.endpoint);
    let job = data_set(dir.path(), "s3://faults/kpis/", &s3).await;
    let place = Place::S3 {
        store: s3_store(&moto.endpoint, "faults"),
        prefix: "kpis".into(),
    };
    killed_runs(&job, &place, &CREDENTIALS, true, 1818).await;
}

/// The network to S3 cut before publishing, at seeded steps of it and
/// after the manifest: the run ends with one line (or succeeds, when only
/// removing leftovers failed); once the network is back, `cskpi recover`
/// leaves one run and nothing else.
#[tokio::test]
async fn a_cut_network_to_s3_leaves_one_run_after_recovery() {
    let moto = start_moto();
    create_bucket(&moto.endpoint, "cuts");
    let proxy = Proxy::start(moto_addr(&moto.endpoint));
    let dir = tempfile::tempdir().unwrap();
    let s3 = s3_section(&format!("http://{}", proxy.addr));
    let job = data_set(dir.path(), "s3://cuts/kpis/", &s3).await;
    let place = Place::S3 {
        store: s3_store(&moto.endpoint, "cuts"),
        prefix: "kpis".into(),
    };
    let runs = reference_runs(&job, &place, &CREDENTIALS).await;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let before = format!("stage=\"{}\"", cskpi::kpi::FAMILIES[1].name);
    // Before publishing (while tables are staged), every step, and a few
    // seeded ones again.
    let mut cuts: Vec<Option<usize>> = vec![None];
    cuts.extend((0..=steps()).map(Some));
    cuts.extend((0..4).map(|_| Some(rng.random_range(1..=steps()))));
    let mut current = 1;
    for cut in cuts {
        let new = 1 - current;
        let trigger = cut.map(step_line).unwrap_or_else(|| before.clone());
        let delay = Duration::from_millis(rng.random_range(0..PAUSE_MS / 2));
        let done = run_with_fault(&job, AS_OF[new], &CREDENTIALS, &trigger, delay, |_| {
            proxy.cut()
        });
        let published = cut.is_some_and(|k| k > tables() + 2);
        if published {
            assert!(done.success, "cut at {cut:?}: {}", done.log);
        } else {
            assert!(!done.success, "cut at {cut:?}");
            let last = done.log.lines().last().unwrap();
            assert!(last.starts_with("cskpi: error: "), "{}", done.log);
        }
        let seen = place.seen().await;
        assert!(
            seen.journal || seen.which(&runs).is_some(),
            "cut at {cut:?}: a mix of runs without a journal"
        );
        proxy.restore();
        // A run that could not reach S3 could not release its lock either.
        wait_for_lease();
        recover(&job, &CREDENTIALS);
        let after = place.seen().await;
        assert!(after.finished(), "cut at {cut:?}: {after:?}");
        let expected = match cut {
            None => current,
            Some(k) => kept_after_step(k, current, new, true),
        };
        assert_eq!(after.which(&runs), Some(expected), "cut at {cut:?}");
        current = expected;
    }
}

/// Two runs on one S3 output: while the first publishes (longer than the
/// lock's lease, so only its renewals keep the lock), a second is refused
/// with one line naming the first; a lock whose lease ended (its run was
/// killed) is taken over; no lock is left after a run.
#[tokio::test]
async fn a_second_run_on_an_s3_output_is_refused_until_the_lock_expires() {
    let moto = start_moto();
    create_bucket(&moto.endpoint, "locks");
    let dir = tempfile::tempdir().unwrap();
    let s3 = s3_section(&moto.endpoint);
    let job = data_set(dir.path(), "s3://locks/kpis/", &s3).await;
    let store = s3_store(&moto.endpoint, "locks");
    let lock = ObjectPath::from("kpis/_cskpi.lock");
    let mut second = None;
    let first = run_with_fault(
        &job,
        AS_OF[0],
        &CREDENTIALS,
        &step_line(0),
        LEASE + Duration::from_millis(800),
        |_| second = Some(run(&job, AS_OF[1], &CREDENTIALS)),
    );
    assert!(first.success, "{}", first.log);
    let second = second.unwrap();
    assert!(!second.success);
    let last = second.log.lines().last().unwrap();
    let first_run = first.log.split("run{run_id=").nth(1).unwrap();
    let first_run = &first_run[..first_run.find('}').unwrap()];
    assert!(
        last.starts_with(
            "cskpi: error: output s3://locks/kpis/: another cskpi run is publishing there"
        ) && last.contains(first_run),
        "{last}"
    );
    assert!(store.head(&lock).await.is_err(), "the lock is released");

    // A killed run's lock: refused while its lease runs, taken over after.
    let dead = |expires: chrono::DateTime<chrono::Utc>| {
        serde_json::json!({"run_id": "dead-run", "host": "h", "pid": 1, "expires_at": expires})
            .to_string()
    };
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    store.put(&lock, dead(later).into()).await.unwrap();
    let refused = run(&job, AS_OF[1], &CREDENTIALS);
    assert!(!refused.success);
    assert!(
        refused.log.lines().last().unwrap().contains("dead-run"),
        "{}",
        refused.log
    );
    let earlier = chrono::Utc::now() - chrono::Duration::seconds(1);
    store.put(&lock, dead(earlier).into()).await.unwrap();
    let taken = run(&job, AS_OF[1], &CREDENTIALS);
    assert!(taken.success, "{}", taken.log);
    assert!(
        taken.log.contains("taking over an expired lock"),
        "{}",
        taken.log
    );
    assert!(store.head(&lock).await.is_err(), "the lock is released");
}
