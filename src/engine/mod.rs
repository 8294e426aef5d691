//! DataFusion around the KPIs: the one session ([`session`]), the bundled
//! SQL and how views are stored ([`sql`], [`bucketed`]), every UDF and UDAF
//! ([`udf`]), and the planner and execution pieces the KPIs need
//! ([`whole_group_plan`], [`compact`], [`repeated_hashes`]), and a run's
//! scratch directory ([`scratch`]).

pub mod bucketed;
pub mod compact;
pub mod repeated_hashes;
pub mod scratch;
pub mod session;
pub mod sql;
pub mod udf;
pub mod whole_group_plan;
pub mod writer;

/// Seconds rounded to the millisecond, for log fields.
pub fn log_seconds(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}
