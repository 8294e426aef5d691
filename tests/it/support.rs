//! Spec 4.4 (support) on hand-worked fixtures (as_of 2025-03-31, March only).
//!
//! Tickets (segment a: S1, S2; b: S3), hours to resolution in brackets:
//!   T1 S1 resolved [2], 1 contact, reopened null   -> first contact resolved
//!   T2 S1 resolved [4], 2 contacts                  -> resolved, not FCR
//!   T3 S2 resolved [10], 1 contact, reopened        -> resolved, not FCR
//!   T4 S3 unresolved
//!   T5 S3 resolved Apr 2, after as_of               -> unresolved
//!   T6 S3 resolved [1], 1 contact, not reopened     -> FCR
//!   T7 S3 opened Apr 1, after as_of                 -> invisible
//! all: 6 tickets, 4 resolved, 2 FCR -> 33.3333; median of 1, 2, 4, 10 = 3
//! a: 3, 3, 1 -> 33.3333, median of 2, 4, 10 = 4; b: 3, 1, 1, median 1

use super::fixture::{Fixture, TicketRow};

fn fixture() -> Fixture {
    let f = Fixture::new();
    f.customers(&[
        ("S1", "2025-01-01", None, Some("a")),
        ("S2", "2025-01-01", None, Some("a")),
        ("S3", "2025-01-01", None, Some("b")),
    ]);
    f.orders(&[]);
    let tickets: [TicketRow; 7] = [
        (
            "T1",
            "S1",
            "2025-03-01 10:00",
            Some("2025-03-01 12:00"),
            1,
            None,
        ),
        (
            "T2",
            "S1",
            "2025-03-02 10:00",
            Some("2025-03-02 14:00"),
            2,
            Some(false),
        ),
        (
            "T3",
            "S2",
            "2025-03-03 10:00",
            Some("2025-03-03 20:00"),
            1,
            Some(true),
        ),
        ("T4", "S3", "2025-03-04 10:00", None, 1, None),
        (
            "T5",
            "S3",
            "2025-03-30 10:00",
            Some("2025-04-02 10:00"),
            1,
            Some(false),
        ),
        (
            "T6",
            "S3",
            "2025-03-05 09:00",
            Some("2025-03-05 10:00"),
            1,
            Some(false),
        ),
        (
            "T7",
            "S3",
            "2025-04-01 09:00",
            Some("2025-04-01 10:00"),
            1,
            Some(false),
        ),
    ];
    f.tickets(&tickets);
    f
}

#[tokio::test]
async fn fcr_and_median_resolution_by_hand() {
    let mut f = fixture();
    f.job_extra = "[run]\nfrom = '2025-03'\n".into();
    f.run("2025-03-31").await.unwrap();
    let rows = f
        .rows(
            "SELECT segment, tickets, resolved, first_contact_resolved, round(fcr_rate, 4), \
             median_resolution_hours FROM support_monthly ORDER BY segment",
        )
        .await;
    let expected = [
        ["a", "3", "3", "1", "33.3333", "4.0"],
        ["all", "6", "4", "2", "33.3333", "3.0"],
        ["b", "3", "1", "1", "33.3333", "1.0"],
    ];
    assert_eq!(
        rows,
        expected.map(|r| r.map(String::from).to_vec()).to_vec()
    );
}

#[tokio::test]
async fn resolution_hours_keep_fractions_of_a_second() {
    // Opened 10:00:00.250, resolved 10:30:00.750: 1800.5 s = 0.50013888... h.
    let f = Fixture::new();
    f.customers(&[("S1", "2025-01-01", None, Some("a"))]);
    f.orders(&[]);
    f.tickets(&[(
        "T1",
        "S1",
        "2025-03-01 10:00:00.250",
        Some("2025-03-01 10:30:00.750"),
        1,
        None,
    )]);
    f.run("2025-03-31").await.unwrap();
    let hours = f
        .rows(
            "SELECT median_resolution_hours FROM support_monthly \
             WHERE segment = 'all' AND month = DATE '2025-03-01'",
        )
        .await;
    let hours: f64 = hours[0][0].parse().unwrap();
    assert!((hours - 1800.5 / 3600.0).abs() < 1e-12, "{hours}");
}

/// A customer whose rows are rejected (here a duplicate customer_id) keeps
/// its tickets, which count under segment 'unknown', so that the segments
/// add up to 'all': a 1 + unknown 1 = all 2. A customer who signs up after
/// as_of is invisible with its segment: no 'c' row, and no 'unknown' row
/// when no visible customer lacks a clean row.
#[tokio::test]
async fn a_rejected_customers_tickets_count_under_unknown() {
    let tickets: [TicketRow; 2] = [
        ("T1", "S1", "2025-03-01 10:00", None, 1, None),
        ("T2", "S2", "2025-03-02 10:00", None, 1, None),
    ];
    let query = "SELECT segment, tickets FROM support_monthly ORDER BY segment";

    let mut f = Fixture::new();
    f.customers(&[
        ("S1", "2025-01-01", None, Some("a")),
        ("S2", "2025-01-01", None, Some("b")),
        ("S2", "2025-01-01", None, Some("b")),
    ]);
    f.orders(&[]);
    f.tickets(&tickets);
    f.job_extra = "[run]\nfrom = '2025-03'\nmax_reject_ratio = 1.0\n".into();
    f.run("2025-03-31").await.unwrap();
    let expected = [["a", "1"], ["all", "2"], ["unknown", "1"]];
    assert_eq!(
        f.rows(query).await,
        expected.map(|r| r.map(String::from).to_vec()).to_vec()
    );

    let mut f = Fixture::new();
    f.customers(&[
        ("S1", "2025-01-01", None, Some("a")),
        ("S2", "2025-01-01", None, Some("a")),
        ("S3", "2025-04-05", None, Some("c")),
    ]);
    f.orders(&[]);
    f.tickets(&tickets);
    f.job_extra = "[run]\nfrom = '2025-03'\n".into();
    f.run("2025-03-31").await.unwrap();
    let expected = [["a", "2"], ["all", "2"]];
    assert_eq!(
        f.rows(query).await,
        expected.map(|r| r.map(String::from).to_vec()).to_vec()
    );
}
