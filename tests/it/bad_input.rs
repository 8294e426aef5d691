//! Spec section 3: schema errors fail before anything is written, row errors
//! become rejects with one reason each, and the reject ratio is enforced.
//! After every failure the previous run's outputs are still there, whole.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray};

use super::fixture::{Fixture, Order, dates, floats, ints, owned, strs, sub, timestamps};

const MRR_BY_SEGMENT: &str =
    "SELECT segment, round(mrr, 2), paying_customers FROM mrr_monthly ORDER BY segment";

fn good_fixture() -> Fixture {
    let f = Fixture::new();
    f.customers(&[
        ("C1", "2025-01-01", None, Some("smb")),
        ("C2", "2025-01-01", None, Some("smb")),
    ]);
    f.orders(&[
        sub("O1", "C1", "2025-01-01", "2025-02-01", 10.0),
        sub("O2", "C2", "2025-01-01", "2025-02-01", 20.0),
    ]);
    f.no_tickets();
    f
}

/// Runs once successfully and returns the manifest text it published.
async fn publish_once(f: &Fixture) -> String {
    f.run("2025-01-31").await.unwrap();
    std::fs::read_to_string(f.out_dir().join("_manifest.json")).unwrap()
}

fn assert_outputs_intact(f: &Fixture, manifest: &str) {
    let now = std::fs::read_to_string(f.out_dir().join("_manifest.json")).unwrap();
    assert_eq!(
        now, manifest,
        "the manifest of the last good run is untouched"
    );
    for t in [
        "retention_monthly",
        "mrr_monthly",
        "mrr_movements",
        "rejects",
    ] {
        let files = super::fixture::table_files(&f.out_dir(), t);
        assert!(!files.is_empty(), "{t} still has its files");
        assert!(
            files
                .iter()
                .all(|(name, _)| name.ends_with(".parquet") && !name.contains('/')),
            "{t}: {files:?}"
        );
    }
}

#[tokio::test]
async fn missing_column_names_table_file_and_column() {
    let f = good_fixture();
    let manifest = publish_once(&f).await;
    // orders without `amount`
    f.write(
        "orders",
        vec![
            ("order_id", strs([Some("O1")].into_iter())),
            ("customer_id", strs([Some("C1")].into_iter())),
            ("order_date", dates([Some("2025-01-01")].into_iter())),
            ("kind", strs([Some("one_time")].into_iter())),
        ],
    );
    let err = f.run("2025-01-31").await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("input orders"), "{msg}");
    assert!(msg.contains("orders.parquet"), "{msg}");
    assert!(msg.contains("column amount"), "{msg}");
    assert_eq!(err.exit_code(), cskpi::error::exit_code::INPUT_SCHEMA);
    assert_outputs_intact(&f, &manifest);
}

#[tokio::test]
async fn wrong_type_names_the_type() {
    let f = good_fixture();
    let manifest = publish_once(&f).await;
    // signup_date as text
    f.write(
        "customers",
        vec![
            ("customer_id", strs([Some("C1")].into_iter())),
            ("signup_date", strs([Some("2025-01-01")].into_iter())),
        ],
    );
    let err = f.run("2025-01-31").await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("input customers"), "{msg}");
    assert!(msg.contains("customers.parquet"), "{msg}");
    assert!(msg.contains("column signup_date has type Utf8"), "{msg}");
    assert_eq!(err.exit_code(), cskpi::error::exit_code::INPUT_SCHEMA);
    assert_outputs_intact(&f, &manifest);
}

#[tokio::test]
async fn a_column_named_customer_key_is_refused() {
    let f = good_fixture();
    let manifest = publish_once(&f).await;
    // validation gives every row of a known customer a `customer_key`; an
    // input column of that name would be shadowed or clash
    f.write(
        "customers",
        vec![
            ("customer_id", strs([Some("C1")].into_iter())),
            ("signup_date", dates([Some("2025-01-01")].into_iter())),
            ("customer_key", strs([Some("k1")].into_iter())),
        ],
    );
    let err = f.run("2025-01-31").await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("input customers"), "{msg}");
    assert!(msg.contains("customers.parquet"), "{msg}");
    assert!(msg.contains("column customer_key"), "{msg}");
    assert_eq!(err.exit_code(), cskpi::error::exit_code::INPUT_SCHEMA);
    assert_outputs_intact(&f, &manifest);
}

#[tokio::test]
async fn unreadable_and_missing_files() {
    let f = good_fixture();
    let manifest = publish_once(&f).await;
    std::fs::write(
        f.input_dir().join("tickets.parquet"),
        b"this is not parquet",
    )
    .unwrap();
    let err = f.run("2025-01-31").await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("input tickets"), "{msg}");
    assert!(
        msg.contains("tickets.parquet is not readable Parquet"),
        "{msg}"
    );
    assert_outputs_intact(&f, &manifest);

    std::fs::remove_file(f.input_dir().join("tickets.parquet")).unwrap();
    let err = f.run("2025-01-31").await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("input tickets: cannot open"), "{msg}");
    assert!(msg.contains("no such file"), "{msg}");
    assert_outputs_intact(&f, &manifest);
}

#[tokio::test]
async fn integer_ids_decimal_money_and_timestamps_are_accepted() {
    let f = Fixture::new();
    f.write(
        "customers",
        vec![
            ("customer_id", ints([Some(1), Some(2)].into_iter())),
            (
                "signup_date",
                timestamps([Some("2025-01-01 10:00"), Some("2025-01-02 23:59")].into_iter()),
            ),
            ("segment", strs([Some("a"), None].into_iter())),
        ],
    );
    let amount: ArrayRef = Arc::new(
        datafusion::arrow::array::Decimal128Array::from(vec![Some(1000_i128)])
            .with_precision_and_scale(10, 2)
            .unwrap(),
    );
    f.write(
        "orders",
        vec![
            ("order_id", ints([Some(7)].into_iter())),
            ("customer_id", ints([Some(1)].into_iter())),
            ("order_date", dates([Some("2025-01-01")].into_iter())),
            ("amount", amount),
            ("kind", strs([Some("subscription")].into_iter())),
            ("period_start", dates([Some("2025-01-01")].into_iter())),
            ("period_end", dates([Some("2025-02-01")].into_iter())),
        ],
    );
    f.no_tickets();
    f.run("2025-01-31").await.unwrap();
    let rows = f.rows(MRR_BY_SEGMENT).await;
    assert_eq!(
        rows,
        vec![
            vec!["a".to_string(), "10.0".into(), "1".into()],
            vec!["all".to_string(), "10.0".into(), "1".into()],
            vec!["unknown".to_string(), "0.0".into(), "0".into()],
        ]
    );
}

/// Spec 5: `rejects.raw_row` is the raw row: each value as the input held
/// it, not as the typed views read it. Integer ids stay integers, a
/// Float32 amount prints its own digits (12.3; as a Float64 it would be
/// 12.300000190734863), a Decimal(18,2) is the JSON number it holds (10.5),
/// a zoned timestamp keeps its zone: T1 opened 2025-01-10 09:00 at +07:00
/// (02:00 UTC, 1,736,474,400 s after the epoch) and was resolved at 08:00
/// +07:00, an hour earlier, so it is rejected. The clean order 8 still
/// counts: January's MRR is 10.00 / 1 month = 10.
#[tokio::test]
async fn raw_row_shows_values_as_the_input_holds_them() {
    use datafusion::arrow::array::{Decimal128Array, Float32Array, TimestampMicrosecondArray};
    let mut f = Fixture::new();
    f.write(
        "customers",
        vec![
            ("customer_id", ints([Some(1)].into_iter())),
            ("signup_date", dates([Some("2025-01-01")].into_iter())),
            ("segment", strs([Some("a")].into_iter())),
        ],
    );
    f.write(
        "orders",
        vec![
            ("order_id", ints([Some(7), Some(8)].into_iter())),
            ("customer_id", ints([Some(1), Some(1)].into_iter())),
            (
                "order_date",
                dates([Some("2025-01-05"), Some("2025-01-05")].into_iter()),
            ),
            (
                "amount",
                Arc::new(Float32Array::from(vec![12.3f32, 10.0])) as ArrayRef,
            ),
            (
                "kind",
                strs([Some("gift"), Some("subscription")].into_iter()),
            ),
            (
                "period_start",
                dates([None, Some("2025-01-01")].into_iter()),
            ),
            ("period_end", dates([None, Some("2025-02-01")].into_iter())),
        ],
    );
    let seconds = |s: i64| s * 1_000_000;
    let zoned = |micros: i64| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(vec![micros]).with_timezone("+07:00"))
    };
    f.write(
        "tickets",
        vec![
            ("ticket_id", strs([Some("T1")].into_iter())),
            ("customer_id", ints([Some(1)].into_iter())),
            ("opened_at", zoned(seconds(1_736_474_400))),
            ("resolved_at", zoned(seconds(1_736_474_400 - 3_600))),
            ("contacts", ints([Some(1)].into_iter())),
        ],
    );
    f.write(
        "costs",
        vec![
            ("month", dates([Some("2025-01-01")].into_iter())),
            ("category", strs([Some("bribes")].into_iter())),
            (
                "amount",
                Arc::new(
                    Decimal128Array::from(vec![1_050i128])
                        .with_precision_and_scale(18, 2)
                        .unwrap(),
                ) as ArrayRef,
            ),
        ],
    );
    f.job_extra = "[run]\nmax_reject_ratio = 1.0\n".into();
    f.run("2025-01-31").await.unwrap();
    let raw = f
        .rows("SELECT input, reason, raw_row FROM rejects ORDER BY input")
        .await;
    assert_eq!(raw.len(), 3, "{raw:?}");
    let (cost, order, ticket) = (&raw[0], &raw[1], &raw[2]);
    assert_eq!(cost[..2], ["costs", "unknown category"]);
    assert!(cost[2].contains(r#""amount":10.5"#), "{}", cost[2]);
    assert_eq!(order[..2], ["orders", "unknown kind"]);
    for expected in [
        r#""order_id":7,"#,
        r#""customer_id":1,"#,
        r#""amount":12.3,"#,
    ] {
        assert!(order[2].contains(expected), "{expected} in {}", order[2]);
    }
    assert_eq!(ticket[..2], ["tickets", "resolved_at < opened_at"]);
    for expected in [
        r#""opened_at":"2025-01-10T09:00:00+07:00""#,
        r#""resolved_at":"2025-01-10T08:00:00+07:00""#,
    ] {
        assert!(ticket[2].contains(expected), "{expected} in {}", ticket[2]);
    }
    assert_eq!(
        f.rows(MRR_BY_SEGMENT).await,
        owned(&[["a", "10.0", "1"], ["all", "10.0", "1"]])
    );
}

/// A customer whose segment is `all`, the name of every monthly table's
/// total row, is rejected (its orders count under `unknown`, as a rejected
/// customer's do), so (month, segment) stays a key: January's MRR is A 10
/// + B 20 = 30 for all, 10 unknown, 20 x.
#[tokio::test]
async fn a_segment_named_all_is_a_reject_and_keys_stay_unique() {
    let mut f = Fixture::new();
    f.customers(&[
        ("A", "2025-01-01", None, Some("all")),
        ("B", "2025-01-01", None, Some("x")),
    ]);
    f.orders(&[
        sub("OA", "A", "2025-01-01", "2025-02-01", 10.0),
        sub("OB", "B", "2025-01-01", "2025-02-01", 20.0),
    ]);
    f.no_tickets();
    f.job_extra = "[run]\nmax_reject_ratio = 1.0\n".into();
    f.run("2025-01-31").await.unwrap();
    let rejects = f.rows("SELECT input, key, reason FROM rejects").await;
    assert_eq!(
        rejects,
        owned(&[[
            "customers",
            "A",
            "segment value 'all' is reserved for the total"
        ]])
    );
    assert_eq!(
        f.rows(MRR_BY_SEGMENT).await,
        owned(&[
            ["all", "30.0", "2"],
            ["unknown", "10.0", "1"],
            ["x", "20.0", "1"]
        ])
    );
}

/// A NaN amount in a file whose other amounts are all 10: the file's
/// Parquet statistics (min = max = 10, no nulls; NaN is left out of them)
/// would make DataFusion read the column as the constant 10. The NaN is
/// still rejected, and January's MRR is O1 + O3 = 20, not 30.
#[tokio::test]
async fn a_nan_that_file_statistics_hide_is_still_rejected() {
    let mut f = Fixture::new();
    f.customers(&[("C1", "2025-01-01", None, None)]);
    f.orders(&[
        sub("O1", "C1", "2025-01-01", "2025-02-01", 10.0),
        sub("O2", "C1", "2025-01-01", "2025-02-01", f64::NAN),
        sub("O3", "C1", "2025-01-01", "2025-02-01", 10.0),
    ]);
    f.no_tickets();
    f.job_extra = "[run]\nmax_reject_ratio = 1.0\n".into();
    f.run("2025-01-31").await.unwrap();
    assert_eq!(
        f.rows("SELECT input, key, reason FROM rejects").await,
        owned(&[["orders", "O2", "amount not a finite number"]])
    );
    let raw = f.rows("SELECT raw_row FROM rejects").await;
    assert!(raw[0][0].contains(r#""amount":"NaN""#), "{raw:?}");
    assert_eq!(
        f.rows(MRR_BY_SEGMENT).await,
        owned(&[["all", "20.0", "1"], ["unknown", "20.0", "1"]])
    );
}

/// One row per reason, each worked out from the spec's order of checks.
#[tokio::test]
async fn every_reject_reason() {
    let mut f = Fixture::new();
    f.job_extra = "[run]\nmax_reject_ratio = 1.0\n".into();
    f.write(
        "customers",
        vec![
            (
                "customer_id",
                strs(
                    [
                        Some("C1"),
                        Some("C2"),
                        Some("C2"),
                        None,
                        Some("C3"),
                        Some("C4"),
                        Some("LATE"),
                    ]
                    .into_iter(),
                ),
            ),
            (
                "signup_date",
                dates(
                    [
                        Some("2025-01-01"),
                        Some("2025-01-01"),
                        Some("2025-01-02"),
                        Some("2025-01-01"),
                        None,
                        Some("2025-01-10"),
                        Some("2025-03-01"),
                    ]
                    .into_iter(),
                ),
            ),
            (
                "churn_date",
                dates([None, None, None, None, None, Some("2025-01-05"), None].into_iter()),
            ),
        ],
    );
    f.orders(&[
        sub("O1", "C1", "2025-01-01", "2025-02-01", 10.0),
        sub("DUP", "C1", "2025-01-01", "2025-02-01", 10.0),
        sub("DUP", "C1", "2025-01-01", "2025-02-01", 10.0),
        Order {
            id: "K",
            customer: "C1",
            date: "2025-01-01",
            amount: 5.0,
            kind: "gift",
            period: None,
        },
        sub("U", "NOBODY", "2025-01-01", "2025-02-01", 10.0),
        Order {
            id: "P1",
            customer: "C1",
            date: "2025-01-01",
            amount: 5.0,
            kind: "addon",
            period: None,
        },
        sub("P2", "C1", "2025-01-10", "2025-01-10", 10.0),
        // LATE signs up after as_of: invisible, not rejected
        sub("L1", "LATE", "2025-01-01", "2025-02-01", 10.0),
        // booked after as_of: invisible
        sub("FUT", "NOBODY", "2025-03-01", "2025-04-01", 10.0),
        // Invisible copies of O1's key (a customer who signs up after
        // as_of, a booking after it): O1 is the only visible row with its
        // key, so it is not a duplicate.
        sub("O1", "LATE", "2025-01-01", "2025-02-01", 10.0),
        sub("O1", "C1", "2025-03-01", "2025-04-01", 10.0),
    ]);
    f.tickets(&[
        (
            "T1",
            "C1",
            "2025-01-03 10:00",
            Some("2025-01-03 12:00"),
            1,
            None,
        ),
        ("T2", "C1", "2025-01-03 10:00", None, 0, None),
        (
            "T3",
            "C1",
            "2025-01-03 10:00",
            Some("2025-01-02 12:00"),
            1,
            Some(false),
        ),
    ]);
    f.write(
        "surveys",
        vec![
            (
                "response_id",
                strs(
                    ["R1", "R2", "R3", "R4", "R5", "R6", "R6"]
                        .map(Some)
                        .into_iter(),
                ),
            ),
            ("customer_id", strs([Some("C1"); 7].into_iter())),
            (
                "responded_at",
                timestamps([Some("2025-01-05 10:00"); 7].into_iter()),
            ),
            (
                "survey",
                strs(
                    ["nps", "nps", "csat", "poll", "csi", "csi", "csi"]
                        .map(Some)
                        .into_iter(),
                ),
            ),
            (
                "item",
                strs([None, None, None, None, None, Some("q1"), Some("q1")].into_iter()),
            ),
            (
                "score",
                floats(
                    [
                        Some(11.0),
                        Some(7.5),
                        Some(4.0),
                        Some(3.0),
                        Some(5.0),
                        Some(5.0),
                        Some(5.0),
                    ]
                    .into_iter(),
                ),
            ),
        ],
    );
    f.usage(&[("C1", "2025-01-05", 1, 3), ("C1", "2025-01-06", -1, 2)]);
    let amounts: ArrayRef = Arc::new(Float64Array::from(vec![
        Some(10.0),
        Some(5.0),
        None,
        Some(f64::NAN),
        Some(f64::NEG_INFINITY),
    ]));
    let month = Some("2025-01-01");
    f.write(
        "costs",
        vec![
            (
                "month",
                dates([month, month, Some("2025-01-15"), month, month].into_iter()),
            ),
            (
                "category",
                Arc::new(StringArray::from(vec![
                    Some("service"),
                    Some("marketing"),
                    Some("service"),
                    Some("service"),
                    Some("retention"),
                ])) as ArrayRef,
            ),
            (
                "customer_id",
                strs([None, None, Some("C1"), None, None].into_iter()),
            ),
            ("amount", amounts),
        ],
    );
    f.run("2025-01-31").await.unwrap();
    let rejects = f
        .rows(
            "SELECT input, COALESCE(key, 'NULL'), reason FROM rejects ORDER BY input, key, reason",
        )
        .await;
    let expected = [
        ["costs", "NULL", "amount not a finite number"],
        ["costs", "NULL", "amount not a finite number"],
        ["costs", "NULL", "null in required column amount"],
        ["costs", "NULL", "unknown category"],
        ["customers", "C2", "duplicate key"],
        ["customers", "C2", "duplicate key"],
        ["customers", "C3", "null in required column signup_date"],
        ["customers", "C4", "churn_date < signup_date"],
        ["customers", "NULL", "null in required column customer_id"],
        ["orders", "DUP", "duplicate key"],
        ["orders", "DUP", "duplicate key"],
        ["orders", "K", "unknown kind"],
        ["orders", "P1", "missing service period"],
        ["orders", "P2", "period_end <= period_start"],
        ["orders", "U", "unknown customer_id"],
        ["surveys", "R1|", "score out of range"],
        ["surveys", "R2|", "score not an integer"],
        ["surveys", "R4|", "unknown survey"],
        ["surveys", "R5|", "null in required column item"],
        ["surveys", "R6|q1", "duplicate key"],
        ["surveys", "R6|q1", "duplicate key"],
        ["tickets", "T2", "contacts < 1"],
        ["tickets", "T3", "resolved_at < opened_at"],
        ["usage", "C1|2025-01-06", "negative usage"],
    ];
    assert_eq!(
        rejects,
        expected.map(|r| r.map(String::from).to_vec()).to_vec()
    );

    // The raw row is kept as JSON, nulls included.
    let raw = f
        .rows("SELECT raw_row FROM rejects WHERE input = 'orders' AND key = 'K'")
        .await;
    assert!(raw[0][0].contains(r#""kind":"gift""#), "{}", raw[0][0]);
    assert!(
        raw[0][0].contains(r#""period_start":null"#),
        "{}",
        raw[0][0]
    );

    // A run stores checked rows without the customer ids the directory
    // holds: a rejected row of a known customer gets its id back by key, an
    // unknown customer's id is the one the input had.
    let raw = f
        .rows("SELECT raw_row FROM rejects WHERE input IN ('usage', 'orders') AND key IN ('C1|2025-01-06', 'U') ORDER BY input DESC")
        .await;
    assert!(raw[0][0].contains(r#""customer_id":"C1""#), "{}", raw[0][0]);
    assert!(
        raw[1][0].contains(r#""customer_id":"NOBODY""#),
        "{}",
        raw[1][0]
    );

    // ... as it is in the input: the clean costs keep a month as its first
    // day, the raw row keeps the day the input had.
    let raw = f
        .rows("SELECT raw_row FROM rejects WHERE input = 'costs' AND reason LIKE 'null%'")
        .await;
    assert!(
        raw[0][0].contains(r#""month":"2025-01-15""#),
        "{}",
        raw[0][0]
    );

    // Rejected rows are left out of every KPI: only O1 counts in MRR.
    let mrr = f
        .rows("SELECT round(mrr, 2) FROM mrr_monthly WHERE segment = 'all'")
        .await;
    assert_eq!(mrr, vec![vec!["10.0".to_string()]]);

    // The manifest counts visible and rejected rows per input.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.out_dir().join("_manifest.json")).unwrap())
            .unwrap();
    let orders = manifest["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["table"] == "orders")
        .unwrap();
    assert_eq!(orders["rows_in"], 7);
    assert_eq!(orders["rows_rejected"], 6);
}

#[tokio::test]
async fn reject_ratio_over_the_limit_fails_and_writes_nothing() {
    let f = good_fixture();
    let manifest = publish_once(&f).await;
    // 1 of 2 orders rejected = 50% > 5%
    f.orders(&[
        sub("O1", "C1", "2025-01-01", "2025-02-01", 10.0),
        Order {
            id: "O2",
            customer: "C2",
            date: "2025-01-01",
            amount: 5.0,
            kind: "gift",
            period: None,
        },
    ]);
    let err = f.run("2025-01-31").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("input orders: 1 of 2 visible rows rejected"),
        "{msg}"
    );
    assert!(msg.contains("unknown kind (1)"), "{msg}");
    assert_eq!(err.exit_code(), cskpi::error::exit_code::TOO_MANY_REJECTS);
    assert_outputs_intact(&f, &manifest);
}

/// Runs `f`'s job as of 2025-01-31 with each `(input, directory)` read from
/// the directory instead of the input's file, `extra` added to the job.
async fn run_with_folders(f: &Fixture, folders: &[(&str, &std::path::Path)], extra: &str) {
    let mut text = f.job_text();
    for (input, dir) in folders {
        text = text.replace(
            &format!(
                "{}",
                f.input_dir().join(format!("{input}.parquet")).display()
            ),
            &format!("{}/", dir.display()),
        );
    }
    let job = cskpi::config::JobConfig::parse(&format!("{text}{extra}")).unwrap();
    cskpi::run::run_job(
        &job,
        &cskpi::run::RunOptions {
            as_of: Some(super::fixture::date("2025-01-31")),
            progress: false,
        },
    )
    .await
    .unwrap();
}

/// A directory input with hive `key=value/` folders: every file is read, and
/// the folder key is a column, usable as the segment dimension.
#[tokio::test]
async fn directory_input_with_hive_folders() {
    let f = Fixture::new();
    let customers = f.input_dir().join("customers");
    for (region, ids) in [("eu", ["E1", "E2"]), ("us", ["U1", "U2"])] {
        let dir = customers.join(format!("region={region}"));
        std::fs::create_dir_all(&dir).unwrap();
        super::fixture::write_parquet(
            &dir.join("part-0.parquet"),
            vec![
                ("customer_id", strs(ids.iter().map(|i| Some(*i)))),
                (
                    "signup_date",
                    dates([Some("2025-01-01"), Some("2025-01-01")].into_iter()),
                ),
            ],
        );
    }
    f.orders(&[
        sub("O1", "E1", "2025-01-01", "2025-02-01", 10.0),
        sub("O2", "U1", "2025-01-01", "2025-02-01", 20.0),
        sub("O3", "U2", "2025-01-01", "2025-02-01", 30.0),
    ]);
    f.no_tickets();
    run_with_folders(
        &f,
        &[("customers", &customers)],
        "[run]\nsegment_by = 'region'\n",
    )
    .await;
    let rows = f.rows(MRR_BY_SEGMENT).await;
    assert_eq!(
        rows,
        vec![
            vec!["all".to_string(), "60.0".into(), "3".into()],
            vec!["eu".to_string(), "10.0".into(), "1".into()],
            vec!["us".to_string(), "50.0".into(), "2".into()],
        ]
    );
}

/// Spec 1: a directory input is every `*.parquet` below it, plain
/// subfolders too (`orders/2025/01/`), also below hive folders; a hive
/// folder `key=__HIVE_DEFAULT_PARTITION__` is a null value.
#[tokio::test]
async fn directory_input_reads_every_file_below_it() {
    let f = Fixture::new();
    let customers = f.input_dir().join("customers");
    for (folder, ids) in [
        ("region=eu/2025/01", vec!["E1"]),
        ("region=eu", vec!["E2"]),
        ("region=us/batch-1", vec!["U1"]),
        ("region=__HIVE_DEFAULT_PARTITION__", vec!["N1"]),
    ] {
        let dir = customers.join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        super::fixture::write_parquet(
            &dir.join("part-0.parquet"),
            vec![
                ("customer_id", strs(ids.iter().map(|i| Some(*i)))),
                ("signup_date", dates(ids.iter().map(|_| Some("2025-01-01")))),
            ],
        );
    }
    let orders = f.input_dir().join("orders");
    for (folder, order) in [
        ("2025/01", sub("O1", "E1", "2025-01-01", "2025-02-01", 10.0)),
        (
            "2025/02/late",
            sub("O2", "E2", "2025-01-01", "2025-02-01", 5.0),
        ),
        ("", sub("O3", "U1", "2025-01-01", "2025-02-01", 20.0)),
        ("x", sub("O4", "N1", "2025-01-01", "2025-02-01", 30.0)),
    ] {
        let file = format!("{}.parquet", order.id);
        f.orders(&[order]);
        let dir = orders.join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::rename(f.input_dir().join("orders.parquet"), dir.join(file)).unwrap();
    }
    f.no_tickets();
    run_with_folders(
        &f,
        &[("customers", &customers), ("orders", &orders)],
        "[run]\nsegment_by = 'region'\n",
    )
    .await;
    let rows = f.rows(MRR_BY_SEGMENT).await;
    assert_eq!(
        rows,
        owned(&[
            ["all", "65.0", "4"],
            ["eu", "15.0", "2"],
            ["unknown", "30.0", "1"],
            ["us", "20.0", "1"],
        ])
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.out_dir().join("_manifest.json")).unwrap())
            .unwrap();
    let files_of = |input: &str| {
        manifest["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["table"] == input)
            .map(|i| i["files"].as_array().unwrap().len())
    };
    assert_eq!(files_of("customers"), Some(4), "{manifest}");
    assert_eq!(files_of("orders"), Some(4), "{manifest}");
}

/// Spec 1: each file of an input may use any accepted type of a column:
/// a Float64 and a Decimal128 amount, a Date32 and a timestamp order_date,
/// in two files of one folder, read as one table.
#[tokio::test]
async fn files_of_one_input_may_differ_in_accepted_types() {
    use datafusion::arrow::array::{Decimal128Array, TimestampMillisecondArray};
    let f = good_fixture();
    let orders = f.input_dir().join("orders");
    std::fs::create_dir_all(&orders).unwrap();
    std::fs::rename(
        f.input_dir().join("orders.parquet"),
        orders.join("a.parquet"),
    )
    .unwrap();
    let jan_15_ms = 1_736_899_200_000i64; // 2025-01-15 00:00:00 UTC
    super::fixture::write_parquet(
        &orders.join("b.parquet"),
        vec![
            ("order_id", strs([Some("O3")].into_iter())),
            ("customer_id", strs([Some("C2")].into_iter())),
            (
                "order_date",
                Arc::new(TimestampMillisecondArray::from(vec![jan_15_ms])) as ArrayRef,
            ),
            (
                "amount",
                Arc::new(
                    Decimal128Array::from(vec![1_250i128])
                        .with_precision_and_scale(18, 2)
                        .unwrap(),
                ) as ArrayRef,
            ),
            ("kind", strs([Some("addon")].into_iter())),
            ("period_start", dates([Some("2025-01-15")].into_iter())),
            ("period_end", dates([Some("2025-02-15")].into_iter())),
        ],
    );
    run_with_folders(&f, &[("orders", &orders)], "").await;
    // good_fixture's subscriptions: C1 10, C2 20 a month; C2's add-on of
    // 12.50 for 2025-01-15 to 2025-02-15 counts at January's snapshot day,
    // the 31st (spec 4.3).
    let rows = f
        .rows("SELECT round(mrr, 2), paying_customers FROM mrr_monthly WHERE segment = 'all' AND month = DATE '2025-01-01'")
        .await;
    assert_eq!(rows, owned(&[["42.5", "2"]]));
}

/// Spec 2 reads as_of in UTC and spec 1 a timestamp in UTC: a date column
/// holding timestamps with a time zone takes their UTC date, in a file of
/// its own and beside a file of Date32 dates.
#[tokio::test]
async fn zoned_timestamps_in_a_date_column_give_their_utc_date() {
    use datafusion::arrow::array::TimestampMicrosecondArray;
    let f = Fixture::new();
    let customers = f.input_dir().join("customers");
    std::fs::create_dir_all(&customers).unwrap();
    super::fixture::write_parquet(
        &customers.join("a.parquet"),
        vec![
            ("customer_id", strs([Some("C1")].into_iter())),
            ("signup_date", dates([Some("2025-01-01")].into_iter())),
        ],
    );
    // C2: 2025-01-31 23:30 at -05:00 is 2025-02-01 04:30 UTC (local date
    // January 31); C3: 2025-01-15 12:00 at -05:00 is 17:00 UTC.
    let (feb_1_0430, jan_15_1700) = (1_738_384_200_000_000i64, 1_736_960_400_000_000i64);
    let zoned_file = customers.join("b.parquet");
    super::fixture::write_parquet(
        &zoned_file,
        vec![
            ("customer_id", strs([Some("C2"), Some("C3")].into_iter())),
            (
                "signup_date",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![feb_1_0430, jan_15_1700])
                        .with_timezone("-05:00"),
                ) as ArrayRef,
            ),
        ],
    );
    f.orders(&[sub("O1", "C3", "2025-01-15", "2025-02-15", 10.0)]);
    f.no_tickets();
    let new_by_month = "SELECT month, customers_new FROM retention_monthly \
                        WHERE segment = 'all' ORDER BY month";
    // Both files: C1 and C3 new in January, C2 in February. The zoned file
    // alone (its own column type, no merge): C3 in January, C2 in February.
    for (location, new_in_jan) in [(customers.join(""), "2"), (zoned_file, "1")] {
        let text = f.job_text().replace(
            &format!("{}", f.input_dir().join("customers.parquet").display()),
            &format!("{}", location.display()),
        );
        let job = cskpi::config::JobConfig::parse(&format!("{text}[run]\nas_of = '2025-02-28'\n"))
            .unwrap();
        cskpi::run::run_job(&job, &cskpi::run::RunOptions::default())
            .await
            .unwrap();
        assert_eq!(
            f.rows(new_by_month).await,
            owned(&[["2025-01-01", new_in_jan], ["2025-02-01", "1"]]),
            "{location:?}"
        );
    }
}

/// A run finds each row's customer in the directory it holds in memory
/// (`directory_customer_key`, `directory_first_signup`), where the portable
/// SQL joins the stored directory: both give every input the same checked
/// rows, and the keys are the ones worked out by hand (an id's rank among
/// the customers' ids: C1, LATE, then the long ids), for ids longer than
/// the 12 bytes a slot of the look-up holds, alike in those 12 bytes, too.
/// A run stores usage's active users (which no KPI reads) on rejected rows
/// only, for `rejects`, and its clean view leaves them out; `cskpi sql`
/// keeps them everywhere.
#[tokio::test]
async fn a_run_keeps_the_columns_no_kpi_reads_on_rejected_rows_only() {
    use super::fixture::session_rows;
    use cskpi::validate::CleanColumns;

    let f = Fixture::new();
    f.customers(&[("C1", "2025-01-01", None, Some("smb"))]);
    f.orders(&[sub("O1", "C1", "2025-01-01", "2025-02-01", 10.0)]);
    f.tickets(&[("T1", "C1", "2025-01-03 10:00", None, 1, None)]);
    f.usage(&[("C1", "2025-01-05", 3, 4), ("C1", "2025-01-06", -1, 2)]);
    let job = f.job();
    let as_of = super::fixture::date("2025-01-31");
    for (columns, clean_users) in [(CleanColumns::All, "3"), (CleanColumns::ReadByKpis, "NULL")] {
        let (ctx, _) = cskpi::views::open_inputs(&job).await.unwrap();
        let scratch = cskpi::engine::scratch::Scratch::create(&job).await.unwrap();
        cskpi::views::register_input_views(&ctx, &job, as_of, Some(&scratch.views()), columns)
            .await
            .unwrap();
        let checked =
            "SELECT day, active_users, events, reject_reason FROM usage_checked ORDER BY day";
        assert_eq!(
            session_rows(&ctx, checked).await,
            owned(&[
                ["2025-01-05", clean_users, "4", "NULL"],
                ["2025-01-06", "-1", "2", "negative usage"],
            ]),
            "{columns:?}"
        );
        let clean = ctx.table("usage").await.unwrap();
        let clean = clean.schema();
        assert!(clean.has_column_with_unqualified_name("events"));
        assert_eq!(
            clean.has_column_with_unqualified_name("active_users"),
            columns == CleanColumns::All,
            "{columns:?}"
        );
        let raw = session_rows(&ctx, "SELECT raw_row FROM rejects WHERE input = 'usage'").await;
        assert!(raw[0][0].contains(r#""active_users":-1"#), "{}", raw[0][0]);
    }
}

#[tokio::test]
async fn the_runs_directory_look_up_gives_the_joins_checked_rows() {
    use super::fixture::session_rows;
    use datafusion::execution::FunctionRegistry;

    const LONG_1: &str = "customer-long-0000000001";
    const LONG_2: &str = "customer-long-0000000002";
    const LONG_UNKNOWN: &str = "customer-long-0000000003";
    let f = Fixture::new();
    f.customers(&[
        ("C1", "2025-01-01", None, Some("smb")),
        ("LATE", "2025-03-01", None, Some("smb")),
        (LONG_2, "2025-01-01", None, Some("smb")),
        (LONG_1, "2025-01-01", None, Some("smb")),
    ]);
    f.orders(&[
        sub("O1", "C1", "2025-01-01", "2025-02-01", 10.0),
        sub("O2", LONG_2, "2025-01-01", "2025-02-01", 10.0),
        sub("O3", LONG_1, "2025-01-01", "2025-02-01", 10.0),
        sub("O4", LONG_UNKNOWN, "2025-01-01", "2025-02-01", 10.0),
        sub("O5", "NOBODY", "2025-01-01", "2025-02-01", 10.0),
        // LATE signs up after as_of: invisible
        sub("O6", "LATE", "2025-01-01", "2025-02-01", 10.0),
    ]);
    f.tickets(&[
        ("T1", LONG_1, "2025-01-03 10:00", None, 1, None),
        ("T2", "C1", "2025-01-03 10:00", None, 1, None),
        (
            "T3",
            "customer-long-000000000",
            "2025-01-03 10:00",
            None,
            1,
            None,
        ),
    ]);
    f.write(
        "usage",
        vec![
            (
                "customer_id",
                strs([Some("C1"), None, Some(LONG_2), Some("LATE"), Some("C")].into_iter()),
            ),
            ("day", dates([Some("2025-01-05"); 5].into_iter())),
            ("active_users", ints([Some(1); 5].into_iter())),
            ("events", ints([Some(2); 5].into_iter())),
        ],
    );
    let job = f.job();
    let as_of = super::fixture::date("2025-01-31");
    let (joined, _) = cskpi::views::open_views(&job, as_of).await.unwrap();
    let (looked_up, _) = cskpi::views::open_inputs(&job).await.unwrap();
    let scratch = cskpi::engine::scratch::Scratch::create(&job).await.unwrap();
    cskpi::views::register_input_views(
        &looked_up,
        &job,
        as_of,
        Some(&scratch.views()),
        cskpi::validate::CleanColumns::All,
    )
    .await
    .unwrap();
    assert!(looked_up.udf("directory_customer_key").is_ok());
    assert!(joined.udf("directory_customer_key").is_err());
    for table in ["orders", "tickets", "usage"] {
        let sql = format!("SELECT * FROM {table}_checked ORDER BY 1, 2, 3");
        let rows = session_rows(&looked_up, &sql).await;
        assert_eq!(rows, session_rows(&joined, &sql).await, "{table}");
    }
    let orders = "SELECT order_id, customer_key, reject_reason FROM orders_checked ORDER BY 1";
    assert_eq!(
        session_rows(&looked_up, orders).await,
        owned(&[
            ["O1", "0", "NULL"],
            ["O2", "3", "NULL"],
            ["O3", "2", "NULL"],
            ["O4", "NULL", "unknown customer_id"],
            ["O5", "NULL", "unknown customer_id"],
        ])
    );
    let tickets = "SELECT ticket_id, customer_key FROM tickets_checked ORDER BY 1";
    assert_eq!(
        session_rows(&looked_up, tickets).await,
        owned(&[["T1", "2"], ["T2", "0"], ["T3", "NULL"]])
    );
    let usage = "SELECT customer_id, customer_key, reject_reason FROM usage_checked ORDER BY 1";
    assert_eq!(
        session_rows(&looked_up, usage).await,
        owned(&[
            ["C", "NULL", "unknown customer_id"],
            ["C1", "0", "NULL"],
            [LONG_2, "3", "NULL"],
            ["NULL", "NULL", "null in required column customer_id"],
        ])
    );
    scratch.remove().await;
}
