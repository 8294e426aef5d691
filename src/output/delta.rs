//! Delta Lake outputs (`[output] format = "delta"`): every output table is a
//! Delta table at `<path>/<table>/`, and each run commits one overwrite of
//! it.
//!
//! Runs stage their tables as Parquet exactly as for Parquet outputs (the
//! staging area, the lock, the journal and the manifest are the file
//! target's, local or S3, which this target wraps). Publishing commits
//! the staged rows to each table, at the version the journal predicted
//! (the lock keeps other cskpi runs out, so the next version is the
//! current one plus one; anything else is a conflicting writer and the
//! publication rolls back). A rollback restores every table the run
//! committed to its previous version (Delta's RESTORE: a new commit whose
//! contents are the previous version's) and deletes the tables the run
//! created. The manifest records every table's version and, in
//! `published_runs`, the versions of the last `output.keep_versions`
//! published runs: those versions stay readable (time travel), and after
//! each run a vacuum deletes the data files no kept version needs.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Once};

use async_trait::async_trait;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use deltalake::delta_datafusion::planner::DeltaPlanner;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaResult, DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};
use url::Url;

use super::journal::DeltaVersions;
use super::{
    Journal, JournalTable, OutputError, StagedTable, Target, session_s3_store, store_error,
};

/// The commit metadata key naming the cskpi run that made a commit.
const RUN_ID_KEY: &str = "cskpi_run_id";

pub(super) struct DeltaTarget {
    /// The staging area, journal, manifest and lock.
    files: Box<dyn Target>,
    ctx: SessionContext,
    /// The store the tables are in, its "/" at the store's root (the
    /// filesystem root, or the bucket).
    store: Arc<dyn ObjectStore>,
    /// The output path as a URL, ending in '/'.
    root: Url,
    run_id: String,
    keep_versions: usize,
}

impl DeltaTarget {
    pub(super) fn open(
        ctx: &SessionContext,
        files: Box<dyn Target>,
        path: &str,
        run_id: &str,
        keep_versions: u32,
    ) -> Result<Self, OutputError> {
        let (store, root) = store_and_root(ctx, path)?;
        Ok(Self {
            files,
            ctx: ctx.clone(),
            store,
            root,
            run_id: run_id.to_string(),
            keep_versions: keep_versions as usize,
        })
    }

    fn table_url(&self, name: &str) -> Url {
        self.root
            .join(&format!("{name}/"))
            .expect("a table name is a URL path segment")
    }

    /// The table handle, loaded at its latest version when the table exists.
    async fn table(&self, name: &str) -> Result<(DeltaTable, Option<u64>), OutputError> {
        let url = self.table_url(name);
        let mut table = DeltaTableBuilder::from_url(url.clone())
            .and_then(|b| b.with_storage_backend(self.store.clone(), url).build())
            .map_err(delta_error(name))?;
        // The kernel reports a missing table as a location error, and logs
        // it: ask the store first.
        let log = self.table_prefix(name).join("_delta_log");
        if !self.has_files(&log).await? {
            return Ok((table, None));
        }
        table.load().await.map_err(delta_error(name))?;
        let version = table.version();
        Ok((table, version))
    }

    /// The table directory's key in the store.
    fn table_prefix(&self, name: &str) -> ObjectPath {
        let url = self.table_url(name);
        ObjectPath::from_url_path(url.path().trim_matches('/')).expect("a URL path is a key")
    }

    async fn has_files(&self, prefix: &ObjectPath) -> Result<bool, OutputError> {
        let first = self.store.list(Some(prefix)).next().await;
        match first {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(store_error(prefix.as_ref())(e)),
        }
    }

    /// The run's session (its object stores, memory pool and settings)
    /// with the Delta writer's query planner, which plans its own plan
    /// nodes.
    fn write_session(&self) -> SessionState {
        SessionStateBuilder::new_from_existing(self.ctx.state())
            .with_query_planner(DeltaPlanner::new())
            .build()
    }

    fn commit_properties(&self) -> CommitProperties {
        CommitProperties::default().with_metadata([(RUN_ID_KEY.to_string(), json!(self.run_id))])
    }
}

/// The `s3://` scheme's Delta log store: the default one (commits by
/// conditional put, which S3 and S3-compatible servers support), over the
/// session's own S3 store. deltalake registers only local schemes without
/// its `s3` feature, which would build a second, differently configured
/// S3 client.
struct S3LogStores;

impl LogStoreFactory for S3LogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_s3_log_stores() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        let scheme = Url::parse("s3://").expect("a scheme URL");
        logstore_factories().insert(scheme, Arc::new(S3LogStores));
    });
}

/// The store an output path's tables are in and the path as a URL ending
/// in '/'.
fn store_and_root(
    ctx: &SessionContext,
    path: &str,
) -> Result<(Arc<dyn ObjectStore>, Url), OutputError> {
    let location = || OutputError::Location(path.to_string());
    let root = if path.starts_with("s3://") {
        Url::parse(&format!("{}/", path.trim_end_matches('/'))).map_err(|_| location())?
    } else {
        let dir = std::path::absolute(path.strip_prefix("file://").unwrap_or(path))
            .map_err(|_| location())?;
        Url::from_directory_path(dir).map_err(|_| location())?
    };
    let store: Arc<dyn ObjectStore> = if root.scheme() == "s3" {
        register_s3_log_stores();
        session_s3_store(ctx, &root, path)?
    } else {
        Arc::new(LocalFileSystem::new())
    };
    Ok((store, root))
}

/// Registers the published Delta table `name` of the output at `path` as
/// `name` in `ctx`, at its latest version (what a Delta reader sees).
pub(super) async fn register_published(
    ctx: &SessionContext,
    path: &str,
    name: &str,
) -> Result<(), OutputError> {
    let (store, root) = store_and_root(ctx, path)?;
    let url = root
        .join(&format!("{name}/"))
        .expect("a table name is a URL path segment");
    let mut table = DeltaTableBuilder::from_url(url.clone())
        .and_then(|b| b.with_storage_backend(store, url).build())
        .map_err(delta_error(name))?;
    table.load().await.map_err(delta_error(name))?;
    table
        .update_datafusion_session(&ctx.state())
        .map_err(delta_error(name))?;
    let engine = |source| OutputError::Write {
        table: name.into(),
        source,
    };
    let provider = table.table_provider().await.map_err(engine)?;
    ctx.register_table(name, provider).map_err(engine)?;
    Ok(())
}

fn delta_error(table: &str) -> impl FnOnce(DeltaTableError) -> OutputError + '_ {
    move |source| OutputError::Delta {
        table: table.to_string(),
        message: source.to_string(),
    }
}

#[async_trait]
impl Target for DeltaTarget {
    fn staging_name(&self) -> &str {
        self.files.staging_name()
    }

    fn staged_dir(&self, table: &str) -> Result<String, OutputError> {
        self.files.staged_dir(table)
    }

    async fn staged_files(&self, table: &str) -> Result<Vec<String>, OutputError> {
        self.files.staged_files(table).await
    }

    async fn remove_leftover_staging(&self) -> Result<(), OutputError> {
        self.files.remove_leftover_staging().await
    }

    async fn stage_manifest(&self, manifest: &[u8]) -> Result<(), OutputError> {
        self.files.stage_manifest(manifest).await
    }

    /// Records the table's current version; the new one is the next.
    async fn keep_previous(&self, table: &StagedTable) -> Result<JournalTable, OutputError> {
        let (_, previous) = self.table(&table.name).await?;
        if previous.is_none() && self.has_files(&self.table_prefix(&table.name)).await? {
            return Err(OutputError::NotDelta {
                table: self.table_url(&table.name).to_string(),
            });
        }
        Ok(JournalTable {
            name: table.name.clone(),
            new_at: format!("{}/{}", self.staging_name(), table.name),
            new_files: table.files.clone(),
            previous_at: table.name.clone(),
            previous_files: previous.map(|_| Vec::new()),
            new_inode: None,
            delta: Some(DeltaVersions {
                previous,
                new: previous.map_or(0, |v| v + 1),
                partition_by: table.partition_by.clone(),
            }),
        })
    }

    /// Commits the staged rows as an overwrite of the table.
    async fn replace(&self, table: &JournalTable) -> Result<(), OutputError> {
        let versions = table.delta.as_ref().expect("Delta journal entries");
        let name = table.name.as_str();
        let staged = self
            .root
            .join(&format!("{}/", table.new_at))
            .map_err(|_| OutputError::Location(table.new_at.clone()))?;
        let write = |source| OutputError::Write {
            table: name.into(),
            source,
        };
        let rows = self
            .ctx
            .read_parquet(staged.as_str(), ParquetReadOptions::default())
            .await
            .map_err(write)?;
        // Loaded again, not kept from keep_previous: a commit made since
        // then must be seen, so that the version check below names it.
        let (delta, _) = self.table(name).await?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let committed = delta
            .write(Vec::new())
            .with_input_plan(rows.logical_plan().clone())
            .with_session_state(Arc::new(self.write_session()))
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .with_partition_columns(versions.partition_by.iter().cloned())
            .with_target_file_size(NonZeroU64::new(256 << 20))
            .with_writer_properties(properties)
            .with_commit_properties(self.commit_properties())
            .await
            .map_err(delta_error(name))?;
        match committed.version() {
            Some(v) if v == versions.new => Ok(()),
            found => Err(OutputError::DeltaConflict {
                table: self.table_url(name).to_string(),
                expected: versions.new,
                found,
            }),
        }
    }

    /// Back to the previous version (a restore commit), or no table at all
    /// when the run created it.
    async fn restore(&self, table: &JournalTable) -> Result<(), OutputError> {
        let versions = table.delta.as_ref().expect("Delta journal entries");
        let name = table.name.as_str();
        let (delta, current) = self.table(name).await?;
        match versions.previous {
            Some(previous) => {
                if current.is_some_and(|c| c > previous) {
                    delta
                        .restore()
                        .with_version_to_restore(previous)
                        .with_commit_properties(self.commit_properties())
                        .await
                        .map_err(delta_error(name))?;
                }
                Ok(())
            }
            None => {
                let prefix = self.table_prefix(name);
                let keys: Vec<ObjectPath> = self
                    .store
                    .list(Some(&prefix))
                    .map_ok(|m| m.location)
                    .try_collect()
                    .await
                    .map_err(store_error(prefix.as_ref()))?;
                for key in keys {
                    match self.store.delete(&key).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(store_error(key.as_ref())(e)),
                    }
                }
                // On disk, the emptied directories too: no table at all.
                if let Ok(dir) = self.table_url(name).to_file_path() {
                    match std::fs::remove_dir_all(&dir) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(OutputError::Io {
                                path: dir,
                                source: e,
                            });
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
        }
    }

    /// Every table has reached the version the run commits (only this run
    /// commits while it holds the lock; a rollback, which also makes new
    /// versions, never asks: see [`super::journal::recover`]).
    async fn all_in_place(&self, journal: &Journal) -> Result<bool, OutputError> {
        for table in &journal.tables {
            let Some(versions) = &table.delta else {
                return Ok(false);
            };
            let (_, current) = self.table(&table.name).await?;
            if current.is_none_or(|c| c < versions.new) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn publish_manifest(&self, staging: &str) -> Result<(), OutputError> {
        self.files.publish_manifest(staging).await
    }

    async fn remove_staging(&self, staging: &str) -> Result<(), OutputError> {
        self.files.remove_staging(staging).await
    }

    async fn read_journal(&self) -> Result<Option<Journal>, OutputError> {
        self.files.read_journal().await
    }

    async fn write_journal(&self, journal: &Journal) -> Result<(), OutputError> {
        self.files.write_journal(journal).await
    }

    async fn remove_journal(&self) -> Result<(), OutputError> {
        self.files.remove_journal().await
    }

    async fn published_manifest(&self) -> Result<Option<Vec<u8>>, OutputError> {
        self.files.published_manifest().await
    }

    /// Every output's `delta_version`, and `published_runs`: this run's
    /// versions first, then the previous manifest's, `keep_versions` runs
    /// in all.
    async fn prepare_manifest(
        &self,
        manifest: &mut Value,
        tables: &[JournalTable],
    ) -> Result<(), OutputError> {
        let versions: HashMap<&str, u64> = tables
            .iter()
            .filter_map(|t| Some((t.name.as_str(), t.delta.as_ref()?.new)))
            .collect();
        if let Some(outputs) = manifest.get_mut("outputs").and_then(Value::as_array_mut) {
            for output in outputs {
                let version = output
                    .get("table")
                    .and_then(Value::as_str)
                    .and_then(|t| versions.get(t));
                if let (Some(&version), Some(entry)) = (version, output.as_object_mut()) {
                    entry.insert("delta_version".into(), json!(version));
                }
            }
        }
        let previous_runs = self
            .files
            .published_manifest()
            .await?
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|m| m.get("published_runs").cloned())
            .and_then(|runs| match runs {
                Value::Array(runs) => Some(runs),
                _ => None,
            })
            .unwrap_or_default();
        let this_run = json!({
            "run_id": self.run_id,
            "as_of": manifest.get("as_of"),
            "published_at": manifest.get("finished_at"),
            "delta_versions": versions,
        });
        let runs: Vec<Value> = std::iter::once(this_run)
            .chain(previous_runs)
            .take(self.keep_versions)
            .collect();
        manifest["published_runs"] = Value::Array(runs);
        Ok(())
    }

    /// Vacuums every table: data files no version of `published_runs`
    /// needs are deleted.
    async fn after_publish(&self, manifest: &Value) -> Result<(), OutputError> {
        let runs = manifest
            .get("published_runs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let tables = manifest
            .get("outputs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|o| o.get("table")?.as_str());
        for name in tables {
            let keep: Vec<u64> = runs
                .iter()
                .filter_map(|run| run.get("delta_versions")?.get(name)?.as_u64())
                .collect();
            let (delta, current) = self.table(name).await?;
            if current.is_none() || keep.is_empty() {
                continue;
            }
            let (_, metrics) = delta
                .vacuum()
                .with_keep_versions(&keep)
                .with_retention_period(chrono::Duration::zero())
                .with_enforce_retention_duration(false)
                .with_mode(VacuumMode::Full)
                .with_commit_properties(self.commit_properties())
                .await
                .map_err(delta_error(name))?;
            if !metrics.files_deleted.is_empty() {
                tracing::info!(
                    table = name,
                    files = metrics.files_deleted.len(),
                    "vacuumed files of versions older than the kept runs"
                );
            }
        }
        Ok(())
    }

    fn abandon(&self) {
        self.files.abandon()
    }

    async fn release(&self) {
        self.files.release().await
    }

    async fn ensure_locked(&self) -> Result<(), OutputError> {
        self.files.ensure_locked().await
    }
}
