//! KPI families. Each family is a bundled SQL script of views under `sql/`
//! and the output tables it publishes; adding a family means adding a module
//! here and its script, nothing else.

pub mod mrr;
pub mod retention;

use datafusion::prelude::SessionContext;

use crate::sql::{self, SqlError, SqlParams, SqlScript};

/// A published table: the view it comes from and the order rows are written
/// in (stable order keeps repeated runs byte-for-byte comparable).
#[derive(Debug, Clone, Copy)]
pub struct OutputTable {
    pub name: &'static str,
    pub order_by: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct KpiFamily {
    pub name: &'static str,
    pub script: SqlScript,
    pub outputs: &'static [OutputTable],
}

/// Every family, in dependency order.
pub const FAMILIES: &[KpiFamily] = &[retention::FAMILY, mrr::FAMILY];

/// The dimension views and every family's views.
pub async fn register_views(ctx: &SessionContext, params: &SqlParams) -> Result<(), SqlError> {
    sql::run_script(ctx, &sql::DIMENSIONS, params).await?;
    for family in FAMILIES {
        sql::run_script(ctx, &family.script, params).await?;
    }
    Ok(())
}
