//! Spec 4.6 on a hand-worked fixture (as_of 2025-04-30, from 2025-03).
//!
//! Comments, with the built-in taxonomy and lexicon valences:
//!   R1 nps 10  "Great support, very fast"            support;  (1 + 0.75) / 2 = 0.875
//!   R2 nps 3   "Too expensive, and the app is slow"  pricing, performance; (-0.5 - 0.75) / 2 = -0.625
//!   R3 csat 2  "Hỗ trợ KHÔNG tốt"                     support;  tốt negated: 0.75 * -0.75 = -0.5625
//!   R4 nps 6   "  \t " (blank)                        not a comment
//!   R5 csat 5  no comment                             not a comment
//!   R6 csi q1 7 and q2 9, both "Giá hợp lý"           one comment: pricing; 0.5; score null
//!   R7 nps 8   "Our flagship plan"                     no theme ("lag" is not in flagship); 0
//!   R8 nps 9   "Còn LỖI" in April, decomposed (NFD)   bugs; -0.5
//! March: 5 comments. support 2 (share 40, sentiment (0.875 - 0.5625) / 2
//! = 0.15625, nps score 10); pricing 2 (40, (-0.625 + 0.5) / 2 = -0.0625,
//! nps 3); performance 1 (20, -0.625, 3); bugs 0 (0, null, null).
//! April: 1 comment; bugs 1 (100, -0.5, 9); support 0.

use unicode_normalization::UnicodeNormalization;

use super::fixture::{Fixture, floats, owned, strs, timestamps};

type SurveyRow<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    f64,
    Option<String>,
);

fn fixture() -> Fixture {
    let f = Fixture::new();
    f.customers(&[
        ("S1", "2025-01-01", None, Some("a")),
        ("S2", "2025-01-01", None, Some("b")),
    ]);
    f.orders(&[]);
    f.no_tickets();
    let c = |s: &str| Some(s.to_string());
    let rows: Vec<SurveyRow> = vec![
        (
            "R1",
            "S1",
            "2025-03-05 10:00",
            "nps",
            None,
            10.0,
            c("Great support, very fast"),
        ),
        (
            "R2",
            "S2",
            "2025-03-06 10:00",
            "nps",
            None,
            3.0,
            c("Too expensive, and the app is slow"),
        ),
        (
            "R3",
            "S1",
            "2025-03-07 10:00",
            "csat",
            None,
            2.0,
            c("Hỗ trợ KHÔNG tốt"),
        ),
        ("R4", "S2", "2025-03-08 10:00", "nps", None, 6.0, c("  \t ")),
        ("R5", "S2", "2025-03-09 10:00", "csat", None, 5.0, None),
        (
            "R6",
            "S1",
            "2025-03-10 10:00",
            "csi",
            Some("q1"),
            7.0,
            c("Giá hợp lý"),
        ),
        (
            "R6",
            "S1",
            "2025-03-10 10:00",
            "csi",
            Some("q2"),
            9.0,
            c("Giá hợp lý"),
        ),
        (
            "R7",
            "S2",
            "2025-03-11 10:00",
            "nps",
            None,
            8.0,
            c("Our flagship plan"),
        ),
        (
            "R8",
            "S1",
            "2025-04-02 10:00",
            "nps",
            None,
            9.0,
            Some("Còn LỖI".nfd().collect()),
        ),
    ];
    f.write(
        "surveys",
        vec![
            ("response_id", strs(rows.iter().map(|r| Some(r.0)))),
            ("customer_id", strs(rows.iter().map(|r| Some(r.1)))),
            ("responded_at", timestamps(rows.iter().map(|r| Some(r.2)))),
            ("survey", strs(rows.iter().map(|r| Some(r.3)))),
            ("item", strs(rows.iter().map(|r| r.4))),
            ("score", floats(rows.iter().map(|r| Some(r.5)))),
            ("comment", strs(rows.iter().map(|r| r.6.as_deref()))),
        ],
    );
    f
}

#[tokio::test]
async fn themes_per_month_by_hand() {
    let mut f = fixture();
    f.job_extra = "[run]\nfrom = '2025-03'\n".into();
    f.run("2025-04-30").await.unwrap();
    let rows = f
        .rows(
            "SELECT month, theme, comments, mentions, round(share, 4), avg_sentiment, \
             avg_nps_score FROM feedback_themes \
             WHERE theme IN ('bugs', 'performance', 'pricing', 'support') ORDER BY month, theme",
        )
        .await;
    let expected: &[&[&str]] = &[
        &["2025-03-01", "bugs", "5", "0", "0.0", "NULL", "NULL"],
        &[
            "2025-03-01",
            "performance",
            "5",
            "1",
            "20.0",
            "-0.625",
            "3.0",
        ],
        &["2025-03-01", "pricing", "5", "2", "40.0", "-0.0625", "3.0"],
        &["2025-03-01", "support", "5", "2", "40.0", "0.15625", "10.0"],
        &["2025-04-01", "bugs", "1", "1", "100.0", "-0.5", "9.0"],
        &["2025-04-01", "performance", "1", "0", "0.0", "NULL", "NULL"],
        &["2025-04-01", "pricing", "1", "0", "0.0", "NULL", "NULL"],
        &["2025-04-01", "support", "1", "0", "0.0", "NULL", "NULL"],
    ];
    assert_eq!(rows, owned(expected));
    // Every built-in theme has a row in every month.
    let counts = f
        .rows("SELECT month, COUNT(*) FROM feedback_themes GROUP BY month ORDER BY month")
        .await;
    let themes = cskpi::feedback::Taxonomy::built_in()
        .theme_names()
        .count()
        .to_string();
    assert_eq!(
        counts,
        owned(&[&["2025-03-01", &themes], &["2025-04-01", &themes]])
    );
}

#[tokio::test]
async fn comments_table_lists_each_comment_once() {
    let mut f = fixture();
    f.job_extra = "[run]\nfrom = '2025-03'\n".into();
    f.run("2025-04-30").await.unwrap();
    let rows = f
        .rows(
            "SELECT response_id, customer_id, month, survey, score, sentiment, \
             array_to_string(themes, ','), segment FROM feedback_comments ORDER BY response_id",
        )
        .await;
    let expected: &[&[&str]] = &[
        &[
            "R1",
            "S1",
            "2025-03-01",
            "nps",
            "10.0",
            "0.875",
            "support",
            "a",
        ],
        &[
            "R2",
            "S2",
            "2025-03-01",
            "nps",
            "3.0",
            "-0.625",
            "performance,pricing",
            "b",
        ],
        &[
            "R3",
            "S1",
            "2025-03-01",
            "csat",
            "2.0",
            "-0.5625",
            "support",
            "a",
        ],
        &[
            "R6",
            "S1",
            "2025-03-01",
            "csi",
            "NULL",
            "0.5",
            "pricing",
            "a",
        ],
        &["R7", "S2", "2025-03-01", "nps", "8.0", "0.0", "", "b"],
        &["R8", "S1", "2025-04-01", "nps", "9.0", "-0.5", "bugs", "a"],
    ];
    assert_eq!(rows, owned(expected));
}

#[tokio::test]
async fn configured_taxonomy_replaces_the_built_in_one() {
    let mut f = fixture();
    f.job_extra = "[run]\nfrom = '2025-03'\n\
        [feedback.themes]\nspeed = ['slow', 'lag', 'chậm']\nmoney = ['expensive', 'giá', 'value for money']\n"
        .into();
    f.run("2025-04-30").await.unwrap();
    let rows = f
        .rows("SELECT month, theme, mentions FROM feedback_themes ORDER BY month, theme")
        .await;
    let expected: &[&[&str]] = &[
        &["2025-03-01", "money", "2"],
        &["2025-03-01", "speed", "1"],
        &["2025-04-01", "money", "0"],
        &["2025-04-01", "speed", "0"],
    ];
    assert_eq!(rows, owned(expected));
}
