use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cskpi::cli::{self, Cli, LogFormat};

fn main() {
    let cli = Cli::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(cli.log_level()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        // Colours only for a person at a terminal: a scheduler's log file
        // (cron, Airflow) gets plain text.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let log_format = cli.log_format;
    if let Err(e) = runtime.block_on(cli::execute(cli)) {
        let line = format!("cskpi: error: {}", e.one_line());
        match log_format {
            LogFormat::Text => eprintln!("{line}"),
            // A log shipper reads every line as JSON, the last one too.
            LogFormat::Json => eprintln!(
                "{}",
                serde_json::json!({"level": "ERROR", "message": line, "exit_code": e.exit_code()})
            ),
        }
        std::process::exit(e.exit_code());
    }
}
