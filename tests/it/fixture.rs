//! Small hand-made inputs written as Parquet into a temporary directory, a
//! job file pointing at them, and helpers to read the published outputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use cskpi::config::JobConfig;
use cskpi::run::{RunOptions, RunReport};
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

/// Generates a synthetic data set (0.2% bad rows) with its job.toml into `dir`.
pub async fn generate_dataset(
    dir: &Path,
    customers: u64,
    seed: u64,
    start: &str,
    end: &str,
) -> JobConfig {
    cskpi::datagen::generate(
        &cskpi::datagen::GenOptions {
            customers,
            seed,
            start: date(start),
            end: date(end),
            bad_row_rate: 0.002,
            layout: cskpi::datagen::Layout::Customer,
            rows_per_file: cskpi::datagen::DEFAULT_ROWS_PER_FILE,
        },
        dir,
    )
    .await
    .unwrap();
    JobConfig::load(&dir.join("job.toml")).unwrap()
}

/// The input table names, in registration order.
pub fn input_names() -> impl Iterator<Item = &'static str> {
    cskpi::inputs::ALL.into_iter().map(|t| t.name)
}

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn d32(s: &str) -> i32 {
    cskpi::calendar::to_date32(date(s))
}

fn ts(s: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M"))
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

pub struct Order<'a> {
    pub id: &'a str,
    pub customer: &'a str,
    pub date: &'a str,
    pub amount: f64,
    pub kind: &'a str,
    pub period: Option<(&'a str, &'a str)>,
}

/// A subscription line booked on its period start.
pub fn sub<'a>(
    id: &'a str,
    customer: &'a str,
    start: &'a str,
    end: &'a str,
    amount: f64,
) -> Order<'a> {
    Order {
        id,
        customer,
        date: start,
        amount,
        kind: "subscription",
        period: Some((start, end)),
    }
}

/// (ticket_id, customer_id, opened_at, resolved_at, contacts, reopened)
pub type TicketRow<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    i64,
    Option<bool>,
);

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub job_extra: String,
}

impl Fixture {
    pub fn new() -> Self {
        let f = Self {
            dir: tempfile::tempdir().unwrap(),
            job_extra: String::new(),
        };
        std::fs::create_dir_all(f.input_dir()).unwrap();
        f
    }

    pub fn input_dir(&self) -> PathBuf {
        self.dir.path().join("in")
    }

    pub fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn write(&self, name: &str, columns: Vec<(&str, ArrayRef)>) {
        write_parquet(&self.input_dir().join(format!("{name}.parquet")), columns);
    }

    /// (customer_id, signup_date, churn_date, segment)
    pub fn customers(&self, rows: &[(&str, &str, Option<&str>, Option<&str>)]) {
        self.write(
            "customers",
            vec![
                ("customer_id", strs(rows.iter().map(|r| Some(r.0)))),
                ("signup_date", dates(rows.iter().map(|r| Some(r.1)))),
                ("churn_date", dates(rows.iter().map(|r| r.2))),
                ("segment", strs(rows.iter().map(|r| r.3))),
            ],
        );
    }

    pub fn orders(&self, rows: &[Order]) {
        self.write(
            "orders",
            vec![
                ("order_id", strs(rows.iter().map(|r| Some(r.id)))),
                ("customer_id", strs(rows.iter().map(|r| Some(r.customer)))),
                ("order_date", dates(rows.iter().map(|r| Some(r.date)))),
                (
                    "amount",
                    Arc::new(Float64Array::from_iter_values(
                        rows.iter().map(|r| r.amount),
                    )),
                ),
                ("kind", strs(rows.iter().map(|r| Some(r.kind)))),
                (
                    "period_start",
                    dates(rows.iter().map(|r| r.period.map(|p| p.0))),
                ),
                (
                    "period_end",
                    dates(rows.iter().map(|r| r.period.map(|p| p.1))),
                ),
            ],
        );
    }

    /// (ticket_id, customer_id, opened_at, resolved_at, contacts, reopened)
    pub fn tickets(&self, rows: &[TicketRow]) {
        self.write(
            "tickets",
            vec![
                ("ticket_id", strs(rows.iter().map(|r| Some(r.0)))),
                ("customer_id", strs(rows.iter().map(|r| Some(r.1)))),
                ("opened_at", timestamps(rows.iter().map(|r| Some(r.2)))),
                ("resolved_at", timestamps(rows.iter().map(|r| r.3))),
                (
                    "contacts",
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))),
                ),
                (
                    "reopened",
                    Arc::new(BooleanArray::from(
                        rows.iter().map(|r| r.5).collect::<Vec<_>>(),
                    )),
                ),
            ],
        );
    }

    /// Survey responses without items or comments.
    pub fn surveys(&self, rows: &[SurveyRow]) {
        self.write(
            "surveys",
            vec![
                ("response_id", strs(rows.iter().map(|s| Some(s.0)))),
                ("customer_id", strs(rows.iter().map(|s| Some(s.1)))),
                ("responded_at", timestamps(rows.iter().map(|s| Some(s.2)))),
                ("survey", strs(rows.iter().map(|s| Some(s.3)))),
                ("score", floats(rows.iter().map(|s| Some(s.4)))),
            ],
        );
    }

    /// (customer_id, day, active_users, events)
    pub fn usage(&self, rows: &[(&str, &str, i64, i64)]) {
        self.write(
            "usage",
            vec![
                ("customer_id", strs(rows.iter().map(|u| Some(u.0)))),
                ("day", dates(rows.iter().map(|u| Some(u.1)))),
                ("active_users", ints(rows.iter().map(|u| Some(u.2)))),
                ("events", ints(rows.iter().map(|u| Some(u.3)))),
            ],
        );
    }

    pub fn no_tickets(&self) {
        self.tickets(&[]);
    }

    pub fn job_text(&self) -> String {
        let i = self.input_dir();
        let mut text = format!(
            "[input]\ncustomers = '{c}'\norders = '{o}'\ntickets = '{t}'\n",
            c = i.join("customers.parquet").display(),
            o = i.join("orders.parquet").display(),
            t = i.join("tickets.parquet").display(),
        );
        for optional in ["surveys", "usage", "costs"] {
            let p = i.join(format!("{optional}.parquet"));
            if p.exists() {
                text.push_str(&format!("{optional} = '{}'\n", p.display()));
            }
        }
        text.push_str(&format!(
            "[output]\npath = '{}'\n",
            self.out_dir().display()
        ));
        text.push_str(&self.job_extra);
        text
    }

    pub fn job(&self) -> JobConfig {
        JobConfig::parse(&self.job_text()).unwrap()
    }

    pub async fn run(&self, as_of: &str) -> Result<RunReport, cskpi::Error> {
        cskpi::run::run_job(
            &self.job(),
            &RunOptions {
                as_of: Some(date(as_of)),
                progress: false,
            },
        )
        .await
    }

    /// Rows of a query over the published tables, every value as text.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        query_outputs(&self.out_dir(), sql).await
    }
}

/// Expected rows written as string literals, owned as `rows()` returns them.
/// (response_id, customer_id, responded_at, survey, score)
pub type SurveyRow<'a> = (&'a str, &'a str, &'a str, &'a str, f64);

pub fn owned<'a, R: AsRef<[&'a str]>>(rows: &[R]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.as_ref().iter().map(|v| v.to_string()).collect())
        .collect()
}

/// A number printed by a query equals `expected` up to float noise.
pub fn close(got: &str, expected: f64) -> bool {
    (got.parse::<f64>().unwrap() - expected).abs() < 1e-9
}

/// A file of a published table: its path relative to the table and bytes.
pub type TableFile = (String, Vec<u8>);

/// Every file of a table's directory (partitioned or not), in path order;
/// a table stored as one file is that file.
pub fn table_files(out: &Path, table: &str) -> Vec<TableFile> {
    fn walk(root: &Path, dir: &Path, files: &mut Vec<TableFile>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                files.push((relative, std::fs::read(&path).unwrap()));
            }
        }
    }
    let root = out.join(table);
    if root.is_file() {
        return vec![(table.to_string(), std::fs::read(&root).unwrap())];
    }
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files.sort();
    files
}

pub async fn query_outputs(out: &Path, sql: &str) -> Vec<Vec<String>> {
    let ctx = SessionContext::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.path().is_dir() && !name.starts_with('.') {
            ctx.register_parquet(
                name.as_str(),
                &format!("{}/", entry.path().display()),
                ParquetReadOptions::default(),
            )
            .await
            .unwrap();
        }
    }
    session_rows(&ctx, sql).await
}

/// Rows of `sql` in `ctx`, every value as text.
pub async fn session_rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    batches_to_rows(&batches)
}

pub fn batches_to_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    rows
}

pub fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

pub fn strs<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from(values.collect::<Vec<_>>()))
}

pub fn dates<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(Date32Array::from(
        values.map(|v| v.map(d32)).collect::<Vec<_>>(),
    ))
}

pub fn timestamps<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from(values.map(|v| v.map(ts)).collect::<Vec<_>>())
            .with_timezone("UTC"),
    )
}

pub fn floats(values: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from(values.collect::<Vec<_>>()))
}

pub fn ints(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(Int64Array::from(values.collect::<Vec<_>>()))
}

#[allow(dead_code)]
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}
