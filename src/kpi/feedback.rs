//! Comment themes and sentiment (spec 4.6): `sql/feedback.sql`.

use super::definitions::{KpiDefinition, kpi};
use super::{KpiFamily, Registration};
use crate::engine::sql;
use crate::output::OutputTable;

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
    kpis: KPIS,
    tests: &["tests/it/feedback.rs"],
    registration: Registration::Script,
};

/// The KPIs the family publishes (`cskpi kpis`, docs/KPIS.md).
pub const KPIS: &[KpiDefinition] = &[
    kpi!(
        "comments",
        "Comments",
        "4.6",
        "comments",
        ["surveys"],
        "feedback_themes.comments",
        "survey comments of the month, non-empty after trimming"
    ),
    kpi!(
        "mentions",
        "Theme mentions",
        "4.6",
        "comments",
        ["surveys"],
        "feedback_themes.mentions",
        "comments matching any keyword of the theme as whole words or a phrase (NFC, lowercase)"
    ),
    kpi!(
        "share",
        "Theme share",
        "4.6",
        "%",
        ["surveys"],
        "feedback_themes.share",
        "100 * mentions / comments"
    ),
    kpi!(
        "avg_sentiment",
        "Average sentiment of a theme",
        "4.6",
        "-1..1",
        ["surveys"],
        "feedback_themes.avg_sentiment",
        "mean sentiment of the comments mentioning the theme"
    ),
    kpi!(
        "avg_nps_score",
        "Average NPS score of a theme",
        "4.6",
        "score 0-10",
        ["surveys"],
        "feedback_themes.avg_nps_score",
        "mean score of the nps responses whose comment mentions the theme"
    ),
    kpi!(
        "sentiment",
        "Comment sentiment",
        "4.6",
        "-1..1",
        ["surveys"],
        "feedback_comments.sentiment",
        "mean valence of the English and Vietnamese lexicon terms of the comment, a negated term counting -0.75 times; UDF comment_sentiment(text)"
    ),
];
