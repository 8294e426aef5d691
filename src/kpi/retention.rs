//! Customers, churn rate, CRR and renewals (spec 4.1, 4.2): `sql/retention.sql`.

use super::definitions::{KpiDefinition, kpi};
use super::{KpiFamily, Registration};
use crate::engine::sql;
use crate::output::OutputTable;

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
    kpis: KPIS,
    tests: &["tests/it/retention.rs", "tests/sql/renewals.slt"],
    registration: Registration::Script,
};

/// The KPIs the family publishes (`cskpi kpis`, docs/KPIS.md).
pub const KPIS: &[KpiDefinition] = &[
    kpi!(
        "customers_start",
        "Customers at the start of the month",
        "4.1",
        "customers",
        ["customers"],
        "retention_monthly.customers_start",
        "customers with signup_date before the month and no churn_date before it"
    ),
    kpi!(
        "customers_new",
        "New customers",
        "4.1",
        "customers",
        ["customers"],
        "retention_monthly.customers_new",
        "customers whose signup_date is in the month"
    ),
    kpi!(
        "customers_end",
        "Customers at the end of the month",
        "4.1",
        "customers",
        ["customers"],
        "retention_monthly.customers_end",
        "customers signed up by the month's end and not churned by then"
    ),
    kpi!(
        "customers_churned",
        "Churned customers",
        "4.1",
        "customers",
        ["customers"],
        "retention_monthly.customers_churned",
        "customers at the start of the month whose churn_date is in the month"
    ),
    kpi!(
        "churn_rate",
        "Churn rate",
        "4.1",
        "%",
        ["customers"],
        "retention_monthly.churn_rate",
        "100 * customers_churned / customers_start (null when customers_start = 0)"
    ),
    kpi!(
        "crr",
        "Customer retention rate",
        "4.1",
        "%",
        ["customers"],
        "retention_monthly.crr",
        "100 * (customers_end - customers_new) / customers_start"
    ),
    kpi!(
        "renewals_due",
        "Renewals due",
        "4.2",
        "customers",
        ["orders"],
        "retention_monthly.renewals_due",
        "customers with a subscription line whose period_end falls in the month"
    ),
    kpi!(
        "renewals_won",
        "Renewals won",
        "4.2",
        "customers",
        ["orders"],
        "retention_monthly.renewals_won",
        "due customers with a due line followed by another subscription line starting later, in [period_end - 7 days, period_end + renewal.grace_days]"
    ),
    kpi!(
        "renewals_pending",
        "Renewals pending",
        "4.2",
        "customers",
        ["orders"],
        "retention_monthly.renewals_pending",
        "due customers, not won, whose latest due line's grace window ends after as_of"
    ),
    kpi!(
        "renewal_rate",
        "Renewal rate",
        "4.2",
        "%",
        ["orders"],
        "retention_monthly.renewal_rate",
        "100 * renewals_won / (renewals_due - renewals_pending)"
    ),
];
