//! A run's scratch directory, `cskpi-work-*` in the work directory
//! (`run.temp_dir`): the checked inputs and stored views of one run, and
//! the engine's spill files. A run removes its own when it ends; a killed
//! run cannot, so each run writes its owner (process id, the process's
//! start time, host) into `owner`, and the next run removes the scratch
//! directories whose owner is no longer alive (and only those: a directory
//! without an owner file, or of a live process, stays).
//!
//! The work directory may be an `s3://` prefix (a run on a cluster whose
//! nodes share no file system): the stored views go there, the spill files
//! (which DataFusion writes to local disk only) to a local scratch
//! directory in the system's temporary directory. Whether the owner of a
//! scratch prefix on S3 is alive can be told only on its own host; one
//! from another host is removed when its owner file is older than
//! [`REMOTE_STALE_AFTER`].

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::error::Result as DfResult;
use datafusion::parquet::arrow::async_writer::AsyncFileWriter;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tempfile::TempDir;

use super::session::SessionError;
use crate::config::JobConfig;

const PREFIX: &str = "cskpi-work-";
const OWNER: &str = "owner";
const OWNER_PARTIAL: &str = "owner.partial";

/// A scratch prefix on S3 whose owner ran on another host is removed by
/// the next run once its owner file is this old (no run takes a day).
pub const REMOTE_STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Buffer of a file written to an object store before it becomes a
/// multipart upload: S3's smallest part.
const UPLOAD_PART: usize = 5 * 1024 * 1024;

/// A run's scratch: a local directory (spill files; the stored views too
/// when the work directory is local) and, with an `s3://` work directory,
/// a prefix there for the stored views.
pub struct Scratch {
    local: TempDir,
    remote: Option<RemoteDir>,
}

/// A run's scratch prefix in an object store.
#[derive(Clone)]
pub struct RemoteDir {
    store: Arc<dyn ObjectStore>,
    /// The prefix, without a trailing slash.
    prefix: ObjectPath,
    /// `s3://bucket/prefix/`.
    url: String,
}

/// Where a run stores its views: a directory of the scratch, local or in
/// an object store, with a subdirectory per view.
#[derive(Clone)]
pub enum ViewDir {
    Local(PathBuf),
    Remote(RemoteDir),
}

impl Scratch {
    /// Creates this run's scratch in the job's work directory (`run.temp_dir`,
    /// default the system's temporary directory), first removing the ones
    /// killed runs left there.
    pub async fn create(job: &JobConfig) -> Result<Scratch, SessionError> {
        let work_dir = job.run.temp_dir.as_deref().unwrap_or_default();
        if !work_dir.starts_with("s3://") {
            let local_dir = match job.run.local_temp_dir() {
                Some(dir) => dir,
                None if work_dir.is_empty() => std::env::temp_dir(),
                None => {
                    return Err(SessionError::TempDir {
                        dir: work_dir.into(),
                        message: "a work directory is a local directory or an s3:// prefix".into(),
                    });
                }
            };
            return Ok(Scratch {
                local: create(&local_dir)?,
                remote: None,
            });
        }
        let local = create(&std::env::temp_dir())?;
        let failed = |message: String| SessionError::TempDir {
            dir: work_dir.to_string(),
            message,
        };
        let (_, store) = super::session::s3_store(work_dir, job.s3.as_ref())?;
        let store: Arc<dyn ObjectStore> = Arc::new(store);
        let url = url::Url::parse(work_dir).map_err(|e| failed(e.to_string()))?;
        let bucket = url.host_str().unwrap_or_default();
        let parent = ObjectPath::from(url.path().trim_matches('/'));
        for removed in remove_stale_remote(&store, &parent, REMOTE_STALE_AFTER).await {
            tracing::info!(dir = %format!("s3://{bucket}/{removed}"), "removed the scratch prefix of a run that is no longer alive");
        }
        let name = format!("{PREFIX}{}", uuid::Uuid::new_v4().simple());
        let prefix = parent.clone().join(name.as_str());
        let me = Owner::current().map_err(|e| failed(e.to_string()))?;
        store
            .put(
                &prefix.clone().join(OWNER),
                PutPayload::from(me.to_string()),
            )
            .await
            .map_err(|e| failed(format!("cannot write the scratch owner: {e}")))?;
        let url = format!("s3://{bucket}/{prefix}/");
        tracing::info!(dir = %url, "stored views in the scratch prefix");
        Ok(Scratch {
            local,
            remote: Some(RemoteDir { store, prefix, url }),
        })
    }

    /// Runs `work` in a new scratch of `job` (`create`), then removes the
    /// scratch whatever `work` returned.
    pub async fn within<T, E: From<SessionError>>(
        job: &JobConfig,
        work: impl AsyncFnOnce(&Scratch) -> Result<T, E>,
    ) -> Result<T, E> {
        let scratch = Scratch::create(job).await?;
        let done = work(&scratch).await;
        scratch.remove().await;
        done
    }

    /// The directory the engine spills to (always local).
    pub fn spill_dir(&self) -> PathBuf {
        self.local.path().join("spill")
    }

    /// `job` with the engine spilling into this scratch.
    pub fn spilling_here(&self, job: &JobConfig) -> JobConfig {
        let mut spilling = job.clone();
        spilling.run.spill_dir = Some(self.spill_dir());
        spilling
    }

    /// Where the run stores its views.
    pub fn views(&self) -> ViewDir {
        match &self.remote {
            Some(remote) => ViewDir::Remote(remote.clone()),
            None => ViewDir::Local(self.local.path().to_path_buf()),
        }
    }

    /// Removes the scratch (the local directory, and the prefix on S3; a
    /// prefix that cannot be removed is a warning: the next run's
    /// cleanup or the bucket's lifecycle rule takes it).
    pub async fn remove(self) {
        if let Some(remote) = &self.remote
            && let Err(e) = remove_prefix(&remote.store, &remote.prefix).await
        {
            tracing::warn!(dir = %remote.url, error = %e, "cannot remove the run's scratch prefix");
        }
        drop(self.local);
    }
}

impl ViewDir {
    /// The location of view `name`'s files, a directory path or URL ending
    /// in `/`, made ready to be written (a local directory is created).
    pub fn prepare(&self, name: &str) -> DfResult<String> {
        match self {
            ViewDir::Local(dir) => {
                let target = dir.join(name);
                fs::create_dir_all(&target)?;
                Ok(format!("{}/", target.display()))
            }
            ViewDir::Remote(remote) => Ok(format!("{}{name}/", remote.url)),
        }
    }

    /// A new file `file` of view `name`'s directory (which `prepare` made),
    /// written as Parquet by an async writer.
    pub async fn create_file(&self, name: &str, file: &str) -> DfResult<Box<dyn AsyncFileWriter>> {
        match self {
            ViewDir::Local(dir) => {
                let file = tokio::fs::File::create(dir.join(name).join(file)).await?;
                Ok(Box::new(file))
            }
            ViewDir::Remote(remote) => {
                let path = remote.prefix.clone().join(name).join(file);
                let upload = object_store::buffered::BufWriter::with_capacity(
                    remote.store.clone(),
                    path,
                    UPLOAD_PART,
                );
                Ok(Box::new(upload))
            }
        }
    }
}

/// Creates a local scratch directory in `work_dir`, first removing the
/// ones killed runs left there.
fn create(work_dir: &Path) -> Result<TempDir, SessionError> {
    let failed = |e: std::io::Error| SessionError::TempDir {
        dir: work_dir.display().to_string(),
        message: format!("cannot create a work directory: {e}"),
    };
    fs::create_dir_all(work_dir).map_err(failed)?;
    for dir in remove_stale(work_dir) {
        tracing::info!(dir = %dir.display(), "removed the scratch directory of a run that is no longer alive");
    }
    let scratch = tempfile::Builder::new()
        .prefix(PREFIX)
        .tempdir_in(work_dir)
        .map_err(failed)?;
    let me = Owner::current().map_err(failed)?;
    // Whole or not at all: an empty owner file, left by a run killed while
    // writing it, would keep its directory forever.
    crate::files::write_whole(
        &scratch.path().join(OWNER),
        &scratch.path().join(OWNER_PARTIAL),
        me.to_string().as_bytes(),
    )
    .map_err(failed)?;
    Ok(scratch)
}

/// Removes the scratch directories in `work_dir` whose owner process is
/// gone; returns them.
fn remove_stale(work_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(work_dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let named = entry.file_name().to_string_lossy().starts_with(PREFIX);
        if !named || !path.is_dir() {
            continue;
        }
        let owner = fs::read_to_string(path.join(OWNER))
            .ok()
            .and_then(|text| text.parse::<Owner>().ok());
        match owner {
            Some(owner) if !owner.is_alive() => match fs::remove_dir_all(&path) {
                Ok(()) => removed.push(path),
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove stale scratch")
                }
            },
            _ => {}
        }
    }
    removed
}

/// Removes the scratch prefixes under `parent` whose owner is gone: a
/// process of this host that is no longer alive, or, from another host,
/// an owner file older than `stale_after`. Returns them.
async fn remove_stale_remote(
    store: &Arc<dyn ObjectStore>,
    parent: &ObjectPath,
    stale_after: Duration,
) -> Vec<ObjectPath> {
    let Ok(listing) = store.list_with_delimiter(Some(parent)).await else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for dir in listing.common_prefixes {
        let named = dir.filename().is_some_and(|name| name.starts_with(PREFIX));
        if !named {
            continue;
        }
        let Ok(found) = store.get(&dir.clone().join(OWNER)).await else {
            continue;
        };
        let written = found.meta.last_modified;
        let Ok(text) = found.bytes().await else {
            continue;
        };
        let Ok(owner) = std::str::from_utf8(&text)
            .unwrap_or_default()
            .parse::<Owner>()
        else {
            continue;
        };
        let age = (chrono::Utc::now() - written).to_std().unwrap_or_default();
        let stale = match owner.on_this_host() {
            true => !owner.is_alive(),
            false => age >= stale_after,
        };
        if !stale {
            continue;
        }
        match remove_prefix(store, &dir).await {
            Ok(()) => removed.push(dir),
            Err(e) => tracing::warn!(dir = %dir, error = %e, "cannot remove stale scratch"),
        }
    }
    removed
}

/// Deletes every object under `prefix`.
async fn remove_prefix(
    store: &Arc<dyn ObjectStore>,
    prefix: &ObjectPath,
) -> object_store::Result<()> {
    let locations = store
        .list(Some(prefix))
        .map_ok(|meta| meta.location)
        .boxed();
    store
        .delete_stream(locations)
        .try_collect::<Vec<_>>()
        .await
        .map(|_| ())
}

/// A process, told apart from a later one with the same id by its start
/// time (clock ticks after boot, /proc/<pid>/stat field 22), and its host
/// (a scratch prefix on S3 may be another machine's).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    pid: u32,
    start: u64,
    /// None in owner files written before hosts were recorded (local).
    host: Option<String>,
}

impl Owner {
    fn current() -> std::io::Result<Owner> {
        let pid = std::process::id();
        Ok(Owner {
            pid,
            start: start_time(pid)?,
            host: Some(this_host()),
        })
    }

    fn is_alive(&self) -> bool {
        start_time(self.pid).is_ok_and(|start| start == self.start)
    }

    fn on_this_host(&self) -> bool {
        self.host.as_deref().is_none_or(|host| host == this_host())
    }
}

/// This machine's name, as the kernel has it.
fn this_host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.pid, self.start)?;
        match &self.host {
            Some(host) => write!(f, " {host}"),
            None => Ok(()),
        }
    }
}

impl std::str::FromStr for Owner {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.split_whitespace();
        let pid = parts.next().and_then(|p| p.parse().ok()).ok_or(())?;
        let start = parts.next().and_then(|s| s.parse().ok()).ok_or(())?;
        let host = parts.next().map(str::to_string);
        Ok(Owner { pid, start, host })
    }
}

/// The start time of process `pid`; an error when there is no such process.
fn start_time(pid: u32) -> std::io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields from the last ')'. Field 3 is the first after it.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name
        .split_whitespace()
        .nth(22 - 3)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("/proc/{pid}/stat: no start time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_scratch_goes_a_live_runs_and_unowned_ones_stay() {
        let work = tempfile::tempdir().unwrap();
        let make = |name: &str, owner: Option<String>| {
            let dir = work.path().join(name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("data.parquet"), b"x").unwrap();
            if let Some(owner) = owner {
                fs::write(dir.join(OWNER), owner).unwrap();
            }
            dir
        };
        // A process that has ended: its id no longer has that start time.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let ended = Owner {
            pid: child.id(),
            start: start_time(child.id()).unwrap_or(0),
            host: None,
        };
        child.wait().unwrap();
        let live = Owner::current().unwrap();
        // The same id as this process but another start time: a reused id.
        let reused = Owner {
            start: live.start + 1,
            ..live.clone()
        };
        let dead_dir = make("cskpi-work-dead", Some(ended.to_string()));
        let reused_dir = make("cskpi-work-reused", Some(reused.to_string()));
        let live_dir = make("cskpi-work-live", Some(live.to_string()));
        let unowned_dir = make("cskpi-work-unowned", None);
        let other_dir = make("other", Some(ended.to_string()));

        let mut removed = remove_stale(work.path());
        removed.sort();
        assert_eq!(removed, [dead_dir.clone(), reused_dir.clone()]);
        assert!(!dead_dir.exists() && !reused_dir.exists());
        assert!(live_dir.exists() && unowned_dir.exists() && other_dir.exists());
    }

    #[test]
    fn a_new_scratch_directory_names_its_owner() {
        let work = tempfile::tempdir().unwrap();
        let scratch = create(work.path()).unwrap();
        let owner: Owner = fs::read_to_string(scratch.path().join(OWNER))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(owner, Owner::current().unwrap());
        assert!(owner.is_alive() && owner.on_this_host());
        assert!(!scratch.path().join(OWNER_PARTIAL).exists());
    }

    #[tokio::test]
    async fn stale_scratch_prefixes_go_by_owner_on_this_host_and_by_age_from_others() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let parent = ObjectPath::from("work");
        let put = |key: &str, text: String| {
            let store = store.clone();
            let key = ObjectPath::from(format!("work/{key}"));
            async move { store.put(&key, PutPayload::from(text)).await.unwrap() }
        };
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let ended = Owner {
            pid: child.id(),
            start: start_time(child.id()).unwrap_or(0),
            host: Some(this_host()),
        };
        child.wait().unwrap();
        let live = Owner::current().unwrap();
        // Alive or not, a process of another host cannot be asked.
        let elsewhere = Owner {
            host: Some(format!("{}-elsewhere", this_host())),
            ..live.clone()
        };
        put("cskpi-work-dead/owner", ended.to_string()).await;
        put("cskpi-work-dead/v/0.parquet", "x".into()).await;
        put("cskpi-work-live/owner", live.to_string()).await;
        put("cskpi-work-elsewhere/owner", elsewhere.to_string()).await;
        put("cskpi-work-elsewhere/v/0.parquet", "x".into()).await;
        put("cskpi-work-unowned/v/0.parquet", "x".into()).await;
        put("other/owner", ended.to_string()).await;
        let keys = || async {
            let mut keys: Vec<String> = store
                .list(Some(&parent))
                .map_ok(|meta| meta.location.to_string())
                .try_collect()
                .await
                .unwrap();
            keys.sort();
            keys
        };

        let removed = remove_stale_remote(&store, &parent, REMOTE_STALE_AFTER).await;
        assert_eq!(removed, [ObjectPath::from("work/cskpi-work-dead")]);
        let removed = remove_stale_remote(&store, &parent, Duration::ZERO).await;
        assert_eq!(removed, [ObjectPath::from("work/cskpi-work-elsewhere")]);
        assert_eq!(
            keys().await,
            [
                "work/cskpi-work-live/owner",
                "work/cskpi-work-unowned/v/0.parquet",
                "work/other/owner"
            ]
        );
    }
}
