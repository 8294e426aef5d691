//! `cskpi gen`: a deterministic synthetic data set in the input schema.
//!
//! Customers are generated one at a time from their own random stream
//! (seeded by the run seed and the customer number), buffered in chunks and
//! written as Parquet row groups, so memory stays flat whatever the number of
//! customers and the output does not depend on the chunk size.
//!
//! Behaviour modelled: monthly, quarterly and annual plans starting any day,
//! renewals (some late, within grace), upgrades and downgrades at renewal,
//! churn at the end of a paid period, reactivation after a gap, add-ons,
//! one-time setup fees, refunds, support tickets (multi-contact, reopened,
//! unresolved), NPS and CSAT surveys with English and Vietnamese comments,
//! CSI questionnaires driven by a latent satisfaction model, daily usage for
//! the last 120 days, and direct and overhead costs.
//!
//! Two layouts of the same rows ([`Layout`]): `date`, as warehouses and
//! lakes hold event tables (each table in the order its events happen, over
//! several part files, usage in hive month folders, money as
//! Decimal128(18,2)), and `customer`, every table clustered by customer in
//! one file with money as Float64. The date layout is the customer layout
//! sorted by event time, so both hold exactly the same rows and every KPI
//! must come out the same.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::ParquetReadOptions;
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::calendar::{self, add_months, from_month_index, month_index, to_date32};

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("gen: {0}")]
    Invalid(String),
    #[error("gen: writing {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("gen: laying out {table} by date: {source}")]
    Layout {
        table: String,
        source: datafusion::error::DataFusionError,
    },
    #[error("gen: {0}")]
    Session(#[from] crate::engine::session::SessionError),
}

/// How the event tables (orders, tickets, surveys, usage, costs) are laid
/// out on disk; customers is one file in customer order in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Layout {
    /// As warehouses hold them: rows in the order events happen (a day's
    /// rows in no customer order), split over part files of
    /// `rows_per_file` rows, usage in hive folders `month=YYYY-MM`, money
    /// as Decimal128(18,2).
    #[default]
    Date,
    /// Every table clustered by customer in one file, money as Float64.
    Customer,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    pub customers: u64,
    pub seed: u64,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub bad_row_rate: f64,
    pub layout: Layout,
    /// Rows per part file of the date layout.
    pub rows_per_file: usize,
}

impl GenOptions {
    /// The `cskpi gen` command that makes these files again, every option
    /// that changes the rows included: the bad-row rate also shifts the
    /// random stream, so a header without it names other data.
    pub fn command_line(&self) -> String {
        let layout = match self.layout {
            Layout::Date => "date",
            Layout::Customer => "customer",
        };
        let mut command = format!(
            "cskpi gen --customers {} --seed {} --start {} --end {} --layout {layout}",
            self.customers, self.seed, self.start, self.end
        );
        if self.bad_row_rate != 0.0 {
            command.push_str(&format!(" --bad-row-rate {}", self.bad_row_rate));
        }
        if self.rows_per_file != DEFAULT_ROWS_PER_FILE {
            command.push_str(&format!(" --rows-per-file {}", self.rows_per_file));
        }
        command
    }
}

/// The generator's version, written into the job file it makes: bumped
/// whenever the same options make different data (2: 150 days of usage),
/// so that `cskpi bench` never times a run on data an older generator made.
pub const GENERATOR_VERSION: u32 = 2;

/// The generator version named in the first line of a job file, if `cskpi
/// gen` made it: `Some(None)` for a generator from before versions were
/// written, `None` for a job file written by someone else.
pub fn generator_version_of(job_text: &str) -> Option<Option<u32>> {
    let first = job_text.lines().next()?;
    if !first.starts_with("# Made by `cskpi gen") {
        return None;
    }
    Some(
        first
            .split_once("(generator version ")
            .and_then(|(_, rest)| rest.split(')').next()?.parse().ok()),
    )
}

/// Rows per part file of the date layout unless told otherwise: tens of
/// files per table at a million customers, a handful at 100,000.
pub const DEFAULT_ROWS_PER_FILE: usize = 500_000;

/// Customers generated per row group.
const CHUNK: u64 = 5_000;
/// Days of usage history before `end`: the health score reads 120, and
/// its trend (4.12) the same 120 ending `health.trend_days` (30) earlier.
const USAGE_DAYS: i64 = 150;

pub const CSI_FACTORS: &[(&str, &[&str])] = &[
    ("image", &["img1", "img2", "img3"]),
    ("expectations", &["exp1", "exp2", "exp3"]),
    ("quality", &["qual1", "qual2", "qual3"]),
    ("value", &["val1", "val2"]),
    ("satisfaction", &["sat1", "sat2", "sat3"]),
    ("loyalty", &["loy1", "loy2"]),
];

const SEGMENTS: &[(&str, f64)] = &[("smb", 0.6), ("mid_market", 0.3), ("enterprise", 0.1)];

const COMMENTS_POSITIVE: &[&str] = &[
    "Great support team, very fast response",
    "Easy to use and the onboarding was smooth",
    "Love the new features, good value for the price",
    "Dịch vụ hỗ trợ rất tốt, phản hồi nhanh",
    "Sản phẩm dễ sử dụng, giá hợp lý",
    "Tính năng mới rất hữu ích",
];
const COMMENTS_NEUTRAL: &[&str] = &[
    "It works, but the reports could be better",
    "Billing page is a bit confusing",
    "Giao diện ổn nhưng cần thêm tính năng báo cáo",
    "Onboarding took longer than expected",
];
const COMMENTS_NEGATIVE: &[&str] = &[
    "Too expensive for what we get",
    "The app is slow and keeps crashing, many bugs",
    "Support did not solve my problem, not good",
    "Giá quá đắt so với chất lượng",
    "Ứng dụng chậm và hay bị lỗi",
    "Hỗ trợ không tốt, phải chờ rất lâu",
];

fn schema(fields: Vec<(&str, DataType, bool)>) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .into_iter()
            .map(|(n, t, null)| Field::new(n, t, null))
            .collect::<Vec<_>>(),
    ))
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

#[derive(Default)]
struct Customers {
    id: Vec<String>,
    signup: Vec<Option<i32>>,
    churn: Vec<Option<i32>>,
    segment: Vec<String>,
    country: Vec<String>,
}

#[derive(Default)]
struct Orders {
    id: Vec<Option<String>>,
    customer: Vec<String>,
    date: Vec<i32>,
    amount: Vec<Option<f64>>,
    kind: Vec<String>,
    start: Vec<Option<i32>>,
    end: Vec<Option<i32>>,
}

#[derive(Default)]
struct Tickets {
    id: Vec<String>,
    customer: Vec<String>,
    opened: Vec<i64>,
    resolved: Vec<Option<i64>>,
    contacts: Vec<i64>,
    reopened: Vec<Option<bool>>,
}

#[derive(Default)]
struct Surveys {
    response: Vec<String>,
    customer: Vec<String>,
    at: Vec<i64>,
    survey: Vec<String>,
    item: Vec<Option<String>>,
    score: Vec<f64>,
    comment: Vec<Option<String>>,
}

#[derive(Default)]
struct Usage {
    customer: Vec<String>,
    day: Vec<i32>,
    users: Vec<i64>,
    events: Vec<i64>,
}

#[derive(Default)]
struct Costs {
    month: Vec<i32>,
    category: Vec<String>,
    customer: Vec<Option<String>>,
    amount: Vec<f64>,
}

struct Sink {
    path: PathBuf,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    rows: u64,
}

impl Sink {
    fn new(dir: &Path, name: &str, schema: SchemaRef) -> Result<Self, GenError> {
        let path = dir.join(format!("{name}.parquet"));
        let file = File::create(&path).map_err(|e| GenError::Write {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("level 3")))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| {
            GenError::Write {
                path: path.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(Self {
            path,
            schema,
            writer,
            rows: 0,
        })
    }

    /// Writes one chunk of customers as a row group of its own (which keeps
    /// the writer's buffer small).
    fn write(&mut self, columns: Vec<ArrayRef>) -> Result<(), GenError> {
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| GenError::Write {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        self.append(&batch)?;
        self.writer.flush().map_err(|e| GenError::Write {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// Adds rows to the current row group (the writer starts a new one at
    /// its maximum row-group size).
    fn append(&mut self, batch: &RecordBatch) -> Result<(), GenError> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch).map_err(|e| GenError::Write {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    fn close(self) -> Result<u64, GenError> {
        self.writer.close().map_err(|e| GenError::Write {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        Ok(self.rows)
    }
}

fn micros(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Number of events of a Poisson process with the given mean (Knuth).
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
    let limit = (-mean).exp();
    let mut product: f64 = rng.random();
    let mut k = 0;
    while product > limit && k < 1000 {
        product *= rng.random::<f64>();
        k += 1;
    }
    k
}

struct Generator<'a> {
    options: &'a GenOptions,
    customers: Customers,
    orders: Orders,
    tickets: Tickets,
    surveys: Surveys,
    usage: Usage,
    costs: Costs,
}

impl Generator<'_> {
    fn customer(&mut self, n: u64) {
        let o = self.options;
        let mut rng = ChaCha8Rng::seed_from_u64(o.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n);
        let id = format!("C{:07}", n + 1);
        let span = (o.end - o.start).num_days().max(1);
        let signup = o.start + Duration::days(rng.random_range(0..span));
        let r: f64 = rng.random();
        let mut acc = 0.0;
        let segment = SEGMENTS
            .iter()
            .find(|(_, share)| {
                acc += share;
                r < acc
            })
            .map(|(s, _)| *s)
            .unwrap_or("smb");
        let (price_lo, price_hi, monthly_churn, tickets_per_month) = match segment {
            "enterprise" => (1500.0, 5000.0, 0.008, 2.0),
            "mid_market" => (200.0, 800.0, 0.015, 0.8),
            _ => (29.0, 99.0, 0.03, 0.3),
        };
        let plan_months = match rng.random_range(0..100) {
            0..60 => 1,
            60..75 => 3,
            _ => 12,
        };
        // A latent satisfaction in [0, 1] drives surveys, tickets and churn.
        let happiness: f64 = rng.random::<f64>().powf(0.7);
        let mut price = round2(rng.random_range(price_lo..price_hi));
        let has_addon = rng.random_bool(0.2);
        let addon_price = round2(price * rng.random_range(0.1..0.25));

        // Subscriptions, renewals, churn and reactivation.
        let mut churn_date: Option<NaiveDate> = None;
        let mut period_start = signup;
        let mut order_seq = 0;
        let mut active_ranges: Vec<(NaiveDate, NaiveDate)> = Vec::new();
        let mut range_start = signup;
        if segment != "smb" && rng.random_bool(0.4) {
            order_seq += 1;
            self.order(
                &mut rng,
                &id,
                order_seq,
                signup,
                price * 2.0,
                "one_time",
                None,
            );
        }
        while period_start <= o.end {
            let period_end = add_months(period_start, plan_months);
            let discount = if plan_months == 12 { 0.9 } else { 1.0 };
            order_seq += 1;
            let amount = round2(price * plan_months as f64 * discount);
            self.order(
                &mut rng,
                &id,
                order_seq,
                period_start,
                amount,
                "subscription",
                Some((period_start, period_end)),
            );
            if has_addon {
                // Add-ons bill monthly within the plan period.
                let mut s = period_start;
                while s < period_end && s <= o.end {
                    let e = add_months(s, 1).min(period_end);
                    order_seq += 1;
                    self.order(
                        &mut rng,
                        &id,
                        order_seq,
                        s,
                        addon_price,
                        "addon",
                        Some((s, e)),
                    );
                    s = e;
                }
            }
            if rng.random_bool(0.02) {
                order_seq += 1;
                let refund_day = period_start + Duration::days(rng.random_range(1..20));
                if refund_day <= o.end {
                    self.order(
                        &mut rng,
                        &id,
                        order_seq,
                        refund_day,
                        -round2(amount * 0.5),
                        "refund",
                        None,
                    );
                }
            }
            let churn_p = 1.0 - (1.0 - monthly_churn * (1.6 - happiness)).powi(plan_months);
            if rng.random_bool(churn_p.clamp(0.0, 1.0)) {
                active_ranges.push((range_start, period_end));
                churn_date = Some(period_end);
                if rng.random_bool(0.15) {
                    // Comes back after a gap, as the same customer.
                    let back = add_months(period_end, rng.random_range(1..5));
                    period_start = back;
                    range_start = back;
                    if back <= o.end {
                        churn_date = None;
                    }
                    continue;
                }
                break;
            }
            // Renewal: on time mostly, sometimes late within the grace window,
            // with an upgrade or a downgrade now and then.
            period_start = if rng.random_bool(0.05) {
                period_end + Duration::days(rng.random_range(3..20))
            } else {
                period_end
            };
            match rng.random_range(0..100) {
                0..8 => price = round2(price * rng.random_range(1.2..1.5)),
                8..12 => price = round2(price * rng.random_range(0.6..0.85)),
                _ => {}
            }
        }
        if churn_date.is_none() {
            active_ranges.push((range_start, o.end + Duration::days(1)));
        }
        let churn_date = churn_date.filter(|d| *d <= o.end);

        self.customers.id.push(id.clone());
        self.customers.signup.push(Some(to_date32(signup)));
        self.customers.churn.push(churn_date.map(to_date32));
        self.customers.segment.push(segment.into());
        self.customers
            .country
            .push(pick(&mut rng, &["VN", "US", "SG", "DE"]).to_string());

        self.activity(
            &mut rng,
            &id,
            segment,
            happiness,
            tickets_per_month,
            &active_ranges,
        );
        self.direct_costs(&mut rng, &id, segment, signup, &active_ranges);
    }

    #[allow(clippy::too_many_arguments)]
    fn order(
        &mut self,
        rng: &mut ChaCha8Rng,
        customer: &str,
        seq: u32,
        date: NaiveDate,
        amount: f64,
        kind: &str,
        period: Option<(NaiveDate, NaiveDate)>,
    ) {
        if date > self.options.end {
            return;
        }
        let o = &mut self.orders;
        let id = format!("{customer}-O{seq:04}");
        o.id.push(Some(id.clone()));
        o.customer.push(customer.into());
        o.date.push(to_date32(date));
        o.amount.push(Some(round2(amount)));
        o.kind.push(kind.into());
        o.start.push(period.map(|p| to_date32(p.0)));
        o.end.push(period.map(|p| to_date32(p.1)));
        if self.options.bad_row_rate > 0.0 && rng.random_bool(self.options.bad_row_rate) {
            let last = o.id.len() - 1;
            match rng.random_range(0..4) {
                0 => o.amount[last] = None,
                1 => o.kind[last] = "gift".into(),
                2 => {
                    // a duplicate of the line just written
                    o.id.push(Some(id));
                    o.customer.push(customer.into());
                    o.date.push(to_date32(date));
                    o.amount.push(Some(round2(amount)));
                    o.kind.push(kind.into());
                    o.start.push(period.map(|p| to_date32(p.0)));
                    o.end.push(period.map(|p| to_date32(p.1)));
                }
                _ => o.customer[last] = "C-UNKNOWN".into(),
            }
        }
    }

    fn activity(
        &mut self,
        rng: &mut ChaCha8Rng,
        id: &str,
        segment: &str,
        happiness: f64,
        tickets_per_month: f64,
        active: &[(NaiveDate, NaiveDate)],
    ) {
        let end = self.options.end;
        let mut ticket_seq = 0;
        let mut response_seq = 0;
        for &(from, to) in active {
            let to = to.min(end + Duration::days(1));
            // Tickets, month by month.
            for m in month_index(from)..=month_index(to - Duration::days(1)) {
                let month = from_month_index(m);
                let mean = tickets_per_month * (1.5 - happiness);
                for _ in 0..poisson(rng, mean) {
                    let day = month + Duration::days(rng.random_range(0..28));
                    if day < from || day >= to {
                        continue;
                    }
                    let opened = day
                        .and_hms_opt(rng.random_range(7..19), rng.random_range(0..60), 0)
                        .expect("valid time");
                    ticket_seq += 1;
                    let hours = -20.0 * (1.0 - rng.random::<f64>()).ln();
                    let resolved = opened + Duration::minutes((hours * 60.0) as i64 + 5);
                    let resolved =
                        (rng.random_bool(0.9) && resolved.date() <= end).then_some(resolved);
                    let contacts = if rng.random_bool(0.6) {
                        1
                    } else {
                        rng.random_range(2..5)
                    };
                    let t = &mut self.tickets;
                    t.id.push(format!("{id}-T{ticket_seq:04}"));
                    t.customer.push(id.into());
                    t.opened.push(micros(opened));
                    t.resolved.push(resolved.map(micros));
                    t.contacts.push(contacts);
                    t.reopened.push(if rng.random_bool(0.1) {
                        None
                    } else {
                        Some(rng.random_bool(0.08))
                    });
                    if let Some(r) = resolved
                        && rng.random_bool(0.3)
                    {
                        response_seq += 1;
                        let score = (1.0 + 4.0 * happiness + rng.random_range(-1.0..1.0))
                            .round()
                            .clamp(1.0, 5.0);
                        self.survey(
                            rng,
                            id,
                            response_seq,
                            r + Duration::hours(2),
                            "csat",
                            None,
                            score,
                            None,
                        );
                    }
                }
            }
            // NPS every quarter, answered sometimes.
            let mut d = from + Duration::days(30);
            while d < to {
                if rng.random_bool(0.35) {
                    response_seq += 1;
                    let score = (10.0 * happiness + rng.random_range(-2.0..2.0))
                        .round()
                        .clamp(0.0, 10.0)
                        // rounding -0.4 gives -0.0, which readers print as "-0"
                        + 0.0;
                    let comment = rng.random_bool(0.4).then(|| {
                        let pool = if score >= 9.0 {
                            COMMENTS_POSITIVE
                        } else if score >= 7.0 {
                            COMMENTS_NEUTRAL
                        } else {
                            COMMENTS_NEGATIVE
                        };
                        pick(rng, pool).to_string()
                    });
                    let at = d
                        .and_hms_opt(rng.random_range(8..22), 0, 0)
                        .expect("valid time");
                    self.survey(rng, id, response_seq, at, "nps", None, score, comment);
                }
                d += Duration::days(91);
            }
            // A yearly CSI questionnaire from some customers.
            let mut d = from + Duration::days(60);
            while d < to {
                if rng.random_bool(0.3) {
                    response_seq += 1;
                    let at = d.and_hms_opt(10, 0, 0).expect("valid time");
                    self.csi_response(rng, id, response_seq, at, happiness);
                }
                d += Duration::days(365);
            }
        }
        // Daily usage over the last USAGE_DAYS days while active.
        let base = match segment {
            "enterprise" => 400.0,
            "mid_market" => 80.0,
            _ => 15.0,
        };
        let trend = rng.random_range(-0.4..0.4);
        for back in (0..USAGE_DAYS).rev() {
            let day = end - Duration::days(back);
            if !active.iter().any(|&(f, t)| day >= f && day < t) || !rng.random_bool(0.7) {
                continue;
            }
            let progress = 1.0 - back as f64 / USAGE_DAYS as f64;
            let mean = base * (0.5 + happiness) * (1.0 + trend * progress);
            let events = poisson(rng, mean.min(500.0)) as i64
                + if mean > 500.0 {
                    (mean - 500.0) as i64
                } else {
                    0
                };
            let u = &mut self.usage;
            u.customer.push(id.into());
            u.day.push(to_date32(day));
            u.users.push(1 + events / 20);
            u.events.push(events);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn survey(
        &mut self,
        rng: &mut ChaCha8Rng,
        customer: &str,
        seq: u32,
        at: NaiveDateTime,
        survey: &str,
        item: Option<&str>,
        mut score: f64,
        comment: Option<String>,
    ) {
        if at.date() > self.options.end {
            return;
        }
        if survey == "nps"
            && self.options.bad_row_rate > 0.0
            && rng.random_bool(self.options.bad_row_rate)
        {
            score = 11.0;
        }
        let s = &mut self.surveys;
        s.response.push(format!("{customer}-R{seq:04}"));
        s.customer.push(customer.into());
        s.at.push(micros(at));
        s.survey.push(survey.into());
        s.item.push(item.map(String::from));
        s.score.push(score);
        s.comment.push(comment);
    }

    /// Items of a latent chain image -> expectations -> quality -> value ->
    /// satisfaction -> loyalty, each item = its factor + noise, on 1-10.
    fn csi_response(
        &mut self,
        rng: &mut ChaCha8Rng,
        customer: &str,
        seq: u32,
        at: NaiveDateTime,
        happiness: f64,
    ) {
        let mut noise = |scale: f64| rng.random_range(-scale..scale);
        let image = 0.6 * happiness + 0.4 * noise(0.5).abs();
        let expectations = 0.7 * image + 0.3 * happiness + noise(0.1);
        let quality = 0.5 * expectations + 0.5 * happiness + noise(0.1);
        let value = 0.6 * quality + 0.4 * happiness + noise(0.1);
        let satisfaction = 0.4 * quality + 0.3 * value + 0.3 * happiness + noise(0.05);
        let loyalty = 0.7 * satisfaction + 0.3 * image + noise(0.1);
        let latent = [image, expectations, quality, value, satisfaction, loyalty];
        for ((_, items), level) in CSI_FACTORS.iter().zip(latent) {
            for item in *items {
                let score = (1.0 + 9.0 * level + rng.random_range(-1.2..1.2))
                    .round()
                    .clamp(1.0, 10.0);
                self.survey(rng, customer, seq, at, "csi", Some(item), score, None);
            }
        }
    }

    fn direct_costs(
        &mut self,
        rng: &mut ChaCha8Rng,
        id: &str,
        segment: &str,
        signup: NaiveDate,
        active: &[(NaiveDate, NaiveDate)],
    ) {
        let c = &mut self.costs;
        c.month.push(to_date32(signup.with_day(1).expect("day 1")));
        c.category.push("acquisition".into());
        c.customer.push(Some(id.into()));
        c.amount.push(round2(
            rng.random_range(50.0..400.0) * if segment == "enterprise" { 8.0 } else { 1.0 },
        ));
        if segment == "enterprise" {
            for &(from, to) in active {
                let to = to.min(self.options.end + Duration::days(1));
                for m in month_index(from)..month_index(to) {
                    c.month.push(to_date32(from_month_index(m)));
                    c.category.push("retention".into());
                    c.customer.push(Some(id.into()));
                    c.amount.push(round2(rng.random_range(150.0..300.0)));
                }
            }
        }
    }

    /// Monthly overhead retention and service costs (no customer).
    fn overhead_costs(&mut self) {
        let o = self.options;
        let mut rng = ChaCha8Rng::seed_from_u64(o.seed ^ 0x0BAD_C0FF_EE00);
        let scale = o.customers as f64;
        for m in month_index(o.start)..=month_index(o.end) {
            for (category, per_customer) in [("retention", 4.0), ("service", 6.0)] {
                self.costs.month.push(to_date32(from_month_index(m)));
                self.costs.category.push(category.into());
                self.costs.customer.push(None);
                self.costs
                    .amount
                    .push(round2(scale * per_customer * rng.random_range(0.8..1.2)));
            }
        }
    }
}

struct Sinks {
    customers: Sink,
    orders: Sink,
    tickets: Sink,
    surveys: Sink,
    usage: Sink,
    costs: Sink,
}

fn strings(v: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}
fn opt_strings(v: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}
fn timestamps(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}
fn opt_timestamps(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

impl Sinks {
    fn open(dir: &Path) -> Result<Self, GenError> {
        use DataType::*;
        Ok(Self {
            customers: Sink::new(
                dir,
                "customers",
                schema(vec![
                    ("customer_id", Utf8, false),
                    ("signup_date", Date32, true),
                    ("churn_date", Date32, true),
                    ("segment", Utf8, true),
                    ("country", Utf8, true),
                ]),
            )?,
            orders: Sink::new(
                dir,
                "orders",
                schema(vec![
                    ("order_id", Utf8, true),
                    ("customer_id", Utf8, false),
                    ("order_date", Date32, false),
                    ("amount", Float64, true),
                    ("kind", Utf8, false),
                    ("period_start", Date32, true),
                    ("period_end", Date32, true),
                ]),
            )?,
            tickets: Sink::new(
                dir,
                "tickets",
                schema(vec![
                    ("ticket_id", Utf8, false),
                    ("customer_id", Utf8, false),
                    ("opened_at", ts_type(), false),
                    ("resolved_at", ts_type(), true),
                    ("contacts", Int64, false),
                    ("reopened", Boolean, true),
                ]),
            )?,
            surveys: Sink::new(
                dir,
                "surveys",
                schema(vec![
                    ("response_id", Utf8, false),
                    ("customer_id", Utf8, false),
                    ("responded_at", ts_type(), false),
                    ("survey", Utf8, false),
                    ("item", Utf8, true),
                    ("score", Float64, false),
                    ("comment", Utf8, true),
                ]),
            )?,
            usage: Sink::new(
                dir,
                "usage",
                schema(vec![
                    ("customer_id", Utf8, false),
                    ("day", Date32, false),
                    ("active_users", Int64, false),
                    ("events", Int64, false),
                ]),
            )?,
            costs: Sink::new(
                dir,
                "costs",
                schema(vec![
                    ("month", Date32, false),
                    ("category", Utf8, false),
                    ("customer_id", Utf8, true),
                    ("amount", Float64, false),
                ]),
            )?,
        })
    }

    fn flush(&mut self, g: &mut Generator) -> Result<(), GenError> {
        let c = std::mem::take(&mut g.customers);
        self.customers.write(vec![
            strings(c.id),
            Arc::new(Date32Array::from(c.signup)),
            Arc::new(Date32Array::from(c.churn)),
            strings(c.segment),
            strings(c.country),
        ])?;
        let o = std::mem::take(&mut g.orders);
        self.orders.write(vec![
            opt_strings(o.id),
            strings(o.customer),
            Arc::new(Date32Array::from(o.date)),
            Arc::new(Float64Array::from(o.amount)),
            strings(o.kind),
            Arc::new(Date32Array::from(o.start)),
            Arc::new(Date32Array::from(o.end)),
        ])?;
        let t = std::mem::take(&mut g.tickets);
        self.tickets.write(vec![
            strings(t.id),
            strings(t.customer),
            timestamps(t.opened),
            opt_timestamps(t.resolved),
            Arc::new(Int64Array::from(t.contacts)),
            Arc::new(BooleanArray::from(t.reopened)),
        ])?;
        let s = std::mem::take(&mut g.surveys);
        self.surveys.write(vec![
            strings(s.response),
            strings(s.customer),
            timestamps(s.at),
            strings(s.survey),
            opt_strings(s.item),
            Arc::new(Float64Array::from(s.score)),
            opt_strings(s.comment),
        ])?;
        let u = std::mem::take(&mut g.usage);
        self.usage.write(vec![
            strings(u.customer),
            Arc::new(Date32Array::from(u.day)),
            Arc::new(Int64Array::from(u.users)),
            Arc::new(Int64Array::from(u.events)),
        ])?;
        let k = std::mem::take(&mut g.costs);
        self.costs.write(vec![
            Arc::new(Date32Array::from(k.month)),
            strings(k.category),
            opt_strings(k.customer),
            Arc::new(Float64Array::from(k.amount)),
        ])?;
        Ok(())
    }
}

/// Writes the data set and its `job.toml` into `out` in the options'
/// layout; returns a one-line summary of row counts.
pub async fn generate(options: &GenOptions, out: &Path) -> Result<String, GenError> {
    if options.end <= options.start {
        return Err(GenError::Invalid("--end must be after --start".into()));
    }
    if !(0.0..0.5).contains(&options.bad_row_rate) {
        return Err(GenError::Invalid(
            "--bad-row-rate must be in [0, 0.5)".into(),
        ));
    }
    if options.rows_per_file == 0 {
        return Err(GenError::Invalid(
            "--rows-per-file must be at least 1".into(),
        ));
    }
    create_dir(out)?;
    let counts = match options.layout {
        Layout::Customer => generate_by_customer(options, out)?,
        Layout::Date => {
            // The customer layout first, in a folder of its own, then each
            // event table sorted by event time from there.
            let staged = tempfile::Builder::new()
                .prefix(".cskpi-gen-")
                .tempdir_in(out)
                .map_err(|e| GenError::Write {
                    path: out.into(),
                    message: e.to_string(),
                })?;
            let counts = generate_by_customer(options, staged.path())?;
            lay_out_by_date(staged.path(), out, options.rows_per_file).await?;
            let customers = out.join("customers.parquet");
            fs::rename(staged.path().join("customers.parquet"), &customers).map_err(|e| {
                GenError::Write {
                    path: customers,
                    message: e.to_string(),
                }
            })?;
            counts
        }
    };
    let job_path = out.join("job.toml");
    fs::write(&job_path, job_toml(options)).map_err(|e| GenError::Write {
        path: job_path,
        message: e.to_string(),
    })?;
    Ok(counts
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect::<Vec<_>>()
        .join(", "))
}

fn create_dir(dir: &Path) -> Result<(), GenError> {
    fs::create_dir_all(dir).map_err(|e| GenError::Write {
        path: dir.into(),
        message: e.to_string(),
    })
}

/// Writes `<out>/{customers,orders,tickets,surveys,usage,costs}.parquet`,
/// each clustered by customer; returns the row count of each.
fn generate_by_customer(
    options: &GenOptions,
    out: &Path,
) -> Result<Vec<(&'static str, u64)>, GenError> {
    let mut sinks = Sinks::open(out)?;
    let mut g = Generator {
        options,
        customers: Customers::default(),
        orders: Orders::default(),
        tickets: Tickets::default(),
        surveys: Surveys::default(),
        usage: Usage::default(),
        costs: Costs::default(),
    };
    for n in 0..options.customers {
        g.customer(n);
        if (n + 1) % CHUNK == 0 {
            sinks.flush(&mut g)?;
        }
    }
    g.overhead_costs();
    sinks.flush(&mut g)?;
    Ok(vec![
        ("customers", sinks.customers.close()?),
        ("orders", sinks.orders.close()?),
        ("tickets", sinks.tickets.close()?),
        ("surveys", sinks.surveys.close()?),
        ("usage", sinks.usage.close()?),
        ("costs", sinks.costs.close()?),
    ])
}

/// An event table of the date layout: its columns as written and the order
/// of its rows.
struct EventTable {
    name: &'static str,
    /// Money as Decimal128(18,2), as warehouses keep it.
    columns: &'static str,
    /// The event's date or time first. Within one date or time the ids are
    /// compared reversed (last character first): rows of a day then follow
    /// no customer order, as a day's loads would, while the order stays a
    /// pure function of the rows (deterministic; only identical duplicate
    /// rows tie).
    order_by: &'static str,
    /// A Date32 column whose month names the row's hive folder (`month=YYYY-MM`).
    month_folders: Option<&'static str>,
}

const EVENT_TABLES: [EventTable; 5] = [
    EventTable {
        name: "orders",
        columns: "order_id, customer_id, order_date, CAST(amount AS DECIMAL(18, 2)) AS amount, \
                  kind, period_start, period_end",
        order_by: "order_date, reverse(order_id)",
        month_folders: None,
    },
    EventTable {
        name: "tickets",
        columns: "ticket_id, customer_id, opened_at, resolved_at, contacts, reopened",
        order_by: "opened_at, reverse(ticket_id)",
        month_folders: None,
    },
    EventTable {
        name: "surveys",
        columns: "response_id, customer_id, responded_at, survey, item, score, comment",
        order_by: "responded_at, reverse(response_id), item",
        month_folders: None,
    },
    EventTable {
        name: "usage",
        columns: "customer_id, day, active_users, events",
        order_by: "day, reverse(customer_id)",
        month_folders: Some("day"),
    },
    EventTable {
        name: "costs",
        columns: "month, category, customer_id, CAST(amount AS DECIMAL(18, 2)) AS amount",
        order_by: "month, category, reverse(customer_id) NULLS FIRST, amount",
        month_folders: None,
    },
];

/// Writes every event table of the customer layout in `from` to
/// `<out>/<table>/` in event order (DataFusion sorts, spilling to disk when
/// a table does not fit in memory).
async fn lay_out_by_date(from: &Path, out: &Path, rows_per_file: usize) -> Result<(), GenError> {
    let ctx = crate::engine::session::context(
        crate::engine::session::session_config()?,
        crate::engine::session::runtime(None, None)?,
    );
    for table in &EVENT_TABLES {
        let engine = |source| GenError::Layout {
            table: table.name.into(),
            source,
        };
        let staged = from.join(format!("{}.parquet", table.name));
        ctx.register_parquet(
            table.name,
            &staged.display().to_string(),
            ParquetReadOptions::default(),
        )
        .await
        .map_err(engine)?;
        let frame = ctx
            .sql(&format!(
                "SELECT {} FROM {} ORDER BY {}",
                table.columns, table.name, table.order_by
            ))
            .await
            .map_err(engine)?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let target = out.join(table.name);
        if target.exists() {
            fs::remove_dir_all(&target).map_err(|e| GenError::Write {
                path: target.clone(),
                message: e.to_string(),
            })?;
        }
        let mut parts = PartFiles::new(schema, rows_per_file);
        let mut stream = frame.execute_stream().await.map_err(engine)?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(engine)?;
            match table.month_folders {
                None => parts.write(&target, batch)?,
                Some(column) => {
                    for (month, rows) in split_by_month(&batch, column) {
                        parts.write(&target.join(format!("month={month}")), rows)?;
                    }
                }
            }
        }
        parts.finish(&target)?;
        ctx.deregister_table(table.name).map_err(engine)?;
    }
    Ok(())
}

/// The runs of rows of one month (`YYYY-MM`) of a batch sorted by the
/// Date32 column `column`.
fn split_by_month(batch: &RecordBatch, column: &str) -> Vec<(String, RecordBatch)> {
    let days = batch
        .column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<Date32Array>())
        .expect("the month folders' column is a Date32 column");
    let month_of = |row: usize| {
        let month = calendar::from_date32(days.value(row));
        format!("{:04}-{:02}", month.year(), month.month())
    };
    let mut runs = Vec::new();
    let mut start = 0;
    for row in 1..=batch.num_rows() {
        if row == batch.num_rows() || month_of(row) != month_of(start) {
            runs.push((month_of(start), batch.slice(start, row - start)));
            start = row;
        }
    }
    runs
}

/// Part files `part-NNNNN.parquet` of at most `rows_per_file` rows, in one
/// folder after another (numbered from 0 in each).
struct PartFiles {
    schema: SchemaRef,
    rows_per_file: usize,
    folder: Option<PathBuf>,
    next: usize,
    current: Option<Sink>,
    files: usize,
}

impl PartFiles {
    fn new(schema: SchemaRef, rows_per_file: usize) -> Self {
        Self {
            schema,
            rows_per_file,
            folder: None,
            next: 0,
            current: None,
            files: 0,
        }
    }

    fn write(&mut self, folder: &Path, mut batch: RecordBatch) -> Result<(), GenError> {
        if self.folder.as_deref() != Some(folder) {
            self.close_current()?;
            create_dir(folder)?;
            self.folder = Some(folder.to_path_buf());
            self.next = 0;
        }
        while batch.num_rows() > 0 {
            let sink = match &mut self.current {
                Some(sink) => sink,
                None => {
                    let name = format!("part-{:05}", self.next);
                    self.next += 1;
                    self.files += 1;
                    self.current
                        .insert(Sink::new(folder, &name, self.schema.clone())?)
                }
            };
            let take = (self.rows_per_file - sink.rows as usize).min(batch.num_rows());
            sink.append(&batch.slice(0, take))?;
            batch = batch.slice(take, batch.num_rows() - take);
            if sink.rows as usize == self.rows_per_file {
                self.close_current()?;
            }
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), GenError> {
        match self.current.take() {
            Some(sink) => sink.close().map(drop),
            None => Ok(()),
        }
    }

    /// Closes the last file; a table without rows gets one empty file in
    /// `folder`, so that it can still be read.
    fn finish(mut self, folder: &Path) -> Result<(), GenError> {
        self.close_current()?;
        if self.files == 0 {
            create_dir(folder)?;
            Sink::new(folder, "part-00000", self.schema.clone())?.close()?;
        }
        Ok(())
    }
}

fn job_toml(options: &GenOptions) -> String {
    let factors: String = CSI_FACTORS
        .iter()
        .map(|(f, items)| {
            let items: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
            format!("{f} = [{}]\n", items.join(", "))
        })
        .collect();
    format!(
        r#"# Made by `{command}` (generator version {GENERATOR_VERSION}).
# Paths are relative to this file.

[input]
customers = "customers.parquet"
{inputs}
[output]
path = "out/"

[run]
# The data ends on {end}: report as of that day unless --as-of says otherwise.
as_of = "{end}"
segment_by = "segment"
max_reject_ratio = 0.05

[renewal]
grace_days = 30

[csat]
positive_min = 4

[value]
gross_margin = 0.8
max_lifetime_months = 120
monthly_discount = 0.01
min_model_customers = 100
forecast_months = 24

[health]
weights = {{ usage = 0.30, nps = 0.20, csat = 0.15, support = 0.15, mrr_trend = 0.20 }}
green_min = 70
yellow_min = 40
trend_days = 30

# An ECSI-style model (the European index: image drives expectations,
# satisfaction and loyalty). README "Customer satisfaction index" explains
# the outputs; job-acsi.toml in data-samples/ shows the American variant.
[csi]
scale = [1, 10]
index_factor = "satisfaction"
weights = "pls"
min_respondents = 30

[csi.factors]
{factors}
# factor = [the factors that drive it]
[csi.paths]
expectations = ["image"]
quality = ["expectations"]
value = ["quality", "expectations"]
satisfaction = ["image", "expectations", "quality", "value"]
loyalty = ["satisfaction", "image"]
"#,
        command = options.command_line(),
        inputs = EVENT_TABLES
            .iter()
            .map(|t| match options.layout {
                Layout::Date => format!("{} = \"{}/\"\n", t.name, t.name),
                Layout::Customer => format!("{} = \"{}.parquet\"\n", t.name, t.name),
            })
            .collect::<String>(),
        end = options.end,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_mean_is_about_right() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 20_000;
        let total: u32 = (0..n).map(|_| poisson(&mut rng, 3.0)).sum();
        let mean = total as f64 / n as f64;
        assert!((mean - 3.0).abs() < 0.1, "{mean}");
    }

    #[test]
    fn the_job_file_names_the_generator_version() {
        let options = GenOptions {
            customers: 10,
            seed: 1,
            start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            end: NaiveDate::from_ymd_opt(2024, 6, 30).unwrap(),
            bad_row_rate: 0.0,
            layout: Layout::Date,
            rows_per_file: DEFAULT_ROWS_PER_FILE,
        };
        assert_eq!(
            generator_version_of(&job_toml(&options)),
            Some(Some(GENERATOR_VERSION))
        );
        let with_bad_rows = GenOptions {
            bad_row_rate: 0.001,
            ..options.clone()
        };
        let header = format!("# Made by `{}`", with_bad_rows.command_line());
        assert!(header.contains("--bad-row-rate 0.001"), "{header}");
        assert!(job_toml(&with_bad_rows).starts_with(&header));
        let before_versions =
            "# Made by `cskpi gen --customers 10 --seed 1 --layout date`.\n[input]\n";
        assert_eq!(generator_version_of(before_versions), Some(None));
        assert_eq!(
            generator_version_of("[input]\ncustomers = 'c.parquet'\n"),
            None
        );
    }
}
