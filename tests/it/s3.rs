//! Against an S3-compatible server on loopback (moto_server, which
//! scripts/test.sh installs): inputs read from S3 give the same tables as
//! the same files on disk, and outputs published to S3 read back the same.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::fixture::{generate_dataset, input_names, query_outputs};

pub(super) struct Moto {
    child: Child,
    pub(super) endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn start_moto() -> Moto {
    start_moto_with(&[])
}

fn start_moto_with(envs: &[(&str, &str)]) -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "moto_server not found: install it with `pip install 'moto[server]'` (.ci/run does)",
        );
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

/// CreateBucket is a bare PUT on moto, which checks no signature.
pub(super) fn create_bucket(endpoint: &str, bucket: &str) {
    let host = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

pub(super) fn s3_store(endpoint: &str, bucket: &str) -> object_store::aws::AmazonS3 {
    AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap()
}

pub(super) async fn upload_dir(endpoint: &str, bucket: &str, prefix: &str, dir: &Path) {
    let store = s3_store(endpoint, bucket);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            // one folder per table, as a warehouse would lay them out
            let key = ObjectPath::from(format!("{prefix}/{name}/part-0.parquet"));
            store
                .put(&key, std::fs::read(&path).unwrap().into())
                .await
                .unwrap();
        }
    }
}

/// Every table file under `prefix` (not the manifest or report) and its bytes.
async fn table_objects(
    store: &object_store::aws::AmazonS3,
    prefix: &str,
) -> Vec<(String, Vec<u8>)> {
    let mut keys = keys_under(store, prefix).await;
    keys.retain(|k| k.ends_with(".parquet"));
    keys.sort();
    let mut objects = Vec::new();
    for key in keys {
        let bytes = object_bytes(store, &key).await;
        objects.push((key, bytes));
    }
    objects
}

/// The bytes of object `key`.
pub(super) async fn object_bytes(store: &object_store::aws::AmazonS3, key: &str) -> Vec<u8> {
    store
        .get(&ObjectPath::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

fn run_cli(job: &Path, envs: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cskpi"))
        .args(["run", "--config"])
        .arg(job)
        .envs(envs.iter().copied())
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap()
}

#[tokio::test]
async fn s3_inputs_and_outputs_match_a_local_run() {
    let moto = start_moto();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate_dataset(&data, 120, 11, "2024-06-01", "2025-05-31").await;
    create_bucket(&moto.endpoint, "cs-data");
    upload_dir(&moto.endpoint, "cs-data", "exports", &data).await;

    // Local run: the generated job as is.
    let local = run_cli(&data.join("job.toml"), &[]);
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );

    let s3_job = dir.path().join("s3-job.toml");
    let inputs: String = input_names()
        .map(|t| format!("{t} = \"s3://cs-data/exports/{t}/\"\n"))
        .collect();
    std::fs::write(
        &s3_job,
        format!(
            "[input]\n{inputs}[output]\npath = \"{out}\"\n[run]\nas_of = \"2025-05-31\"\n\
             [s3]\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\nallow_http = true\n",
            out = dir.path().join("s3-out").display(),
            endpoint = moto.endpoint
        ),
    )
    .unwrap();
    let creds = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let remote = run_cli(&s3_job, &creds);
    assert!(
        remote.status.success(),
        "{}",
        String::from_utf8_lossy(&remote.stderr)
    );

    for (table, order) in [
        ("retention_monthly", "month, segment"),
        ("mrr_monthly", "month, segment"),
        ("mrr_movements", "month, customer_id"),
        ("rejects", "input, key, reason, raw_row"),
    ] {
        let sql = format!("SELECT * FROM {table} ORDER BY {order}");
        let a = query_outputs(&data.join("out"), &sql).await;
        let b = query_outputs(&dir.path().join("s3-out"), &sql).await;
        assert!(!a.is_empty() || table == "rejects");
        assert_eq!(a, b, "{table} differs between local and S3 inputs");
    }

    // Inputs and outputs on S3, published twice (the second replaces the first).
    let text = std::fs::read_to_string(&s3_job).unwrap().replace(
        &format!("path = \"{}\"", dir.path().join("s3-out").display()),
        "path = \"s3://cs-data/kpis/\"",
    );
    std::fs::write(&s3_job, text).unwrap();
    let store = s3_store(&moto.endpoint, "cs-data");
    // The second run keeps its scratch on S3 too, where a killed run of
    // this host left one (its process is gone: no pid is that high).
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let stale = object_store::path::Path::from("scratch/cskpi-work-killed/owner");
    let with_s3_scratch = dir.path().join("s3-scratch-job.toml");
    std::fs::write(
        &with_s3_scratch,
        std::fs::read_to_string(&s3_job)
            .unwrap()
            .replace("[run]\n", "[run]\ntemp_dir = \"s3://cs-data/scratch/\"\n"),
    )
    .unwrap();
    let mut published = Vec::new();
    for job in [&s3_job, &with_s3_scratch] {
        if job == &with_s3_scratch {
            store
                .put(&stale, format!("999999999 1 {}", host.trim()).into())
                .await
                .unwrap();
        }
        let both = run_cli(job, &creds);
        assert!(
            both.status.success(),
            "{}",
            String::from_utf8_lossy(&both.stderr)
        );
        if job == &with_s3_scratch {
            let log = String::from_utf8_lossy(&both.stderr);
            assert!(
                log.contains(
                    "stored views in the scratch prefix dir=s3://cs-data/scratch/cskpi-work-"
                ),
                "{log}"
            );
        }
        published.push(table_objects(&store, "kpis").await);
    }
    // Stored views on S3 change no byte of the tables, and the run removed
    // its scratch and the killed run's.
    assert!(published[0].len() > cskpi::run::output_tables().len());
    assert!(
        published[0] == published[1],
        "tables differ with the scratch on S3"
    );
    assert_eq!(keys_under(&store, "scratch").await, Vec::<String>::new());
    let keys = keys_under(&store, "kpis").await;
    // One file per small table, one per partition of a big one, the
    // manifest, and no staging left.
    assert!(
        keys.contains(&"kpis/_manifest.json".to_string()),
        "{keys:?}"
    );
    for table in cskpi::run::output_tables() {
        let files: Vec<&String> = keys
            .iter()
            .filter(|k| k.starts_with(&format!("kpis/{}/", table.name)))
            .collect();
        assert!(!files.is_empty(), "{} missing: {keys:?}", table.name);
        for file in files {
            let relative = &file[format!("kpis/{}/", table.name).len()..];
            let ok = match table.partition_by {
                None => relative == "part-0.parquet",
                Some(column) => {
                    relative == "part-0.parquet"
                        || relative.starts_with(&format!("{column}-"))
                            && relative.ends_with(".parquet")
                            && !relative.contains('/')
                }
            };
            assert!(ok, "unexpected key {file}");
        }
    }
    let tables = cskpi::run::output_tables().len();
    // The report of the second run, beside the tables on S3.
    assert!(keys.contains(&"kpis/report.html".to_string()), "{keys:?}");
    let page = String::from_utf8(object_bytes(&store, "kpis/report.html").await).unwrap();
    assert!(page.contains("data-kpi=\"as_of\">2025-05-31<"));
    assert!(
        keys.iter().all(|k| k == "kpis/_manifest.json"
            || k == "kpis/report.html"
            || cskpi::run::output_tables()
                .iter()
                .any(|t| k.starts_with(&format!("kpis/{}/", t.name)))),
        "{keys:?} ({tables} tables)"
    );
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_object_store(
        &url::Url::parse("s3://cs-data").unwrap(),
        std::sync::Arc::new(store),
    );
    for (table, order) in [
        ("mrr_monthly", "month, segment"),
        ("retention_monthly", "month, segment"),
    ] {
        ctx.register_parquet(
            table,
            &format!("s3://cs-data/kpis/{table}/"),
            Default::default(),
        )
        .await
        .unwrap();
        let sql = format!("SELECT * FROM {table} ORDER BY {order}");
        let on_s3 =
            super::fixture::batches_to_rows(&ctx.sql(&sql).await.unwrap().collect().await.unwrap());
        let local = query_outputs(&data.join("out"), &sql).await;
        assert_eq!(on_s3, local, "{table} on S3 differs from the local run");
    }

    // A bucket that does not exist: one clear line, non-zero exit.
    let text = std::fs::read_to_string(&s3_job)
        .unwrap()
        .replace("s3://cs-data/", "s3://no-such-bucket/");
    std::fs::write(&s3_job, text).unwrap();
    let missing = run_cli(&s3_job, &creds);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("cskpi: error: input customers"),
        "{stderr}"
    );
}

/// With signature checks on (moto checks them once its free actions are
/// used up), unknown credentials: one clear line, non-zero exit.
#[tokio::test]
async fn wrong_credentials_give_one_clear_line() {
    let moto = start_moto_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "1")]);
    create_bucket(&moto.endpoint, "locked");
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    let inputs: String = input_names()
        .take(3)
        .map(|t| format!("{t} = \"s3://locked/exports/{t}/\"\n"))
        .collect();
    std::fs::write(
        &job,
        format!(
            "[input]\n{inputs}[output]\npath = \"{out}\"\n\
             [s3]\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\nallow_http = true\n",
            out = dir.path().join("out").display(),
            endpoint = moto.endpoint
        ),
    )
    .unwrap();
    let output = run_cli(
        &job,
        &[
            ("AWS_ACCESS_KEY_ID", "nobody"),
            ("AWS_SECRET_ACCESS_KEY", "wrong"),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("cskpi: error: input customers"),
        "{stderr}"
    );
    assert!(
        last.contains("403") || last.contains("InvalidAccessKeyId"),
        "{last}"
    );
    assert!(!dir.path().join("out").exists(), "nothing written");
}

/// Every key under `prefix`.
pub(super) async fn keys_under(store: &object_store::aws::AmazonS3, prefix: &str) -> Vec<String> {
    store
        .list(Some(&ObjectPath::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}
