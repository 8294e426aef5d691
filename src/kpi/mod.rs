//! KPI families. Each family is a bundled SQL script of views under `sql/`
//! and the output tables it publishes; adding a family means adding a module
//! here and its script, nothing else.

pub mod cohorts;
pub mod csi;
pub mod definitions;
pub mod feedback;
pub mod health;
pub mod mrr;
pub mod retention;
pub mod summary;
pub mod support;
pub mod surveys;
pub mod value;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Date32Type;
use datafusion::prelude::SessionContext;

use crate::calendar::{self, RunWindow};
use crate::config::JobConfig;
use crate::engine::scratch::ViewDir;
use crate::engine::sql::{self, Materialize, SqlParams, SqlScript};
use crate::error::Error;
use crate::output::OutputTable;

#[derive(Debug, Clone, Copy)]
pub struct KpiFamily {
    pub name: &'static str,
    pub script: SqlScript,
    pub outputs: &'static [OutputTable],
    /// Views of the script that a run computes once (several outputs read them).
    pub materialize: &'static [&'static str],
    /// Views a run computes once and stores one file per value of a date
    /// column, as (view, column), so that a query of one value reads only
    /// its files (an output written per partition value).
    pub materialize_by_value: &'static [(&'static str, &'static str)],
    /// The KPIs it publishes, each a column of one of its outputs.
    pub kpis: &'static [definitions::KpiDefinition],
    /// The test files that check its numbers (paths from the crate root).
    pub tests: &'static [&'static str],
    /// How the family's views are made.
    pub registration: Registration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// The script, as it is.
    Script,
    /// The CSI step: the script rendered from the `[csi]` model, then the
    /// PLS estimation in Rust, whose results are registered as tables.
    CsiEstimation,
    /// The cohorts: the script, then the sBG retention model fitted in Rust
    /// on the cohort counts, whose results are registered as tables.
    CohortModel,
    /// The health score: its `scores` section once per date (as_of and
    /// health.trend_days earlier), then the script's customer_health.
    HealthTrend,
}

/// Every family, in dependency order.
pub const FAMILIES: &[KpiFamily] = &[
    retention::FAMILY,
    mrr::FAMILY,
    cohorts::FAMILY,
    support::FAMILY,
    surveys::FAMILY,
    feedback::FAMILY,
    csi::FAMILY,
    value::FAMILY,
    health::FAMILY,
    summary::FAMILY,
];

/// The dimension views and every family's views, as views (a run registers
/// them family by family, storing some; see `register_family`).
pub async fn register_views(
    ctx: &SessionContext,
    job: &JobConfig,
    window: &RunWindow,
    params: &SqlParams,
) -> Result<(), Error> {
    register_dimensions(ctx, params, None).await?;
    for family in FAMILIES {
        register_family(ctx, family, job, window, params, None).await?;
    }
    Ok(())
}

/// The reporting dimensions every family joins (sql/dimensions.sql); with
/// `scratch`, the segments are computed once and stored there.
pub async fn register_dimensions(
    ctx: &SessionContext,
    params: &SqlParams,
    scratch: Option<&ViewDir>,
) -> Result<(), Error> {
    let materialize = scratch.map(|dir| Materialize {
        views: &["customer_segments", "report_segments"],
        dir,
        store: sql::store_parquet,
        by_value: &[],
    });
    sql::run_script(ctx, &sql::DIMENSIONS, params, materialize).await?;
    Ok(())
}

/// One family's views, over the dimensions and the families before it.
pub async fn register_family(
    ctx: &SessionContext,
    family: &KpiFamily,
    job: &JobConfig,
    window: &RunWindow,
    params: &SqlParams,
    scratch: Option<&ViewDir>,
) -> Result<(), Error> {
    let materialize = scratch.map(|dir| Materialize {
        views: family.materialize,
        dir,
        store: sql::store_parquet,
        by_value: family.materialize_by_value,
    });
    match family.registration {
        Registration::Script => {
            sql::run_script(ctx, &family.script, params, materialize).await?;
        }
        Registration::CohortModel => {
            sql::run_script(ctx, &family.script, params, materialize).await?;
            cohorts::register_model(ctx, job, window).await?;
        }
        Registration::HealthTrend => {
            health::register(ctx, job, window, params, materialize).await?;
        }
        Registration::CsiEstimation => {
            // Stored (a run): estimate now; views only: at the first read.
            csi::register(ctx, job, window, params, scratch.is_none()).await?;
        }
    }
    Ok(())
}

/// The parameters of the bundled SQL (`${name}` in sql/*.sql) for a run
/// window: the contract between the job file and the KPI scripts.
pub fn sql_params(job: &JobConfig, window: &RunWindow) -> SqlParams {
    let as_of = window.as_of;
    let (csi_min, csi_max) = job.csi_scale();
    let health = job.health_weights();
    let next_month = window.months_before_as_of(-1);
    let params = crate::inputs::ALL
        .iter()
        .filter(|spec| spec.kpi_columns.is_some())
        .fold(SqlParams::default(), |params, spec| {
            params.raw(&crate::validate::left_out_param(spec), String::new())
        });
    params
        .date("as_of", as_of)
        .date("as_of_month", window.as_of_month())
        .date("as_of_next_month", next_month)
        .date("first_month", window.first_month)
        .date("last_complete_month", window.last_complete_month())
        .raw(
            "as_of_end",
            format!("TIMESTAMP '{} 00:00:00'", as_of + chrono::Duration::days(1)),
        )
        .integer("grace_days", job.renewal.grace_days as i64)
        // window [period_end - 7, period_end + grace] spans grace + 8 days
        .integer("renewal_bin_days", job.renewal.grace_days as i64 + 8)
        .number("csat_positive_min", job.csat.positive_min)
        .number("csi_scale_min", csi_min)
        .number("csi_scale_max", csi_max)
        .date("trailing_first_month", window.months_before_as_of(11))
        .number("gross_margin", job.value.gross_margin)
        .number("max_lifetime_months", job.value.max_lifetime_months)
        .number("w_usage", health.usage)
        .number("w_nps", health.nps)
        .number("w_csat", health.csat)
        .number("w_support", health.support)
        .number("w_mrr_trend", health.mrr_trend)
        .number("green_min", job.health.green_min)
        .number("yellow_min", job.health.yellow_min)
        .ident("segment_by", &job.run.segment_by)
}

/// The earliest visible signup_date (None without customers).
pub async fn earliest_signup(ctx: &SessionContext) -> Result<Option<NaiveDate>, Error> {
    let batches = ctx
        .sql("SELECT MIN(signup_date) FROM customers")
        .await?
        .collect()
        .await?;
    Ok(batches
        .first()
        .map(|b| b.column(0).as_primitive::<Date32Type>())
        .filter(|a| a.len() == 1 && !a.is_null(0))
        .map(|a| calendar::from_date32(a.value(0))))
}
