//! The command line: argument parsing and what each command prints;
//! `cskpi bench` in [`bench`], `cskpi sql` in [`shell`].

pub mod bench;
pub mod shell;

use std::io::IsTerminal;
use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Parser, Subcommand};

use crate::config::{ByteSize, JobConfig};
use crate::datagen::{self, GenOptions, Layout};
use crate::engine::session::SessionError;
use crate::error::Error;
use crate::kpi::definitions;
use crate::run::{self, RunOptions};
use shell::{Format, ShellOptions};

#[derive(Debug, Parser)]
#[command(
    name = "cskpi",
    version,
    about = "Customer-success KPIs from Parquet, on Apache DataFusion"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level (error, warn, info, debug, trace; default info for run,
    /// gen and bench, warn otherwise); RUST_LOG wins when set.
    #[arg(long, global = true)]
    pub log: Option<String>,
    /// Log lines as text, or as one JSON object per line for log shippers
    /// (fields at the top level, the run id under `span`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Cli {
    /// The log filter: `--log`, or the command's default.
    pub fn log_level(&self) -> String {
        match (&self.log, &self.command) {
            (Some(level), _) => level.clone(),
            // cskpi's own progress; other crates only warn (the Delta
            // writer and its kernel log every snapshot and plan at info, and
            // warn on every vacuum that keeping versions is an
            // "experimental API", which cskpi relies on deliberately, and
            // on every write that nanosecond timestamps become microseconds,
            // as the Delta protocol requires and the README says).
            (None, Command::Run { .. } | Command::Gen(_) | Command::Bench { .. }) => {
                "warn,cskpi=info,deltalake_core::operations::vacuum=error,deltalake_core::kernel::schema::cast=error".into()
            }
            // A cluster's processes say when they listen and register
            // (Ballista's own info lines, one per task too).
            #[cfg(feature = "distributed")]
            (None, Command::Scheduler(_) | Command::Executor(_)) => {
                "warn,cskpi=info,ballista_scheduler=info,ballista_executor=info".into()
            }
            (None, _) => "warn".into(),
        }
    }
}

/// How much of the machine the query engine may use; both win over the job file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EngineArgs {
    /// Memory the engine may use before spilling to disk, e.g. 2G (job: run.memory_limit; default 4G).
    #[arg(long)]
    pub memory_limit: Option<ByteSize>,
    /// Directory for intermediate and spill files, or an s3:// prefix for the intermediate files (job: run.temp_dir; default the system's).
    #[arg(long)]
    pub temp_dir: Option<String>,
}

impl EngineArgs {
    /// The job file with these settings applied.
    pub fn load(&self, path: &std::path::Path) -> Result<JobConfig, Error> {
        let mut job = JobConfig::load(path)?;
        if let Some(limit) = self.memory_limit {
            job.run.memory_limit = Some(limit);
        }
        if let Some(dir) = &self.temp_dir {
            job.run.temp_dir = Some(dir.clone());
        }
        Ok(job)
    }
}

/// `cskpi gen`'s arguments: where to write and the generator's options.
#[derive(Debug, Clone, clap::Args)]
pub struct GenArgs {
    /// Number of customers.
    #[arg(long, default_value_t = 1000)]
    pub customers: u64,
    /// Random seed: the same seed gives the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// First possible signup date.
    #[arg(long, default_value = "2024-01-01")]
    pub start: NaiveDate,
    /// Last day with data; the job file's as_of.
    #[arg(long, default_value = "2026-06-30")]
    pub end: NaiveDate,
    /// Share of rows made invalid on purpose (to exercise rejects).
    #[arg(long, default_value_t = 0.0)]
    pub bad_row_rate: f64,
    /// How the event tables are laid out: in event order over part
    /// files with decimal money (date), or clustered by customer (customer).
    #[arg(long, value_enum, default_value_t = Layout::Date)]
    pub layout: Layout,
    /// Rows per part file (date layout).
    #[arg(long, default_value_t = datagen::DEFAULT_ROWS_PER_FILE)]
    pub rows_per_file: usize,
}

impl GenArgs {
    pub fn options(&self) -> GenOptions {
        GenOptions {
            customers: self.customers,
            seed: self.seed,
            start: self.start,
            end: self.end,
            bad_row_rate: self.bad_row_rate,
            layout: self.layout,
            rows_per_file: self.rows_per_file,
        }
    }
}

/// The job a command works on, its point in time and the engine's limits.
/// (Each command gives `--config` its short flag: `-c`, or `-C` for `sql`,
/// where `-c` runs a command.)
#[derive(Debug, Clone, clap::Args)]
pub struct JobArgs {
    /// The job file (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Point-in-time date: anything dated later is invisible (default: the
    /// job's run.as_of, or yesterday, UTC).
    #[arg(long)]
    pub as_of: Option<NaiveDate>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl JobArgs {
    /// The job file with the engine settings applied.
    pub fn load(&self) -> Result<JobConfig, Error> {
        self.engine.load(&self.config)
    }
}

/// Where a job runs: this machine, or a Ballista cluster.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// Run on the Ballista cluster whose scheduler is at df://HOST:PORT
    /// (job: cluster.scheduler).
    #[cfg(feature = "distributed")]
    #[arg(long, value_name = "df://HOST:PORT")]
    pub cluster: Option<String>,
    /// The job's local paths are mounted at the same place on every node of
    /// the cluster (job: cluster.shared_fs).
    #[cfg(feature = "distributed")]
    #[arg(long)]
    pub shared_fs: bool,
}

impl ClusterArgs {
    /// The job file with these settings applied.
    pub fn apply(&self, job: &mut JobConfig) {
        #[cfg(feature = "distributed")]
        {
            if let Some(url) = &self.cluster {
                job.cluster.scheduler = Some(url.clone());
            }
            job.cluster.shared_fs |= self.shared_fs;
        }
        #[cfg(not(feature = "distributed"))]
        let _ = job;
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute every KPI of a job and publish the output tables.
    #[command(mut_arg("config", |a| a.short('c')))]
    Run {
        #[command(flatten)]
        job: JobArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Write a deterministic synthetic data set in the input schema, plus a job.toml.
    Gen(GenArgs),
    /// SQL over the inputs (at as_of), the KPI views, the last run's outputs
    /// (schema last_run) and the KPI UDFs: a shell, or -c / -f / stdin.
    #[command(mut_arg("config", |a| a.short('C')))]
    Sql {
        #[command(flatten)]
        job: JobArgs,
        /// Run this SQL (or backslash command) and exit; repeatable.
        #[arg(short = 'c', long = "command")]
        commands: Vec<String>,
        /// Run the SQL in this file and exit.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Output format of query results.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Write results to this file instead of stdout (required for parquet).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// List every KPI with its formula, unit, inputs and output column.
    Kpis {
        /// Show one KPI in full (a name or an output column, table.column).
        name: Option<String>,
        /// Print the KPI definitions page (docs/KPIS.md) as Markdown.
        #[arg(long)]
        markdown: bool,
    },
    /// Check a job file and its inputs (schemas, row errors, reject ratio)
    /// without writing any output (only a scratch in the temp dir, removed).
    #[command(mut_arg("config", |a| a.short('c')))]
    Validate {
        #[command(flatten)]
        job: JobArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Finish a publication a killed or failed run left at the job's output
    /// (roll it back, or forward when every table was in place); exits 0
    /// when the output holds one run.
    Recover {
        /// The job file (TOML).
        #[arg(short = 'c', long)]
        config: PathBuf,
    },
    /// Draw the HTML report (report.html) of the run published at the job's
    /// output, again or to another file.
    #[command(mut_arg("config", |a| a.short('c')))]
    Report {
        #[command(flatten)]
        job: JobArgs,
        /// Write the page here instead of report.html at the job's output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Run a Ballista scheduler that knows cskpi's functions: the
    /// coordinator of a cluster (`cskpi run --cluster df://HOST:PORT`).
    #[cfg(feature = "distributed")]
    Scheduler(crate::cluster::processes::SchedulerOptions),
    /// Run a Ballista executor that knows cskpi's functions, for the
    /// scheduler at HOST:PORT.
    #[cfg(feature = "distributed")]
    Executor(crate::cluster::processes::ExecutorOptions),
    /// Generate a data set (unless DIR already has one) and time a run on it.
    Bench {
        /// Number of customers to generate.
        #[arg(long, default_value_t = 20_000)]
        customers: u64,
        /// Where the data set and outputs go (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Layout of a generated data set (see `cskpi gen --layout`).
        #[arg(long, value_enum, default_value_t = Layout::Date)]
        layout: Layout,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Only generate the data set (unless DIR has one) and exit: a
        /// timed run in a fresh process then measures only itself (the
        /// allocator keeps much of what generating freed).
        #[arg(long)]
        generate_only: bool,
    },
}

/// Runs a parsed command; returns what to print on success.
pub async fn execute(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Run { job: args, cluster } => {
            let mut job = args.load()?;
            cluster.apply(&mut job);
            let options = RunOptions {
                as_of: args.as_of,
                progress: std::io::stderr().is_terminal(),
            };
            let report = run::run_job(&job, &options).await?;
            // After publishing: a failed page is a warning, not a failed run.
            let span = tracing::info_span!("run", run_id = %report.run_id);
            tracing::Instrument::instrument(crate::report::write_after_run(&job), span).await;
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
        Command::Gen(args) => {
            let summary = datagen::generate(&args.options(), &args.out).await?;
            println!("generated {} in {}", summary, args.out.display());
            Ok(())
        }
        Command::Sql {
            job: args,
            commands,
            file,
            format,
            output,
        } => {
            let job = args.load()?;
            let options = ShellOptions {
                as_of: args.as_of,
                commands,
                file,
                format,
                output,
            };
            Ok(shell::run(&job, options).await?)
        }
        Command::Kpis { name, markdown } => {
            if markdown {
                print!("{}", definitions::markdown());
                return Ok(());
            }
            match name {
                None => print!("{}", definitions::listing()),
                Some(name) => {
                    let definition = definitions::find(&name).ok_or_else(|| {
                        Error::Usage(format!("no KPI named {name:?}; `cskpi kpis` lists them"))
                    })?;
                    print!("{}", definitions::detail(definition));
                }
            }
            Ok(())
        }
        Command::Validate { job: args, cluster } => {
            let mut job = args.load()?;
            cluster.apply(&mut job);
            let options = RunOptions {
                as_of: args.as_of,
                progress: false,
            };
            let report = run::validate_job(&job, &options).await?;
            println!(
                "as_of {}: inputs and job file {}",
                report.as_of,
                args.config.display()
            );
            for c in &report.inputs {
                let ratio = if c.visible > 0 {
                    100.0 * c.rejected as f64 / c.visible as f64
                } else {
                    0.0
                };
                println!(
                    "  {:<10} {:>10} rows, {:>8} rejected ({ratio:.2}%, limit {:.2}%)",
                    c.table,
                    c.visible,
                    c.rejected,
                    100.0 * report.max_reject_ratio
                );
            }
            for (input, reason, rows) in &report.reasons {
                println!("  reject {input:<10} {reason:<45} {rows:>8}");
            }
            match report.problem {
                Some(problem) => Err(problem),
                None => {
                    println!("ok: a run would go ahead");
                    Ok(())
                }
            }
        }
        Command::Report { job: args, output } => {
            let job = args.load()?;
            let location = crate::report::write(&job, args.as_of, output.as_deref()).await?;
            println!("report: {location}");
            Ok(())
        }
        Command::Recover { config } => {
            let job = JobConfig::load(&config)?;
            let recovery = run::recover(&job).await?;
            println!("{}: {recovery}", job.output.path);
            Ok(())
        }
        #[cfg(feature = "distributed")]
        Command::Scheduler(options) => {
            Ok(crate::cluster::processes::serve_scheduler(&options).await?)
        }
        #[cfg(feature = "distributed")]
        Command::Executor(options) => {
            Ok(crate::cluster::processes::serve_executor(&options).await?)
        }
        Command::Bench {
            customers,
            dir,
            layout,
            engine,
            cluster,
            generate_only,
        } => {
            let tmp = tempfile::tempdir().map_err(|e| SessionError::TempDir {
                dir: std::env::temp_dir().display().to_string(),
                message: e.to_string(),
            })?;
            let dir = dir.unwrap_or_else(|| tmp.path().join(format!("gen-{customers}")));
            let job_path = bench::prepare_data(customers, layout, &dir).await?;
            if generate_only {
                return Ok(());
            }
            let mut job = engine.load(&job_path)?;
            cluster.apply(&mut job);
            bench::run_benchmark(customers, &job).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header a generated job file starts with names a command that
    /// makes the same data: parsed back, it gives the same options.
    #[test]
    fn the_generated_job_file_names_the_command_that_made_it() {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let defaults = GenOptions {
            customers: 20,
            seed: 7,
            start: date(2023, 7, 1),
            end: date(2026, 6, 30),
            bad_row_rate: 0.0,
            layout: Layout::Customer,
            rows_per_file: datagen::DEFAULT_ROWS_PER_FILE,
        };
        let benchmark = GenOptions {
            bad_row_rate: 0.001,
            layout: Layout::Date,
            rows_per_file: 1234,
            ..defaults.clone()
        };
        for options in [defaults, benchmark] {
            let line = options.command_line();
            let args = line.split(' ').chain(["--out", "somewhere"]);
            let Command::Gen(args) = Cli::try_parse_from(args).unwrap().command else {
                panic!("{line} is not a gen command");
            };
            assert_eq!(args.options(), options, "{line}");
        }
    }
}
