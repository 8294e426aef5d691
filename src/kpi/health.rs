//! The customer health score (spec 4.9): `sql/health.sql`.

use super::{KpiFamily, Registration};
use crate::output::OutputTable;
use crate::sql;

pub const FAMILY: KpiFamily = KpiFamily {
    name: "health",
    script: sql::HEALTH,
    outputs: &[OutputTable {
        name: "customer_health",
        order_by: "as_of, customer_id",
        partition_by: Some("as_of"),
        sorted_per_partition: false,
    }],
    materialize: &[],
    materialize_by_value: &[],
    registration: Registration::Script,
};
