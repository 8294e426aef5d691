//! The one place a DataFusion session is built: configuration, memory pool
//! and spill directory, object stores and every UDF. A cluster's processes
//! (`crate::cluster`) reuse `physical_rules` and the UDF lists.

use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ClientOptions, RetryConfig};
use url::Url;

use crate::config::{ByteSize, JobConfig, S3Config};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot use temporary directory {dir}: {message}")]
    TempDir { dir: String, message: String },
    #[error("invalid location {location:?}: {message}")]
    Location { location: String, message: String },
    #[error("cannot configure S3 for {url}: {source}")]
    S3 {
        url: String,
        source: object_store::Error,
    },
    #[error("cannot start the query engine: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// The catalog every table and view is registered in.
pub const CATALOG: &str = "cskpi";

/// Default share of the machine's memory the engine may use before spilling.
const DEFAULT_MEMORY_LIMIT: usize = 4 << 30;

/// Rows per batch of every plan (`datafusion.execution.batch_size`).
const BATCH_ROWS: usize = 16 * 1024;

pub fn session_config() -> Result<SessionConfig, SessionError> {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema(CATALOG, "public")
        // Twice DataFusion's 8192 rows: a run's operators spend less per
        // batch on its 100 M rows, the same rows come out and peak memory
        // stays put (benches/README.md, "Measured reasons").
        .with_batch_size(BATCH_ROWS);
    let options = config.options_mut();
    // A shell's `COPY ... PARTITIONED BY` keeps the columns in the files too.
    options.execution.keep_partition_by_columns = true;
    options.execution.parquet.compression = Some("zstd(3)".into());
    // An input directory is every `*.parquet` below it (spec 1), in plain
    // subfolders (`orders/2025/05/`) too, not only in hive `key=value/` ones.
    options.execution.listing_table_ignore_subdirectory = false;
    // A hash join keeps its whole build side in memory and cannot spill;
    // sort-merge joins sort (and spill) instead, so memory stays within the
    // pool whatever the input size: the default for any query. A run turns
    // hash joins on for its own queries (each of its joins has a side of at
    // most one row per customer), and so does the shell (`shell::open_session`),
    // both through `set_options`.
    options.optimizer.prefer_hash_join = false;
    apply_env_overrides(options)?;
    Ok(config)
}

/// Any DataFusion option can be tuned from the environment, as
/// `datafusion.optimizer.prefer_hash_join` by
/// `DATAFUSION_OPTIMIZER_PREFER_HASH_JOIN=true`; these win over cskpi's
/// defaults above.
fn apply_env_overrides(
    options: &mut datafusion::config::ConfigOptions,
) -> Result<(), SessionError> {
    let keys: Vec<String> = options.entries().into_iter().map(|e| e.key).collect();
    for key in keys {
        let variable = key.to_uppercase().replace('.', "_");
        if let Some(value) = std::env::var_os(&variable) {
            options.set(&key, &value.to_string_lossy())?;
        }
    }
    Ok(())
}

/// The engine's memory pool (spilling operators share it fairly) and spill
/// directory.
pub fn runtime(
    memory_limit: Option<ByteSize>,
    temp_dir: Option<&std::path::Path>,
) -> Result<Arc<RuntimeEnv>, SessionError> {
    let limit = memory_limit.map_or(DEFAULT_MEMORY_LIMIT, ByteSize::bytes);
    let pool = TrackConsumersPool::new(
        FairSpillPool::new(limit),
        std::num::NonZeroUsize::new(5).expect("non-zero"),
    );
    let spill_to = match temp_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| SessionError::TempDir {
                dir: dir.display().to_string(),
                message: e.to_string(),
            })?;
            DiskManagerMode::Directories(vec![dir.to_path_buf()])
        }
        None => DiskManagerMode::OsTmpDirectory,
    };
    Ok(RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(spill_to))
        .build_arc()?)
}

/// cskpi's physical optimizer rules, run after DataFusion's
/// (`whole_group_plan`: aggregates over whole groups in one stage;
/// `compact`: sorts see batches of their own size).
pub fn physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    vec![
        Arc::new(crate::engine::whole_group_plan::AggregateWholeGroupsOnce),
        Arc::new(crate::engine::compact::CompactBeforeSort),
    ]
}

/// A context with DataFusion's defaults plus cskpi's physical rules.
pub fn context(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionContext {
    let mut builder = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features();
    for rule in physical_rules() {
        builder = builder.with_physical_optimizer_rule(rule);
    }
    SessionContext::new_with_state(builder.build())
}

/// A session-config extension: options the session keeps whatever
/// `set_options` asks (a cluster session's join planning, see
/// `cluster::connect`).
#[derive(Debug, Clone, Default)]
pub struct PinnedOptions(pub Vec<&'static str>);

/// Sets DataFusion options (`datafusion.optimizer.prefer_hash_join`, ...)
/// for the queries planned from now on; returns their previous values, for
/// `restore_options`. An option set in the environment (see
/// `apply_env_overrides`) or pinned ([`PinnedOptions`]) keeps that value,
/// and is left out of the returned values.
pub fn set_options(
    ctx: &SessionContext,
    settings: &[(impl AsRef<str>, impl AsRef<str>)],
) -> Result<Vec<(String, String)>, datafusion::error::DataFusionError> {
    let state = ctx.state_ref();
    let mut state = state.write();
    let pinned = state
        .config()
        .get_extension::<PinnedOptions>()
        .map(|p| p.0.clone())
        .unwrap_or_default();
    let options = state.config_mut().options_mut();
    let current: std::collections::HashMap<String, Option<String>> = options
        .entries()
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect();
    let mut previous = Vec::new();
    for (key, value) in settings {
        let key = key.as_ref();
        if std::env::var_os(key.to_uppercase().replace('.', "_")).is_some() || pinned.contains(&key)
        {
            continue;
        }
        let before = current.get(key).cloned().flatten().unwrap_or_default();
        options.set(key, value.as_ref())?;
        previous.push((key.to_string(), before));
    }
    Ok(previous)
}

/// Restores the options `set_options` returned.
pub fn restore_options(
    ctx: &SessionContext,
    previous: Vec<(String, String)>,
) -> Result<(), datafusion::error::DataFusionError> {
    set_options(ctx, &previous).map(|_| ())
}

/// Estimated bytes (or, where a side's size is unknown, rows) up to which
/// a hash join's build side is collected once and probed by every
/// partition (`CollectLeft`) rather than hash-partitioned with the other
/// side; DataFusion's defaults are 1 MB and 128 K rows. A side of one row
/// per customer (segments, per-customer aggregates) takes the same memory
/// either way, since each partition would hold its share of it, and
/// collected once it spares repartitioning the other side: at 1 M
/// customers the KPI stages from cohorts to health took about 0.6 s less
/// in all, and mrr 0.3 s (benches/README.md, "Measured reasons"). Sides
/// past these bounds (an event table, or many millions of customers) are
/// partitioned as before.
pub const COLLECTED_BUILD_BYTES: &str = "268435456";
/// See [`COLLECTED_BUILD_BYTES`].
pub const COLLECTED_BUILD_ROWS: &str = "2000000";

/// Plans the joins of the queries planned from now on as hash joins (see
/// `session_config`), a build side within [`COLLECTED_BUILD_BYTES`]
/// collected once; returns what to restore.
pub fn prefer_hash_joins(
    ctx: &SessionContext,
) -> Result<Vec<(String, String)>, datafusion::error::DataFusionError> {
    set_options(
        ctx,
        &[
            ("datafusion.optimizer.prefer_hash_join", "true"),
            (
                "datafusion.optimizer.hash_join_single_partition_threshold_rows",
                COLLECTED_BUILD_ROWS,
            ),
            (
                "datafusion.optimizer.hash_join_single_partition_threshold",
                COLLECTED_BUILD_BYTES,
            ),
        ],
    )
}

/// Builds the session for a job: runtime, S3 stores for every s3:// location
/// the job names (inputs, output, scratch), and every cskpi UDF.
pub fn build(job: &JobConfig) -> Result<SessionContext, SessionError> {
    let ctx = context(
        session_config()?,
        runtime(job.run.memory_limit, job.run.spill_to().as_deref())?,
    );
    let inputs = job.input.locations().into_iter().filter_map(|(_, l)| l);
    let scratch = job.run.temp_dir.as_deref();
    for location in inputs.chain([job.output.path.as_str()]).chain(scratch) {
        if location.starts_with("s3://") {
            register_s3_bucket(&ctx, location, job.s3.as_ref())?;
        }
    }
    crate::engine::udf::register_all(&ctx, Arc::new(job.feedback_taxonomy().clone()));
    Ok(ctx)
}

/// Registers an object store for the bucket of `location` (idempotent).
pub fn register_s3_bucket(
    ctx: &SessionContext,
    location: &str,
    settings: Option<&S3Config>,
) -> Result<(), SessionError> {
    let (bucket_url, store) = s3_store(location, settings)?;
    ctx.register_object_store(&bucket_url, Arc::new(store));
    Ok(())
}

/// The object store of the bucket of `location` (`s3://bucket/...`) and
/// the bucket's URL: credentials from this process's environment (or
/// role), endpoint, region and plain HTTP from the job's `[s3]`.
pub fn s3_store(
    location: &str,
    settings: Option<&S3Config>,
) -> Result<(Url, AmazonS3), SessionError> {
    let url = Url::parse(location).map_err(|e| SessionError::Location {
        location: location.into(),
        message: e.to_string(),
    })?;
    let bucket = url.host_str().ok_or_else(|| SessionError::Location {
        location: location.into(),
        message: "no bucket name".into(),
    })?;
    let bucket_url = Url::parse(&format!("s3://{bucket}")).expect("valid bucket url");
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        // A missing bucket or bad credentials should fail in seconds, not
        // after minutes of retries in a nightly job.
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(20),
            ..Default::default()
        })
        .with_client_options(ClientOptions::new().with_timeout(Duration::from_secs(60)));
    if let Some(s3) = settings {
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if s3.allow_http {
            builder = builder.with_allow_http(true);
        }
    }
    let store = builder.build().map_err(|source| SessionError::S3 {
        url: location.into(),
        source,
    })?;
    Ok((bucket_url, store))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(ctx: &SessionContext, key: &str) -> Option<String> {
        let options = ctx.state().config().options().entries();
        options
            .into_iter()
            .find(|e| e.key == key)
            .and_then(|e| e.value)
    }

    #[test]
    fn options_are_set_for_a_while_and_restored() {
        let ctx = context(session_config().unwrap(), Arc::new(RuntimeEnv::default()));
        let rows = "datafusion.optimizer.hash_join_single_partition_threshold_rows";
        let before = option(&ctx, rows).unwrap();
        assert_ne!(before, "7");
        let previous = set_options(
            &ctx,
            &[
                (rows, "7"),
                ("datafusion.optimizer.prefer_hash_join", "true"),
            ],
        )
        .unwrap();
        assert_eq!(option(&ctx, rows).as_deref(), Some("7"));
        restore_options(&ctx, previous).unwrap();
        assert_eq!(option(&ctx, rows), Some(before));
        assert_eq!(
            option(&ctx, "datafusion.optimizer.prefer_hash_join").as_deref(),
            Some("false")
        );
        assert!(set_options(&ctx, &[("datafusion.no_such_option", "1")]).is_err());
    }

    /// A join with a side of 300,000 keys (1.2 MB, past DataFusion's 1 MB)
    /// hash-partitions both sides with hash joins merely preferred, and
    /// collects that side once with the run's bounds.
    #[tokio::test]
    async fn a_side_of_one_row_per_customer_is_collected_once() {
        use datafusion::arrow::array::{Int32Array, RecordBatch};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::datasource::MemTable;

        let config = session_config().unwrap().with_target_partitions(2);
        let ctx = context(config, Arc::new(RuntimeEnv::default()));
        // two partitions, as a stored view's files give
        let table = |rows: i32| {
            let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int32, false)]));
            let half = |range: std::ops::Range<i32>| {
                let keys = Arc::new(Int32Array::from_iter_values(range));
                vec![RecordBatch::try_new(schema.clone(), vec![keys]).unwrap()]
            };
            let partitions = vec![half(0..rows / 2), half(rows / 2..rows)];
            Arc::new(MemTable::try_new(schema.clone(), partitions).unwrap())
        };
        ctx.register_table("events", table(3_000_000)).unwrap();
        ctx.register_table("customers", table(300_000)).unwrap();
        let plan = async || {
            let sql = "EXPLAIN SELECT e.k FROM events e JOIN customers c ON c.k = e.k";
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string()
        };
        set_options(&ctx, &[("datafusion.optimizer.prefer_hash_join", "true")]).unwrap();
        let by_default = plan().await;
        assert!(
            by_default.contains("HashJoinExec: mode=Partitioned"),
            "{by_default}"
        );
        prefer_hash_joins(&ctx).unwrap();
        let collected = plan().await;
        assert!(
            collected.contains("HashJoinExec: mode=CollectLeft"),
            "{collected}"
        );
    }
}
