use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cskpi::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(cli.log_level()));
    // Colours only for a person at a terminal: a scheduler's log file
    // (cron, Airflow) gets plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(cli::execute(cli)) {
        eprintln!("cskpi: error: {}", e.one_line());
        std::process::exit(e.exit_code());
    }
}
