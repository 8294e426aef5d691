//! Spec 4.3 on a hand-worked fixture (as_of 2025-04-18, from 2025-01).
//!
//!   M1 monthly $100 from Jan 20, renewed on the 20th; the Apr 20 renewal is
//!      booked after as_of (invisible), but Mar 20..Apr 20 covers Apr 18.
//!   M2 annual $1200 from Jan 15 (mid-month): $100 a month.
//!   M3 $50 Jan, upgraded to $80 from Feb.
//!   M4 quarterly $300 Jan..Apr ($100/month), then $150 Apr..Jul ($50).
//!   M5 $60 Jan, nothing in Feb (churn), $60 Mar (reactivation), none in Apr.
//!   M6 Feb: $40 plan + $10 add-on, a $500 one-time order and a -$20 refund
//!      (neither counts); Mar $40 only; nothing in Apr.
//!   M7 $70 in Nov 2024 (history before run.from), $70 in Jan (reactivation,
//!      not new), then nothing; a line booked Apr 19 is after as_of.
//!
//! Worked by hand, segment all:
//!   Jan mrr 100+100+50+100+60+70 = 480, paying 6, P = 0:
//!       new 410 (M1..M5), reactivation 70 (M7); nrr, grr, quick null
//!   Feb mrr 100+100+80+100+50 = 430, paying 5, P = 480:
//!       new 50 (M6), expansion 30 (M3), churned -130 (M5, M7), net -50
//!       nrr 100*(480+30-130)/480 = 79.1667, grr 100*(480-130)/480 = 72.9167,
//!       quick (50+30)/130 = 0.6154
//!   Mar mrr 100+100+80+100+60+40 = 480, paying 6, P = 430:
//!       reactivation 60 (M5), contraction -10 (M6), net 50
//!       nrr = grr = 100*(430-10)/430 = 97.6744, quick 60/10 = 6
//!   Apr mrr 100+100+80+50 = 330, paying 4, P = 480:
//!       contraction -50 (M4), churned -100 (M5, M6), net -150
//!       nrr = grr = 100*(480-150)/480 = 68.75, quick 0

use super::fixture::{Fixture, Order, sub};

fn fixture() -> Fixture {
    let f = Fixture::new();
    f.customers(&[
        ("M1", "2025-01-20", None, Some("smb")),
        ("M2", "2025-01-15", None, Some("ent")),
        ("M3", "2025-01-01", None, Some("smb")),
        ("M4", "2025-01-01", None, Some("ent")),
        ("M5", "2025-01-01", None, Some("smb")),
        ("M6", "2025-02-01", None, Some("smb")),
        ("M7", "2024-11-01", None, Some("smb")),
    ]);
    f.orders(&[
        sub("M1-1", "M1", "2025-01-20", "2025-02-20", 100.0),
        sub("M1-2", "M1", "2025-02-20", "2025-03-20", 100.0),
        sub("M1-3", "M1", "2025-03-20", "2025-04-20", 100.0),
        sub("M1-4", "M1", "2025-04-20", "2025-05-20", 100.0),
        sub("M2-1", "M2", "2025-01-15", "2026-01-15", 1200.0),
        sub("M3-1", "M3", "2025-01-01", "2025-02-01", 50.0),
        sub("M3-2", "M3", "2025-02-01", "2025-03-01", 80.0),
        sub("M3-3", "M3", "2025-03-01", "2025-04-01", 80.0),
        sub("M3-4", "M3", "2025-04-01", "2025-05-01", 80.0),
        sub("M4-1", "M4", "2025-01-01", "2025-04-01", 300.0),
        sub("M4-2", "M4", "2025-04-01", "2025-07-01", 150.0),
        sub("M5-1", "M5", "2025-01-01", "2025-02-01", 60.0),
        sub("M5-2", "M5", "2025-03-01", "2025-04-01", 60.0),
        sub("M6-1", "M6", "2025-02-01", "2025-03-01", 40.0),
        Order {
            id: "M6-2",
            customer: "M6",
            date: "2025-02-01",
            amount: 10.0,
            kind: "addon",
            period: Some(("2025-02-01", "2025-03-01")),
        },
        Order {
            id: "M6-3",
            customer: "M6",
            date: "2025-02-03",
            amount: 500.0,
            kind: "one_time",
            period: None,
        },
        Order {
            id: "M6-4",
            customer: "M6",
            date: "2025-02-10",
            amount: -20.0,
            kind: "refund",
            period: None,
        },
        sub("M6-5", "M6", "2025-03-01", "2025-04-01", 40.0),
        sub("M7-1", "M7", "2024-11-01", "2024-12-01", 70.0),
        sub("M7-2", "M7", "2025-01-01", "2025-02-01", 70.0),
        sub("M7-3", "M7", "2025-04-19", "2025-05-19", 70.0),
    ]);
    f.no_tickets();
    f
}

#[tokio::test]
async fn mrr_movements_and_rates_by_hand() {
    let mut f = fixture();
    f.job_extra = "[run]\nfrom = '2025-01'\n".into();
    f.run("2025-04-18").await.unwrap();

    let all = f
        .rows(
            "SELECT month, round(mrr, 4), paying_customers, round(arpa, 4), \
             round(new_mrr, 4), round(expansion_mrr, 4), round(reactivation_mrr, 4), \
             round(contraction_mrr, 4), round(churned_mrr, 4), round(net_new_mrr, 4), \
             round(nrr, 4), round(grr, 4), round(quick_ratio, 4) \
             FROM mrr_monthly WHERE segment = 'all' ORDER BY month",
        )
        .await;
    let expected = [
        [
            "2025-01-01",
            "480.0",
            "6",
            "80.0",
            "410.0",
            "0.0",
            "70.0",
            "0.0",
            "0.0",
            "480.0",
            "NULL",
            "NULL",
            "NULL",
        ],
        [
            "2025-02-01",
            "430.0",
            "5",
            "86.0",
            "50.0",
            "30.0",
            "0.0",
            "0.0",
            "-130.0",
            "-50.0",
            "79.1667",
            "72.9167",
            "0.6154",
        ],
        [
            "2025-03-01",
            "480.0",
            "6",
            "80.0",
            "0.0",
            "0.0",
            "60.0",
            "-10.0",
            "0.0",
            "50.0",
            "97.6744",
            "97.6744",
            "6.0",
        ],
        [
            "2025-04-01",
            "330.0",
            "4",
            "82.5",
            "0.0",
            "0.0",
            "0.0",
            "-50.0",
            "-100.0",
            "-150.0",
            "68.75",
            "68.75",
            "0.0",
        ],
    ];
    assert_eq!(all, expected.map(|r| r.map(String::from).to_vec()).to_vec());

    let movements = f
        .rows(
            "SELECT month, customer_id, segment, round(mrr, 2), \
             round(prev_mrr, 2), movement, round(delta, 2) \
             FROM mrr_movements ORDER BY month, customer_id",
        )
        .await;
    let expected = [
        ["2025-01-01", "M1", "smb", "100.0", "0.0", "new", "100.0"],
        ["2025-01-01", "M2", "ent", "100.0", "0.0", "new", "100.0"],
        ["2025-01-01", "M3", "smb", "50.0", "0.0", "new", "50.0"],
        ["2025-01-01", "M4", "ent", "100.0", "0.0", "new", "100.0"],
        ["2025-01-01", "M5", "smb", "60.0", "0.0", "new", "60.0"],
        [
            "2025-01-01",
            "M7",
            "smb",
            "70.0",
            "0.0",
            "reactivation",
            "70.0",
        ],
        ["2025-02-01", "M1", "smb", "100.0", "100.0", "flat", "0.0"],
        ["2025-02-01", "M2", "ent", "100.0", "100.0", "flat", "0.0"],
        [
            "2025-02-01",
            "M3",
            "smb",
            "80.0",
            "50.0",
            "expansion",
            "30.0",
        ],
        ["2025-02-01", "M4", "ent", "100.0", "100.0", "flat", "0.0"],
        ["2025-02-01", "M5", "smb", "0.0", "60.0", "churn", "-60.0"],
        ["2025-02-01", "M6", "smb", "50.0", "0.0", "new", "50.0"],
        ["2025-02-01", "M7", "smb", "0.0", "70.0", "churn", "-70.0"],
        ["2025-03-01", "M1", "smb", "100.0", "100.0", "flat", "0.0"],
        ["2025-03-01", "M2", "ent", "100.0", "100.0", "flat", "0.0"],
        ["2025-03-01", "M3", "smb", "80.0", "80.0", "flat", "0.0"],
        ["2025-03-01", "M4", "ent", "100.0", "100.0", "flat", "0.0"],
        [
            "2025-03-01",
            "M5",
            "smb",
            "60.0",
            "0.0",
            "reactivation",
            "60.0",
        ],
        [
            "2025-03-01",
            "M6",
            "smb",
            "40.0",
            "50.0",
            "contraction",
            "-10.0",
        ],
        ["2025-04-01", "M1", "smb", "100.0", "100.0", "flat", "0.0"],
        ["2025-04-01", "M2", "ent", "100.0", "100.0", "flat", "0.0"],
        ["2025-04-01", "M3", "smb", "80.0", "80.0", "flat", "0.0"],
        [
            "2025-04-01",
            "M4",
            "ent",
            "50.0",
            "100.0",
            "contraction",
            "-50.0",
        ],
        ["2025-04-01", "M5", "smb", "0.0", "60.0", "churn", "-60.0"],
        ["2025-04-01", "M6", "smb", "0.0", "40.0", "churn", "-40.0"],
    ];
    assert_eq!(
        movements,
        expected.map(|r| r.map(String::from).to_vec()).to_vec()
    );

    // ent = M2 + M4: Apr mrr 150, P 200, contraction -50 -> nrr = grr = 75.
    let ent = f
        .rows(
            "SELECT round(mrr, 2), round(nrr, 4), round(grr, 4) FROM mrr_monthly \
             WHERE segment = 'ent' AND month = DATE '2025-04-01'",
        )
        .await;
    assert_eq!(
        ent,
        vec![["150.0", "75.0", "75.0"].map(String::from).to_vec()]
    );
}
