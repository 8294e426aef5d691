//! First contact resolution and resolution time (spec 4.4): `sql/support.sql`.

use super::definitions::{KpiDefinition, kpi};
use super::{KpiFamily, Registration};
use crate::engine::sql;
use crate::output::OutputTable;

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
    kpis: KPIS,
    tests: &["tests/it/support.rs"],
    registration: Registration::Script,
};

/// The KPIs the family publishes (`cskpi kpis`, docs/KPIS.md).
pub const KPIS: &[KpiDefinition] = &[
    kpi!(
        "tickets",
        "Tickets",
        "4.4",
        "tickets",
        ["tickets"],
        "support_monthly.tickets",
        "tickets opened in the month"
    ),
    kpi!(
        "resolved",
        "Resolved tickets",
        "4.4",
        "tickets",
        ["tickets"],
        "support_monthly.resolved",
        "tickets opened in the month with resolved_at set (by the end of as_of)"
    ),
    kpi!(
        "first_contact_resolved",
        "First-contact resolutions",
        "4.4",
        "tickets",
        ["tickets"],
        "support_monthly.first_contact_resolved",
        "resolved tickets with contacts = 1 and not reopened"
    ),
    kpi!(
        "fcr_rate",
        "First contact resolution rate",
        "4.4",
        "%",
        ["tickets"],
        "support_monthly.fcr_rate",
        "100 * first_contact_resolved / tickets"
    ),
    kpi!(
        "median_resolution_hours",
        "Median resolution time",
        "4.4",
        "hours",
        ["tickets"],
        "support_monthly.median_resolution_hours",
        "median of resolved_at - opened_at over resolved tickets (even count: mean of the two middle values)"
    ),
];
