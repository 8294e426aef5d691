//! Writes the output tables and publishes them safely (spec section 5).
//!
//! A small table is one Parquet file, `<path>/<table>/part-0.parquet`; a big
//! one is hive-partitioned, `<path>/<table>/<column>=<value>/part-0.parquet`,
//! with the partition column kept inside the files too. A run
//! first writes every table into a staging area beside the outputs,
//! `<path>/.cskpi-staging-<run_id>/`, and publishes only when all of them are
//! written, under a write-ahead journal ([`journal`]) that makes the
//! publication all or nothing across tables: a run that fails or is killed
//! at any moment leaves (after the next run or `cskpi recover`) every
//! table and `_manifest.json` from one run.
//!
//! Where tables are published is a [`Target`]: local disk ([`local`]) or S3
//! ([`s3`]); how a table's rows become files is [`partitioned`].

mod delta;
mod journal;
mod local;
mod partitioned;
mod s3;
mod s3_lock;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

use crate::config::{OutputConfig, OutputFormat};
use crate::engine::sql;
use delta::DeltaTarget;
pub use journal::{JOURNAL, Recovery};
use journal::{Journal, JournalTable};
use local::LocalTarget;
use partitioned::{row_count, write_each_partition, write_file, write_partitioned};
use s3::S3Target;

/// A published table: the view it comes from and the order rows are written
/// in (stable order keeps repeated runs byte-for-byte comparable).
#[derive(Debug, Clone, Copy)]
pub struct OutputTable {
    pub name: &'static str,
    pub order_by: &'static str,
    /// Big tables are written one file per value of this column.
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
    #[error(
        "output {path}: another cskpi run is publishing there (lock {lock} held by run {holder} until {until}; a killed run's lock expires then)"
    )]
    LockedOnS3 {
        path: String,
        lock: String,
        holder: String,
        until: String,
    },
    #[error(
        "output {path}: this run lost the output's lock {lock} (its lease could not be renewed and another run may hold it); nothing was replaced"
    )]
    LockLost { path: String, lock: String },
    #[error("output {0}: not a valid location")]
    Location(String),
    #[error("writing output table {table}: {source}")]
    Write {
        table: String,
        source: DataFusionError,
    },
    #[error("output {path}: unreadable publish journal: {message}")]
    Journal { path: String, message: String },
    #[error("Delta table {table}: {message}")]
    Delta { table: String, message: String },
    #[error(
        "output {table} holds files but is not a Delta table: publish Delta tables to an output path of their own"
    )]
    NotDelta { table: String },
    #[error(
        "Delta table {table}: this run's commit is version {found:?}, expected {expected}: another writer committed to the table"
    )]
    DeltaConflict {
        table: String,
        expected: u64,
        found: Option<u64>,
    },
    #[error(
        "output {path} holds {published} tables and the job writes {configured}: a format change needs an output path of its own"
    )]
    FormatMismatch {
        path: String,
        published: String,
        configured: String,
    },
    #[error("publishing: step {step} failed (injected by CSKPI_FAULT_PUBLISH)")]
    Injected { step: usize },
}

const STAGING_PREFIX: &str = ".cskpi-staging-";
pub const MANIFEST: &str = "_manifest.json";
/// The data file of an unpartitioned table (and of an empty partitioned one).
pub const TABLE_FILE: &str = "part-0.parquet";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The session's object store of an `s3://` output path's bucket (the
/// one its inputs and scratch use, configured from the job's `[s3]`).
fn session_s3_store(
    ctx: &SessionContext,
    url: &url::Url,
    path: &str,
) -> Result<std::sync::Arc<dyn object_store::ObjectStore>, OutputError> {
    let location = || OutputError::Location(path.into());
    let bucket = url.host_str().ok_or_else(location)?;
    let store_url =
        datafusion::execution::object_store::ObjectStoreUrl::parse(format!("s3://{bucket}"))
            .map_err(|_| location())?;
    ctx.runtime_env()
        .object_store(&store_url)
        .map_err(|source| OutputError::Write {
            table: "(all)".into(),
            source,
        })
}

/// The run's HTML report beside the tables (drawn by `report` after
/// publishing). A run removes the previous run's page before it publishes,
/// so a page beside the tables is about them or absent, never another
/// run's: killed after publishing, a run leaves its tables without a page.
pub const REPORT: &str = "report.html";

/// The store and key of a file at the top of an output path (the
/// manifest, the report): the session's S3 store, or the local file system
/// (whose writes go through a temporary file and a rename).
fn output_file(
    ctx: &SessionContext,
    output: &OutputConfig,
    name: &str,
) -> Result<
    (
        std::sync::Arc<dyn object_store::ObjectStore>,
        object_store::path::Path,
    ),
    OutputError,
> {
    let path = output.path.as_str();
    let location = || OutputError::Location(path.into());
    if path.starts_with("s3://") {
        let url = url::Url::parse(path).map_err(|_| location())?;
        let store = session_s3_store(ctx, &url, path)?;
        let prefix = url.path().trim_matches('/');
        let key = match prefix.is_empty() {
            true => name.to_string(),
            false => format!("{prefix}/{name}"),
        };
        return Ok((store, object_store::path::Path::from(key)));
    }
    let dir = std::path::absolute(path.strip_prefix("file://").unwrap_or(path))
        .map_err(|_| location())?;
    let key =
        object_store::path::Path::from_absolute_path(dir.join(name)).map_err(|_| location())?;
    Ok((
        std::sync::Arc::new(object_store::local::LocalFileSystem::new()),
        key,
    ))
}

/// Registers the published table `name` of `output` as `name` in `ctx`:
/// its Parquet directory, or its Delta table at the latest version.
pub async fn register_published_table(
    ctx: &SessionContext,
    output: &OutputConfig,
    name: &str,
) -> Result<(), OutputError> {
    match output.format {
        OutputFormat::Delta => delta::register_published(ctx, &output.path, name).await,
        OutputFormat::Parquet => {
            let location = format!("{}/{name}/", output.path.trim_end_matches('/'));
            ctx.register_parquet(
                name,
                &location,
                datafusion::prelude::ParquetReadOptions::default(),
            )
            .await
            .map_err(|source| OutputError::Write {
                table: name.into(),
                source,
            })
        }
    }
}

/// The bytes of `name` at the top of the output path; None when absent.
pub async fn read_output_file(
    ctx: &SessionContext,
    output: &OutputConfig,
    name: &str,
) -> Result<Option<Vec<u8>>, OutputError> {
    use object_store::ObjectStoreExt;
    let (store, key) = output_file(ctx, output, name)?;
    match store.get(&key).await {
        Ok(found) => {
            let bytes = found.bytes().await.map_err(store_error(key.as_ref()))?;
            Ok(Some(bytes.to_vec()))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_error(key.as_ref())(e)),
    }
}

/// Writes `name` at the top of the output path, whole or not at all.
pub async fn write_output_file(
    ctx: &SessionContext,
    output: &OutputConfig,
    name: &str,
    bytes: Vec<u8>,
) -> Result<(), OutputError> {
    use object_store::ObjectStoreExt;
    let (store, key) = output_file(ctx, output, name)?;
    store
        .put(&key, bytes.into())
        .await
        .map_err(store_error(key.as_ref()))?;
    Ok(())
}

/// Removes `name` at the top of the output path, if there.
pub async fn remove_output_file(
    ctx: &SessionContext,
    output: &OutputConfig,
    name: &str,
) -> Result<(), OutputError> {
    use object_store::ObjectStoreExt;
    let (store, key) = output_file(ctx, output, name)?;
    match store.delete(&key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_error(key.as_ref())(e)),
    }
}

fn store_error(path: &str) -> impl FnOnce(object_store::Error) -> OutputError + '_ {
    move |source| OutputError::Store {
        path: path.to_string(),
        source,
    }
}

/// Where a run's tables are staged and published: the steps the
/// journal's protocol ([`journal::publish`], [`journal::recover`]) is made
/// of. Paths in a [`Journal`] are relative to the output path.
#[async_trait]
trait Target: Send + Sync {
    /// This run's staging area, relative to the output path.
    fn staging_name(&self) -> &str;

    /// The staged table's directory, as a path or URL DataFusion writes to.
    fn staged_dir(&self, table: &str) -> Result<String, OutputError>;

    /// The staged files of a table, relative to its directory, in name
    /// order: the names they are published under (the writers choose
    /// names that depend only on the rows, so reruns are byte-identical).
    async fn staged_files(&self, table: &str) -> Result<Vec<String>, OutputError>;

    /// Removes the staging areas of runs that died (after recovery, which
    /// may need the one its journal names).
    async fn remove_leftover_staging(&self) -> Result<(), OutputError>;

    /// Writes the new manifest into the staging area.
    async fn stage_manifest(&self, manifest: &[u8]) -> Result<(), OutputError>;

    /// Makes sure the previous files of a table will survive its
    /// replacement, and says where they and the new ones are.
    async fn keep_previous(&self, table: &StagedTable) -> Result<JournalTable, OutputError>;

    /// Puts the new files of a table in place.
    async fn replace(&self, table: &JournalTable) -> Result<(), OutputError>;

    /// Puts the previous files of a table back (repeatable).
    async fn restore(&self, table: &JournalTable) -> Result<(), OutputError>;

    /// Whether every table of the journal is already the new one, when the
    /// target can tell (S3 cannot cheaply: false).
    async fn all_in_place(&self, journal: &Journal) -> Result<bool, OutputError>;

    /// Replaces the manifest with the one staged in `staging`.
    async fn publish_manifest(&self, staging: &str) -> Result<(), OutputError>;

    /// Removes a staging area (with the previous files kept in it).
    async fn remove_staging(&self, staging: &str) -> Result<(), OutputError>;

    async fn read_journal(&self) -> Result<Option<Journal>, OutputError>;

    /// Writes the journal atomically: readers see the old one or the new.
    async fn write_journal(&self, journal: &Journal) -> Result<(), OutputError>;

    async fn remove_journal(&self) -> Result<(), OutputError>;

    /// The published manifest's text, if there is one.
    async fn published_manifest(&self) -> Result<Option<Vec<u8>>, OutputError>;

    /// Adds what the target knows about the publication to the manifest
    /// before it is staged (Delta: every table's new version).
    async fn prepare_manifest(
        &self,
        _manifest: &mut serde_json::Value,
        _tables: &[JournalTable],
    ) -> Result<(), OutputError> {
        Ok(())
    }

    /// Tidies up after a complete publication (Delta: vacuum); a failure
    /// only warns, the next run tidies again.
    async fn after_publish(&self, _manifest: &serde_json::Value) -> Result<(), OutputError> {
        Ok(())
    }

    /// The run ends without publishing: remove what can be removed now.
    fn abandon(&self);

    /// Releases the output's lock.
    async fn release(&self);

    /// Fails when this run no longer holds the output's lock (an S3 lease
    /// another run took over): nothing may be replaced then.
    async fn ensure_locked(&self) -> Result<(), OutputError>;
}

/// A staged table and its files' published names, relative to the
/// table's directory.
struct StagedTable {
    name: String,
    files: Vec<String>,
    partition_by: Option<String>,
}

/// A run's staged outputs. Dropped without `publish`, a local staging
/// directory removes itself; an S3 one is removed by the next run.
pub struct Staging {
    target: Box<dyn Target>,
    /// The session that writes the staged files: this machine's, whichever
    /// session computes the rows (a cluster's, see `write_table`).
    writer: SessionContext,
    run_id: String,
    location: String,
    tables: Vec<StagedTable>,
    publishing_started: bool,
}

impl Staging {
    /// Takes the output location (refused while another run holds it),
    /// finishes a publication a dead run left (logged) and removes the
    /// staging areas of dead runs. `ctx`, a session of this machine, writes
    /// and publishes the tables.
    pub async fn begin(
        ctx: &SessionContext,
        output: &OutputConfig,
        run_id: &str,
    ) -> Result<Self, OutputError> {
        let (target, recovery) = open_recovered(ctx, output, run_id).await?;
        if recovery != Recovery::Consistent {
            tracing::warn!(output = %output.path, "{recovery}");
        }
        Ok(Self {
            target,
            writer: ctx.clone(),
            run_id: run_id.to_string(),
            location: output.path.clone(),
            tables: Vec::new(),
            publishing_started: false,
        })
    }

    /// Where the outputs are published, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Writes `SELECT * FROM <table> ORDER BY <order_by>` as zstd Parquet:
    /// one file, or one file per value of the table's partition column
    /// (an empty partitioned table is one empty file). Returns the rows.
    /// `ctx` computes the rows (this machine's session or a cluster's); the
    /// files are written here, by the writer `begin` was given, so a
    /// table's bytes do not depend on where its rows were computed.
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
        let dir = self.target.staged_dir(name)?;
        let writer = &self.writer;
        let rows = match table.partition_by {
            Some(column) if table.sorted_per_partition => {
                write_each_partition(ctx, writer, table, &dir, column)
                    .await
                    .map_err(write)?
            }
            Some(column) => {
                let rows = write_partitioned(writer, frame.clone(), &dir, column)
                    .await
                    .map_err(write)?;
                if rows == 0 {
                    write_file(writer, frame, &format!("{dir}{TABLE_FILE}"))
                        .await
                        .map_err(write)?;
                }
                rows
            }
            None => row_count(
                &write_file(writer, frame, &format!("{dir}{TABLE_FILE}"))
                    .await
                    .map_err(write)?,
            ),
        };
        let files = self.target.staged_files(name).await?;
        self.tables.push(StagedTable {
            name: name.into(),
            files,
            partition_by: table.partition_by.map(str::to_string),
        });
        Ok(rows)
    }

    /// Puts every staged table in place, then writes the manifest, all or
    /// nothing (see [`journal`]).
    pub async fn publish(&mut self, manifest: serde_json::Value) -> Result<(), OutputError> {
        // Whatever happens now, the journal (not dropping) decides what is
        // removed.
        self.publishing_started = true;
        journal::publish(self.target.as_ref(), &self.run_id, &self.tables, manifest).await
    }

    /// Releases the output's lock (the run is over, published or not).
    pub async fn release(&self) {
        self.target.release().await;
    }
}

/// `cskpi recover`: finishes a publication a dead run left at `path` (and
/// removes dead runs' staging areas); refused while a run holds the output.
pub async fn recover(ctx: &SessionContext, output: &OutputConfig) -> Result<Recovery, OutputError> {
    let (target, recovery) = open_recovered(ctx, output, "recover").await?;
    target.release().await;
    Ok(recovery)
}

/// Opens the output (taking its lock), finishes a publication a dead run
/// left and removes dead runs' staging areas; on failure the lock is
/// released.
async fn open_recovered(
    ctx: &SessionContext,
    output: &OutputConfig,
    run_id: &str,
) -> Result<(Box<dyn Target>, Recovery), OutputError> {
    let target = open_target(ctx, output, run_id).await?;
    let prepared = async {
        let recovery = journal::recover(target.as_ref()).await?;
        target.remove_leftover_staging().await?;
        check_format(target.as_ref(), output).await?;
        Ok(recovery)
    }
    .await;
    match prepared {
        Ok(recovery) => Ok((target, recovery)),
        Err(e) => {
            target.release().await;
            Err(e)
        }
    }
}

async fn open_target(
    ctx: &SessionContext,
    output: &OutputConfig,
    run_id: &str,
) -> Result<Box<dyn Target>, OutputError> {
    let path = output.path.as_str();
    let files: Box<dyn Target> = if path.starts_with("s3://") {
        let lease = std::time::Duration::from_secs(output.lock_lease_seconds);
        Box::new(S3Target::open(ctx, path, run_id, lease).await?)
    } else {
        Box::new(LocalTarget::open(path, run_id)?)
    };
    Ok(match output.format {
        OutputFormat::Parquet => files,
        OutputFormat::Delta => Box::new(DeltaTarget::open(
            ctx,
            files,
            path,
            run_id,
            output.keep_versions,
        )?),
    })
}

/// Refuses to publish one format over tables of the other (the published
/// manifest's `format`; manifests without one are Parquet).
async fn check_format(target: &dyn Target, output: &OutputConfig) -> Result<(), OutputError> {
    let Some(bytes) = target.published_manifest().await? else {
        return Ok(());
    };
    let published = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|m| m.get("format")?.as_str().map(str::to_string))
        .unwrap_or_else(|| OutputFormat::Parquet.name().to_string());
    if published != output.format.name() {
        return Err(OutputError::FormatMismatch {
            path: output.path.clone(),
            published,
            configured: output.format.name().to_string(),
        });
    }
    Ok(())
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.publishing_started {
            self.target.abandon();
        }
    }
}

/// The `run_id` of a manifest's text (`None` when it is not a manifest).
fn run_id_of_manifest(bytes: &[u8]) -> Option<String> {
    let manifest: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Some(manifest.get("run_id")?.as_str()?.to_string())
}
