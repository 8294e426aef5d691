//! KPI families. Each family is a bundled SQL script of views under `sql/`
//! and the output tables it publishes; adding a family means adding a module
//! here and its script, nothing else.

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

use std::path::Path;

use datafusion::prelude::SessionContext;

use crate::calendar::RunWindow;
use crate::config::JobConfig;
use crate::error::Error;
use crate::output::OutputTable;
use crate::sql::{self, Materialize, SqlParams, SqlScript};

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
}

/// Every family, in dependency order.
pub const FAMILIES: &[KpiFamily] = &[
    retention::FAMILY,
    mrr::FAMILY,
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
    scratch: Option<&Path>,
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
    scratch: Option<&Path>,
) -> Result<(), Error> {
    match family.registration {
        Registration::Script => {
            let materialize = scratch.map(|dir| Materialize {
                views: family.materialize,
                dir,
                store: sql::store_parquet,
                by_value: family.materialize_by_value,
            });
            sql::run_script(ctx, &family.script, params, materialize).await?;
        }
        Registration::CsiEstimation => {
            // Stored (a run): estimate now; views only: at the first read.
            csi::register(ctx, job, window, params, scratch.is_none()).await?;
        }
    }
    Ok(())
}
