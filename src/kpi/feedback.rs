//! Comment themes and sentiment (spec 4.6): `sql/feedback.sql`.

use super::{KpiFamily, Registration};
use crate::output::OutputTable;
use crate::sql;

pub const FAMILY: KpiFamily = KpiFamily {
    name: "feedback",
    script: sql::FEEDBACK,
    outputs: &[
        OutputTable {
            name: "feedback_themes",
            order_by: "month, theme",
            partition_by: None,
            sorted_per_partition: false,
        },
        OutputTable {
            name: "feedback_comments",
            order_by: "month, response_id, comment",
            partition_by: Some("month"),
            sorted_per_partition: false,
        },
    ],
    // The text analysis runs once; feedback_themes reads its result.
    materialize: &["feedback_comments"],
    materialize_by_value: &[],
    registration: Registration::Script,
};
