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
pub mod processes;

use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

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
    #[error("cluster session: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
}

/// How long a driver waits for the scheduler to answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The scheduler's gRPC address (`http://host:port`) of a `df://host:port`
/// URL (port 50050 when none is given).
pub fn scheduler_endpoint(url: &str) -> Result<String, ClusterError> {
    let invalid = |message: String| ClusterError::Address {
        address: url.into(),
        message,
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    if parsed.scheme() != "df" {
        return Err(invalid("a scheduler is named df://HOST:PORT".into()));
    }
    let host = parsed.host_str().ok_or_else(|| invalid("no host".into()))?;
    Ok(format!(
        "http://{host}:{}",
        parsed.port().unwrap_or(processes::DEFAULT_SCHEDULER_PORT)
    ))
}

/// A driver's session on the cluster at `url` (`df://host:port`): `state`'s
/// configuration, runtime and rules, with queries planned and run by the
/// cluster; cskpi's functions (with `taxonomy`) registered after Ballista
/// has set its own. Fails within [`CONNECT_TIMEOUT`] when no scheduler
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
) -> Result<SessionContext, ClusterError> {
    let endpoint = scheduler_endpoint(url)?;
    wait_for_scheduler(&endpoint, CONNECT_TIMEOUT).await?;
    let config = state
        .config()
        .clone()
        .upgrade_for_ballista()
        .with_ballista_adaptive_query_planner(false)
        .set_bool("datafusion.optimizer.prefer_hash_join", true)
        .with_ballista_logical_extension_codec(Arc::new(codec::LogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(codec::PhysicalCodec::default()));
    let state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build();
    let ctx = SessionContext::remote_with_state(url, state).await?;
    udf::register_all(&ctx, taxonomy);
    Ok(ctx)
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
        for bad in ["http://host:1", "df://", "host:50050"] {
            assert!(scheduler_endpoint(bad).is_err(), "{bad}");
        }
    }
}
