//! Writes the output tables and publishes them safely (spec section 5).
//!
//! Every table is one Parquet file, `<path>/<table>/part-0.parquet`. A run
//! first writes every table into a staging area beside the outputs,
//! `<path>/.cskpi-staging-<run_id>/`, and publishes only when all of them are
//! written; `_manifest.json` is replaced last. A run that fails or is killed
//! before publishing leaves the previous outputs as they were, and its
//! staging area is removed by the next run.
//!
//! - Local disk: each `<path>/<table>/` directory is swapped with its staged
//!   copy in one atomic `renameat2(RENAME_EXCHANGE)` (a plain rename when the
//!   table is new). A lock file keeps two runs from publishing at once.
//! - S3: each staged object is copied server-side over the live key; an S3
//!   copy or put of one object is atomic, so a reader gets the old file or the
//!   new one, never a part.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("output {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("output {path}: {source}")]
    Store {
        path: String,
        source: object_store::Error,
    },
    #[error("output {path}: another cskpi run is publishing there (lock {lock} is held)")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("output {0}: not a valid location")]
    Location(String),
    #[error("writing output table {table}: {source}")]
    Write {
        table: String,
        source: DataFusionError,
    },
}

const STAGING_PREFIX: &str = ".cskpi-staging-";
pub const MANIFEST: &str = "_manifest.json";
/// The one data file of every table.
pub const TABLE_FILE: &str = "part-0.parquet";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn store_error(path: &str) -> impl FnOnce(object_store::Error) -> OutputError + '_ {
    move |source| OutputError::Store {
        path: path.to_string(),
        source,
    }
}

enum Target {
    Local {
        root: PathBuf,
        staging: PathBuf,
        _lock: File,
    },
    S3 {
        store: Arc<dyn ObjectStore>,
        /// `s3://bucket`
        bucket_url: String,
        /// the output prefix inside the bucket, without slashes at the ends
        root: ObjectPath,
        staging: ObjectPath,
    },
}

/// A run's staged outputs. Dropped without `publish`, a local staging
/// directory removes itself; an S3 one is removed by the next run.
pub struct Staging {
    target: Target,
    location: String,
    tables: Vec<String>,
    published: bool,
}

impl Staging {
    /// Prepares the output location and removes what killed runs left.
    pub async fn begin(
        ctx: &SessionContext,
        path: &str,
        run_id: &str,
    ) -> Result<Self, OutputError> {
        let target = if path.starts_with("s3://") {
            begin_s3(ctx, path, run_id).await?
        } else {
            begin_local(path, run_id)?
        };
        Ok(Self {
            target,
            location: path.to_string(),
            tables: Vec::new(),
            published: false,
        })
    }

    /// Where the outputs are published, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn staged_file(&self, table: &str) -> Result<String, OutputError> {
        Ok(match &self.target {
            Target::Local { staging, .. } => {
                let dir = staging.join(table);
                fs::create_dir_all(&dir).map_err(io(&dir))?;
                dir.join(TABLE_FILE).to_string_lossy().into_owned()
            }
            Target::S3 {
                bucket_url,
                staging,
                ..
            } => format!("{bucket_url}/{staging}/{table}/{TABLE_FILE}"),
        })
    }

    /// Writes `SELECT * FROM <table> ORDER BY <order_by>` as the staged
    /// table's one zstd Parquet file; returns the row count.
    pub async fn write_table(
        &mut self,
        ctx: &SessionContext,
        table: &str,
        order_by: &str,
    ) -> Result<u64, OutputError> {
        let write = |source| OutputError::Write {
            table: table.into(),
            source,
        };
        let file = self.staged_file(table)?;
        let result = ctx
            .sql(&format!("SELECT * FROM {table} ORDER BY {order_by}"))
            .await
            .map_err(write)?
            .write_parquet(
                &file,
                DataFrameWriteOptions::new().with_single_file_output(true),
                None,
            )
            .await
            .map_err(write)?;
        let rows = result
            .first()
            .map(|b| b.column(0).as_primitive::<UInt64Type>().value(0))
            .unwrap_or(0);
        self.tables.push(table.into());
        Ok(rows)
    }

    /// Puts every staged table in place, then writes the manifest.
    pub async fn publish(mut self, manifest: &serde_json::Value) -> Result<(), OutputError> {
        let text = serde_json::to_vec_pretty(manifest).expect("manifest serialises");
        match &self.target {
            Target::Local { root, staging, .. } => {
                for table in &self.tables {
                    swap_into_place(&staging.join(table), &root.join(table))?;
                }
                let tmp = staging.join(MANIFEST);
                fs::write(&tmp, text).map_err(io(&tmp))?;
                let manifest_path = root.join(MANIFEST);
                fs::rename(&tmp, &manifest_path).map_err(io(&manifest_path))?;
                // The staging directory now holds the previous run's tables.
                fs::remove_dir_all(staging).map_err(io(staging))?;
            }
            Target::S3 {
                store,
                root,
                staging,
                ..
            } => {
                for table in &self.tables {
                    let live_dir = child(root, table);
                    let live = child(&live_dir, TABLE_FILE);
                    let staged = child(&child(staging, table), TABLE_FILE);
                    store
                        .copy(&staged, &live)
                        .await
                        .map_err(store_error(live.as_ref()))?;
                    // Files of another layout would mix with the new one.
                    let others: Vec<ObjectPath> = store
                        .list(Some(&live_dir))
                        .map_ok(|m| m.location)
                        .try_filter(|p| futures::future::ready(*p != live))
                        .try_collect()
                        .await
                        .map_err(store_error(live_dir.as_ref()))?;
                    for other in others {
                        store
                            .delete(&other)
                            .await
                            .map_err(store_error(other.as_ref()))?;
                    }
                }
                let manifest_path = child(root, MANIFEST);
                store
                    .put(&manifest_path, text.into())
                    .await
                    .map_err(store_error(manifest_path.as_ref()))?;
                delete_prefix(store.as_ref(), staging).await?;
            }
        }
        self.published = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Target::Local { staging, .. } = &self.target
            && !self.published
            && staging.exists()
        {
            let _ = fs::remove_dir_all(staging);
        }
    }
}

fn child(parent: &ObjectPath, name: &str) -> ObjectPath {
    if parent.as_ref().is_empty() {
        ObjectPath::from(name)
    } else {
        ObjectPath::from(format!("{parent}/{name}"))
    }
}

fn begin_local(path: &str, run_id: &str) -> Result<Target, OutputError> {
    let root = PathBuf::from(path.strip_prefix("file://").unwrap_or(path));
    fs::create_dir_all(&root).map_err(io(&root))?;
    let lock_path = root.join(".cskpi.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(OutputError::Locked {
                path: root,
                lock: lock_path,
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
    }
    for entry in fs::read_dir(&root).map_err(io(&root))? {
        let entry = entry.map_err(io(&root))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            tracing::info!(dir = %entry.path().display(), "removing staging left by an earlier run");
            fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    let staging = root.join(format!("{STAGING_PREFIX}{run_id}"));
    fs::create_dir_all(&staging).map_err(io(&staging))?;
    Ok(Target::Local {
        root,
        staging,
        _lock: lock,
    })
}

async fn begin_s3(ctx: &SessionContext, path: &str, run_id: &str) -> Result<Target, OutputError> {
    let url = url::Url::parse(path).map_err(|_| OutputError::Location(path.into()))?;
    let bucket = url
        .host_str()
        .ok_or_else(|| OutputError::Location(path.into()))?;
    let bucket_url = format!("s3://{bucket}");
    let store_url =
        ObjectStoreUrl::parse(&bucket_url).map_err(|_| OutputError::Location(path.into()))?;
    let store = ctx
        .runtime_env()
        .object_store(&store_url)
        .map_err(|source| OutputError::Write {
            table: "(all)".into(),
            source,
        })?;
    let root = ObjectPath::from(url.path().trim_matches('/'));
    // Staging areas of killed runs: every key under <root>/.cskpi-staging-*.
    let leftovers: Vec<ObjectPath> = store
        .list(Some(&root))
        .map_ok(|m| m.location)
        .try_filter(|p| {
            let relative = p.as_ref().strip_prefix(root.as_ref()).unwrap_or(p.as_ref());
            futures::future::ready(relative.trim_start_matches('/').starts_with(STAGING_PREFIX))
        })
        .try_collect()
        .await
        .map_err(store_error(path))?;
    for key in leftovers {
        store
            .delete(&key)
            .await
            .map_err(store_error(key.as_ref()))?;
    }
    let staging = child(&root, &format!("{STAGING_PREFIX}{run_id}"));
    Ok(Target::S3 {
        store,
        bucket_url,
        root,
        staging,
    })
}

async fn delete_prefix(store: &dyn ObjectStore, prefix: &ObjectPath) -> Result<(), OutputError> {
    let keys: Vec<ObjectPath> = store
        .list(Some(prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(store_error(prefix.as_ref()))?;
    for key in keys {
        store
            .delete(&key)
            .await
            .map_err(store_error(key.as_ref()))?;
    }
    Ok(())
}

/// Puts `staged` at `live`; afterwards `staged` holds the previous `live`.
fn swap_into_place(staged: &Path, live: &Path) -> Result<(), OutputError> {
    if !live.exists() {
        return fs::rename(staged, live).map_err(io(live));
    }
    match exchange(staged, live) {
        Ok(()) => Ok(()),
        // Filesystems without RENAME_EXCHANGE: two renames, a short window
        // where the table directory is absent (never mixed).
        Err(_) => {
            let old = staged.with_extension("previous");
            fs::rename(live, &old).map_err(io(live))?;
            fs::rename(staged, live).map_err(io(live))?;
            fs::rename(&old, staged).map_err(io(staged))
        }
    }
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both paths are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_replaces_a_table_directory_and_keeps_the_old_one_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("t");
        let staged = tmp.path().join("staged");
        fs::create_dir_all(&live).unwrap();
        fs::write(live.join("old.parquet"), b"old").unwrap();
        fs::create_dir_all(&staged).unwrap();
        fs::write(staged.join("new.parquet"), b"new").unwrap();
        swap_into_place(&staged, &live).unwrap();
        assert!(live.join("new.parquet").exists());
        assert!(!live.join("old.parquet").exists());
        assert!(staged.join("old.parquet").exists());
    }
}
