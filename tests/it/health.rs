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

use super::fixture::{Fixture, Order, TicketRow, owned, sub};

/// (customer_id, day, events), one active user each
fn write_usage(f: &Fixture, usage: &[(&str, &str, i64)]) {
    let rows: Vec<_> = usage.iter().map(|u| (u.0, u.1, 1, u.2)).collect();
    f.usage(&rows);
}

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
    f.surveys(&surveys);
    let usage = [
        ("USE", "2025-12-02", 15),
        ("USE", "2025-12-01", 45),
        ("USE", "2025-09-03", 45),
        ("USE", "2025-09-02", 1000),
    ];
    write_usage(&f, &usage);
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

/// Spec 4.12 by hand: as_of 2025-12-31 and, trend_days (30) earlier,
/// D = 2025-12-01, scored as if as_of were D: its 30 days are Nov 2 - Dec 1,
/// its usage windows Nov 2 - Dec 1 and Aug 4 - Nov 1, its MRR snapshots
/// Dec 1 and Sep 30; nothing dated after D counts. Default weights; every
/// customer has support 100 unless said otherwise.
///
/// - X: 4 tickets on Dec 5-8: support 20 now (red); none by D: 100
///   (green). Change -80: crosses from green to red.
/// - M: $100 for September, $150 for Nov 15 - Dec 15, $300 for Dec 15 -
///   Jan 15 (ordered Dec 15). Now 300 / 100 -> 100, score 100; at D 150 /
///   100 -> 75: (0.15 * 100 + 0.20 * 75) / 0.35 = 85.714286. Change
///   14.285714.
/// - B: $100 for September, and a line ordered Dec 20 for Nov 20 - Dec 20:
///   it covers D but was ordered after it, so B had no MRR at D either:
///   mrr_trend 0 both times, (0.15 * 100) / 0.35 = 42.857143, change 0.
/// - U: usage 60 on Oct 1, 30 on Nov 20, 90 on Dec 10. Now r = 90 /
///   (90 / 3) = 3 -> 100, score 100; at D r = 30 / (60 / 3) -> 75:
///   (0.30 * 75 + 0.15 * 100) / 0.45 = 83.333333. Change 16.666667.
/// - N: nps 3 on Nov 10, 9 on Dec 5. Now 90: (18 + 15) / 0.35 = 94.285714
///   (green); at D 30: 21 / 0.35 = 60 (yellow). Change 34.285714.
/// - C: csat 5 on Nov 10, 1 on Dec 20. Now mean 3 -> 50: 22.5 / 0.3 = 75;
///   at D 100: 100. Change -25.
/// - NEWBIE signed up Dec 10, inside the trend window: previous columns
///   null. LEFT churned Dec 15: active at D, not now, so no row.
fn trend_fixture() -> Fixture {
    let mut f = Fixture::new();
    let mut customers: Vec<(&str, &str, Option<&str>, Option<&str>)> =
        ["X", "M", "B", "U", "N", "C"]
            .iter()
            .map(|id| (*id, "2025-01-01", None, Some("h")))
            .collect();
    customers.push(("NEWBIE", "2025-12-10", None, Some("h")));
    customers.push(("LEFT", "2025-01-01", Some("2025-12-15"), Some("h")));
    f.customers(&customers);
    f.orders(&[
        sub("T1", "M", "2025-09-01", "2025-10-01", 100.0),
        sub("T2", "M", "2025-11-15", "2025-12-15", 150.0),
        sub("T3", "M", "2025-12-15", "2026-01-15", 300.0),
        sub("T4", "B", "2025-09-01", "2025-10-01", 100.0),
        Order {
            id: "T5",
            customer: "B",
            date: "2025-12-20",
            amount: 200.0,
            kind: "subscription",
            period: Some(("2025-11-20", "2025-12-20")),
        },
    ]);
    let tickets: Vec<TicketRow> = vec![
        ("X1", "X", "2025-12-05 10:00", None, 1, None),
        ("X2", "X", "2025-12-06 10:00", None, 1, None),
        ("X3", "X", "2025-12-07 10:00", None, 1, None),
        ("X4", "X", "2025-12-08 10:00", None, 1, None),
    ];
    f.tickets(&tickets);
    let surveys = [
        ("S1", "N", "2025-11-10 10:00", "nps", 3.0),
        ("S2", "N", "2025-12-05 10:00", "nps", 9.0),
        ("S3", "C", "2025-11-10 10:00", "csat", 5.0),
        ("S4", "C", "2025-12-20 10:00", "csat", 1.0),
    ];
    f.surveys(&surveys);
    let usage = [
        ("U", "2025-10-01", 60),
        ("U", "2025-11-20", 30),
        ("U", "2025-12-10", 90),
    ];
    write_usage(&f, &usage);
    f.job_extra = "[run]\nfrom = '2025-09'\n".into();
    f
}

#[tokio::test]
async fn health_trend_by_hand() {
    let mut f = trend_fixture();
    f.run("2025-12-31").await.unwrap();
    let query = "SELECT customer_id, round(health_score, 6), band, round(previous_health_score, 6), \
                 previous_band, round(health_change, 6) FROM customer_health ORDER BY customer_id";
    let expected = owned(&[
        ["B", "42.857143", "yellow", "42.857143", "yellow", "0.0"],
        ["C", "75.0", "green", "100.0", "green", "-25.0"],
        ["M", "100.0", "green", "85.714286", "green", "14.285714"],
        ["N", "94.285714", "green", "60.0", "yellow", "34.285714"],
        ["NEWBIE", "100.0", "green", "NULL", "NULL", "NULL"],
        ["U", "100.0", "green", "83.333333", "green", "16.666667"],
        ["X", "20.0", "red", "100.0", "green", "-80.0"],
    ]);
    assert_eq!(f.rows(query).await, expected);

    // trend_days = 20: D = Dec 11, after NEWBIE's signup and X's tickets.
    f.job_extra = "[run]\nfrom = '2025-09'\n[health]\ntrend_days = 20\n".into();
    f.run("2025-12-31").await.unwrap();
    let rows = f.rows(query).await;
    assert_eq!(
        rows[4],
        ["NEWBIE", "100.0", "green", "100.0", "green", "0.0"]
    );
    assert_eq!(rows[6], ["X", "20.0", "red", "20.0", "red", "0.0"]);
}
