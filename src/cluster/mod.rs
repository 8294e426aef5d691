//! Distributed runs on Apache DataFusion Ballista (the cargo feature
//! `distributed`): the scheduler and executor processes embedded in the
//! cskpi binary ([`processes`]), the codecs that carry cskpi's per-job state
//! in plans ([`codec`]), and a driver's session on a cluster ([`connect`]).
//!
//! Every process of a cluster knows the same functions: the scheduler's
//! sessions and each executor's registry are filled from
//! [`crate::engine::udf::scalar_udfs`] and
//! [`crate::engine::udf::aggregate_udfs`], the lists the local session
//! registers, and the scheduler plans with cskpi's physical rules
//! ([`crate::engine::session::physical_rules`]).

pub mod codec;
pub mod leaves;
pub mod processes;
pub mod quiet;
pub mod stage_outputs;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

use crate::config::JobConfig;
use crate::engine::session::PinnedOptions;
use crate::engine::udf;
use crate::feedback::Taxonomy;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("scheduler address {address:?}: {message}")]
    Address { address: String, message: String },
    #[error("no Ballista scheduler answers at {address} (waited {waited_s} s): {message}")]
    Unreachable {
        address: String,
        waited_s: u64,
        message: String,
    },
    #[error("{process}: {message}")]
    Process {
        process: &'static str,
        message: String,
    },
    #[error(
        "{what} {path:?} is a local path: with a cluster, give a location every node reaches (s3://...), or say with --shared-fs (cluster.shared_fs) that it is mounted at the same place on every node"
    )]
    LocalPath { what: String, path: String },
    #[error(
        "the cluster at {address} runs cskpi {cluster:?}, this driver is cskpi {driver}: run the same cskpi build on the driver, the scheduler and every executor"
    )]
    Version {
        address: String,
        driver: String,
        cluster: String,
    },
    #[error(
        "the cluster sent nothing for {seconds} s (cluster.quiet_limit_seconds) while a query of this run was running: an executor lost mid-query can leave Ballista 55 waiting for ever"
    )]
    Quiet { seconds: u64 },
    #[error("cluster session: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
}

/// How long a driver waits for the scheduler to answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The scheduler's gRPC address (`http://host:port`) of a `df://host:port`
/// URL (port 50050 when none is given).
pub fn scheduler_endpoint(url: &str) -> Result<String, ClusterError> {
    let Some(address) = url.strip_prefix("df://") else {
        return Err(ClusterError::Address {
            address: url.into(),
            message: "a scheduler is named df://HOST:PORT".into(),
        });
    };
    let (host, port) = scheduler_host_port(address)?;
    Ok(format!("http://{host}:{port}"))
}

/// The host and port of a scheduler named `HOST[:PORT]` (or
/// `df://HOST[:PORT]`); port 50050 when none is given.
pub fn scheduler_host_port(address: &str) -> Result<(String, u16), ClusterError> {
    let invalid = |message: &str| ClusterError::Address {
        address: address.into(),
        message: message.into(),
    };
    let bare = address.strip_prefix("df://").unwrap_or(address);
    let parsed = url::Url::parse(&format!("df://{bare}")).map_err(|e| invalid(&e.to_string()))?;
    let host = parsed.host_str().ok_or_else(|| invalid("no host"))?;
    if host.is_empty() || !matches!(parsed.path(), "" | "/") {
        return Err(invalid("a scheduler is named HOST:PORT"));
    }
    Ok((
        host.to_string(),
        parsed.port().unwrap_or(processes::DEFAULT_SCHEDULER_PORT),
    ))
}

/// A driver's session on the cluster at `url` (`df://host:port`): `state`'s
/// configuration, runtime and rules, with queries planned and run by the
/// cluster; cskpi's functions (with `taxonomy`) registered after Ballista
/// has set its own; the job's S3 settings (`storage`) go with every query
/// for the nodes' stores ([`storage`]). Fails within [`CONNECT_TIMEOUT`] when no scheduler
/// answers.
///
/// Ballista's adaptive planner is turned off: it plans with a rule list of
/// its own and would drop cskpi's physical rules, which the static planner
/// applies (the scheduler's sessions carry them).
///
/// Joins are hash joins, where Ballista's defaults (and a local session's)
/// prefer sort-merge joins: a sort-merge join whose inputs Ballista
/// repartitions inside a stage (its planner re-enforces distribution after
/// cutting stages) returned every row twice in tests/it/cluster.rs. Each
/// join of cskpi's SQL has a side of at most one row per customer or a
/// handful of keys, the side a hash join builds; a run on one machine
/// plans them so too.
pub async fn connect(
    url: &str,
    state: SessionState,
    taxonomy: Arc<Taxonomy>,
    storage: storage::StorageOptions,
    quiet_limit: Duration,
) -> Result<SessionContext, ClusterError> {
    let endpoint = scheduler_endpoint(url)?;
    wait_for_scheduler(&endpoint, CONNECT_TIMEOUT).await?;
    let here = state.config().options().clone();
    // This machine's session, as it was: it writes what the cluster
    // computes (engine/writer.rs).
    let writer = SessionContext::new_with_state(state.clone());
    let config = state
        .config()
        .clone()
        .with_extension(Arc::new(crate::engine::writer::WritesHere(writer)))
        .upgrade_for_ballista()
        .with_ballista_adaptive_query_planner(false)
        .set_bool("datafusion.optimizer.prefer_hash_join", true)
        // Partitioned hash joins only, kept whatever a script sets
        // (PinnedOptions). Ballista 55.0.0 turns a collect-left join whose
        // build side it cannot size into a partitioned one after DataFusion
        // has planned the operators above it, which then run once per
        // partition: a COUNT(*) over data-samples' costs_checked came back
        // as four rows. It turns a small partitioned join into a broadcast
        // one the same way, which a broadcast threshold of 0 prevents.
        .set_u64(
            "datafusion.optimizer.hash_join_single_partition_threshold",
            0,
        )
        .set_u64(
            "datafusion.optimizer.hash_join_single_partition_threshold_rows",
            0,
        )
        .with_ballista_broadcast_join_threshold_bytes(0)
        .with_extension(Arc::new(PinnedOptions(PINNED.to_vec())))
        // Strings as this machine reads them (Ballista turns string views
        // off), so that a view, and an output column, has the same type
        // on a cluster as in a local run.
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            here.execution.parquet.schema_force_view_types,
        )
        .set_bool(
            "datafusion.sql_parser.map_string_types_to_utf8view",
            here.sql_parser.map_string_types_to_utf8view,
        )
        .with_ballista_logical_extension_codec(Arc::new(codec::LogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(codec::PhysicalCodec::default()))
        .with_option_extension(storage);
    let state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build();
    let ctx = SessionContext::remote_with_state(url, state).await?;
    // Every query under a limit of silence (quiet.rs).
    let planner = quiet::QuietLimitPlanner {
        inner: Arc::clone(ctx.state().query_planner()),
        limit: quiet_limit,
    };
    let state = datafusion::execution::SessionStateBuilder::new_from_existing(ctx.state())
        .with_query_planner(Arc::new(planner))
        .build();
    let ctx = SessionContext::new_with_state(state);
    udf::register_all(&ctx, taxonomy);
    check_version(&ctx, url).await?;
    Ok(ctx)
}

/// The options a cluster session keeps (see `connect`).
const PINNED: [&str; 3] = [
    "datafusion.optimizer.prefer_hash_join",
    "datafusion.optimizer.hash_join_single_partition_threshold",
    "datafusion.optimizer.hash_join_single_partition_threshold_rows",
];

/// Refuses a cluster whose executors run another cskpi version than this
/// driver: a task's `cskpi_version()` must be this build's. (A cluster
/// without the function at all answers "function cskpi_version is not
/// registered here", from the codec.)
async fn check_version(ctx: &SessionContext, url: &str) -> Result<(), ClusterError> {
    let batches = ctx
        .sql("SELECT cskpi_version() AS version")
        .await?
        .collect()
        .await?;
    let cluster = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| {
            datafusion::arrow::array::as_string_array(b.column(0))
                .iter()
                .next()
                .flatten()
                .map(str::to_string)
        })
        .unwrap_or_default();
    same_version(url, udf::VERSION, &cluster)
}

fn same_version(url: &str, driver: &str, cluster: &str) -> Result<(), ClusterError> {
    if driver == cluster {
        return Ok(());
    }
    Err(ClusterError::Version {
        address: url.into(),
        driver: driver.into(),
        cluster: cluster.into(),
    })
}

/// Refuses a job whose inputs, output or scratch directory (`run.temp_dir`)
/// are local paths, unless it says they are mounted on every node
/// (`cluster.shared_fs`): an executor scans a path it cannot see as an
/// empty table, without an error. The scratch directory holds the views a
/// run stores, which the executors read: an `s3://` prefix, or (with
/// `shared_fs`) a directory on the shared mount; unset, it is the local
/// temporary directory, which is refused.
pub fn check_locations(job: &JobConfig) -> Result<(), ClusterError> {
    if job.cluster.shared_fs {
        return Ok(());
    }
    let local = |location: &str| !location.contains("://");
    let inputs = job
        .input
        .locations()
        .into_iter()
        .filter_map(|(name, location)| location.map(|l| (format!("input {name}"), l.to_string())));
    let output = [("output path".to_string(), job.output.path.clone())];
    let scratch = [(
        "run.temp_dir (the scratch directory)".to_string(),
        job.run
            .temp_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().display().to_string()),
    )];
    match inputs
        .chain(output)
        .chain(scratch)
        .find(|(_, location)| local(location))
    {
        Some((what, path)) => Err(ClusterError::LocalPath { what, path }),
        None => Ok(()),
    }
}

/// Waits until the scheduler at `endpoint` accepts a gRPC connection.
async fn wait_for_scheduler(endpoint: &str, timeout: Duration) -> Result<(), ClusterError> {
    use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
    let started = std::time::Instant::now();
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            SchedulerGrpcClient::connect(endpoint.to_string()),
        )
        .await;
        let message = match attempt {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer in 5 s".into(),
        };
        if started.elapsed() >= timeout {
            return Err(ClusterError::Unreachable {
                address: endpoint.into(),
                waited_s: started.elapsed().as_secs(),
                message,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Ballista's function registry of an executor: every function a
/// scheduler's session has (DataFusion's, nested ones included, Ballista's
/// and cskpi's, with the built-in taxonomy: a job's own travels with its
/// plans, see [`codec`]).
pub fn executor_functions() -> Result<BallistaFunctionRegistry, ClusterError> {
    let session = processes::scheduler_session(datafusion::prelude::SessionConfig::new())?;
    let mut registry = BallistaFunctionRegistry::default();
    registry
        .scalar_functions
        .extend(session.scalar_functions().clone());
    registry
        .aggregate_functions
        .extend(session.aggregate_functions().clone());
    registry
        .window_functions
        .extend(session.window_functions().clone());
    Ok(registry)
}

/// The scalar functions a scheduler's session has: Ballista's and cskpi's.
fn scheduler_scalar_functions() -> Vec<Arc<ScalarUDF>> {
    let mut functions = ballista_core::extension::ballista_scalar_functions();
    functions.extend(
        udf::scalar_udfs(Arc::new(Taxonomy::built_in()))
            .into_iter()
            .map(Arc::new),
    );
    functions
}

fn scheduler_aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    let mut functions = ballista_core::extension::ballista_aggregate_functions();
    functions.extend(udf::aggregate_udfs().into_iter().map(Arc::new));
    functions
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionConfig;

    #[test]
    fn a_cluster_run_needs_locations_every_node_reaches() {
        let job = |temp_dir: &str, shared_fs: bool| {
            let mut job = JobConfig::parse(&format!(
                "[input]\ncustomers = \"s3://b/in/customers/\"\norders = \"s3://b/in/orders/\"\n\
                 tickets = \"s3://b/in/tickets/\"\n[output]\npath = \"s3://b/out/\"\n\
                 [run]\ntemp_dir = \"{temp_dir}\"\n"
            ))
            .unwrap();
            job.cluster.shared_fs = shared_fs;
            job
        };
        assert!(check_locations(&job("s3://b/scratch/", false)).is_ok());
        let refused = check_locations(&job("/mnt/scratch", false)).unwrap_err();
        assert!(
            refused.to_string().starts_with(
                "run.temp_dir (the scratch directory) \"/mnt/scratch\" is a local path"
            ),
            "{refused}"
        );
        assert!(check_locations(&job("/mnt/scratch", true)).is_ok());
    }

    #[test]
    fn the_scheduler_and_the_executors_know_every_cskpi_function_and_rule() {
        let registry = executor_functions().unwrap();
        let scheduler = processes::scheduler_session(SessionConfig::new()).unwrap();
        // Whatever the scheduler plans with, an executor can run.
        for name in scheduler.scalar_functions().keys() {
            assert!(
                registry.scalar_functions.contains_key(name),
                "executors lack {name}"
            );
        }
        for name in scheduler.aggregate_functions().keys() {
            assert!(
                registry.aggregate_functions.contains_key(name),
                "executors lack {name}"
            );
        }
        for name in scheduler.window_functions().keys() {
            assert!(
                registry.window_functions.contains_key(name),
                "executors lack {name}"
            );
        }
        let names = udf::names();
        assert!(names.len() >= 10, "{names:?}");
        for name in &names {
            assert!(
                registry.scalar_functions.contains_key(name)
                    || registry.aggregate_functions.contains_key(name),
                "executors lack {name}"
            );
            assert!(
                scheduler.scalar_functions().contains_key(name)
                    || scheduler.aggregate_functions().contains_key(name),
                "the scheduler lacks {name}"
            );
        }
        // DataFusion's own functions stay, nested ones too.
        assert!(registry.aggregate_functions.contains_key("sum"));
        assert!(registry.scalar_functions.contains_key("array_to_string"));
        assert!(scheduler.scalar_functions().contains_key("date_trunc"));
        let rules: Vec<&str> = scheduler
            .physical_optimizers()
            .iter()
            .map(|r| r.name())
            .collect();
        for rule in crate::engine::session::physical_rules() {
            assert!(
                rules.contains(&rule.name()),
                "{} not in {rules:?}",
                rule.name()
            );
        }
        assert_eq!(rules.last(), Some(&"leaves_as_memory_scans"));
    }

    #[test]
    fn another_version_on_the_cluster_is_one_line_naming_both() {
        assert!(same_version("df://h:1", "0.4.0", "0.4.0").is_ok());
        let error = same_version("df://h:1", "0.4.0", "0.3.9").unwrap_err();
        let line = error.to_string();
        assert!(line.contains("df://h:1") && line.contains("0.3.9") && line.contains("0.4.0"));
        assert!(!line.contains('\n'));
    }

    #[test]
    fn scheduler_urls() {
        assert_eq!(
            scheduler_endpoint("df://sched.example:6000").unwrap(),
            "http://sched.example:6000"
        );
        assert_eq!(
            scheduler_endpoint("df://10.0.0.5").unwrap(),
            "http://10.0.0.5:50050"
        );
        for bad in ["http://host:1", "df://", "host:50050", "df://host:port"] {
            assert!(scheduler_endpoint(bad).is_err(), "{bad}");
        }
        assert_eq!(
            scheduler_host_port("sched:6000").unwrap(),
            ("sched".to_string(), 6000)
        );
        assert_eq!(
            scheduler_host_port("10.0.0.5").unwrap(),
            ("10.0.0.5".to_string(), 50050)
        );
        assert!(scheduler_host_port("sched:x").is_err());
    }
}
