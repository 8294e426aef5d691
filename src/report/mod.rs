//! The run's HTML report: `report.html` beside the output tables, one
//! self-contained page (inline CSS, charts as inline SVG drawn by plotters,
//! no scripts, a content security policy that allows no request), drawn
//! from the published tables and the manifest, so a run and `cskpi report`
//! over the same outputs draw the same page.

mod charts;
mod format;
mod frame;
mod page;
mod sections;

use chrono::{Datelike, Months, NaiveDate};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

use crate::config::JobConfig;
use crate::engine::session::{self, SessionError};
use crate::output::{self, OutputError};

pub use frame::Frame;

/// The published tables the report reads.
const TABLES_READ: &[&str] = &[
    "retention_monthly",
    "mrr_monthly",
    "support_monthly",
    "survey_monthly",
    "feedback_themes",
    "csi_factors",
    "csi_paths",
    "csi_index",
    "value_monthly",
    "value_summary",
    "customer_value",
    "customer_health",
    "cohort_retention",
    "retention_model",
    "retention_forecast",
    "rejects",
];

use crate::output::REPORT as REPORT_FILE;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("report: reading the published tables: {0}")]
    Engine(#[from] DataFusionError),
    #[error("report: no published run at {0} (no _manifest.json): run `cskpi run` first")]
    NoRun(String),
    #[error("report: the manifest at {path} cannot be read: {message}")]
    Manifest { path: String, message: String },
    #[error(
        "report: the published run is as of {published}, not {asked}: run `cskpi run --as-of {asked}` first"
    )]
    OtherAsOf { published: String, asked: String },
    #[error("report: drawing a chart: {0}")]
    Chart(String),
    #[error("report: writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Runs a report query.
async fn query(ctx: &SessionContext, sql: &str) -> Result<Frame, ReportError> {
    Ok(Frame::query(ctx, sql).await?)
}

/// The page for the run published at the job's output. With `as_of`, the
/// published run must be as of that day.
pub async fn render(job: &JobConfig, as_of: Option<NaiveDate>) -> Result<String, ReportError> {
    let ctx = session::build(job)?;
    let path = &job.output.path;
    let manifest = output::read_output_file(&ctx, &job.output, output::MANIFEST)
        .await?
        .ok_or_else(|| ReportError::NoRun(path.clone()))?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest).map_err(|e| ReportError::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let published = manifest["as_of"].as_str().unwrap_or_default().to_string();
    let published_date =
        NaiveDate::parse_from_str(&published, "%Y-%m-%d").map_err(|e| ReportError::Manifest {
            path: path.clone(),
            message: format!("as_of {published:?}: {e}"),
        })?;
    if let Some(asked) = as_of.filter(|d| *d != published_date) {
        return Err(ReportError::OtherAsOf {
            published,
            asked: asked.to_string(),
        });
    }
    for table in TABLES_READ {
        output::register_published_table(&ctx, &job.output, table).await?;
    }
    let context = sections::Context {
        ctx: &ctx,
        manifest: &manifest,
        last_month: last_complete_month(published_date).to_string(),
    };
    let mut page = page::Page::default();
    sections::header(&context, &mut page).await?;
    sections::revenue(&context, &mut page).await?;
    sections::retention(&context, &mut page).await?;
    sections::voice(&context, &mut page).await?;
    sections::csi(&context, &mut page).await?;
    sections::health(&context, &mut page).await?;
    sections::value(&context, &mut page).await?;
    Ok(page.document(&format!("cskpi report as of {published}")))
}

/// Draws the report of the published run and writes it to `file`, or to
/// `report.html` at the job's output. Returns where it went.
pub async fn write(
    job: &JobConfig,
    as_of: Option<NaiveDate>,
    file: Option<&std::path::Path>,
) -> Result<String, ReportError> {
    let html = render(job, as_of).await?;
    match file {
        Some(file) => {
            write_local(file, html.as_bytes())?;
            Ok(file.display().to_string())
        }
        None => {
            let ctx = session::build(job)?;
            output::write_output_file(&ctx, &job.output, REPORT_FILE, html.into_bytes()).await?;
            Ok(format!(
                "{}/{REPORT_FILE}",
                job.output.path.trim_end_matches('/')
            ))
        }
    }
}

/// After a run has published: the report, or a warning. (The run removed
/// the previous run's page before publishing, see `output::REPORT`.)
pub async fn write_after_run(job: &JobConfig) {
    if !job.output.report {
        return;
    }
    match write(job, None, None).await {
        Ok(location) => tracing::info!(report = %location, "report written"),
        Err(e) => {
            tracing::warn!(error = %e, "no report: the tables are published, the report failed")
        }
    }
}

fn write_local(file: &std::path::Path, bytes: &[u8]) -> Result<(), ReportError> {
    let failed = |source| ReportError::Write {
        path: file.display().to_string(),
        source,
    };
    let mut aside = file.as_os_str().to_owned();
    aside.push(format!(".tmp-{}", std::process::id()));
    crate::files::write_whole(file, std::path::Path::new(&aside), bytes).map_err(failed)
}

/// The last month whose every day is on or before `as_of` (its first day).
pub fn last_complete_month(as_of: NaiveDate) -> NaiveDate {
    let next = as_of.succ_opt().unwrap_or(as_of);
    let first = next.with_day(1).expect("day 1 exists");
    first - Months::new(1)
}

#[cfg(test)]
mod tests {
    use super::last_complete_month;
    use chrono::NaiveDate;

    #[test]
    fn the_report_reads_published_tables() {
        let published: Vec<&str> = crate::run::output_tables().iter().map(|t| t.name).collect();
        for table in super::TABLES_READ {
            assert!(published.contains(table), "{table} is not an output table");
        }
    }

    #[test]
    fn the_last_complete_month() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(last_complete_month(d("2026-06-30")), d("2026-06-01"));
        assert_eq!(last_complete_month(d("2026-06-29")), d("2026-05-01"));
        assert_eq!(last_complete_month(d("2024-02-29")), d("2024-02-01"));
        assert_eq!(last_complete_month(d("2026-01-15")), d("2025-12-01"));
    }
}
