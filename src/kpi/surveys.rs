//! NPS with its margin of error, and CSAT (spec 4.5): `sql/surveys.sql`.

use super::definitions::{KpiDefinition, kpi};
use super::{KpiFamily, Registration};
use crate::engine::sql;
use crate::output::OutputTable;

pub const FAMILY: KpiFamily = KpiFamily {
    name: "surveys",
    script: sql::SURVEYS,
    outputs: &[OutputTable {
        name: "survey_monthly",
        order_by: "month, segment",
        partition_by: None,
        sorted_per_partition: false,
    }],
    // Published and read again by kpi_summary.
    materialize: &["survey_monthly"],
    materialize_by_value: &[],
    kpis: KPIS,
    tests: &["tests/it/surveys.rs", "tests/sql/survey_udafs.slt"],
    registration: Registration::Script,
};

/// The KPIs the family publishes (`cskpi kpis`, docs/KPIS.md).
pub const KPIS: &[KpiDefinition] = &[
    kpi!(
        "nps_responses",
        "NPS responses",
        "4.5",
        "responses",
        ["surveys"],
        "survey_monthly.nps_responses",
        "per customer, only the latest nps response of the month (ties: greatest response_id)"
    ),
    kpi!(
        "promoters",
        "Promoters",
        "4.5",
        "responses",
        ["surveys"],
        "survey_monthly.promoters",
        "counted nps responses with score >= 9"
    ),
    kpi!(
        "passives",
        "Passives",
        "4.5",
        "responses",
        ["surveys"],
        "survey_monthly.passives",
        "counted nps responses with score 7-8"
    ),
    kpi!(
        "detractors",
        "Detractors",
        "4.5",
        "responses",
        ["surveys"],
        "survey_monthly.detractors",
        "counted nps responses with score <= 6"
    ),
    kpi!(
        "nps",
        "Net Promoter Score",
        "4.5",
        "NPS points (-100..100)",
        ["surveys"],
        "survey_monthly.nps",
        "100 * (promoters - detractors) / nps_responses; UDAF nps(score)"
    ),
    kpi!(
        "nps_moe",
        "NPS margin of error (95%)",
        "4.5",
        "NPS points",
        ["surveys"],
        "survey_monthly.nps_moe",
        "196 * sqrt((p + d - (p - d)^2) / nps_responses), p and d the promoter and detractor shares; UDAF nps_moe(score)"
    ),
    kpi!(
        "csat_responses",
        "CSAT responses",
        "4.5",
        "responses",
        ["surveys"],
        "survey_monthly.csat_responses",
        "every csat response of the month"
    ),
    kpi!(
        "csat_positive",
        "Positive CSAT responses",
        "4.5",
        "responses",
        ["surveys"],
        "survey_monthly.csat_positive",
        "csat responses with score >= csat.positive_min (default 4)"
    ),
    kpi!(
        "csat",
        "Customer satisfaction score",
        "4.5",
        "%",
        ["surveys"],
        "survey_monthly.csat",
        "100 * csat_positive / csat_responses; UDAF csat(score[, positive_min])"
    ),
];
