//! `cskpi sql`: SQL over a job's inputs (as the run sees them at as_of),
//! every KPI view, the last run's outputs (schema `last_run`) and every UDF.
//! Interactive in the habits of psql and datafusion-cli (line editing and
//! history, statements end with `;`, backslash commands, Ctrl-C cancels the
//! running query, Ctrl-D quits), or non-interactive for scripts: `-c`, `-f`
//! or SQL on stdin, in table, csv, json, ndjson or parquet.
//!
//! Split as datafusion-cli is: this module holds the session and the loop,
//! [`command`] the backslash commands, [`input`] the cutting of input into
//! statements, [`print`] the output formats.

mod command;
mod input;
mod print;

use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::error::DataFusionError;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use datafusion::sql::parser::DFParser;
use rustyline::error::ReadlineError;

use crate::config::JobConfig;
use crate::engine::scratch::Scratch;
use crate::engine::session::SessionError;
use crate::engine::sql::quote_literal;
use crate::engine::{session, udf};
use crate::error::{Error, one_line};
use crate::{run, views};

pub use command::MetaCommand;
use input::{Step, split_input};
pub use print::Format;
use print::Printer;

/// The schema the last run's published tables are registered in.
pub const LAST_RUN_SCHEMA: &str = "last_run";

#[derive(Debug, Clone)]
pub struct ShellOptions {
    pub as_of: Option<NaiveDate>,
    /// `-c`: SQL (and backslash commands) to run, in order.
    pub commands: Vec<String>,
    /// `-f`: a file of SQL to run after the commands.
    pub file: Option<PathBuf>,
    pub format: Format,
    /// `-o`: write results here instead of stdout (required for parquet).
    pub output: Option<PathBuf>,
}

/// What goes wrong in the shell.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// Opening the session: the job's inputs, views or last run.
    #[error(transparent)]
    Open(Box<Error>),
    #[error("query engine: {0}")]
    Engine(#[from] DataFusionError),
    /// Reading or writing a file, stdin, stdout or the terminal; `source`
    /// keeps the io error, whose kind tells a closed pipe from a failure.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// A command used the wrong way (e.g. `--format parquet` without `-o`).
    #[error("{0}")]
    Usage(String),
}

impl ShellError {
    /// Maps an io error to one naming what was read or written.
    fn io(what: impl std::fmt::Display) -> impl Fn(io::Error) -> ShellError {
        let what = what.to_string();
        move |source| ShellError::Io {
            what: what.clone(),
            source,
        }
    }

    /// A terminal (line editor) failure, with the io error it may carry.
    fn terminal(e: ReadlineError) -> ShellError {
        let source = match e {
            ReadlineError::Io(source) => source,
            other => io::Error::other(other.to_string()),
        };
        ShellError::Io {
            what: "terminal".into(),
            source,
        }
    }
}

impl From<Error> for ShellError {
    fn from(e: Error) -> Self {
        ShellError::Open(Box::new(e))
    }
}

impl From<SessionError> for ShellError {
    fn from(e: SessionError) -> Self {
        ShellError::Open(Box::new(e.into()))
    }
}

impl From<datafusion::arrow::error::ArrowError> for ShellError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        ShellError::Engine(e.into())
    }
}

impl From<datafusion::parquet::errors::ParquetError> for ShellError {
    fn from(e: datafusion::parquet::errors::ParquetError) -> Self {
        ShellError::Engine(e.into())
    }
}

/// The command line's error: the library's, with the shell's usage and io
/// errors as their kinds (exit codes 2 and 1).
impl From<ShellError> for Error {
    fn from(e: ShellError) -> Self {
        match e {
            ShellError::Open(e) => *e,
            ShellError::Engine(e) => Error::Engine(e),
            ShellError::Io { what, source } => Error::Io { what, source },
            ShellError::Usage(message) => Error::Usage(message),
        }
    }
}

/// The session the shell queries: inputs (checked ones stored in
/// `scratch`, `views::open_checked_inputs`), views, last run, UDFs.
pub async fn open_session(
    job: &JobConfig,
    as_of: Option<NaiveDate>,
    scratch: &Scratch,
) -> Result<SessionContext, ShellError> {
    let as_of = views::resolve_as_of(job, as_of);
    let (ctx, window) = views::open_checked_inputs(job, as_of, scratch).await?;
    // Hash joins for the KPI views, as a run plans them: the session's
    // default of sort-merge joins, planned over the views, also trips a
    // DataFusion 55 sanity check when a query filters a join key with a
    // constant (WHERE month = DATE '...'). Through set_options, so that an
    // option set in the environment still wins, as in a run.
    session::prefer_hash_joins(&ctx).map_err(Error::from)?;
    views::register_kpi_views(&ctx, job, &window).await?;
    register_last_run(&ctx, &job.output.path).await?;
    Ok(ctx)
}

/// Registers each published table of `output` as `last_run.<table>`;
/// tables not there (no run yet) are skipped.
async fn register_last_run(ctx: &SessionContext, output: &str) -> Result<(), ShellError> {
    let catalog = ctx
        .catalog(session::CATALOG)
        .expect("the session has the cskpi catalog");
    catalog.register_schema(LAST_RUN_SCHEMA, Arc::new(MemorySchemaProvider::new()))?;
    let base = output.trim_end_matches('/');
    for table in run::output_tables() {
        let location = format!("{base}/{}/", table.name);
        if !base.starts_with("s3://") && !Path::new(&location).is_dir() {
            continue;
        }
        let name = format!("{LAST_RUN_SCHEMA}.{}", table.name);
        if let Err(e) = ctx
            .register_parquet(&name, &location, ParquetReadOptions::default())
            .await
        {
            tracing::debug!(table = table.name, error = %e, "no published table");
        }
    }
    Ok(())
}

/// The shell's state: the session and where results go.
pub struct Shell {
    ctx: SessionContext,
    printer: Printer,
}

/// What the caller does after a step.
#[derive(PartialEq)]
enum Flow {
    Continue,
    Quit,
}

impl Shell {
    pub fn new(
        ctx: SessionContext,
        format: Format,
        output: Option<PathBuf>,
        interactive: bool,
    ) -> Self {
        Self {
            ctx,
            printer: Printer::new(format, output, interactive),
        }
    }

    /// Runs one SQL statement, printing its rows; Ctrl-C cancels it when
    /// `cancellable`.
    async fn run_sql(&mut self, sql: &str, cancellable: bool) -> Result<(), ShellError> {
        let started = Instant::now();
        let ctx = self.ctx.clone();
        let query = async move {
            let statements = DFParser::parse_sql(sql)?;
            let mut batches = Vec::new();
            for statement in statements {
                let plan = ctx.state().statement_to_plan(statement).await?;
                batches = ctx.execute_logical_plan(plan).await?.collect().await?;
            }
            Ok::<_, DataFusionError>(batches)
        };
        let batches = if cancellable {
            tokio::select! {
                result = query => result?,
                _ = tokio::signal::ctrl_c() => {
                    println!("Query cancelled.");
                    return Ok(());
                }
            }
        } else {
            query.await?
        };
        self.printer
            .print(&batches, started.elapsed().as_secs_f64())
    }

    async fn run_meta(&mut self, line: &str, cancellable: bool) -> Result<Flow, ShellError> {
        match line.parse::<MetaCommand>()? {
            MetaCommand::Quit => return Ok(Flow::Quit),
            MetaCommand::Help => println!("{}", MetaCommand::help(&udf::names())),
            MetaCommand::ListTables => {
                self.run_sql(
                    "SELECT table_schema, table_name, table_type FROM information_schema.tables \
                     WHERE table_schema <> 'information_schema' \
                     ORDER BY table_schema, table_name",
                    cancellable,
                )
                .await?
            }
            MetaCommand::Describe(table) => {
                let (schema, name) = match table.split_once('.') {
                    Some((s, n)) => (s, n),
                    None => ("public", table.as_str()),
                };
                // A KPI table's columns also show what they mean.
                let meanings = crate::kpi::definitions::column_meanings(name);
                let (meaning, join) = if meanings.is_empty() {
                    (String::new(), String::new())
                } else {
                    let rows: Vec<String> = meanings
                        .iter()
                        .map(|(column, text)| {
                            format!("({}, {})", quote_literal(column), quote_literal(text))
                        })
                        .collect();
                    (
                        ", m.meaning".to_string(),
                        format!(
                            " LEFT JOIN (VALUES {}) AS m(column_name, meaning) \
                             ON m.column_name = c.column_name",
                            rows.join(", ")
                        ),
                    )
                };
                self.run_sql(
                    &format!(
                        "SELECT c.column_name, c.data_type, c.is_nullable{meaning} \
                         FROM information_schema.columns c{join} \
                         WHERE c.table_name = {} AND c.table_schema = {} \
                         ORDER BY c.ordinal_position",
                        quote_literal(name),
                        quote_literal(schema)
                    ),
                    cancellable,
                )
                .await?
            }
            MetaCommand::Include(file) => {
                let text =
                    std::fs::read_to_string(&file).map_err(ShellError::io(file.display()))?;
                return Box::pin(self.run_text(&text, cancellable)).await;
            }
            MetaCommand::SetFormat(format) => {
                self.printer.format = format;
                println!("Output format is {}.", format.name());
            }
        }
        Ok(Flow::Continue)
    }

    async fn run_step(&mut self, step: Step, cancellable: bool) -> Result<Flow, ShellError> {
        match step {
            Step::Sql(sql) => self
                .run_sql(&sql, cancellable)
                .await
                .map(|()| Flow::Continue),
            Step::Meta(line) => self.run_meta(&line, cancellable).await,
        }
    }

    /// Runs every statement and command of `text`; a statement without its
    /// final `;` is run too.
    async fn run_text(&mut self, text: &str, cancellable: bool) -> Result<Flow, ShellError> {
        let (mut steps, rest) = split_input(text);
        if !rest.trim().is_empty() {
            steps.push(Step::Sql(rest.trim().to_string()));
        }
        for step in steps {
            if self.run_step(step, cancellable).await? == Flow::Quit {
                return Ok(Flow::Quit);
            }
        }
        Ok(Flow::Continue)
    }

    /// The interactive loop; errors are printed and the shell goes on.
    pub async fn interactive(&mut self) -> Result<(), ShellError> {
        let mut editor = rustyline::DefaultEditor::new().map_err(ShellError::terminal)?;
        let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cskpi_history"));
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        println!("cskpi SQL shell. End statements with ';'. \\? for help, \\q or Ctrl-D to quit.");
        let mut buffer = String::new();
        loop {
            let prompt = if buffer.trim().is_empty() {
                "cskpi> "
            } else {
                "   ..> "
            };
            let line = tokio::task::block_in_place(|| editor.readline(prompt));
            match line {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    buffer.push_str(&line);
                    buffer.push('\n');
                    let (steps, rest) = split_input(&buffer);
                    buffer = rest;
                    for step in steps {
                        match self.run_step(step, true).await {
                            Ok(Flow::Quit) => {
                                save_history(&mut editor, history.as_deref());
                                return Ok(());
                            }
                            Ok(Flow::Continue) => {}
                            Err(e) => println!("Error: {}", one_line(&e)),
                        }
                    }
                }
                // Ctrl-C while typing: drop the statement being typed.
                Err(ReadlineError::Interrupted) => buffer.clear(),
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(ShellError::terminal(e)),
            }
        }
        save_history(&mut editor, history.as_deref());
        Ok(())
    }
}

fn save_history(editor: &mut rustyline::DefaultEditor, history: Option<&Path>) {
    if let Some(h) = history {
        let _ = editor.save_history(h);
    }
}

/// `cskpi sql`: interactive on a terminal without `-c`/`-f`; otherwise runs
/// the commands, the file, or the SQL read from stdin, stopping at the
/// first error.
pub async fn run(job: &JobConfig, options: ShellOptions) -> Result<(), ShellError> {
    if options.format == Format::Parquet && options.output.is_none() {
        return Err(ShellError::Usage("--format parquet needs -o FILE".into()));
    }
    // The shell's scratch goes when it ends, whatever the outcome (a killed
    // shell's goes with the next run's or shell's cleanup, engine/scratch.rs).
    Scratch::within(job, async |scratch| {
        run_in_scratch(job, options, scratch).await
    })
    .await
}

async fn run_in_scratch(
    job: &JobConfig,
    options: ShellOptions,
    scratch: &Scratch,
) -> Result<(), ShellError> {
    let ctx = open_session(job, options.as_of, scratch).await?;
    let scripted = !options.commands.is_empty() || options.file.is_some();
    let interactive = !scripted && io::stdin().is_terminal();
    let mut shell = Shell::new(ctx, options.format, options.output.clone(), interactive);
    if interactive {
        return shell.interactive().await;
    }
    let mut texts = options.commands.clone();
    if let Some(file) = &options.file {
        texts.push(std::fs::read_to_string(file).map_err(ShellError::io(file.display()))?);
    }
    if !scripted {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .map_err(ShellError::io("stdin"))?;
        texts.push(text);
    }
    for text in texts {
        if shell.run_text(&text, false).await? == Flow::Quit {
            break;
        }
    }
    Ok(())
}
