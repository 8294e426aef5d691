//! CRC, CLV and the customer profitability score (spec 4.8): `sql/value.sql`.

use super::definitions::{KpiDefinition, kpi};
use super::{KpiFamily, Registration};
use crate::engine::sql;
use crate::output::OutputTable;

pub const FAMILY: KpiFamily = KpiFamily {
    name: "value",
    script: sql::VALUE,
    outputs: &[
        OutputTable {
            name: "value_monthly",
            order_by: "month, segment",
            partition_by: None,
            sorted_per_partition: false,
        },
        OutputTable {
            name: "value_summary",
            order_by: "as_of, segment",
            partition_by: None,
            sorted_per_partition: false,
        },
        OutputTable {
            name: "customer_value",
            order_by: "as_of, customer_id",
            partition_by: Some("as_of"),
            sorted_per_partition: false,
        },
    ],
    // value_monthly is read again by kpi_summary; customer_value_micros
    // feeds both customer_value and value_summary.
    materialize: &[
        "value_monthly",
        "segment_lifetimes",
        "customer_value_micros",
    ],
    materialize_by_value: &[],
    kpis: KPIS,
    tests: &["tests/it/value.rs"],
    registration: Registration::Script,
};

/// The KPIs the family publishes (`cskpi kpis`, docs/KPIS.md).
pub const KPIS: &[KpiDefinition] = &[
    kpi!(
        "retention_cost",
        "Retention cost",
        "4.8",
        "currency",
        ["costs", "customers"],
        "value_monthly.retention_cost",
        "direct retention costs of the segment's customers + overhead retention costs * customers_end(segment) / customers_end(all)"
    ),
    kpi!(
        "crc",
        "Customer retention cost",
        "4.8",
        "currency / customer",
        ["costs", "customers"],
        "value_monthly.crc",
        "retention_cost / customers_end"
    ),
    kpi!(
        "crc_to_arpa",
        "CRC to ARPA",
        "4.8",
        "ratio",
        ["costs", "customers", "orders"],
        "value_monthly.crc_to_arpa",
        "crc / arpa (over 1: keeping a customer costs more than it pays)"
    ),
    kpi!(
        "avg_order_value",
        "Average order value",
        "4.8",
        "currency",
        ["orders"],
        "value_summary.avg_order_value",
        "mean amount of subscription, add-on and one-time lines with amount > 0 in the trailing 12 months W"
    ),
    kpi!(
        "purchase_frequency",
        "Purchase frequency",
        "4.8",
        "purchases / customer / month",
        ["orders"],
        "value_summary.purchase_frequency",
        "those lines / distinct customers with one / 12"
    ),
    kpi!(
        "lifetime_months",
        "Customer lifetime",
        "4.8",
        "months",
        ["customers"],
        "value_summary.lifetime_months",
        "1 / mean(churn_rate / 100) over W's months with customers at the start, capped at value.max_lifetime_months (also when churn is 0)"
    ),
    kpi!(
        "clv",
        "Customer lifetime value",
        "4.8",
        "currency",
        ["orders", "customers"],
        "value_summary.clv",
        "avg_order_value * purchase_frequency * lifetime_months * value.gross_margin"
    ),
    kpi!(
        "customer_clv",
        "Customer lifetime value of a customer",
        "4.8",
        "currency",
        ["orders", "customers"],
        "customer_value.clv",
        "mean mrr over W's months with mrr > 0 * gross_margin * the segment's lifetime_months"
    ),
    kpi!(
        "revenue",
        "Revenue",
        "4.8",
        "currency",
        ["orders"],
        "customer_value.revenue",
        "sum of the customer's order amounts in W, refunds included"
    ),
    kpi!(
        "direct_cost",
        "Direct cost",
        "4.8",
        "currency",
        ["costs"],
        "customer_value.direct_cost",
        "the customer's costs in W, all categories"
    ),
    kpi!(
        "allocated_cost",
        "Allocated overhead",
        "4.8",
        "currency",
        ["costs", "tickets", "customers"],
        "customer_value.allocated_cost",
        "each month's overhead service costs split by the customer's share of tickets opened (equally across active customers in a month without tickets)"
    ),
    kpi!(
        "cps",
        "Customer profitability score",
        "4.8",
        "currency",
        ["orders", "costs", "tickets"],
        "customer_value.cps",
        "revenue - direct_cost - allocated_cost"
    ),
    kpi!(
        "cps_quintile",
        "CPS quintile",
        "4.8",
        "1-5",
        ["orders", "costs", "tickets"],
        "customer_value.cps_quintile",
        "NTILE(5) OVER (ORDER BY cps DESC, customer_id): 1 is the most profitable fifth"
    ),
    kpi!(
        "tenure_months",
        "Tenure in complete months",
        "4.11",
        "months",
        ["customers"],
        "customer_value.tenure_months",
        "m: the customer's signup month and every later month whose last day is <= as_of; null for a customer not active at as_of"
    ),
    kpi!(
        "derl_months",
        "Discounted expected residual lifetime",
        "4.11",
        "months",
        ["customers"],
        "customer_value.derl_months",
        "DERL(value.monthly_discount | alpha, beta, tenure_months) of the segment's retention_model; null without a model or for a customer not active at as_of"
    ),
    kpi!(
        "predicted_clv",
        "Predicted customer lifetime value",
        "4.11",
        "currency",
        ["orders", "customers"],
        "customer_value.predicted_clv",
        "MRR snapshot of as_of's month * value.gross_margin * derl_months; null when derl_months is"
    ),
];
