//! Object stores on the cluster's nodes. A job's `s3://` locations are
//! planned on the scheduler (file listing) and read and written on the
//! executors, which know no bucket in advance: each node makes a bucket's
//! store when a plan first names it, with credentials from that node's own
//! environment or role (never sent in plans) and the job's endpoint,
//! region and plain-HTTP setting, which travel in the session's
//! configuration as `cskpi.s3_endpoint`, `cskpi.s3_region` and
//! `cskpi.s3_allow_http`.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::SessionConfig;
use object_store::ObjectStore;
use url::Url;

use ballista_core::extension::SessionConfigExt;

use crate::config::S3Config;

/// The job's S3 settings, as the session's configuration carries them to
/// the scheduler and the executors. (Written out rather than with
/// DataFusion's `extensions_options!`, whose entries leave out the prefix:
/// Ballista sends a session's entries by key, and a node could not place
/// unprefixed keys.)
#[derive(Debug, Clone, Default)]
pub struct StorageOptions {
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_allow_http: bool,
}

impl ConfigExtension for StorageOptions {
    const PREFIX: &'static str = "cskpi";
}

impl ExtensionOptions for StorageOptions {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let text = || (!value.is_empty()).then(|| value.to_string());
        match key {
            "s3_endpoint" => self.s3_endpoint = text(),
            "s3_region" => self.s3_region = text(),
            "s3_allow_http" => {
                self.s3_allow_http = value.parse().map_err(|_| {
                    DataFusionError::Configuration(format!(
                        "cskpi.s3_allow_http: {value:?} is not true or false"
                    ))
                })?
            }
            _ => {
                return Err(DataFusionError::Configuration(format!(
                    "no cskpi option {key:?}"
                )));
            }
        }
        Ok(())
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        let entry = |key: &str, value: Option<String>, description: &'static str| ConfigEntry {
            key: format!("{}.{key}", Self::PREFIX),
            value,
            description,
        };
        vec![
            entry(
                "s3_endpoint",
                self.s3_endpoint.clone(),
                "the job's S3 endpoint",
            ),
            entry("s3_region", self.s3_region.clone(), "the job's S3 region"),
            entry(
                "s3_allow_http",
                Some(self.s3_allow_http.to_string()),
                "the job's S3 endpoint may be plain HTTP",
            ),
        ]
    }
}

impl StorageOptions {
    pub fn of_job(s3: Option<&S3Config>) -> Self {
        let mut options = Self::default();
        if let Some(s3) = s3 {
            options.s3_endpoint = s3.endpoint.clone();
            options.s3_region = s3.region.clone();
            options.s3_allow_http = s3.allow_http;
        }
        options
    }

    fn s3(&self) -> S3Config {
        S3Config {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            allow_http: self.s3_allow_http,
        }
    }
}

/// The configuration a node starts a job's session from: Ballista's, with
/// room for [`StorageOptions`] (a key no session knows is dropped).
pub fn node_config() -> SessionConfig {
    SessionConfig::new_with_ballista().with_option_extension(StorageOptions::default())
}

/// A node's runtime for a job's session: buckets made on first use (see
/// the module's comment); spill files under `spill_dir` when given.
pub fn node_runtime(config: &SessionConfig, spill_dir: Option<PathBuf>) -> Result<Arc<RuntimeEnv>> {
    let options = config
        .options()
        .extensions
        .get::<StorageOptions>()
        .cloned()
        .unwrap_or_default();
    let mut builder = RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(NodeStores {
        known: DefaultObjectStoreRegistry::new(),
        s3: options.s3(),
    }));
    if let Some(dir) = spill_dir {
        builder = builder.with_temp_file_path(dir);
    }
    Ok(Arc::new(builder.build()?))
}

#[derive(Debug)]
struct NodeStores {
    /// The local file system, and every bucket once made.
    known: DefaultObjectStoreRegistry,
    s3: S3Config,
}

impl ObjectStoreRegistry for NodeStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.known.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let known = self.known.get_store(url);
        if known.is_ok() || url.scheme() != "s3" {
            return known;
        }
        let (bucket_url, store) = crate::engine::session::s3_store(url.as_str(), Some(&self.s3))
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let store: Arc<dyn ObjectStore> = Arc::new(store);
        // Two tasks may make the same bucket at once: either store serves.
        self.known.register_store(&bucket_url, Arc::clone(&store));
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::object_store::ObjectStoreUrl;

    #[test]
    fn the_jobs_s3_settings_travel_as_session_options() {
        let job = S3Config {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("eu-west-1".into()),
            allow_http: true,
        };
        let driver = SessionConfig::new().with_option_extension(StorageOptions::of_job(Some(&job)));
        // What Ballista sends: the driver's options as key-value pairs, set
        // on a node's own configuration.
        let mut node = node_config();
        for entry in driver.options().entries() {
            if let Some(value) = entry.value {
                node.options_mut().set(&entry.key, &value).unwrap();
            }
        }
        let received = node.options().extensions.get::<StorageOptions>().unwrap();
        assert_eq!(received.s3().endpoint, job.endpoint);
        assert_eq!(received.s3().region, job.region);
        assert!(received.s3().allow_http);
        // No credentials among them.
        assert!(
            driver
                .options()
                .entries()
                .iter()
                .filter(|e| e.key.starts_with("cskpi."))
                .all(|e| !e.key.contains("key") && !e.key.contains("secret"))
        );
    }

    #[test]
    fn a_node_makes_a_buckets_store_on_first_use_and_keeps_it() {
        let config = node_config();
        let runtime = node_runtime(&config, None).unwrap();
        let url = ObjectStoreUrl::parse("s3://some-bucket").unwrap();
        let first = runtime.object_store(&url).unwrap();
        let again = runtime.object_store(url).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert!(first.to_string().contains("some-bucket"), "{first}");
        assert!(
            runtime
                .object_store(ObjectStoreUrl::local_filesystem())
                .is_ok()
        );
    }
}
