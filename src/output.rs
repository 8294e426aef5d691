//! Writes the output tables and publishes them safely (spec section 5).
//!
//! A small table is one Parquet file, `<path>/<table>/part-0.parquet`; a big
//! one is hive-partitioned, `<path>/<table>/<column>=<value>/part-0.parquet`,
//! with the partition column kept inside the files too. A run
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
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::partition;
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::dataframe::{DataFrame, DataFrameWriteOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::sql;

/// A published table: the view it comes from and the order rows are written
/// in (stable order keeps repeated runs byte-for-byte comparable).
#[derive(Debug, Clone, Copy)]
pub struct OutputTable {
    pub name: &'static str,
    pub order_by: &'static str,
    /// Big tables are hive-partitioned by this column (kept in the files).
    pub partition_by: Option<&'static str>,
    /// Each partition value's rows are queried and sorted on their own,
    /// rather than the whole table in one sort: for a table over a view
    /// stored one file per value (`KpiFamily::materialize_by_value`).
    pub sorted_per_partition: bool,
}

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
/// The data file of an unpartitioned table (and of each partition).
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

/// A staged table: its files, relative to the table's directory, and for
/// S3 the staged key each one is copied from.
struct StagedTable {
    name: String,
    files: Vec<(String, Option<ObjectPath>)>,
}

/// A run's staged outputs. Dropped without `publish`, a local staging
/// directory removes itself; an S3 one is removed by the next run.
pub struct Staging {
    target: Target,
    location: String,
    tables: Vec<StagedTable>,
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

    /// The staged table's directory, as a path or URL DataFusion writes to.
    fn staged_dir(&self, table: &str) -> Result<String, OutputError> {
        Ok(match &self.target {
            Target::Local { staging, .. } => {
                let dir = staging.join(table);
                fs::create_dir_all(&dir).map_err(io(&dir))?;
                format!("{}/", dir.display())
            }
            Target::S3 {
                bucket_url,
                staging,
                ..
            } => format!("{bucket_url}/{staging}/{table}/"),
        })
    }

    /// Writes `SELECT * FROM <table> ORDER BY <order_by>` as zstd Parquet:
    /// one file, or one file per value of the table's partition column
    /// (an empty partitioned table is one empty file). Returns the rows.
    pub async fn write_table(
        &mut self,
        ctx: &SessionContext,
        table: &OutputTable,
    ) -> Result<u64, OutputError> {
        let name = table.name;
        let write = |source| OutputError::Write {
            table: name.into(),
            source,
        };
        let query = format!("SELECT * FROM {name} ORDER BY {}", table.order_by);
        if let Some(dir) = sql::explain_dir() {
            sql::explain_analyze(ctx, &query, &dir, &format!("output-{name}"))
                .await
                .map_err(write)?;
        }
        let frame = ctx.sql(&query).await.map_err(write)?;
        let dir = self.staged_dir(name)?;
        let rows = match table.partition_by {
            Some(column) if table.sorted_per_partition => {
                write_each_partition(ctx, table, &dir, column)
                    .await
                    .map_err(write)?
            }
            Some(column) => {
                let rows = write_partitioned(ctx, frame.clone(), &dir, column)
                    .await
                    .map_err(write)?;
                if rows == 0 {
                    write_single(frame, &dir).await.map_err(write)?;
                }
                rows
            }
            None => row_count(&write_single(frame, &dir).await.map_err(write)?),
        };
        let files = self.name_staged_files(name).await?;
        self.tables.push(StagedTable {
            name: name.into(),
            files,
        });
        Ok(rows)
    }

    /// Gives the staged files of a table their published names: the files
    /// of each directory (the table's or a partition's), in name order,
    /// become part-0.parquet, part-1.parquet, ... Locally they are renamed
    /// in the staging area; on S3 the names are used when publishing.
    async fn name_staged_files(
        &self,
        table: &str,
    ) -> Result<Vec<(String, Option<ObjectPath>)>, OutputError> {
        match &self.target {
            Target::Local { staging, .. } => {
                let root = staging.join(table);
                let mut staged = Vec::new();
                collect_files(&root, &root, &mut staged)?;
                let mut named = Vec::new();
                for (relative, published) in published_names(staged) {
                    if relative != published {
                        let (from, to) = (root.join(&relative), root.join(&published));
                        fs::rename(&from, &to).map_err(io(&to))?;
                    }
                    named.push((published, None));
                }
                Ok(named)
            }
            Target::S3 { store, staging, .. } => {
                let prefix = child(staging, table);
                let keys: Vec<ObjectPath> = store
                    .list(Some(&prefix))
                    .map_ok(|m| m.location)
                    .try_collect()
                    .await
                    .map_err(store_error(prefix.as_ref()))?;
                let relative: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        k.as_ref()
                            .strip_prefix(prefix.as_ref())
                            .unwrap_or(k.as_ref())
                            .trim_start_matches('/')
                            .to_string()
                    })
                    .collect();
                let by_relative: std::collections::HashMap<String, ObjectPath> =
                    relative.iter().cloned().zip(keys).collect();
                Ok(published_names(relative)
                    .into_iter()
                    .map(|(staged, published)| (published, Some(by_relative[&staged].clone())))
                    .collect())
            }
        }
    }

    /// Puts every staged table in place, then writes the manifest.
    pub async fn publish(mut self, manifest: &serde_json::Value) -> Result<(), OutputError> {
        let text = serde_json::to_vec_pretty(manifest).expect("manifest serialises");
        match &self.target {
            Target::Local { root, staging, .. } => {
                for table in &self.tables {
                    swap_into_place(&staging.join(&table.name), &root.join(&table.name))?;
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
                    let live_dir = child(root, &table.name);
                    let mut live_keys = Vec::new();
                    for (published, staged) in &table.files {
                        let live = child(&live_dir, published);
                        let staged = staged.as_ref().expect("S3 files have staged keys");
                        store
                            .copy(staged, &live)
                            .await
                            .map_err(store_error(live.as_ref()))?;
                        live_keys.push(live);
                    }
                    // Files of the previous run that this one did not
                    // replace (a partition that is gone, another layout).
                    let stale: Vec<ObjectPath> = store
                        .list(Some(&live_dir))
                        .map_ok(|m| m.location)
                        .try_filter(|p| futures::future::ready(!live_keys.contains(p)))
                        .try_collect()
                        .await
                        .map_err(store_error(live_dir.as_ref()))?;
                    for key in stale {
                        store
                            .delete(&key)
                            .await
                            .map_err(store_error(key.as_ref()))?;
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

/// Writes `frame`, whose rows come sorted by `column` (the table's order
/// starts with it), as one file per value, `<dir><column>=<value>/part-0.parquet`,
/// the column kept in the files. Returns the rows written.
///
/// DataFusion's own partitioned write formats every row's value as a
/// string to route it (a date through strftime) and feeds each file small
/// pieces. Sorted rows come a value at a time, so each run of a value is
/// handed as it comes to an ordinary single-file write of its own (which
/// encodes columns in parallel); a value's file is finished while the next
/// value's rows arrive.
async fn write_partitioned(
    ctx: &SessionContext,
    frame: DataFrame,
    dir: &str,
    column: &str,
) -> Result<u64, DataFusionError> {
    let mut batches = frame.execute_stream().await?;
    let schema = batches.schema();
    let index = schema.index_of(column)?;
    let mut open: Option<(String, mpsc::Sender<RecordBatch>)> = None;
    let mut files = JoinSet::new();
    let mut seen = std::collections::HashSet::new();
    let mut rows = 0u64;
    'batches: while let Some(batch) = batches.try_next().await? {
        let values = batch.column(index);
        for run in partition(std::slice::from_ref(values))?.ranges() {
            let value = array_value_to_string(values, run.start)?;
            if open.as_ref().is_none_or(|(current, _)| *current != value) {
                // The previous value's rows are all sent: let its file finish.
                drop(open.take());
                if !seen.insert(value.clone()) {
                    return Err(DataFusionError::Internal(format!(
                        "rows to partition by {column} are not sorted by it ({column}={value} seen twice)"
                    )));
                }
                let (sender, receiver) = mpsc::channel(4);
                let rows_of_value = ChannelPartition {
                    schema: Arc::clone(&schema),
                    receiver: Mutex::new(Some(receiver)),
                };
                let table = StreamingTable::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(rows_of_value) as Arc<dyn PartitionStream>],
                )?;
                let file = ctx.read_table(Arc::new(table))?;
                let value_dir = format!("{dir}{column}={value}/");
                files.spawn(async move { write_single(file, &value_dir).await.map(|_| ()) });
                open = Some((value, sender));
            }
            if let Some((_, sender)) = &open
                && sender
                    .send(batch.slice(run.start, run.len()))
                    .await
                    .is_err()
            {
                // The file's write failed; its error is reported below.
                break 'batches;
            }
            rows += run.len() as u64;
        }
    }
    drop(open);
    while let Some(written) = files.join_next().await {
        written.map_err(|e| DataFusionError::External(Box::new(e)))??;
    }
    Ok(rows)
}

/// Writes table `table` partitioned by `column`, a date, one value after
/// another: `SELECT * FROM <table> WHERE <column> = <value> ORDER BY
/// <order_by>` into `<dir><column>=<value>/part-0.parquet` (an empty table
/// is one empty file). Returns the rows written. Each value's sort is its
/// own: for tables over a view stored one file per value, whose other
/// values' files the filter skips.
async fn write_each_partition(
    ctx: &SessionContext,
    table: &OutputTable,
    dir: &str,
    column: &str,
) -> Result<u64, DataFusionError> {
    let name = table.name;
    let values = ctx
        .sql(&format!(
            "SELECT DISTINCT {column} FROM {name} ORDER BY {column}"
        ))
        .await?
        .collect()
        .await?;
    let mut rows = 0u64;
    let mut files = 0;
    for batch in &values {
        let values = batch.column(0);
        if values.data_type() != &DataType::Date32 {
            return Err(DataFusionError::Plan(format!(
                "{name}: written one {column} at a time, which must be a date, not {}",
                values.data_type()
            )));
        }
        for row in 0..values.len() {
            let value = array_value_to_string(values, row)?;
            let of_value = match values.is_null(row) {
                true => format!("{column} IS NULL"),
                false => format!("{column} = DATE '{value}'"),
            };
            let frame = ctx
                .sql(&format!(
                    "SELECT * FROM {name} WHERE {of_value} ORDER BY {}",
                    table.order_by
                ))
                .await?;
            rows += row_count(&write_single(frame, &format!("{dir}{column}={value}/")).await?);
            files += 1;
        }
    }
    if files == 0 {
        let empty = ctx
            .sql(&format!("SELECT * FROM {name} ORDER BY {}", table.order_by))
            .await?;
        write_single(empty, dir).await?;
    }
    Ok(rows)
}

/// Writes `frame` as the one file `<dir>part-0.parquet`.
async fn write_single(frame: DataFrame, dir: &str) -> Result<Vec<RecordBatch>, DataFusionError> {
    frame
        .write_parquet(
            &format!("{dir}{TABLE_FILE}"),
            DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await
}

/// The rows of one partition value, as a stream DataFusion can read once.
#[derive(Debug)]
struct ChannelPartition {
    schema: SchemaRef,
    receiver: Mutex<Option<mpsc::Receiver<RecordBatch>>>,
}

impl PartitionStream for ChannelPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
        let receiver = self.receiver.lock().map(|mut r| r.take()).ok().flatten();
        let batches = futures::stream::unfold(receiver, |receiver| async move {
            let mut receiver = receiver?;
            let batch = receiver.recv().await?;
            Some((Ok(batch), Some(receiver)))
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}

fn row_count(result: &[RecordBatch]) -> u64 {
    result
        .first()
        .map(|b| b.column(0).as_primitive::<UInt64Type>().value(0))
        .unwrap_or(0)
}

/// Every file under `dir`, relative to `root`, with `/` separators.
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), OutputError> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            let relative = path.strip_prefix(root).expect("under root");
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// (staged, published) names: within each directory, files in name order
/// become part-0.parquet, part-1.parquet, ...
fn published_names(mut staged: Vec<String>) -> Vec<(String, String)> {
    staged.sort();
    let mut count: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    staged
        .into_iter()
        .map(|file| {
            let dir = file
                .rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default();
            let n = count.entry(dir.clone()).or_default();
            let name = format!("part-{n}.parquet");
            *n += 1;
            let published = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            (file, published)
        })
        .collect()
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
    fn staged_files_get_part_numbers_per_directory() {
        let staged = vec![
            "month=2025-02-01/x9.parquet".to_string(),
            "month=2025-01-01/b.parquet".to_string(),
            "month=2025-01-01/a.parquet".to_string(),
            "part-0.parquet".to_string(),
        ];
        let named = published_names(staged);
        assert_eq!(
            named,
            [
                (
                    "month=2025-01-01/a.parquet",
                    "month=2025-01-01/part-0.parquet"
                ),
                (
                    "month=2025-01-01/b.parquet",
                    "month=2025-01-01/part-1.parquet"
                ),
                (
                    "month=2025-02-01/x9.parquet",
                    "month=2025-02-01/part-0.parquet"
                ),
                ("part-0.parquet", "part-0.parquet"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

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
