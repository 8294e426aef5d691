//! The session and views every way of querying a job shares: a run, `cskpi
//! sql`, the SQL tests and the integration tests. Opens the inputs, then
//! registers the checked and clean views, the reporting window's tables and
//! every KPI family's views.

use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use datafusion::arrow::array::{Date32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::calendar::{self, RunWindow};
use crate::catalog::{self, RegisteredInput};
use crate::config::JobConfig;
use crate::engine::scratch::Scratch;
use crate::engine::session;
use crate::error::Error;
use crate::feedback::Taxonomy;
use crate::kpi;
use crate::validate;

/// The day a run or a session reports as of: the command line's, else the
/// job file's `run.as_of`, else yesterday (UTC).
pub fn resolve_as_of(job: &JobConfig, as_of: Option<NaiveDate>) -> NaiveDate {
    as_of
        .or(job.run.as_of)
        .unwrap_or_else(|| Utc::now().date_naive() - chrono::Duration::days(1))
}

/// The session a job's queries run in: on this machine, or, with
/// `[cluster] scheduler`, on that Ballista cluster (the driver keeps the
/// same configuration, object stores and functions).
pub async fn open_session(job: &JobConfig) -> Result<SessionContext, Error> {
    let ctx = session::build(job)?;
    let Some(url) = &job.cluster.scheduler else {
        return Ok(ctx);
    };
    #[cfg(feature = "distributed")]
    {
        crate::cluster::check_locations(job)?;
        let taxonomy = Arc::new(job.feedback_taxonomy().clone());
        let storage = crate::cluster::storage::StorageOptions::of_job(job.s3.as_ref());
        let quiet_limit = std::time::Duration::from_secs(job.cluster.quiet_limit_seconds);
        Ok(crate::cluster::connect(url, ctx.state(), taxonomy, storage, quiet_limit).await?)
    }
    #[cfg(not(feature = "distributed"))]
    Err(Error::Usage(format!(
        "cluster.scheduler {url}: this cskpi was built without the `distributed` feature"
    )))
}

/// Builds the session for a job and registers its inputs (schema checked).
pub async fn open_inputs(job: &JobConfig) -> Result<(SessionContext, Vec<RegisteredInput>), Error> {
    let ctx = open_session(job).await?;
    let registered = catalog::register_inputs(&ctx, job).await?;
    Ok((ctx, registered))
}

/// A session over a job's inputs with every view registered and nothing
/// materialised: what the tests query on small data (`cskpi sql` and
/// `cskpi validate` store the checked inputs first, `open_checked_inputs`).
pub async fn open_views(
    job: &JobConfig,
    as_of: NaiveDate,
) -> Result<(SessionContext, RunWindow), Error> {
    let (ctx, _) = open_inputs(job).await?;
    let window = register_views(&ctx, job, as_of).await?;
    Ok((ctx, window))
}

/// A session over a job's inputs with the checked inputs stored in
/// `scratch`, as a run stores them, and the engine spilling there: what
/// `cskpi sql` and `cskpi validate` query. Over the bare views, each query
/// would check every input again, and the plans doing it at once
/// (the cohort model's, at opening) ran out of a 16 GB pool at 1M
/// customers. Hash joins are turned on next, for the KPI views.
pub async fn open_checked_inputs(
    job: &JobConfig,
    as_of: NaiveDate,
    scratch: &Scratch,
) -> Result<(SessionContext, RunWindow), Error> {
    let (ctx, _) = open_inputs(&scratch.spilling_here(job)).await?;
    let window = register_input_views(
        &ctx,
        job,
        as_of,
        Some(&scratch.views()),
        validate::CleanColumns::All,
    )
    .await?;
    Ok((ctx, window))
}

/// Registers everything between the typed inputs and the KPI views: the
/// checked views, their clean views and `rejects`, `kpi_months` and every
/// KPI family's views, all of them views (the SQL and integration tests;
/// a run stores some of them as it goes, see `run_job`, and `cskpi sql`
/// the checked inputs).
pub async fn register_views(
    ctx: &SessionContext,
    job: &JobConfig,
    as_of: NaiveDate,
) -> Result<RunWindow, Error> {
    let window = register_input_views(ctx, job, as_of, None, validate::CleanColumns::All).await?;
    register_kpi_views(ctx, job, &window).await?;
    Ok(window)
}

/// The checked and clean views of the inputs, `rejects`, and the reference
/// tables of the reporting window (`kpi_months`, `feedback_taxonomy`).
pub async fn register_input_views(
    ctx: &SessionContext,
    job: &JobConfig,
    as_of: NaiveDate,
    materialize_in: Option<&crate::engine::scratch::ViewDir>,
    columns: validate::CleanColumns,
) -> Result<RunWindow, Error> {
    // Validation only depends on as_of; the reporting window comes after.
    let provisional = RunWindow {
        as_of,
        first_month: calendar::month_start(as_of),
    };
    validate::register_checked_views(
        ctx,
        &kpi::sql_params(job, &provisional),
        materialize_in,
        columns,
    )
    .await?;
    validate::register_rejects_view(ctx).await?;
    let window = window(ctx, job, as_of).await?;
    register_months(ctx, &window)?;
    register_taxonomy(ctx, job.feedback_taxonomy())?;
    Ok(window)
}

/// Every KPI family's views over the clean views.
pub async fn register_kpi_views(
    ctx: &SessionContext,
    job: &JobConfig,
    window: &RunWindow,
) -> Result<(), Error> {
    kpi::register_views(ctx, job, window, &kpi::sql_params(job, window)).await?;
    Ok(())
}

/// The reporting window: run.from, or the month of the earliest visible signup.
pub async fn window(
    ctx: &SessionContext,
    job: &JobConfig,
    as_of: NaiveDate,
) -> Result<RunWindow, Error> {
    let first_month = match job.from_month() {
        Some(m) => m,
        None => calendar::month_start(kpi::earliest_signup(ctx).await?.unwrap_or(as_of)),
    };
    Ok(RunWindow {
        as_of,
        first_month: first_month.min(calendar::month_start(as_of)),
    })
}

/// Registers `kpi_months`, one row per reported month, and
/// `trailing_months`, the 12 months ending with as_of's month.
pub fn register_months(ctx: &SessionContext, window: &RunWindow) -> Result<(), Error> {
    for (name, months) in [
        ("kpi_months", window.months()),
        ("trailing_months", window.trailing_months()),
    ] {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "month",
            DataType::Date32,
            false,
        )]));
        let months = Date32Array::from(
            months
                .into_iter()
                .map(calendar::to_date32)
                .collect::<Vec<_>>(),
        );
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(months)])?;
        ctx.register_table(
            name,
            Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
        )?;
    }
    Ok(())
}

/// Registers `feedback_taxonomy`, one row per theme and keyword, the
/// taxonomy `comment_themes()` matches with.
pub fn register_taxonomy(ctx: &SessionContext, taxonomy: &Taxonomy) -> Result<(), Error> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("theme", DataType::Utf8, false),
        Field::new("keyword", DataType::Utf8, false),
    ]));
    let (themes, keywords): (Vec<&str>, Vec<&str>) = taxonomy.keywords().unzip();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(themes)),
            Arc::new(StringArray::from(keywords)),
        ],
    )?;
    ctx.register_table(
        "feedback_taxonomy",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    Ok(())
}
