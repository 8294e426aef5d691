//! The command line: argument parsing and what each command prints.

use std::io::IsTerminal;
use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Parser, Subcommand};

use crate::config::JobConfig;
use crate::datagen::{self, GenOptions};
use crate::error::Error;
use crate::run::{self, RunOptions};

#[derive(Debug, Parser)]
#[command(
    name = "cskpi",
    version,
    about = "Customer-success KPIs from Parquet, on Apache DataFusion"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level (error, warn, info, debug, trace); RUST_LOG wins when set.
    #[arg(long, global = true, default_value = "info")]
    pub log: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute every KPI of a job and publish the output tables.
    Run {
        /// The job file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Point-in-time date: anything dated later is invisible (default: yesterday, UTC).
        #[arg(long)]
        as_of: Option<NaiveDate>,
    },
    /// Write a deterministic synthetic data set in the input schema, plus a job.toml.
    Gen {
        /// Number of customers.
        #[arg(long, default_value_t = 1000)]
        customers: u64,
        /// Random seed: the same seed gives the same files.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// First possible signup date.
        #[arg(long, default_value = "2024-01-01")]
        start: NaiveDate,
        /// Last day with data; the job file's as_of.
        #[arg(long, default_value = "2026-06-30")]
        end: NaiveDate,
        /// Share of rows made invalid on purpose (to exercise rejects).
        #[arg(long, default_value_t = 0.0)]
        bad_row_rate: f64,
    },
    /// Generate a data set (unless DIR already has one) and time a run on it.
    Bench {
        /// Number of customers to generate.
        #[arg(long, default_value_t = 20_000)]
        customers: u64,
        /// Where the data set and outputs go (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs a parsed command; returns what to print on success.
pub async fn execute(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Run { config, as_of } => {
            let job = JobConfig::load(&config)?;
            let options = RunOptions {
                as_of,
                progress: std::io::stderr().is_terminal(),
            };
            let report = run::run_job(&job, &options).await?;
            println!(
                "run {} as_of {} (months from {}) -> {}",
                report.run_id, report.as_of, report.first_month, report.output_path
            );
            for c in &report.inputs {
                println!(
                    "  in  {:<10} {:>10} rows, {:>8} rejected",
                    c.table, c.visible, c.rejected
                );
            }
            for (table, rows) in &report.outputs {
                println!("  out {table:<18} {rows:>10} rows");
            }
            Ok(())
        }
        Command::Gen {
            customers,
            seed,
            out,
            start,
            end,
            bad_row_rate,
        } => {
            let options = GenOptions {
                customers,
                seed,
                start,
                end,
                bad_row_rate,
            };
            let summary = datagen::generate(&options, &out)?;
            println!("generated {} in {}", summary, out.display());
            Ok(())
        }
        Command::Bench { customers, dir } => {
            let tmp = tempfile::tempdir().map_err(|e| Error::Io(e.to_string()))?;
            let dir = dir.unwrap_or_else(|| tmp.path().join(format!("gen-{customers}")));
            crate::bench::run_benchmark(customers, &dir).await
        }
    }
}
