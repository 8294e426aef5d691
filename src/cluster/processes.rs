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
use datafusion::prelude::SessionConfig;

use super::codec::{LogicalCodec, PhysicalCodec};
use super::{ClusterError, executor_functions, storage};
use crate::config::ByteSize;

pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;
pub const DEFAULT_EXECUTOR_PORT: u16 = 50051;
pub const DEFAULT_EXECUTOR_GRPC_PORT: u16 = 50052;

/// `cskpi scheduler`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerOptions {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Port to listen on (gRPC).
    #[arg(long, default_value_t = DEFAULT_SCHEDULER_PORT)]
    pub port: u16,
    /// Host name executors reach this scheduler by (default localhost).
    #[arg(long)]
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
        override_config_producer: Some(Arc::new(storage::node_config)),
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
/// physical rules (then [`super::stage_outputs::CompactStageOutputs`] and
/// [`super::leaves::LeavesAsMemoryScans`]) and every function.
pub(crate) fn scheduler_session(
    config: SessionConfig,
) -> datafusion::common::Result<datafusion::execution::SessionState> {
    let runtime = storage::node_runtime(&config, None)?;
    let mut builder = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_scalar_functions(super::scheduler_scalar_functions())
        .with_aggregate_functions(super::scheduler_aggregate_functions())
        .with_window_functions(ballista_window_functions());
    for rule in crate::engine::session::physical_rules() {
        builder = builder.with_physical_optimizer_rule(rule);
    }
    builder = builder
        .with_physical_optimizer_rule(Arc::new(super::stage_outputs::CompactStageOutputs))
        .with_physical_optimizer_rule(Arc::new(super::leaves::LeavesAsMemoryScans));
    Ok(builder.build())
}

/// `cskpi executor`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutorOptions {
    /// The scheduler, HOST:PORT.
    #[arg(long)]
    pub scheduler: String,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Host name the scheduler and other executors reach this one by
    /// (default: the address the scheduler sees).
    #[arg(long)]
    pub external_host: Option<String>,
    /// Arrow Flight port (shuffle data).
    #[arg(long, default_value_t = DEFAULT_EXECUTOR_PORT)]
    pub port: u16,
    /// gRPC port (tasks from the scheduler).
    #[arg(long, default_value_t = DEFAULT_EXECUTOR_GRPC_PORT)]
    pub grpc_port: u16,
    /// Tasks run at once (default: the machine's cores).
    #[arg(long)]
    pub cores: Option<usize>,
    /// Memory this executor's tasks may use before spilling, e.g. 4G
    /// (default: Ballista's share of the machine's memory).
    #[arg(long)]
    pub memory_limit: Option<ByteSize>,
    /// Directory for shuffle and spill files (default: a temporary one).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Runs an executor until the process is stopped or the scheduler tells it
/// to stop.
pub async fn serve_executor(options: &ExecutorOptions) -> Result<(), ClusterError> {
    let failed = |message: String| ClusterError::Process {
        process: "executor",
        message,
    };
    // Held until the executor stops: a work directory of its own, removed
    // then, when none is given.
    let temporary = match options.work_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().map_err(|e| failed(format!("work directory: {e}")))?),
    };
    let work_dir = match (&options.work_dir, &temporary) {
        (Some(dir), _) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| failed(format!("work directory {}: {e}", dir.display())))?;
            dir.clone()
        }
        (None, Some(temporary)) => temporary.path().to_path_buf(),
        (None, None) => unreachable!("a temporary directory is made when none is given"),
    };
    let spill_dir = work_dir.clone();
    let (scheduler_host, scheduler_port) = super::scheduler_host_port(&options.scheduler)?;
    let defaults = ExecutorProcessConfig::default();
    let config = ExecutorProcessConfig {
        bind_host: options.bind.to_string(),
        external_host: options.external_host.clone(),
        port: options.port,
        grpc_port: options.grpc_port,
        scheduler_host,
        scheduler_port,
        // Started beside the scheduler (compose, systemd), an executor
        // waits for it rather than exiting at once.
        scheduler_connect_timeout_seconds: 30,
        vcores: options.cores.unwrap_or(defaults.vcores),
        work_dir: Some(work_dir.display().to_string()),
        override_config_producer: Some(Arc::new(storage::node_config)),
        override_runtime_producer: Some(Arc::new(move |config: &SessionConfig| {
            storage::node_runtime(config, Some(spill_dir.clone()))
        })),
        memory_pool_size: options.memory_limit.map(|m| m.bytes() as u64),
        override_function_registry: Some(Arc::new(executor_functions()?)),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..defaults
    };
    tracing::info!(
        scheduler = %options.scheduler,
        port = options.port,
        grpc_port = options.grpc_port,
        cores = config.vcores,
        "executor starting"
    );
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| failed(e.to_string()))
}
