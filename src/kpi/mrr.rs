//! MRR, its movements, NRR, GRR and quick ratio (spec 4.3): `sql/mrr.sql`.

use super::{KpiFamily, OutputTable, Registration};
use crate::sql;

pub const FAMILY: KpiFamily = KpiFamily {
    name: "mrr",
    script: sql::MRR,
    outputs: &[
        OutputTable {
            name: "mrr_monthly",
            order_by: "month, segment",

            partition_by: None,
        },
        OutputTable {
            name: "mrr_movements",
            order_by: "month, customer_id",

            partition_by: Some("month"),
        },
    ],
    // customer_mrr_movements feeds both outputs; mrr_monthly is read again
    // by kpi_summary.
    materialize: &["customer_mrr_movements", "mrr_monthly"],
    registration: Registration::Script,
};
