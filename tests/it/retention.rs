//! Spec 4.1 and 4.2 on a hand-worked fixture (as_of 2025-03-31, from 2025-01).
//!
//! Customers (segment):
//!   A smb  signup 2024-12-10, churn 2025-02-01 (churned on the 1st)
//!   B smb  signup 2025-01-05, churn 2025-01-20 (signs up and churns in Jan)
//!   C ent  signup 2024-11-01
//!   D ent  signup 2025-02-15
//!   E smb  signup 2025-04-10 (after as_of: invisible)
//!   F smb  signup 2024-10-01, churn 2025-05-01 (after as_of: read as null)
//!   G null signup 2025-03-03 (segment 'unknown')
//!   H smb  signup 2024-11-15
//!
//! Worked by hand (all):
//!   Jan: CS = A,C,F,H = 4; CN = B = 1; CE = A,C,F,H = 4; churned 0
//!        churn 0, crr = 100 * (4 - 1) / 4 = 75
//!   Feb: CS = A,C,F,H = 4 (A churns on Feb 1, so it starts Feb); CN = D;
//!        CE = C,F,H,D = 4; churned = A -> churn 25, crr 75
//!   Mar: CS = C,F,H,D = 4; CN = G; CE = 5; churned 0 -> churn 0, crr 100
//!
//! Subscription lines (grace 30 days):
//!   A  L1 2024-12-10..2025-01-10, L2 2025-01-10..2025-02-01
//!   C  L1 2025-01-01..02-01, L2 02-01..03-01, L3 02-26..03-26 (3 days early)
//!   D  L  2025-02-15..03-15 (no renewal yet, grace ends Apr 14 > as_of)
//!   F  L1 2025-01-10..02-10, L2 2025-03-05..04-05 (23 days late, in grace)
//!   H  L1 2024-11-15..12-15, L2 2024-12-15..2025-01-15,
//!      L3 2025-02-20..03-20 (36 days after L2 ends: L2 not renewed)
//! Renewals (all):
//!   Jan due A(L1 won by L2), H(L2 lost: grace ended Feb 14) -> 2 due, 1 won, 50
//!   Feb due C(won), F(won late), A(L2 lost) -> 3 due, 2 won -> 66.6667
//!   Mar due C(L2 won early by L3; L3 itself open), D(pending), H(L3 pending)
//!       -> 3 due, 1 won, 2 pending -> 100 * 1 / (3 - 2) = 100

use super::fixture::{Fixture, sub};

fn fixture() -> Fixture {
    let f = Fixture::new();
    f.customers(&[
        ("A", "2024-12-10", Some("2025-02-01"), Some("smb")),
        ("B", "2025-01-05", Some("2025-01-20"), Some("smb")),
        ("C", "2024-11-01", None, Some("ent")),
        ("D", "2025-02-15", None, Some("ent")),
        ("E", "2025-04-10", None, Some("smb")),
        ("F", "2024-10-01", Some("2025-05-01"), Some("smb")),
        ("G", "2025-03-03", None, None),
        ("H", "2024-11-15", None, Some("smb")),
    ]);
    f.orders(&[
        sub("A1", "A", "2024-12-10", "2025-01-10", 10.0),
        sub("A2", "A", "2025-01-10", "2025-02-01", 10.0),
        sub("C1", "C", "2025-01-01", "2025-02-01", 10.0),
        sub("C2", "C", "2025-02-01", "2025-03-01", 10.0),
        sub("C3", "C", "2025-02-26", "2025-03-26", 10.0),
        sub("D1", "D", "2025-02-15", "2025-03-15", 10.0),
        sub("F1", "F", "2025-01-10", "2025-02-10", 10.0),
        sub("F2", "F", "2025-03-05", "2025-04-05", 10.0),
        sub("H1", "H", "2024-11-15", "2024-12-15", 10.0),
        sub("H2", "H", "2024-12-15", "2025-01-15", 10.0),
        sub("H3", "H", "2025-02-20", "2025-03-20", 10.0),
        // E signs up after as_of: its orders are invisible, not rejected.
        sub("E1", "E", "2025-04-10", "2025-05-10", 10.0),
    ]);
    f.no_tickets();
    f
}

const COLUMNS: &str = "month, segment, customers_start, customers_new, \
    customers_end, customers_churned, round(churn_rate, 4), round(crr, 4), \
    renewals_due, renewals_won, renewals_pending, round(renewal_rate, 4)";

#[tokio::test]
async fn customers_churn_crr_and_renewals_by_hand() {
    let mut f = fixture();
    f.job_extra = "[run]\nfrom = '2025-01'\n".into();
    let report = f.run("2025-03-31").await.unwrap();
    assert_eq!(report.first_month, super::fixture::date("2025-01-01"));

    let all = f
        .rows(&format!(
            "SELECT {COLUMNS} FROM retention_monthly WHERE segment = 'all' ORDER BY month"
        ))
        .await;
    let expected = [
        [
            "2025-01-01",
            "all",
            "4",
            "1",
            "4",
            "0",
            "0.0",
            "75.0",
            "2",
            "1",
            "0",
            "50.0",
        ],
        [
            "2025-02-01",
            "all",
            "4",
            "1",
            "4",
            "1",
            "25.0",
            "75.0",
            "3",
            "2",
            "0",
            "66.6667",
        ],
        [
            "2025-03-01",
            "all",
            "4",
            "1",
            "5",
            "0",
            "0.0",
            "100.0",
            "3",
            "1",
            "2",
            "100.0",
        ],
    ];
    assert_eq!(all, expected.map(|r| r.map(String::from).to_vec()).to_vec());

    // smb: A, B, F, H. Jan CS = A,F,H; CN = B; CE = A,F,H -> crr 66.6667.
    // Feb CS = A,F,H; CE = F,H; churned A. Mar CS = CE = F,H.
    // Renewals smb: Jan A won, H lost; Feb F won, A lost; Mar H pending -> null.
    let smb = f
        .rows(&format!(
            "SELECT {COLUMNS} FROM retention_monthly WHERE segment = 'smb' ORDER BY month"
        ))
        .await;
    let expected = [
        [
            "2025-01-01",
            "smb",
            "3",
            "1",
            "3",
            "0",
            "0.0",
            "66.6667",
            "2",
            "1",
            "0",
            "50.0",
        ],
        [
            "2025-02-01",
            "smb",
            "3",
            "0",
            "2",
            "1",
            "33.3333",
            "66.6667",
            "2",
            "1",
            "0",
            "50.0",
        ],
        [
            "2025-03-01",
            "smb",
            "2",
            "0",
            "2",
            "0",
            "0.0",
            "100.0",
            "1",
            "0",
            "1",
            "NULL",
        ],
    ];
    assert_eq!(smb, expected.map(|r| r.map(String::from).to_vec()).to_vec());

    // ent: C, D. Mar renewals: C won, D pending -> 100 * 1 / (2 - 1).
    let ent = f
        .rows(&format!(
            "SELECT {COLUMNS} FROM retention_monthly WHERE segment = 'ent' ORDER BY month"
        ))
        .await;
    let expected = [
        [
            "2025-01-01",
            "ent",
            "1",
            "0",
            "1",
            "0",
            "0.0",
            "100.0",
            "0",
            "0",
            "0",
            "NULL",
        ],
        [
            "2025-02-01",
            "ent",
            "1",
            "1",
            "2",
            "0",
            "0.0",
            "100.0",
            "1",
            "1",
            "0",
            "100.0",
        ],
        [
            "2025-03-01",
            "ent",
            "2",
            "0",
            "2",
            "0",
            "0.0",
            "100.0",
            "2",
            "1",
            "1",
            "100.0",
        ],
    ];
    assert_eq!(ent, expected.map(|r| r.map(String::from).to_vec()).to_vec());

    // G has no segment: an 'unknown' row every month, zero counts and null
    // rates where nobody started the month.
    let unknown = f
        .rows(&format!(
            "SELECT {COLUMNS} FROM retention_monthly WHERE segment = 'unknown' ORDER BY month"
        ))
        .await;
    let expected = [
        [
            "2025-01-01",
            "unknown",
            "0",
            "0",
            "0",
            "0",
            "NULL",
            "NULL",
            "0",
            "0",
            "0",
            "NULL",
        ],
        [
            "2025-02-01",
            "unknown",
            "0",
            "0",
            "0",
            "0",
            "NULL",
            "NULL",
            "0",
            "0",
            "0",
            "NULL",
        ],
        [
            "2025-03-01",
            "unknown",
            "0",
            "1",
            "1",
            "0",
            "NULL",
            "NULL",
            "0",
            "0",
            "0",
            "NULL",
        ],
    ];
    assert_eq!(
        unknown,
        expected.map(|r| r.map(String::from).to_vec()).to_vec()
    );

    // Nothing of E is visible, and nothing is rejected.
    let rejects = f.rows("SELECT COUNT(*) FROM rejects").await;
    assert_eq!(rejects, vec![vec!["0".to_string()]]);
}

#[tokio::test]
async fn backfill_sees_only_what_existed_then() {
    // As of 2025-01-31: A's churn (Feb 1) and F's late renewal are in the
    // future; from defaults to the earliest visible signup month (F, Oct 2024).
    let f = fixture();
    let report = f.run("2025-01-31").await.unwrap();
    assert_eq!(report.first_month, super::fixture::date("2024-10-01"));
    let jan = f
        .rows(&format!(
            "SELECT {COLUMNS} FROM retention_monthly WHERE segment = 'all' AND month = DATE '2025-01-01'"
        ))
        .await;
    // Same customer counts as the full run for January; renewals due in Jan:
    // A (won by A2, booked Jan 10) and H (grace ends Feb 14 > Jan 31: pending).
    assert_eq!(
        jan,
        vec![
            [
                "2025-01-01",
                "all",
                "4",
                "1",
                "4",
                "0",
                "0.0",
                "75.0",
                "2",
                "1",
                "1",
                "100.0"
            ]
            .map(String::from)
            .to_vec()
        ]
    );
    let months = f
        .rows("SELECT COUNT(DISTINCT month) FROM retention_monthly")
        .await;
    assert_eq!(months, vec![vec!["4".to_string()]]);
}
