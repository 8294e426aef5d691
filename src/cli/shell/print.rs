//! Where the shell's results go and in which format: a table for people,
//! csv, json and ndjson for scripts, parquet for a file.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::json::writer::{JsonArray, LineDelimited};
use datafusion::arrow::json::{
    ArrayWriter, LineDelimitedWriter, WriterBuilder as JsonWriterBuilder,
};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::parquet::arrow::ArrowWriter;

use super::ShellError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Ndjson,
    Parquet,
}

impl Format {
    /// The formats that print text (`\pset format` takes these).
    pub const TEXT: [Format; 4] = [Format::Table, Format::Csv, Format::Json, Format::Ndjson];

    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Parquet => "parquet",
        }
    }
}

/// Where results go and in which format.
pub struct Printer {
    pub format: Format,
    output: Option<PathBuf>,
    interactive: bool,
    results: usize,
}

impl Printer {
    pub fn new(format: Format, output: Option<PathBuf>, interactive: bool) -> Self {
        Self {
            format,
            output,
            interactive,
            results: 0,
        }
    }

    /// Prints one query's result; a table gets a footer with its row count
    /// and time (on stderr when not interactive, so stdout stays data).
    pub fn print(&mut self, batches: &[RecordBatch], elapsed: f64) -> Result<(), ShellError> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        self.results += 1;
        if self.format == Format::Parquet {
            return self.write_parquet(batches);
        }
        let out: Box<dyn Write> = match &self.output {
            Some(path) => Box::new(
                File::options()
                    .create(true)
                    .append(self.results > 1)
                    .write(true)
                    .truncate(self.results == 1)
                    .open(path)
                    .map_err(ShellError::io(path.display()))?,
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

    fn write_parquet(&self, batches: &[RecordBatch]) -> Result<(), ShellError> {
        let path = self
            .output
            .as_ref()
            .ok_or_else(|| ShellError::Usage("--format parquet needs -o FILE".into()))?;
        if self.results > 1 {
            return Err(ShellError::Usage(
                "--format parquet writes one query's result; give one query".into(),
            ));
        }
        let schema = batches
            .first()
            .map(|b| b.schema())
            .ok_or_else(|| ShellError::Usage("the query returned no schema".into()))?;
        let file = File::create(path).map_err(ShellError::io(path.display()))?;
        let mut writer = ArrowWriter::try_new(file, schema, None)?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.close()?;
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
) -> Result<(), ShellError> {
    let io = ShellError::io("output");
    match format {
        Format::Table => {
            let text = pretty_format_batches(batches)?;
            writeln!(out, "{text}").map_err(&io)?;
        }
        Format::Csv => {
            let mut writer = CsvWriterBuilder::new().with_header(true).build(&mut *out);
            if batches.iter().all(|b| b.num_rows() == 0) {
                // The header alone, so a reader still sees the columns.
                if let Some(b) = batches.first() {
                    writer.write(b)?;
                }
            }
            for batch in batches.iter().filter(|b| b.num_rows() > 0) {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer: ArrayWriter<&mut dyn Write> = JsonWriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonArray>(&mut *out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
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
                writer.write(batch)?;
            }
            writer.finish()?;
        }
        Format::Parquet => unreachable!("written by Printer::write_parquet"),
    }
    out.flush().map_err(&io)
}
