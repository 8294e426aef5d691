//! MRR, its movements, NRR, GRR and quick ratio (spec 4.3): `sql/mrr.sql`.

use super::{KpiFamily, OutputTable};
use crate::sql;

pub const FAMILY: KpiFamily = KpiFamily {
    name: "mrr",
    script: sql::MRR,
    outputs: &[
        OutputTable {
            name: "mrr_monthly",
            order_by: "month, segment",
        },
        OutputTable {
            name: "mrr_movements",
            order_by: "month, customer_id",
        },
    ],
    // Read by both mrr_monthly and mrr_movements.
    materialize: &["customer_mrr_movements"],
};
