//! Publishing on S3: each staged object is copied server-side over the live
//! key; an S3 copy or put of one object is atomic, so a reader gets the old
//! file or the new one, never a part.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{
    MANIFEST, OutputError, STAGING_PREFIX, StagedFile, StagedTable, Target, published_names,
    store_error,
};

pub(super) struct S3Target {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket`
    bucket_url: String,
    /// the output prefix inside the bucket, without slashes at the ends
    root: ObjectPath,
    staging: ObjectPath,
}

impl S3Target {
    /// Finds the bucket's store in the session and removes the staging
    /// areas that killed runs left.
    pub(super) async fn begin(
        ctx: &SessionContext,
        path: &str,
        run_id: &str,
    ) -> Result<Self, OutputError> {
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
        Ok(Self {
            store,
            bucket_url,
            root,
            staging,
        })
    }
}

#[async_trait]
impl Target for S3Target {
    fn staged_dir(&self, table: &str) -> Result<String, OutputError> {
        Ok(format!("{}/{}/{table}/", self.bucket_url, self.staging))
    }

    /// Lists the staged keys; the published names are used when publishing.
    async fn name_staged_files(&self, table: &str) -> Result<Vec<StagedFile>, OutputError> {
        let prefix = child(&self.staging, table);
        let keys: Vec<ObjectPath> = self
            .store
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
        Ok(published_names(relative)
            .into_iter()
            .map(|(staged, published)| StagedFile {
                name: published,
                staged,
            })
            .collect())
    }

    async fn publish(&self, tables: &[StagedTable], manifest: Vec<u8>) -> Result<(), OutputError> {
        let store = &self.store;
        for table in tables {
            let live_dir = child(&self.root, &table.name);
            let staged_dir = child(&self.staging, &table.name);
            let mut live_keys = Vec::new();
            for file in &table.files {
                let live = child(&live_dir, &file.name);
                let staged = child(&staged_dir, &file.staged);
                store
                    .copy(&staged, &live)
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
        let manifest_path = child(&self.root, MANIFEST);
        store
            .put(&manifest_path, manifest.into())
            .await
            .map_err(store_error(manifest_path.as_ref()))?;
        delete_prefix(store.as_ref(), &self.staging).await
    }

    /// Left for the next run to remove (dropping cannot wait for the store).
    fn abandon(&self) {}
}

fn child(parent: &ObjectPath, name: &str) -> ObjectPath {
    if parent.as_ref().is_empty() {
        ObjectPath::from(name)
    } else {
        ObjectPath::from(format!("{parent}/{name}"))
    }
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
