//! `cskpi scheduler` and `cskpi executor`: Ballista's scheduler and executor
//! processes, run inside the cskpi binary so that they know cskpi's
//! functions, codecs and physical rules.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::extension::ballista_window_functions;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;

use super::codec::{LogicalCodec, PhysicalCodec};
use super::{ClusterError, executor_functions};
use crate::config::ByteSize;

pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;
pub const DEFAULT_EXECUTOR_PORT: u16 = 50051;
pub const DEFAULT_EXECUTOR_GRPC_PORT: u16 = 50052;

#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on.
    pub bind: IpAddr,
    pub port: u16,
    /// The host name executors and drivers reach this scheduler by.
    pub external_host: Option<String>,
}

/// Runs a scheduler until the process is stopped.
pub async fn serve_scheduler(options: &SchedulerOptions) -> Result<(), ClusterError> {
    let failed = |message: String| ClusterError::Process {
        process: "scheduler",
        message,
    };
    let defaults = SchedulerConfig::default();
    let config = SchedulerConfig {
        bind_host: options.bind.to_string(),
        bind_port: options.port,
        external_host: options
            .external_host
            .clone()
            .unwrap_or_else(|| defaults.external_host.clone()),
        override_session_builder: Some(Arc::new(scheduler_session)),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..defaults
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let address = SocketAddr::new(options.bind, options.port);
    tracing::info!(%address, "scheduler listening");
    start_server(cluster, address, Arc::new(config))
        .await
        .map_err(|e| failed(e.to_string()))
}

/// A scheduler's session for a job (its configuration comes from the
/// driver): DataFusion's defaults, Ballista's logical rules, cskpi's
/// physical rules and every function.
pub(crate) fn scheduler_session(
    config: SessionConfig,
) -> datafusion::common::Result<datafusion::execution::SessionState> {
    let mut builder = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(Arc::new(RuntimeEnvBuilder::new().build()?))
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_scalar_functions(super::scheduler_scalar_functions())
        .with_aggregate_functions(super::scheduler_aggregate_functions())
        .with_window_functions(ballista_window_functions());
    for rule in crate::engine::session::physical_rules() {
        builder = builder.with_physical_optimizer_rule(rule);
    }
    Ok(builder.build())
}

#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, host and port.
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// Address to listen on.
    pub bind: IpAddr,
    /// The host name the scheduler and other executors reach this one by.
    pub external_host: Option<String>,
    /// Arrow Flight port (shuffle data).
    pub port: u16,
    /// gRPC port (tasks from the scheduler).
    pub grpc_port: u16,
    /// Tasks run at once (default: the machine's cores).
    pub cores: Option<usize>,
    /// Memory the executor's tasks may use before spilling (default: a
    /// share of the machine's, Ballista's rule).
    pub memory_limit: Option<ByteSize>,
    /// Shuffle and spill files (default: a temporary directory).
    pub work_dir: Option<PathBuf>,
}

/// Runs an executor until the process is stopped or the scheduler tells it
/// to stop.
pub async fn serve_executor(options: &ExecutorOptions) -> Result<(), ClusterError> {
    let failed = |message: String| ClusterError::Process {
        process: "executor",
        message,
    };
    let work_dir = match &options.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| failed(format!("work directory {}: {e}", dir.display())))?;
            Some(dir.display().to_string())
        }
        None => None,
    };
    let defaults = ExecutorProcessConfig::default();
    let config = ExecutorProcessConfig {
        bind_host: options.bind.to_string(),
        external_host: options.external_host.clone(),
        port: options.port,
        grpc_port: options.grpc_port,
        scheduler_host: options.scheduler_host.clone(),
        scheduler_port: options.scheduler_port,
        // Started beside the scheduler (compose, systemd), an executor
        // waits for it rather than exiting at once.
        scheduler_connect_timeout_seconds: 30,
        vcores: options.cores.unwrap_or(defaults.vcores),
        work_dir,
        memory_pool_size: options.memory_limit.map(|m| m.bytes() as u64),
        override_function_registry: Some(Arc::new(executor_functions()?)),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..defaults
    };
    tracing::info!(
        scheduler = %format!("{}:{}", options.scheduler_host, options.scheduler_port),
        port = options.port,
        grpc_port = options.grpc_port,
        cores = config.vcores,
        "executor starting"
    );
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| failed(e.to_string()))
}
