//! Every Rust UDF and UDAF of cskpi, registered in one place so that the
//! run, the SQL shell and a distributed engine see the same functions;
//! except `directory_customer_id`, `directory_customer_key` and
//! `directory_first_signup`, which hold a run's customer directory and are
//! registered by validation in that run's local session.

mod customer_directory;
mod customer_mrr_months;
mod directory_customer_id;
mod feedback;
mod grouped_rows;
mod key_hash;
mod latest_score;
mod mrr_snapshot_months;
mod prefetch;
mod renewal_due_months;
mod sums_by_key;
mod survey_scores;
mod to_json;
mod version;

use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

use crate::feedback::Taxonomy;

pub use customer_directory::{
    CustomerDirectory, DirectoryLookup, FIRST_SIGNUP_NAME as DIRECTORY_FIRST_SIGNUP,
    KEY_NAME as DIRECTORY_CUSTOMER_KEY,
};
pub use customer_mrr_months::CustomerMrrMonths;
pub use directory_customer_id::{DirectoryCustomerId, NAME as DIRECTORY_CUSTOMER_ID};
pub use feedback::{CommentSentiment, CommentThemes};
pub use key_hash::KeyHash;
pub use latest_score::LatestScore;
pub use mrr_snapshot_months::MrrSnapshotMonths;
pub use renewal_due_months::RenewalDueMonths;
pub use sums_by_key::SumsByKey;
pub use survey_scores::{DEFAULT_CSAT_POSITIVE_MIN, ScoreAggregate, ScoreKpi};
pub use to_json::ToJson;
pub use version::{CskpiVersion, VERSION};

/// The scalar UDFs, by value, for registries other than a SessionContext.
/// `comment_themes` uses `taxonomy`.
pub fn scalar_udfs(taxonomy: Arc<Taxonomy>) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(MrrSnapshotMonths::new()),
        ScalarUDF::new_from_impl(ToJson::new()),
        ScalarUDF::new_from_impl(CommentThemes::new(taxonomy)),
        ScalarUDF::new_from_impl(CommentSentiment::new()),
        ScalarUDF::new_from_impl(KeyHash::new()),
        ScalarUDF::new_from_impl(CskpiVersion::new()),
    ]
}

/// The aggregates that keep every row of a group (`grouped_rows.rs`): a
/// run aggregates them in one stage (`whole_group_plan.rs`).
pub const WHOLE_GROUP_AGGREGATES: [&str; 2] = ["renewal_due_months", "customer_mrr_months"];

/// The aggregate UDFs: `nps`, `nps_moe`, `csat`, `latest_score`,
/// `sums_by_key`, `renewal_due_months` and `customer_mrr_months`.
pub fn aggregate_udfs() -> Vec<AggregateUDF> {
    [ScoreKpi::Nps, ScoreKpi::NpsMoe, ScoreKpi::Csat]
        .into_iter()
        .map(|kpi| AggregateUDF::new_from_impl(ScoreAggregate::new(kpi)))
        .chain([
            AggregateUDF::new_from_impl(LatestScore::new()),
            AggregateUDF::new_from_impl(SumsByKey::new()),
            AggregateUDF::new_from_impl(RenewalDueMonths::new()),
            AggregateUDF::new_from_impl(CustomerMrrMonths::new()),
        ])
        .collect()
}

/// The name of every function cskpi adds, scalar then aggregate (for help).
pub fn names() -> Vec<String> {
    let scalars = scalar_udfs(Arc::new(Taxonomy::built_in()));
    let scalar_names = scalars.iter().map(|u| u.name().to_string());
    let aggregates = aggregate_udfs();
    let aggregate_names = aggregates.iter().map(|u| u.name().to_string());
    scalar_names.chain(aggregate_names).collect()
}

pub fn register_all(ctx: &SessionContext, taxonomy: Arc<Taxonomy>) {
    for udf in scalar_udfs(taxonomy) {
        ctx.register_udf(udf);
    }
    for udaf in aggregate_udfs() {
        ctx.register_udaf(udaf);
    }
}
