//! Spec 4.5 (NPS and CSAT) on hand-worked fixtures (as_of 2025-03-31).
//!
//! Customers: S1, S2 in segment a, S3 in segment b.
//!
//! NPS: S1 answers 3 (Mar 10) then 10 (Mar 20): only 10 counts. S2 answers
//! 6 (R3) and 9 (R4) at the same minute: the greater response_id, 9, counts.
//! S3 answers 8. all: 2 promoters, 1 passive, nps = 100 * 2 / 3 = 66.6667,
//! moe = 196 * sqrt((2/3 + 0 - (2/3)^2) / 3) = 53.3444. b: one passive,
//! nps 0, moe 0. a: two promoters, nps 100, moe = 196 * sqrt((1 - 1) / 2) = 0.
//! CSAT: 50 responses, 20 fives, 15 fours, 10 threes, 5 ones: 35 of 50 >= 4
//! -> 70; with positive_min = 5, 20 of 50 -> 40.
//! February, all detractors: S1 answers 0, S3 answers 6. a and b: one
//! detractor each, nps -100; all: 2 detractors, nps -100; moe
//! = 196 * sqrt((0 + 1 - (-1)^2) / n) = 0 everywhere; no CSAT -> null.

use super::fixture::{Fixture, floats, strs, timestamps};

fn fixture() -> Fixture {
    let f = Fixture::new();
    f.customers(&[
        ("S1", "2025-01-01", None, Some("a")),
        ("S2", "2025-01-01", None, Some("a")),
        ("S3", "2025-01-01", None, Some("b")),
    ]);
    f.orders(&[]);
    f.tickets(&[]);

    let mut rows: Vec<(String, &str, &str, &str, f64)> = vec![
        ("R1".into(), "S1", "2025-03-10 10:00", "nps", 3.0),
        ("R2".into(), "S1", "2025-03-20 10:00", "nps", 10.0),
        ("R3".into(), "S2", "2025-03-15 12:00", "nps", 6.0),
        ("R4".into(), "S2", "2025-03-15 12:00", "nps", 9.0),
        ("R5".into(), "S3", "2025-03-16 12:00", "nps", 8.0),
        ("R6".into(), "S1", "2025-02-10 10:00", "nps", 0.0),
        ("R7".into(), "S3", "2025-02-11 10:00", "nps", 6.0),
    ];
    for i in 0..50 {
        let score = match i {
            0..20 => 5.0,
            20..35 => 4.0,
            35..45 => 3.0,
            _ => 1.0,
        };
        rows.push((
            format!("C{i:02}"),
            ["S1", "S2", "S3"][i % 3],
            "2025-03-25 09:00",
            "csat",
            score,
        ));
    }
    f.write(
        "surveys",
        vec![
            ("response_id", strs(rows.iter().map(|r| Some(r.0.as_str())))),
            ("customer_id", strs(rows.iter().map(|r| Some(r.1)))),
            ("responded_at", timestamps(rows.iter().map(|r| Some(r.2)))),
            ("survey", strs(rows.iter().map(|r| Some(r.3)))),
            ("score", floats(rows.iter().map(|r| Some(r.4)))),
        ],
    );
    f
}

#[tokio::test]
async fn nps_latest_response_and_margin_csat_threshold_by_hand() {
    let mut f = fixture();
    f.job_extra = "[run]\nfrom = '2025-03'\n".into();
    f.run("2025-03-31").await.unwrap();
    let rows = f
        .rows(
            "SELECT segment, nps_responses, promoters, passives, detractors, round(nps, 4), \
             round(nps_moe, 4), csat_responses, csat_positive, round(csat, 4) \
             FROM survey_monthly ORDER BY segment",
        )
        .await;
    let expected = [
        [
            "a", "2", "2", "0", "0", "100.0", "0.0", "34", "24", "70.5882",
        ],
        [
            "all", "3", "2", "1", "0", "66.6667", "53.3444", "50", "35", "70.0",
        ],
        ["b", "1", "0", "1", "0", "0.0", "0.0", "16", "11", "68.75"],
    ];
    assert_eq!(
        rows,
        expected.map(|r| r.map(String::from).to_vec()).to_vec()
    );

    f.job_extra = "[run]\nfrom = '2025-03'\n[csat]\npositive_min = 5\n".into();
    f.run("2025-03-31").await.unwrap();
    let all = f
        .rows("SELECT round(csat, 4) FROM survey_monthly WHERE segment = 'all'")
        .await;
    assert_eq!(all, vec![vec!["40.0".to_string()]]);
}

#[tokio::test]
async fn all_detractors_month_by_hand() {
    let mut f = fixture();
    f.job_extra = "[run]\nfrom = '2025-02'\n".into();
    f.run("2025-03-31").await.unwrap();
    let rows = f
        .rows(
            "SELECT segment, nps_responses, promoters, passives, detractors, nps, nps_moe, \
             csat_responses, csat FROM survey_monthly WHERE month = DATE '2025-02-01' \
             ORDER BY segment",
        )
        .await;
    let expected = [
        ["a", "1", "0", "0", "1", "-100.0", "0.0", "0", "NULL"],
        ["all", "2", "0", "0", "2", "-100.0", "0.0", "0", "NULL"],
        ["b", "1", "0", "0", "1", "-100.0", "0.0", "0", "NULL"],
    ];
    assert_eq!(
        rows,
        expected.map(|r| r.map(String::from).to_vec()).to_vec()
    );
}
