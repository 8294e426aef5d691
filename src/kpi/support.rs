//! First contact resolution and resolution time (spec 4.4): `sql/support.sql`.

use super::{KpiFamily, Registration};
use crate::output::OutputTable;
use crate::sql;

pub const FAMILY: KpiFamily = KpiFamily {
    name: "support",
    script: sql::SUPPORT,
    outputs: &[OutputTable {
        name: "support_monthly",
        order_by: "month, segment",
        partition_by: None,
        sorted_per_partition: false,
    }],
    // Published and read again by kpi_summary.
    materialize: &["support_monthly"],
    materialize_by_value: &[],
    registration: Registration::Script,
};
