//! The customer health score (spec 4.9) and its trend (4.12):
//! `sql/health.sql`.

use datafusion::prelude::SessionContext;

use super::definitions::{KpiDefinition, kpi};
use super::{KpiFamily, Registration};
use crate::calendar::{self, RunWindow};
use crate::config::JobConfig;
use crate::engine::sql::{self, Materialize, SqlParams};
use crate::error::Error;
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
    // Each date's scores are read once, by customer_health.
    materialize: &[],
    materialize_by_value: &[],
    kpis: KPIS,
    tests: &["tests/it/health.rs"],
    registration: Registration::HealthTrend,
};

/// The score dates of 4.9 and 4.12 with the names of their views: as_of's
/// under the plain names, the earlier one's with `_previous`.
const SCORE_VIEWS: [(&str, &str); 2] = [
    ("health_components", "health_scores"),
    ("health_components_previous", "health_scores_previous"),
];

/// Scores every customer as of as_of and as of `health.trend_days` earlier
/// (sql/health.sql's `scores` section, run once per date as if as_of were
/// that date), then registers customer_health over both.
pub async fn register(
    ctx: &SessionContext,
    job: &JobConfig,
    window: &RunWindow,
    params: &SqlParams,
    materialize: Option<Materialize<'_>>,
) -> Result<(), Error> {
    let previous = window.as_of - chrono::Duration::days(i64::from(job.health.trend_days));
    for (date, (components, scores)) in [window.as_of, previous].into_iter().zip(SCORE_VIEWS) {
        // 4.9's MRR base: the month three months before the date's month,
        // snapshot on its last day.
        let mrr_base_day =
            calendar::month_end(calendar::add_months(calendar::month_start(date), -3));
        let at = params
            .clone()
            .date("score_date", date)
            .date("score_mrr_base_day", mrr_base_day)
            .ident("health_components", components)
            .ident("health_scores", scores);
        sql::run_script(ctx, &sql::HEALTH_SCORES, &at, materialize).await?;
    }
    sql::run_script(ctx, &sql::HEALTH, params, materialize).await?;
    Ok(())
}

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
