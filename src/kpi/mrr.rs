//! MRR, its movements, NRR, GRR and quick ratio (spec 4.3): `sql/mrr.sql`.

use super::definitions::{KpiDefinition, kpi};
use super::{KpiFamily, Registration};
use crate::engine::sql;
use crate::output::OutputTable;

pub const FAMILY: KpiFamily = KpiFamily {
    name: "mrr",
    script: sql::MRR,
    outputs: &[
        OutputTable {
            name: "mrr_monthly",
            order_by: "month, segment",
            partition_by: None,
            sorted_per_partition: false,
        },
        OutputTable {
            name: "mrr_movements",
            order_by: "month, customer_id",
            partition_by: Some("month"),
            sorted_per_partition: true,
        },
    ],
    // mrr_monthly is read again by kpi_summary.
    materialize: &["mrr_monthly"],
    // customer_mrr_movements feeds both outputs, mrr_movements a month at a time.
    materialize_by_value: &[("customer_mrr_movements", "month")],
    kpis: KPIS,
    tests: &["tests/it/mrr.rs"],
    registration: Registration::Script,
};

/// The KPIs the family publishes (`cskpi kpis`, docs/KPIS.md).
pub const KPIS: &[KpiDefinition] = &[
    kpi!(
        "mrr",
        "Monthly recurring revenue",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_monthly.mrr",
        "sum of amount / n over subscription and add-on lines with period_start <= d < period_end, n = the period's length in calendar months (at least 1), d = the month's last day (as_of in as_of's month)"
    ),
    kpi!(
        "paying_customers",
        "Paying customers",
        "4.3",
        "customers",
        ["orders"],
        "mrr_monthly.paying_customers",
        "customers with mrr >= 0.005 in the month"
    ),
    kpi!(
        "arpa",
        "Average revenue per account",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_monthly.arpa",
        "mrr / paying_customers"
    ),
    kpi!(
        "new_mrr",
        "New MRR",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_monthly.new_mrr",
        "mrr of customers with prev_mrr = 0 and no earlier month with mrr > 0"
    ),
    kpi!(
        "expansion_mrr",
        "Expansion MRR",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_monthly.expansion_mrr",
        "sum of mrr - prev_mrr over customers whose mrr grew"
    ),
    kpi!(
        "reactivation_mrr",
        "Reactivation MRR",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_monthly.reactivation_mrr",
        "mrr of customers with prev_mrr = 0 who had mrr in an earlier month"
    ),
    kpi!(
        "contraction_mrr",
        "Contraction MRR",
        "4.3",
        "currency / month (<= 0)",
        ["orders"],
        "mrr_monthly.contraction_mrr",
        "sum of mrr - prev_mrr over customers whose mrr shrank but stayed > 0"
    ),
    kpi!(
        "churned_mrr",
        "Churned MRR",
        "4.3",
        "currency / month (<= 0)",
        ["orders"],
        "mrr_monthly.churned_mrr",
        "-prev_mrr of customers whose mrr fell to 0"
    ),
    kpi!(
        "net_new_mrr",
        "Net new MRR",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_monthly.net_new_mrr",
        "new + expansion + reactivation + contraction + churned MRR"
    ),
    kpi!(
        "nrr",
        "Net revenue retention",
        "4.3",
        "%",
        ["orders"],
        "mrr_monthly.nrr",
        "100 * (prev_mrr + expansion + contraction + churned) / prev_mrr, over the segment's previous-month MRR"
    ),
    kpi!(
        "grr",
        "Gross revenue retention",
        "4.3",
        "%",
        ["orders"],
        "mrr_monthly.grr",
        "100 * (prev_mrr + contraction + churned) / prev_mrr"
    ),
    kpi!(
        "quick_ratio",
        "SaaS quick ratio",
        "4.3",
        "ratio",
        ["orders"],
        "mrr_monthly.quick_ratio",
        "(new + reactivation + expansion) / -(contraction + churned)"
    ),
    kpi!(
        "mrr_movement",
        "MRR movement per customer",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_movements.delta",
        "mrr - prev_mrr per customer and month, with movement new, expansion, contraction, churn, reactivation or flat"
    ),
];
