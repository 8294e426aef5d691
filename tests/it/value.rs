//! Spec 4.8 on a hand-worked fixture: as_of 2025-12-31, so W = Jan-Dec 2025;
//! value.max_lifetime_months = 60, gross_margin 1.
//!
//! Customers: A (segment a, signed up 2020) pays 100 a month: twelve monthly
//! lines in W (plus a 500 line in Dec 2024, outside W, and a refund of -50
//! in June and a one-time line of 0, neither a purchase). B1-B4 (segment b,
//! signed up 2024); B4 churns on 2025-03-15; B1 books an annual line of
//! 1200 on 2025-02-01.
//!
//! Lifetime: a never churns -> capped at 60. b: 4 at the start of every
//! month of W, B4 churns in March -> mean churn 0.25 / 12 = 1/48 -> 48.
//! all: 5 at the start, one churn in March -> 0.2 / 12 = 1/60 -> 60.
//! CLV: a: aov 100, frequency 12 / 1 / 12 = 1 -> 100 * 1 * 60 = 6000 (the
//! spec's example). b: 1200 * (1 / 1 / 12) * 48 = 4800. all: aov 2400 / 13,
//! frequency 13 / 2 / 12 -> 100 * 60 = 6000.
//! Customer CLV: A mean MRR 100 * 60 = 6000; B1 (100 a month Feb-Dec) * 48
//! = 4800.
//!
//! Costs: A direct retention 30 (May) and service 20 (May), acquisition
//! 999 in 2024 (outside W) -> direct 50. Overhead service: March 100,
//! tickets A 1, B1 3 -> 25 / 75; April 10, no tickets -> split across the 4
//! customers active on April 30 (A, B1, B2, B3) -> 2.5 each; May 1.00,
//! tickets A, B1, B2 one each -> 333,333 micro-units each and the one left
//! over to the first by customer_id: A 0.333334. Overhead retention 60 in
//! May.
//! A: revenue 1200 - 50 = 1150, allocated 27.833334, cps 1072.166666.
//! B1: 1200, 77.833333, cps 1122.166667. B2: 0, 2.833333, cps -2.833333.
//! B3: 0, 2.5, cps -2.5. Quintiles by cps: B1 1, A 2, B3 3, B2 4.
//! CRC in May: customers at the end a 1, b 3, all 4. a: 30 + 60 / 4 = 45,
//! crc 45, arpa 100 -> 0.45. b: 60 * 3 / 4 = 45 / 3 = 15 -> 0.15. all:
//! 90 / 4 = 22.5, arpa 200 / 2 = 100 -> 0.225.

use super::fixture::{Fixture, Order, TicketRow, close, dates, floats, owned, strs, sub};

fn fixture() -> Fixture {
    let mut f = Fixture::new();
    f.customers(&[
        ("A", "2020-01-01", None, Some("a")),
        ("B1", "2024-01-01", None, Some("b")),
        ("B2", "2024-01-01", None, Some("b")),
        ("B3", "2024-01-01", None, Some("b")),
        ("B4", "2024-01-01", Some("2025-03-15"), Some("b")),
    ]);
    let months = [
        "2025-01-01",
        "2025-02-01",
        "2025-03-01",
        "2025-04-01",
        "2025-05-01",
        "2025-06-01",
        "2025-07-01",
        "2025-08-01",
        "2025-09-01",
        "2025-10-01",
        "2025-11-01",
        "2025-12-01",
        "2026-01-01",
    ];
    let ids: Vec<String> = (0..12).map(|i| format!("A{i:02}")).collect();
    let mut orders: Vec<Order> = (0..12)
        .map(|i| sub(&ids[i], "A", months[i], months[i + 1], 100.0))
        .collect();
    orders.push(sub("A-old", "A", "2024-12-01", "2025-01-01", 500.0));
    orders.push(Order {
        id: "A-refund",
        customer: "A",
        date: "2025-06-10",
        amount: -50.0,
        kind: "refund",
        period: None,
    });
    orders.push(Order {
        id: "A-free",
        customer: "A",
        date: "2025-06-11",
        amount: 0.0,
        kind: "one_time",
        period: None,
    });
    orders.push(sub("B1-year", "B1", "2025-02-01", "2026-02-01", 1200.0));
    f.orders(&orders);
    let tickets: Vec<TicketRow> = vec![
        ("T1", "A", "2025-03-03 10:00", None, 1, None),
        ("T2", "B1", "2025-03-04 10:00", None, 1, None),
        ("T3", "B1", "2025-03-05 10:00", None, 1, None),
        ("T4", "B1", "2025-03-06 10:00", None, 1, None),
        ("T5", "A", "2025-05-03 10:00", None, 1, None),
        ("T6", "B1", "2025-05-04 10:00", None, 1, None),
        ("T7", "B2", "2025-05-05 10:00", None, 1, None),
    ];
    f.tickets(&tickets);
    // (month, category, customer_id, amount)
    let costs: [(&str, &str, Option<&str>, f64); 8] = [
        ("2025-05-20", "retention", Some("A"), 30.0),
        ("2025-05-01", "service", Some("A"), 20.0),
        ("2024-06-01", "acquisition", Some("A"), 999.0),
        ("2025-03-01", "service", None, 100.0),
        ("2025-04-01", "service", None, 10.0),
        ("2025-05-01", "service", None, 1.0),
        ("2025-05-01", "retention", None, 60.0),
        ("2026-01-01", "service", None, 5000.0), // after as_of's month: invisible
    ];
    f.write(
        "costs",
        vec![
            ("month", dates(costs.iter().map(|c| Some(c.0)))),
            ("category", strs(costs.iter().map(|c| Some(c.1)))),
            ("customer_id", strs(costs.iter().map(|c| c.2))),
            ("amount", floats(costs.iter().map(|c| Some(c.3)))),
        ],
    );
    f.job_extra = "[run]\nfrom = '2025-01'\n[value]\nmax_lifetime_months = 60\n".into();
    f
}

#[tokio::test]
async fn clv_per_segment_and_customer_by_hand() {
    let f = fixture();
    f.run("2025-12-31").await.unwrap();
    let rows = f
        .rows(
            "SELECT segment, avg_order_value, purchase_frequency, lifetime_months, clv, customers \
             FROM value_summary ORDER BY segment",
        )
        .await;
    let expected = [
        ("a", 100.0, 1.0, 60.0, 6000.0, "1"),
        ("all", 2400.0 / 13.0, 13.0 / 24.0, 60.0, 6000.0, "4"),
        ("b", 1200.0, 1.0 / 12.0, 48.0, 4800.0, "3"),
    ];
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (row, (segment, aov, frequency, lifetime, clv, customers)) in rows.iter().zip(expected) {
        assert_eq!(row[0], segment);
        assert!(close(&row[1], aov), "{row:?}");
        assert!(close(&row[2], frequency), "{row:?}");
        assert!(close(&row[3], lifetime), "{row:?}");
        assert!(close(&row[4], clv), "{row:?}");
        assert_eq!(row[5], customers);
    }
    let clv = f
        .rows("SELECT customer_id, clv FROM customer_value WHERE customer_id IN ('A', 'B1') ORDER BY 1")
        .await;
    assert!(
        close(&clv[0][1], 6000.0) && close(&clv[1][1], 4800.0),
        "{clv:?}"
    );
}

#[tokio::test]
async fn profitability_with_overhead_split_by_tickets_or_equally() {
    let f = fixture();
    f.run("2025-12-31").await.unwrap();
    let rows = f
        .rows(
            "SELECT customer_id, segment, revenue, direct_cost, allocated_cost, cps, cps_quintile \
             FROM customer_value ORDER BY customer_id",
        )
        .await;
    let expected = owned(&[
        ["A", "a", "1150.0", "50.0", "27.833334", "1072.166666", "2"],
        ["B1", "b", "1200.0", "0.0", "77.833333", "1122.166667", "1"],
        ["B2", "b", "0.0", "0.0", "2.833333", "-2.833333", "4"],
        ["B3", "b", "0.0", "0.0", "2.5", "-2.5", "3"],
    ]);
    assert_eq!(rows, expected);
    // Every month's overhead is allocated exactly.
    let total = f
        .rows("SELECT SUM(allocated_cost) FROM customer_value")
        .await;
    assert!(close(&total[0][0], 111.0), "{total:?}");
    let summary = f
        .rows("SELECT segment, revenue, cps_total FROM value_summary ORDER BY segment")
        .await;
    assert_eq!(summary[1][0], "all");
    assert!(
        close(&summary[1][1], 2350.0) && close(&summary[1][2], 2189.0),
        "{summary:?}"
    );
}

#[tokio::test]
async fn retention_cost_per_customer_by_hand() {
    let f = fixture();
    f.run("2025-12-31").await.unwrap();
    let rows = f
        .rows(
            "SELECT segment, retention_cost, crc, arpa, crc_to_arpa FROM value_monthly \
             WHERE month = DATE '2025-05-01' ORDER BY segment",
        )
        .await;
    let expected = [
        ("a", 45.0, 45.0, 100.0, 0.45),
        ("all", 90.0, 22.5, 100.0, 0.225),
        ("b", 45.0, 15.0, 100.0, 0.15),
    ];
    for (row, (segment, cost, crc, arpa, ratio)) in rows.iter().zip(expected) {
        assert_eq!(row[0], segment);
        for (got, want) in row[1..].iter().zip([cost, crc, arpa, ratio]) {
            assert!(close(got, want), "{row:?}");
        }
    }
    // A month without retention costs costs nothing; kpi_summary has them.
    let june = f
        .rows("SELECT retention_cost, crc FROM value_monthly WHERE month = DATE '2025-06-01' AND segment = 'all'")
        .await;
    assert_eq!(june, vec![vec!["0.0".to_string(), "0.0".to_string()]]);
    let summary = f
        .rows(
            "SELECT kpi, value FROM kpi_summary WHERE month = DATE '2025-05-01' AND segment = 'b' \
             AND kpi IN ('crc', 'crc_to_arpa', 'arpa', 'retention_cost') ORDER BY kpi",
        )
        .await;
    let kpis: Vec<&str> = summary.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(kpis, ["arpa", "crc", "crc_to_arpa", "retention_cost"]);
}

/// Money in a currency of small units (VND: 9.2e12 dong is about 360 M
/// USD): totals over customers past 64-bit micro-units (9.2e12 currency
/// units) stay exact, the overhead split does not multiply past them, and a
/// line beyond 9e12 is a reject, not a failed run. By hand, as_of
/// 2025-03-31, W = Apr 2024 - Mar 2025:
/// - C1 (a), C2 and C3 (b) sign up 2025-01-01 and each pay 5e12 for
///   January: mrr all = 1.5e13, b = 1e13; in February all churn (churned
///   -1.5e13, nrr 0); the 2025-01 cohort's MRR at months_since 0 = 1.5e13.
/// - X, a 9.5e12 one-time line of C1: 'amount out of range'.
/// - Retention costs in January: C2 and C3 5e12 each (direct), 2 x 5e12
///   overhead: all = 1e13 + 1e13 = 2e13; b = 1e13 + 1e13 * 2 / 3.
/// - Service overhead in March, 1e11 = 1e17 micro-units, split by tickets
///   C1 50, C2 100: base C1 = 1e17 / 3 truncated = 33333333333333333, C2
///   66666666666666666, one micro-unit left over; remainders 1e17 * 50 mod
///   150 = 50 (1e17 = 1 mod 3) and 100: C2 gets it. So C1 33333333333.333333,
///   C2 66666666666.666667.
/// - value_summary all: revenue 1.5e13, cps_total = 1.5e13 - 1e13 - 1e11.
#[tokio::test]
async fn money_past_64_bit_micro_units_sums_exactly_and_beyond_9e12_is_rejected() {
    let mut f = Fixture::new();
    f.customers(&[
        ("C1", "2025-01-01", None, Some("a")),
        ("C2", "2025-01-01", None, Some("b")),
        ("C3", "2025-01-01", None, Some("b")),
    ]);
    let mut orders: Vec<Order> = ["C1", "C2", "C3"]
        .into_iter()
        .map(|c| sub(c, c, "2025-01-01", "2025-02-01", 5e12))
        .collect();
    orders.push(Order {
        id: "X",
        customer: "C1",
        date: "2025-01-15",
        amount: 9.5e12,
        kind: "one_time",
        period: None,
    });
    f.orders(&orders);
    let ids: Vec<String> = (0..150).map(|i| format!("T{i:03}")).collect();
    let tickets: Vec<TicketRow> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let customer = if i < 50 { "C1" } else { "C2" };
            (id.as_str(), customer, "2025-03-03 10:00", None, 1, None)
        })
        .collect();
    f.tickets(&tickets);
    let costs: [(&str, &str, Option<&str>, f64); 5] = [
        ("2025-01-01", "retention", Some("C2"), 5e12),
        ("2025-01-01", "retention", Some("C3"), 5e12),
        ("2025-01-01", "retention", None, 5e12),
        ("2025-01-01", "retention", None, 5e12),
        ("2025-03-01", "service", None, 1e11),
    ];
    f.write(
        "costs",
        vec![
            ("month", dates(costs.iter().map(|c| Some(c.0)))),
            ("category", strs(costs.iter().map(|c| c.1).map(Some))),
            ("customer_id", strs(costs.iter().map(|c| c.2))),
            ("amount", floats(costs.iter().map(|c| Some(c.3)))),
        ],
    );
    f.job_extra = "[run]\nfrom = '2025-01'\nmax_reject_ratio = 0.5\n".into();
    f.run("2025-03-31").await.unwrap();
    let near = |got: &str, want: f64| {
        let got: f64 = got.parse().unwrap();
        (got - want).abs() <= want.abs() * 1e-15
    };

    let rejects = f.rows("SELECT input, key, reason FROM rejects").await;
    assert_eq!(
        rejects,
        owned(&[["orders", "X", "amount out of range (|amount| > 9e12)"]])
    );
    let mrr = f
        .rows(
            "SELECT month, segment, mrr, churned_mrr, COALESCE(nrr, -1) FROM mrr_monthly \
             WHERE segment IN ('all', 'b') AND month <= DATE '2025-02-01' ORDER BY 1, 2",
        )
        .await;
    let expected = [
        ("2025-01-01", "all", 1.5e13, 0.0),
        ("2025-01-01", "b", 1e13, 0.0),
        ("2025-02-01", "all", 0.0, -1.5e13),
        ("2025-02-01", "b", 0.0, -1e13),
    ];
    assert_eq!(mrr.len(), 4, "{mrr:?}");
    for (row, (month, segment, total, churned)) in mrr.iter().zip(expected) {
        assert_eq!((row[0].as_str(), row[1].as_str()), (month, segment));
        assert!(near(&row[2], total) && near(&row[3], churned), "{mrr:?}");
    }
    assert!(near(&mrr[2][4], 0.0), "{mrr:?}");
    let cohort = f
        .rows(
            "SELECT mrr FROM cohort_retention WHERE cohort_month = DATE '2025-01-01' \
             AND segment = 'all' AND months_since = 0",
        )
        .await;
    assert!(near(&cohort[0][0], 1.5e13), "{cohort:?}");
    let january = f
        .rows(
            "SELECT segment, retention_cost FROM value_monthly \
             WHERE month = DATE '2025-01-01' AND segment IN ('all', 'b') ORDER BY 1",
        )
        .await;
    assert!(near(&january[0][1], 2e13), "{january:?}");
    assert!(near(&january[1][1], 1e13 + 1e13 * 2.0 / 3.0), "{january:?}");
    let allocated = f
        .rows("SELECT customer_id, allocated_cost FROM customer_value ORDER BY 1")
        .await;
    assert!(near(&allocated[0][1], 33333333333.333333), "{allocated:?}");
    assert!(near(&allocated[1][1], 66666666666.666667), "{allocated:?}");
    assert!(near(&allocated[2][1], 0.0), "{allocated:?}");
    let summary = f
        .rows("SELECT revenue, cps_total FROM value_summary WHERE segment = 'all'")
        .await;
    assert!(near(&summary[0][0], 1.5e13), "{summary:?}");
    assert!(near(&summary[0][1], 1.5e13 - 1e13 - 1e11), "{summary:?}");
}
