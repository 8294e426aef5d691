//! The long-form `kpi_summary` of every monthly KPI (spec section 5):
//! `sql/summary.sql`. It reads the other families' monthly tables, so it
//! comes last.

use super::{KpiFamily, Registration};
use crate::engine::sql;
use crate::output::OutputTable;

pub const FAMILY: KpiFamily = KpiFamily {
    name: "summary",
    script: sql::SUMMARY,
    outputs: &[OutputTable {
        name: "kpi_summary",
        order_by: "month, segment, kpi",
        partition_by: None,
        sorted_per_partition: false,
    }],
    materialize: &[],
    materialize_by_value: &[],
    // Its rows repeat the other families' KPIs, one per row.
    kpis: &[],
    tests: &["tests/it/generated.rs"],
    registration: Registration::Script,
};
