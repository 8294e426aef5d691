//! Spec 4.9 on a hand-worked fixture: as_of 2025-12-31, default weights
//! (usage 0.30, nps 0.20, csat 0.15, support 0.15, mrr_trend 0.20), bands
//! green >= 70, yellow >= 40. Windows: 30 days = Dec 2-31, 90 days from
//! Oct 3, 180 days from Jul 5; usage: recent Dec 2-31, earlier Sep 3 - Dec 1.
//!
//! - G70: support 100, csat 25 * (mean(3,3,3,2,2) - 1) = 40, nothing else:
//!   (0.15 * 100 + 0.15 * 40) / 0.30 = 70 -> green (the edge).
//! - Y40: 3 tickets in Dec 2-31 (and one on Dec 1, outside) -> support 40,
//!   alone -> 40 -> yellow (the edge).
//! - R20: 4 tickets -> 20 -> red.
//! - NOUSE: no usage rows (usage null); nps: two answers at the same time,
//!   9 (N1a) and 4 (N1b): the greater response_id counts -> 40; an older 10
//!   on Jul 4 is outside 180 days. Weights renormalised over nps and
//!   support: (0.20 * 40 + 0.15 * 100) / 0.35 = 65.714286 -> yellow;
//!   contributions 22.857143 and 42.857143.
//! - USE: events 15 on Dec 2 (recent), 45 on Dec 1 and 45 on Sep 3
//!   (earlier), 1000 on Sep 2 (outside): r = 15 / (90 / 3) = 0.5 -> 25;
//!   with support 100: (0.30 * 25 + 0.15 * 100) / 0.45 = 50 -> yellow.
//! - M0: MRR 100 in Dec, none in Sep -> mrr_trend null -> support only, 100.
//! - M75: MRR 100 in Sep, 150 in Dec -> 75: (0.15 * 100 + 0.20 * 75) / 0.35
//!   = 85.714286 -> green.
//! - M100: 100 in Sep, 300 in Dec -> min(100, 150) = 100 -> 100.
//! - GONE churned on Dec 15 and LATE signs up in 2026: no rows.

use super::fixture::{Fixture, TicketRow, dates, floats, ints, owned, strs, sub, timestamps};

fn fixture() -> Fixture {
    let mut f = Fixture::new();
    let ids = ["G70", "Y40", "R20", "NOUSE", "USE", "M0", "M75", "M100"];
    let mut customers: Vec<(&str, &str, Option<&str>, Option<&str>)> = ids
        .iter()
        .map(|id| (*id, "2025-01-01", None, Some("h")))
        .collect();
    customers.push(("GONE", "2025-01-01", Some("2025-12-15"), Some("h")));
    customers.push(("LATE", "2026-01-05", None, Some("h")));
    f.customers(&customers);
    f.orders(&[
        sub("O1", "M0", "2025-12-01", "2026-01-01", 100.0),
        sub("O2", "M75", "2025-09-01", "2025-10-01", 100.0),
        sub("O3", "M75", "2025-12-01", "2026-01-01", 150.0),
        sub("O4", "M100", "2025-09-01", "2025-10-01", 100.0),
        sub("O5", "M100", "2025-12-01", "2026-01-01", 300.0),
    ]);
    let mut tickets: Vec<TicketRow> = vec![
        ("Y1", "Y40", "2025-12-02 00:00", None, 1, None),
        ("Y2", "Y40", "2025-12-15 10:00", None, 1, None),
        ("Y3", "Y40", "2025-12-31 23:00", None, 1, None),
        ("Y0", "Y40", "2025-12-01 23:59", None, 1, None),
    ];
    for (i, day) in ["03", "04", "05", "06"].iter().enumerate() {
        let id: &'static str = Box::leak(format!("R{i}").into_boxed_str());
        let at: &'static str = Box::leak(format!("2025-12-{day} 10:00").into_boxed_str());
        tickets.push((id, "R20", at, None, 1, None));
    }
    f.tickets(&tickets);
    // (response_id, customer_id, responded_at, survey, score)
    let surveys = [
        ("C1", "G70", "2025-12-01 10:00", "csat", 3.0),
        ("C2", "G70", "2025-12-01 10:00", "csat", 3.0),
        ("C3", "G70", "2025-12-01 10:00", "csat", 3.0),
        ("C4", "G70", "2025-12-01 10:00", "csat", 2.0),
        ("C5", "G70", "2025-10-03 00:00", "csat", 2.0),
        ("C6", "G70", "2025-10-02 23:00", "csat", 5.0),
        ("N1a", "NOUSE", "2025-12-01 10:00", "nps", 9.0),
        ("N1b", "NOUSE", "2025-12-01 10:00", "nps", 4.0),
        ("N0", "NOUSE", "2025-07-04 10:00", "nps", 10.0),
    ];
    f.write(
        "surveys",
        vec![
            ("response_id", strs(surveys.iter().map(|s| Some(s.0)))),
            ("customer_id", strs(surveys.iter().map(|s| Some(s.1)))),
            (
                "responded_at",
                timestamps(surveys.iter().map(|s| Some(s.2))),
            ),
            ("survey", strs(surveys.iter().map(|s| Some(s.3)))),
            ("score", floats(surveys.iter().map(|s| Some(s.4)))),
        ],
    );
    let usage = [
        ("USE", "2025-12-02", 15),
        ("USE", "2025-12-01", 45),
        ("USE", "2025-09-03", 45),
        ("USE", "2025-09-02", 1000),
    ];
    f.write(
        "usage",
        vec![
            ("customer_id", strs(usage.iter().map(|u| Some(u.0)))),
            ("day", dates(usage.iter().map(|u| Some(u.1)))),
            ("active_users", ints(usage.iter().map(|_| Some(1)))),
            ("events", ints(usage.iter().map(|u| Some(u.2)))),
        ],
    );
    f.job_extra = "[run]\nfrom = '2025-09'\n".into();
    f
}

#[tokio::test]
async fn health_scores_components_and_bands_by_hand() {
    let f = fixture();
    f.run("2025-12-31").await.unwrap();
    let rows = f
        .rows(
            "SELECT customer_id, round(health_score, 6), band, usage, nps, csat, support, mrr_trend \
             FROM customer_health ORDER BY customer_id",
        )
        .await;
    let expected = owned(&[
        [
            "G70", "70.0", "green", "NULL", "NULL", "40.0", "100.0", "NULL",
        ],
        [
            "M0", "100.0", "green", "NULL", "NULL", "NULL", "100.0", "NULL",
        ],
        [
            "M100", "100.0", "green", "NULL", "NULL", "NULL", "100.0", "100.0",
        ],
        [
            "M75",
            "85.714286",
            "green",
            "NULL",
            "NULL",
            "NULL",
            "100.0",
            "75.0",
        ],
        [
            "NOUSE",
            "65.714286",
            "yellow",
            "NULL",
            "40.0",
            "NULL",
            "100.0",
            "NULL",
        ],
        ["R20", "20.0", "red", "NULL", "NULL", "NULL", "20.0", "NULL"],
        [
            "USE", "50.0", "yellow", "25.0", "NULL", "NULL", "100.0", "NULL",
        ],
        [
            "Y40", "40.0", "yellow", "NULL", "NULL", "NULL", "40.0", "NULL",
        ],
    ]);
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn contributions_explain_the_score() {
    let f = fixture();
    f.run("2025-12-31").await.unwrap();
    let rows = f
        .rows(
            "SELECT round(nps_contribution, 6), round(support_contribution, 6), usage_contribution, \
             csat_contribution, mrr_trend_contribution \
             FROM customer_health WHERE customer_id = 'NOUSE'",
        )
        .await;
    assert_eq!(rows[0], ["22.857143", "42.857143", "NULL", "NULL", "NULL"]);
    let off = f
        .rows(
            "SELECT COUNT(*) FROM customer_health WHERE abs(health_score - (\
             COALESCE(usage_contribution, 0) + COALESCE(nps_contribution, 0) \
             + COALESCE(csat_contribution, 0) + COALESCE(support_contribution, 0) \
             + COALESCE(mrr_trend_contribution, 0))) > 1e-6",
        )
        .await;
    assert_eq!(off[0][0], "0");
}

#[tokio::test]
async fn configured_weights_and_bands_apply() {
    let mut f = fixture();
    // csat weighs nothing now: G70 is its support alone, 100; and with
    // green from 90 M75 (85.71) turns yellow.
    f.job_extra = "[run]\nfrom = '2025-09'\n[health]\ngreen_min = 90\nyellow_min = 30\n\
                   [health.weights]\ncsat = 0\n"
        .into();
    f.run("2025-12-31").await.unwrap();
    let rows = f
        .rows(
            "SELECT customer_id, health_score, band FROM customer_health \
             WHERE customer_id IN ('G70', 'M75', 'R20') ORDER BY customer_id",
        )
        .await;
    assert_eq!(rows[0], ["G70", "100.0", "green"]);
    assert_eq!(rows[1][2], "yellow");
    assert_eq!(rows[2], ["R20", "20.0", "red"]);
}
