//! Customers, churn rate, CRR and renewals (spec 4.1, 4.2): `sql/retention.sql`.

use super::{KpiFamily, Registration};
use crate::output::OutputTable;
use crate::sql;

pub const FAMILY: KpiFamily = KpiFamily {
    name: "retention",
    script: sql::RETENTION,
    outputs: &[OutputTable {
        name: "retention_monthly",
        order_by: "month, segment",
        partition_by: None,
        sorted_per_partition: false,
    }],
    // Published and read again by kpi_summary.
    materialize: &["customer_counts_monthly", "retention_monthly"],
    materialize_by_value: &[],
    registration: Registration::Script,
};
