//! NPS with its margin of error, and CSAT (spec 4.5): `sql/surveys.sql`.

use super::{KpiFamily, Registration};
use crate::output::OutputTable;
use crate::sql;

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
    registration: Registration::Script,
};
