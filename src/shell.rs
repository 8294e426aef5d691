//! `cskpi sql`: SQL over a job's inputs (as the run sees them at as_of),
//! every KPI view, the last run's outputs (schema `last_run`) and every UDF.
//! Interactive in the habits of psql and datafusion-cli (line editing and
//! history, statements end with `;`, backslash commands, Ctrl-C cancels the
//! running query, Ctrl-D quits), or non-interactive for scripts: `-c`, `-f`
//! or SQL on stdin, in table, csv, json, ndjson or parquet.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::json::writer::{JsonArray, LineDelimited};
use datafusion::arrow::json::{
    ArrayWriter, LineDelimitedWriter, WriterBuilder as JsonWriterBuilder,
};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::error::DataFusionError;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use datafusion::sql::parser::DFParser;
use rustyline::error::ReadlineError;

use crate::config::JobConfig;
use crate::error::Error;
use crate::run;
use crate::session;
use crate::views;

/// The schema the last run's published tables are registered in.
pub const LAST_RUN_SCHEMA: &str = "last_run";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Ndjson,
    Parquet,
}

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

/// Maps an io error to an error naming what was read or written.
fn io_error(what: impl std::fmt::Display) -> impl Fn(io::Error) -> Error {
    let what = what.to_string();
    move |source| Error::Io {
        what: what.clone(),
        source,
    }
}

/// A terminal (line editor) failure, with the io error it may carry.
fn terminal_error(e: ReadlineError) -> Error {
    match e {
        ReadlineError::Io(source) => Error::Io {
            what: "terminal".into(),
            source,
        },
        other => Error::Io {
            what: "terminal".into(),
            source: io::Error::other(other.to_string()),
        },
    }
}

/// The session the shell queries: inputs, views, last run, UDFs.
pub async fn open_session(
    job: &JobConfig,
    as_of: Option<NaiveDate>,
) -> Result<SessionContext, Error> {
    let as_of = views::resolve_as_of(job, as_of);
    let (ctx, _) = views::open_views(job, as_of).await?;
    // Hash joins, as a run plans its own queries: the session's default of
    // sort-merge joins, planned over the views, trips a DataFusion 55 sanity
    // check when a query filters a join key with a constant (WHERE month =
    // DATE '...'). Through set_options, so that an option set in the
    // environment still wins, as in a run.
    session::set_options(&ctx, &[("datafusion.optimizer.prefer_hash_join", "true")])?;
    register_last_run(&ctx, &job.output.path).await?;
    Ok(ctx)
}

/// Registers each published table of `output` as `last_run.<table>`;
/// tables not there (no run yet) are skipped.
async fn register_last_run(ctx: &SessionContext, output: &str) -> Result<(), Error> {
    let catalog = ctx
        .catalog(crate::session::CATALOG)
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

/// Where results go and in which format.
struct Printer {
    format: Format,
    output: Option<PathBuf>,
    interactive: bool,
    results: usize,
}

impl Printer {
    fn print(&mut self, batches: &[RecordBatch], elapsed: f64) -> Result<(), Error> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        self.results += 1;
        if self.format == Format::Parquet {
            let path = self
                .output
                .as_ref()
                .ok_or_else(|| Error::Usage("--format parquet needs -o FILE".into()))?;
            if self.results > 1 {
                return Err(Error::Usage(
                    "--format parquet writes one query's result; give one query".into(),
                ));
            }
            let schema = batches
                .first()
                .map(|b| b.schema())
                .ok_or_else(|| Error::Usage("the query returned no schema".into()))?;
            let file = File::create(path).map_err(io_error(path.display()))?;
            let mut writer =
                ArrowWriter::try_new(file, schema, None).map_err(DataFusionError::from)?;
            for batch in batches {
                writer.write(batch).map_err(DataFusionError::from)?;
            }
            writer.close().map_err(DataFusionError::from)?;
            return Ok(());
        }
        let out: Box<dyn Write> = match &self.output {
            Some(path) => Box::new(
                File::options()
                    .create(true)
                    .append(self.results > 1)
                    .write(true)
                    .truncate(self.results == 1)
                    .open(path)
                    .map_err(io_error(path.display()))?,
            ),
            None => Box::new(io::stdout().lock()),
        };
        let mut out = PipeWatch {
            inner: out,
            closed: false,
        };
        let written = write_batches(&mut out, self.format, batches);
        match written {
            // The reader of stdout went away (`| head`): not an error for a
            // script. Told by the io error's kind as it happens, because
            // writers (arrow's CSV writer) keep only its text.
            Err(_) if out.closed => return Ok(()),
            other => other?,
        }
        if self.format == Format::Table {
            let footer = format!(
                "{rows} row{} in {elapsed:.3} s",
                if rows == 1 { "" } else { "s" }
            );
            if self.interactive {
                println!("{footer}\n");
            } else {
                eprintln!("{footer}");
            }
        }
        Ok(())
    }
}

/// A writer that notes when its reader has gone (a broken pipe).
struct PipeWatch<W: Write> {
    inner: W,
    closed: bool,
}

impl<W: Write> PipeWatch<W> {
    fn watch<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result
            && e.kind() == io::ErrorKind::BrokenPipe
        {
            self.closed = true;
        }
        result
    }
}

impl<W: Write> Write for PipeWatch<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(buf);
        self.watch(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush();
        self.watch(result)
    }
}

fn write_batches(
    out: &mut dyn Write,
    format: Format,
    batches: &[RecordBatch],
) -> Result<(), Error> {
    let arrow = |e: datafusion::arrow::error::ArrowError| Error::Engine(e.into());
    let io = io_error("output");
    match format {
        Format::Table => {
            let text = pretty_format_batches(batches).map_err(arrow)?;
            writeln!(out, "{text}").map_err(&io)?;
        }
        Format::Csv => {
            let mut writer = CsvWriterBuilder::new().with_header(true).build(&mut *out);
            if batches.iter().all(|b| b.num_rows() == 0) {
                // The header alone, so a reader still sees the columns.
                if let Some(b) = batches.first() {
                    writer.write(b).map_err(arrow)?;
                }
            }
            for batch in batches.iter().filter(|b| b.num_rows() > 0) {
                writer.write(batch).map_err(arrow)?;
            }
        }
        Format::Json => {
            let mut writer: ArrayWriter<&mut dyn Write> = JsonWriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonArray>(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(arrow)?;
            }
            writer.finish().map_err(arrow)?;
            if batches.iter().all(|b| b.num_rows() == 0) {
                write!(out, "[]").map_err(&io)?;
            }
            writeln!(out).map_err(&io)?;
        }
        Format::Ndjson => {
            let mut writer: LineDelimitedWriter<&mut dyn Write> = JsonWriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, LineDelimited>(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(arrow)?;
            }
            writer.finish().map_err(arrow)?;
        }
        Format::Parquet => unreachable!("written by Printer::print"),
    }
    out.flush().map_err(&io)
}

/// What a piece of input asks for.
enum Step {
    Sql(String),
    Meta(String),
}

/// Splits input into backslash commands (a line starting with `\`) and SQL
/// statements (ending with `;` outside quotes and comments). Returns the
/// steps and the unfinished rest.
fn split_input(text: &str) -> (Vec<Step>, String) {
    let mut steps = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        if current.trim().is_empty() && line.trim_start().starts_with('\\') {
            steps.push(Step::Meta(line.trim().to_string()));
            current.clear();
            continue;
        }
        current.push_str(line);
        while let Some(end) = statement_end(&current) {
            let statement: String = current[..=end].to_string();
            if !statement.trim().trim_end_matches(';').trim().is_empty() {
                steps.push(Step::Sql(statement.trim().to_string()));
            }
            current = current[end + 1..].to_string();
        }
    }
    (steps, current)
}

/// Byte index of the first `;` that is outside quotes and comments.
fn statement_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut i, mut quote, mut line_comment, mut block_comment) = (0, None, false, false);
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if line_comment {
            if c == b'\n' {
                line_comment = false;
            }
        } else if block_comment {
            if c == b'*' && next == Some(b'/') {
                block_comment = false;
                i += 1;
            }
        } else if let Some(q) = quote {
            if c == q {
                quote = None;
            }
        } else {
            match c {
                b'\'' | b'"' => quote = Some(c),
                b'-' if next == Some(b'-') => line_comment = true,
                b'/' if next == Some(b'*') => {
                    block_comment = true;
                    i += 1;
                }
                b';' => return Some(i),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

const HELP: &str = "\
SQL statements end with ';'. Backslash commands:
  \\d              list tables and views (inputs, KPI views, last_run.*)
  \\d NAME         describe a table or view
  \\i FILE         run the SQL in FILE
  \\pset format F  output format: table, csv, json, ndjson
  \\?              this help
  \\q              quit (or Ctrl-D)
Ctrl-C cancels the running query (or clears the line being typed).
UDFs: nps(score), nps_moe(score), csat(score[, positive_min]),
comment_themes(text), comment_sentiment(text), mrr_snapshot_months(...),
renewal_due_months(...), customer_mrr_months(...), to_json(...).
`cskpi kpis` lists every KPI with its formula.";

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
            printer: Printer {
                format,
                output,
                interactive,
                results: 0,
            },
        }
    }

    /// Runs one SQL statement, printing its rows; Ctrl-C cancels it when
    /// `cancellable`.
    async fn run_sql(&mut self, sql: &str, cancellable: bool) -> Result<(), Error> {
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

    async fn run_meta(&mut self, command: &str, cancellable: bool) -> Result<Flow, Error> {
        let mut parts = command.split_whitespace();
        let name = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        match (name, args.as_slice()) {
            ("\\q", _) => return Ok(Flow::Quit),
            ("\\?", _) => println!("{HELP}"),
            ("\\d", []) => {
                self.run_sql(
                    "SELECT table_schema, table_name, table_type FROM information_schema.tables \
                     WHERE table_schema <> 'information_schema' \
                     ORDER BY table_schema, table_name",
                    cancellable,
                )
                .await?
            }
            ("\\d", [table]) => {
                let (schema, name) = match table.split_once('.') {
                    Some((s, n)) => (Some(s), n),
                    None => (None, *table),
                };
                let schema_filter = schema
                    .map(|s| format!(" AND table_schema = {}", crate::sql::quote_literal(s)))
                    .unwrap_or_else(|| " AND table_schema = 'public'".into());
                self.run_sql(
                    &format!(
                        "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
                         WHERE table_name = {}{schema_filter} ORDER BY ordinal_position",
                        crate::sql::quote_literal(name)
                    ),
                    cancellable,
                )
                .await?
            }
            ("\\i", [file]) => {
                let text = std::fs::read_to_string(file).map_err(io_error(file))?;
                return Box::pin(self.run_text(&text, cancellable)).await;
            }
            ("\\pset", ["format", format]) => {
                self.printer.format = match *format {
                    "table" => Format::Table,
                    "csv" => Format::Csv,
                    "json" => Format::Json,
                    "ndjson" => Format::Ndjson,
                    other => {
                        return Err(Error::Usage(format!(
                            "\\pset format {other}: expected table, csv, json or ndjson"
                        )));
                    }
                };
                println!("Output format is {format}.");
            }
            _ => {
                return Err(Error::Usage(format!(
                    "unknown command {command}; \\? lists the commands"
                )));
            }
        }
        Ok(Flow::Continue)
    }

    /// Runs every statement and command of `text`; a statement without its
    /// final `;` is run too.
    async fn run_text(&mut self, text: &str, cancellable: bool) -> Result<Flow, Error> {
        let (mut steps, rest) = split_input(text);
        if !rest.trim().is_empty() {
            steps.push(Step::Sql(rest.trim().to_string()));
        }
        for step in steps {
            let flow = match step {
                Step::Sql(sql) => self
                    .run_sql(&sql, cancellable)
                    .await
                    .map(|()| Flow::Continue),
                Step::Meta(command) => self.run_meta(&command, cancellable).await,
            }?;
            if flow == Flow::Quit {
                return Ok(Flow::Quit);
            }
        }
        Ok(Flow::Continue)
    }

    /// The interactive loop; errors are printed and the shell goes on.
    pub async fn interactive(&mut self) -> Result<(), Error> {
        let mut editor = rustyline::DefaultEditor::new().map_err(terminal_error)?;
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
                        let result = match step {
                            Step::Sql(sql) => {
                                self.run_sql(&sql, true).await.map(|()| Flow::Continue)
                            }
                            Step::Meta(command) => self.run_meta(&command, true).await,
                        };
                        match result {
                            Ok(Flow::Quit) => {
                                save_history(&mut editor, history.as_deref());
                                return Ok(());
                            }
                            Ok(Flow::Continue) => {}
                            Err(e) => println!("Error: {}", e.one_line()),
                        }
                    }
                }
                // Ctrl-C while typing: drop the statement being typed.
                Err(ReadlineError::Interrupted) => buffer.clear(),
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(terminal_error(e)),
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
pub async fn run(job: &JobConfig, options: ShellOptions) -> Result<(), Error> {
    if options.format == Format::Parquet && options.output.is_none() {
        return Err(Error::Usage("--format parquet needs -o FILE".into()));
    }
    let ctx = open_session(job, options.as_of).await?;
    let scripted = !options.commands.is_empty() || options.file.is_some();
    let interactive = !scripted && io::stdin().is_terminal();
    let mut shell = Shell::new(ctx, options.format, options.output.clone(), interactive);
    if interactive {
        return shell.interactive().await;
    }
    let mut texts = options.commands.clone();
    if let Some(file) = &options.file {
        texts.push(std::fs::read_to_string(file).map_err(io_error(file.display()))?);
    }
    if !scripted {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .map_err(io_error("stdin"))?;
        texts.push(text);
    }
    for text in texts {
        if shell.run_text(&text, false).await? == Flow::Quit {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_steps(text: &str) -> (Vec<String>, String) {
        let (steps, rest) = split_input(text);
        let steps = steps
            .into_iter()
            .map(|s| match s {
                Step::Sql(s) => s,
                Step::Meta(m) => format!("META {m}"),
            })
            .collect();
        (steps, rest)
    }

    #[test]
    fn statements_end_at_semicolons_outside_quotes_and_comments() {
        let (steps, rest) = sql_steps("SELECT ';' -- a; comment\n, 1;\nSELECT /* ; */ 2; SELECT 3");
        assert_eq!(
            steps,
            ["SELECT ';' -- a; comment\n, 1;", "SELECT /* ; */ 2;"]
        );
        assert_eq!(rest.trim(), "SELECT 3");
    }

    #[test]
    fn backslash_lines_are_commands() {
        let (steps, rest) = sql_steps("\\d\nSELECT 1;\n\\pset format csv\n");
        assert_eq!(steps, ["META \\d", "SELECT 1;", "META \\pset format csv"]);
        assert!(rest.is_empty());
    }
}
