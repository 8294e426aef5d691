//! The customer health score (spec 4.9) and its trend (4.12):
//! `sql/health.sql`.

use super::definitions::{KpiDefinition, kpi};
use super::{KpiFamily, Registration};
use crate::engine::sql;
use crate::output::OutputTable;

pub const FAMILY: KpiFamily = KpiFamily {
    name: "health",
    script: sql::HEALTH,
    outputs: &[OutputTable {
        name: "customer_health",
        order_by: "as_of, customer_id",
        partition_by: Some("as_of"),
        sorted_per_partition: false,
    }],
    // Both dates' scores, read twice by customer_health.
    materialize: &["health_scores"],
    materialize_by_value: &[],
    kpis: KPIS,
    tests: &["tests/it/health.rs"],
    registration: Registration::Script,
};

/// The KPIs the family publishes (`cskpi kpis`, docs/KPIS.md).
pub const KPIS: &[KpiDefinition] = &[
    kpi!(
        "health_score",
        "Customer health score",
        "4.9",
        "0-100",
        ["usage", "surveys", "tickets", "orders", "customers"],
        "customer_health.health_score",
        "sum(w * component) / sum(w) over the components with data; weights [health.weights]"
    ),
    kpi!(
        "health_band",
        "Health band",
        "4.9",
        "green / yellow / red",
        ["usage", "surveys", "tickets", "orders", "customers"],
        "customer_health.band",
        "green if health_score >= health.green_min (70), yellow if >= health.yellow_min (40), else red"
    ),
    kpi!(
        "health_usage",
        "Usage component",
        "4.9",
        "0-100",
        ["usage"],
        "customer_health.usage",
        "min(100, 50 * r), r = events of the last 30 days / (events of the 90 days before / 3); null when those are 0"
    ),
    kpi!(
        "health_nps",
        "NPS component",
        "4.9",
        "0-100",
        ["surveys"],
        "customer_health.nps",
        "10 * the customer's latest nps score within 180 days"
    ),
    kpi!(
        "health_csat",
        "CSAT component",
        "4.9",
        "0-100",
        ["surveys"],
        "customer_health.csat",
        "25 * (mean csat score within 90 days - 1)"
    ),
    kpi!(
        "health_support",
        "Support component",
        "4.9",
        "0-100",
        ["tickets"],
        "customer_health.support",
        "max(0, 100 - 20 * tickets opened within 30 days)"
    ),
    kpi!(
        "health_mrr_trend",
        "MRR trend component",
        "4.9",
        "0-100",
        ["orders"],
        "customer_health.mrr_trend",
        "min(100, 50 * mrr(as_of month) / mrr(3 months earlier)); null when the latter is 0"
    ),
    kpi!(
        "previous_health_score",
        "Health score trend_days earlier",
        "4.12",
        "0-100",
        ["usage", "surveys", "tickets", "orders", "customers"],
        "customer_health.previous_health_score",
        "health_score as of as_of - health.trend_days (30), every visibility rule applied at that date; null when the customer was not active then"
    ),
    kpi!(
        "previous_band",
        "Health band trend_days earlier",
        "4.12",
        "green / yellow / red",
        ["usage", "surveys", "tickets", "orders", "customers"],
        "customer_health.previous_band",
        "the band of previous_health_score"
    ),
    kpi!(
        "health_change",
        "Health score change",
        "4.12",
        "points",
        ["usage", "surveys", "tickets", "orders", "customers"],
        "customer_health.health_change",
        "health_score - previous_health_score"
    ),
];
