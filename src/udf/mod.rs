//! Every Rust UDF and UDAF of cskpi, registered in one place so that the
//! run, the SQL shell and a distributed engine see the same functions.

mod mrr_snapshot_months;
mod to_json;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

pub use mrr_snapshot_months::MrrSnapshotMonths;
pub use to_json::ToJson;

/// The scalar UDFs, by value, for registries other than a SessionContext.
pub fn scalar_udfs() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(MrrSnapshotMonths::new()),
        ScalarUDF::new_from_impl(ToJson::new()),
    ]
}

pub fn register_all(ctx: &SessionContext) {
    for udf in scalar_udfs() {
        ctx.register_udf(udf);
    }
}
