//! MRR, its movements, NRR, GRR and quick ratio (spec 4.3): `sql/mrr.sql`.

use super::{KpiFamily, Registration};
use crate::output::OutputTable;
use crate::sql;

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
    registration: Registration::Script,
};
