//! Publishing on S3: each staged object is copied server-side over the live
//! key; an S3 copy or put of one object is atomic, so a reader gets the old
//! file or the new one, never a part. The previous files of each table are
//! first copied server-side into the staging area, where they stay until
//! the new manifest is in place, so an interrupted publication can be
//! rolled back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::s3_lock::{LOCK, S3Lock};
use super::{
    JOURNAL, Journal, JournalTable, MANIFEST, OutputError, STAGING_PREFIX, StagedTable, Target,
    session_s3_store, store_error,
};

pub(super) struct S3Target {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket`
    bucket_url: String,
    /// the output prefix inside the bucket, without slashes at the ends
    root: ObjectPath,
    staging_name: String,
    lock: S3Lock,
}

impl S3Target {
    /// Finds the bucket's store in the session and takes the output's lock.
    pub(super) async fn open(
        ctx: &SessionContext,
        path: &str,
        run_id: &str,
        lock_lease: Duration,
    ) -> Result<Self, OutputError> {
        let url = url::Url::parse(path).map_err(|_| OutputError::Location(path.into()))?;
        let store = session_s3_store(ctx, &url, path)?;
        let bucket_url = format!("s3://{}", url.host_str().unwrap_or_default());
        let root = ObjectPath::from(url.path().trim_matches('/'));
        let lock =
            S3Lock::take(store.clone(), child(&root, LOCK), path, run_id, lock_lease).await?;
        Ok(Self {
            store,
            bucket_url,
            root,
            staging_name: format!("{STAGING_PREFIX}{run_id}"),
            lock,
        })
    }

    /// A key under the output prefix; `relative` may hold slashes.
    fn key(&self, relative: &str) -> ObjectPath {
        child(&self.root, relative)
    }

    /// Every key under `prefix`.
    async fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectPath>, OutputError> {
        self.store
            .list(Some(prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(store_error(prefix.as_ref()))
    }

    async fn copy(&self, from: &ObjectPath, to: &ObjectPath) -> Result<(), OutputError> {
        self.store
            .copy(from, to)
            .await
            .map_err(store_error(to.as_ref()))
    }

    async fn delete(&self, key: &ObjectPath) -> Result<(), OutputError> {
        self.store
            .delete(key)
            .await
            .map_err(store_error(key.as_ref()))
    }

    /// Copies `files` from `from/` over the table's live keys, then deletes
    /// the table's other keys: afterwards the table is exactly `files`.
    async fn make_table(
        &self,
        table: &str,
        from: &str,
        files: &[String],
    ) -> Result<(), OutputError> {
        let live_dir = self.key(table);
        let mut wanted = Vec::with_capacity(files.len());
        for file in files {
            let live = child(&live_dir, file);
            self.copy(&self.key(&format!("{from}/{file}")), &live)
                .await?;
            wanted.push(live);
        }
        for key in self.list(&live_dir).await? {
            if !wanted.contains(&key) {
                self.delete(&key).await?;
            }
        }
        Ok(())
    }

    async fn get(&self, key: &ObjectPath) -> Result<Option<Vec<u8>>, OutputError> {
        match self.store.get(key).await {
            Ok(found) => Ok(Some(
                found
                    .bytes()
                    .await
                    .map_err(store_error(key.as_ref()))?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(key.as_ref())(e)),
        }
    }
}

#[async_trait]
impl Target for S3Target {
    fn staging_name(&self) -> &str {
        &self.staging_name
    }

    fn staged_dir(&self, table: &str) -> Result<String, OutputError> {
        Ok(format!(
            "{}/{}/",
            self.bucket_url,
            self.key(&format!("{}/{table}", self.staging_name))
        ))
    }

    async fn staged_files(&self, table: &str) -> Result<Vec<String>, OutputError> {
        let prefix = self.key(&format!("{}/{table}", self.staging_name));
        let mut staged: Vec<String> = self
            .list(&prefix)
            .await?
            .iter()
            .map(|k| relative_to(k, &prefix))
            .collect();
        staged.sort();
        Ok(staged)
    }

    /// Every key under `<root>/.cskpi-staging-*`.
    async fn remove_leftover_staging(&self) -> Result<(), OutputError> {
        for key in self.list(&self.root).await? {
            if relative_to(&key, &self.root).starts_with(STAGING_PREFIX) {
                self.delete(&key).await?;
            }
        }
        Ok(())
    }

    async fn stage_manifest(&self, manifest: &[u8]) -> Result<(), OutputError> {
        let key = self.key(&format!("{}/{MANIFEST}", self.staging_name));
        self.store
            .put(&key, manifest.to_vec().into())
            .await
            .map_err(store_error(key.as_ref()))?;
        Ok(())
    }

    /// Copies the table's live files into `<staging>/.previous/<table>/`.
    async fn keep_previous(&self, table: &StagedTable) -> Result<JournalTable, OutputError> {
        let live_dir = self.key(&table.name);
        let previous_at = format!("{}/.previous/{}", self.staging_name, table.name);
        let mut previous = Vec::new();
        for key in self.list(&live_dir).await? {
            let file = relative_to(&key, &live_dir);
            self.copy(&key, &self.key(&format!("{previous_at}/{file}")))
                .await?;
            previous.push(file);
        }
        previous.sort();
        Ok(JournalTable {
            name: table.name.clone(),
            new_at: format!("{}/{}", self.staging_name, table.name),
            new_files: table.files.clone(),
            previous_at,
            previous_files: (!previous.is_empty()).then_some(previous),
            new_inode: None,
            delta: None,
        })
    }

    async fn replace(&self, table: &JournalTable) -> Result<(), OutputError> {
        self.make_table(&table.name, &table.new_at, &table.new_files)
            .await
    }

    async fn restore(&self, table: &JournalTable) -> Result<(), OutputError> {
        let previous = table.previous_files.as_deref().unwrap_or_default();
        self.make_table(&table.name, &table.previous_at, previous)
            .await
    }

    async fn all_in_place(&self, _journal: &Journal) -> Result<bool, OutputError> {
        Ok(false)
    }

    async fn publish_manifest(&self, staging: &str) -> Result<(), OutputError> {
        self.copy(
            &self.key(&format!("{staging}/{MANIFEST}")),
            &self.key(MANIFEST),
        )
        .await
    }

    async fn remove_staging(&self, staging: &str) -> Result<(), OutputError> {
        for key in self.list(&self.key(staging)).await? {
            self.delete(&key).await?;
        }
        Ok(())
    }

    async fn read_journal(&self) -> Result<Option<Journal>, OutputError> {
        let key = self.key(JOURNAL);
        let Some(bytes) = self.get(&key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| OutputError::Journal {
                path: format!("{}/{key}", self.bucket_url),
                message: e.to_string(),
            })
    }

    /// One PUT: atomic on S3.
    async fn write_journal(&self, journal: &Journal) -> Result<(), OutputError> {
        let key = self.key(JOURNAL);
        let text = serde_json::to_vec_pretty(journal).expect("journal serialises");
        self.store
            .put(&key, text.into())
            .await
            .map_err(store_error(key.as_ref()))?;
        Ok(())
    }

    async fn remove_journal(&self) -> Result<(), OutputError> {
        self.delete(&self.key(JOURNAL)).await
    }

    async fn published_manifest(&self) -> Result<Option<Vec<u8>>, OutputError> {
        self.get(&self.key(MANIFEST)).await
    }

    /// Left for the next run to remove (dropping cannot wait for the store).
    fn abandon(&self) {}

    async fn release(&self) {
        self.lock.release().await;
    }

    async fn ensure_locked(&self) -> Result<(), OutputError> {
        self.lock.ensure_held().await
    }
}

/// `key` without `prefix/`.
fn relative_to(key: &ObjectPath, prefix: &ObjectPath) -> String {
    key.as_ref()
        .strip_prefix(prefix.as_ref())
        .unwrap_or(key.as_ref())
        .trim_start_matches('/')
        .to_string()
}

fn child(parent: &ObjectPath, name: &str) -> ObjectPath {
    if parent.as_ref().is_empty() {
        ObjectPath::from(name)
    } else {
        ObjectPath::from(format!("{parent}/{name}"))
    }
}
