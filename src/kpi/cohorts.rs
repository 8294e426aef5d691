//! Signup cohorts: logo and revenue retention by months since signup
//! (spec 4.10): `sql/cohorts.sql`.

use super::definitions::{KpiDefinition, kpi};
use super::{KpiFamily, Registration};
use crate::engine::sql;
use crate::output::OutputTable;

pub const FAMILY: KpiFamily = KpiFamily {
    name: "cohorts",
    script: sql::COHORTS,
    outputs: &[OutputTable {
        name: "cohort_retention",
        order_by: "cohort_month, segment, months_since",
        partition_by: None,
        sorted_per_partition: false,
    }],
    materialize: &[],
    materialize_by_value: &[],
    kpis: KPIS,
    tests: &["tests/it/cohorts.rs"],
    registration: Registration::Script,
};

/// The KPIs the family publishes (`cskpi kpis`, docs/KPIS.md).
pub const KPIS: &[KpiDefinition] = &[
    kpi!(
        "cohort_customers",
        "Cohort size",
        "4.10",
        "customers",
        ["customers"],
        "cohort_retention.cohort_customers",
        "customers whose signup_date falls in the cohort month (visible at as_of)"
    ),
    kpi!(
        "cohort_active_customers",
        "Cohort customers still active",
        "4.10",
        "customers",
        ["customers"],
        "cohort_retention.active_customers",
        "cohort customers whose churn_date is null or after the last day of month cohort + months_since"
    ),
    kpi!(
        "logo_retention",
        "Logo retention of a cohort",
        "4.10",
        "fraction 0-1",
        ["customers"],
        "cohort_retention.logo_retention",
        "active_customers / cohort_customers; null for an empty cohort"
    ),
    kpi!(
        "cohort_mrr",
        "Cohort MRR",
        "4.10",
        "currency",
        ["orders", "customers"],
        "cohort_retention.mrr",
        "sum of the cohort's customers' MRR snapshots (4.3) in month cohort + months_since"
    ),
    kpi!(
        "mrr_retention",
        "Revenue retention of a cohort",
        "4.10",
        "fraction",
        ["orders", "customers"],
        "cohort_retention.mrr_retention",
        "mrr / mrr at months_since = 0; null when that is 0"
    ),
];
