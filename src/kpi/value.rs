//! CRC, CLV and the customer profitability score (spec 4.8): `sql/value.sql`.

use super::{KpiFamily, Registration};
use crate::output::OutputTable;
use crate::sql;

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
    registration: Registration::Script,
};
