//! Properties on generated data: the MRR bridge and the generator's promises.

use std::path::Path;

use cskpi::config::JobConfig;
use cskpi::run::{RunOptions, run_job};

use datafusion::arrow::util::display::array_value_to_string;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::fixture::{generate_dataset, input_names, query_outputs, table_files};

async fn dataset(dir: &Path, customers: u64, seed: u64) -> JobConfig {
    generate_dataset(dir, customers, seed, "2024-01-01", "2025-06-30").await
}

async fn generate_and_run(dir: &Path, customers: u64) {
    let job = dataset(dir, customers, 7).await;
    run_job(&job, &RunOptions::default()).await.unwrap();
}

#[tokio::test]
async fn mrr_bridge_holds_per_segment_and_month() {
    let dir = tempfile::tempdir().unwrap();
    generate_and_run(dir.path(), 400).await;
    let out = dir.path().join("out");

    // mrr(M) = mrr(M-1) + net_new_mrr, up to 0.005 per customer; and the
    // segments add up to 'all'.
    let rows = query_outputs(
        &out,
        "SELECT m.month, m.segment, m.mrr, p.mrr, m.net_new_mrr, m.paying_customers, p.paying_customers \
         FROM mrr_monthly m JOIN mrr_monthly p \
           ON p.segment = m.segment AND p.month = CAST(m.month - INTERVAL '1 month' AS DATE) \
         ORDER BY 1, 2",
    )
    .await;
    assert!(
        rows.len() > 40,
        "expected many month-segment pairs, got {}",
        rows.len()
    );
    let mut nonzero = 0;
    for r in &rows {
        let (mrr, prev, net): (f64, f64, f64) = (
            r[2].parse().unwrap(),
            r[3].parse().unwrap(),
            r[4].parse().unwrap(),
        );
        let customers: f64 = r[5].parse::<f64>().unwrap() + r[6].parse::<f64>().unwrap() + 1.0;
        assert!(
            (mrr - prev - net).abs() <= 0.005 * customers,
            "bridge broken in {r:?}"
        );
        if net.abs() > 0.0 {
            nonzero += 1;
        }
    }
    assert!(nonzero > 10, "the generated data should move MRR");

    let sums = query_outputs(
        &out,
        "SELECT a.month, a.mrr, SUM(s.mrr) FROM mrr_monthly a JOIN mrr_monthly s \
           ON s.month = a.month AND s.segment <> 'all' \
         WHERE a.segment = 'all' GROUP BY a.month, a.mrr",
    )
    .await;
    for r in sums {
        let (all, parts): (f64, f64) = (r[1].parse().unwrap(), r[2].parse().unwrap());
        assert!((all - parts).abs() < 1e-6, "{r:?}");
    }

    // Every movement kind shows up in 400 customers over 18 months.
    let kinds = query_outputs(
        &out,
        "SELECT DISTINCT movement FROM mrr_movements ORDER BY 1",
    )
    .await;
    let kinds: Vec<&str> = kinds.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "churn",
            "contraction",
            "expansion",
            "flat",
            "new",
            "reactivation"
        ]
    );

    // mrr_movements has one file per month, holding that month's rows
    // ordered by customer_id (the table's order is month, customer_id).
    let files = table_files(&out, "mrr_movements");
    let months = query_outputs(&out, "SELECT COUNT(DISTINCT month) FROM mrr_movements").await;
    assert_eq!(files.len().to_string(), months[0][0], "{files:?}");
    for (relative, _) in &files {
        let month = relative
            .strip_prefix("month-")
            .and_then(|r| r.strip_suffix(".parquet"))
            .unwrap_or_else(|| panic!("unexpected file {relative}"));
        let file = std::fs::File::open(out.join("mrr_movements").join(relative)).unwrap();
        let mut previous = String::new();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            let (months, customers) = (
                batch.column_by_name("month").unwrap(),
                batch.column_by_name("customer_id").unwrap(),
            );
            for row in 0..batch.num_rows() {
                assert_eq!(array_value_to_string(months, row).unwrap(), month);
                let customer = array_value_to_string(customers, row).unwrap();
                assert!(
                    previous <= customer,
                    "{relative}: {customer} after {previous}"
                );
                previous = customer;
            }
        }
    }

    // Deliberately broken rows end up in rejects, under the ratio limit.
    let rejects = query_outputs(&out, "SELECT COUNT(*) FROM rejects").await;
    assert!(rejects[0][0].parse::<u64>().unwrap() > 0);
}

/// Both layouts: the same seed gives the same files (names and bytes),
/// another seed other ones.
#[tokio::test]
async fn same_seed_same_files_other_seed_other_files() {
    use cskpi::datagen::{GenOptions, Layout};
    for layout in [Layout::Customer, Layout::Date] {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        for (dir, seed) in [(&a, 1), (&b, 1), (&c, 2)] {
            let options = GenOptions {
                customers: 50,
                seed,
                start: super::fixture::date("2024-01-01"),
                end: super::fixture::date("2025-06-30"),
                bad_row_rate: 0.002,
                layout,
                rows_per_file: 200,
            };
            cskpi::datagen::generate(&options, dir.path())
                .await
                .unwrap();
        }
        for t in input_names() {
            let name = match layout {
                Layout::Customer => format!("{t}.parquet"),
                Layout::Date if t == "customers" => format!("{t}.parquet"),
                Layout::Date => t.to_string(),
            };
            let (x, y) = (table_files(a.path(), &name), table_files(b.path(), &name));
            assert!(!x.is_empty(), "{layout:?}: no {name}");
            assert!(
                x == y,
                "{layout:?}: {name} differs between two runs with the same seed"
            );
            assert!(
                x != table_files(c.path(), &name),
                "{layout:?}: {name} is the same with another seed"
            );
        }
    }
}

#[test]
fn committed_sample_is_small_and_complete() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples");
    let mut total = 0;
    for t in input_names() {
        let meta = std::fs::metadata(dir.join(format!("{t}.parquet"))).unwrap();
        total += meta.len();
    }
    assert!(total < 5 * 1024 * 1024, "data-samples is {total} bytes");
    for job in ["job.toml", "job-acsi.toml"] {
        let job = JobConfig::load(&dir.join(job)).unwrap();
        assert!(job.csi_model().is_some());
    }
}

/// `nps`, `nps_moe` and `csat` over the views' responses give the numbers
/// of survey_monthly, for every month and segment of a generated data set.
#[tokio::test]
async fn survey_udafs_agree_with_survey_monthly() {
    let dir = tempfile::tempdir().unwrap();
    let job = dataset(dir.path(), 300, 11).await;
    let as_of = super::fixture::date("2025-06-30");
    let (ctx, _) = cskpi::views::open_views(&job, as_of).await.unwrap();
    let sql = "
        WITH nps_all AS (
            SELECT month, segment, score FROM nps_responses
            UNION ALL SELECT month, 'all', score FROM nps_responses
        ), csat_all AS (
            SELECT month, segment, score FROM csat_responses
            UNION ALL SELECT month, 'all', score FROM csat_responses
        ), n AS (
            SELECT month, segment, nps(score) AS nps, nps_moe(score) AS moe
            FROM nps_all GROUP BY month, segment
        ), c AS (
            SELECT month, segment, csat(score) AS csat, csat(score, 5) AS csat5,
                   100.0 * AVG(CASE WHEN score >= 5 THEN 1.0 ELSE 0.0 END) AS csat5_by_hand
            FROM csat_all GROUP BY month, segment
        )
        SELECT s.month, s.segment, s.nps, n.nps, s.nps_moe, n.moe, s.csat, c.csat,
               c.csat5_by_hand, c.csat5
        FROM survey_monthly s
        LEFT JOIN n ON n.month = s.month AND n.segment = s.segment
        LEFT JOIN c ON c.month = s.month AND c.segment = s.segment
        ORDER BY 1, 2";
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let rows = super::fixture::batches_to_rows(&batches);
    let mut compared = 0;
    for r in &rows {
        for pair in r[2..].chunks(2) {
            match (pair[0].as_str(), pair[1].as_str()) {
                ("NULL", "NULL") => {}
                (a, b) => {
                    let (a, b): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
                    assert!((a - b).abs() < 1e-9, "{r:?}");
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 100, "only {compared} values compared");
}

/// The run's renewals per customer and due month (renewal_customers, by the
/// `renewal_due_months` aggregate) are the per-line renewals of
/// renewal_lines (a window over starts and window starts) grouped by
/// customer and month, on a generated data set with won, lost and pending
/// months.
#[tokio::test]
async fn renewal_customers_agree_with_renewal_lines() {
    let dir = tempfile::tempdir().unwrap();
    let job = dataset(dir.path(), 300, 5).await;
    let as_of = super::fixture::date("2025-06-30");
    let (ctx, _) = cskpi::views::open_views(&job, as_of).await.unwrap();
    let sql = "
        WITH by_lines AS (
            SELECT customer_id, CAST(date_trunc('month', period_end) AS DATE) AS due_month,
                   bool_or(renewed) AS won
            FROM renewal_lines
            WHERE period_end < DATE '2025-07-01'
            GROUP BY 1, 2
        )
        SELECT COALESCE(l.customer_id, c.customer_id), COALESCE(l.due_month, c.due_month),
               l.won, c.won, c.pending
        FROM by_lines l
        FULL JOIN renewal_customers c
          ON c.customer_id = l.customer_id AND c.due_month = l.due_month
        ORDER BY 1, 2";
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let rows = super::fixture::batches_to_rows(&batches);
    let count = |column: usize, value: &str| rows.iter().filter(|r| r[column] == value).count();
    for r in &rows {
        assert_eq!(
            r[2], r[3],
            "renewal_lines and renewal_customers differ: {r:?}"
        );
    }
    assert!(count(3, "true") > 100, "won: {}", count(3, "true"));
    assert!(count(3, "false") > 10, "not won: {}", count(3, "false"));
    assert!(count(4, "true") > 0, "no pending month");
}

/// kpi_summary is every numeric column of the monthly tables, value for
/// value, worked out here from the tables' own schemas. A column name in
/// two tables (arpa: mrr_monthly and value_monthly, the same number) is
/// one KPI.
#[tokio::test]
async fn kpi_summary_holds_every_monthly_number() {
    let dir = tempfile::tempdir().unwrap();
    generate_and_run(dir.path(), 150).await;
    let out = dir.path().join("out");
    let ctx = datafusion::prelude::SessionContext::new();
    let mut expected_rows = 0;
    let tables = [
        "retention_monthly",
        "mrr_monthly",
        "support_monthly",
        "survey_monthly",
        "value_monthly",
    ];
    let mut kpis = std::collections::HashSet::new();
    for table in tables.iter().chain(["kpi_summary"].iter()) {
        ctx.register_parquet(
            *table,
            &format!("{}/", out.join(table).display()),
            Default::default(),
        )
        .await
        .unwrap();
    }
    for table in tables {
        let df = ctx.table(table).await.unwrap();
        let rows = df.clone().count().await.unwrap();
        let numeric: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .filter(|f| f.data_type().is_numeric())
            .map(|f| f.name().clone())
            .collect();
        assert!(numeric.len() >= 4, "{table}: {numeric:?}");
        for column in &numeric {
            let sql = format!(
                "SELECT COUNT(*) FROM {table} t JOIN kpi_summary k \
                   ON k.month = t.month AND k.segment = t.segment AND k.kpi = '{column}' \
                 WHERE k.value IS NOT DISTINCT FROM CAST(t.{column} AS DOUBLE)"
            );
            let matched = super::fixture::batches_to_rows(
                &ctx.sql(&sql).await.unwrap().collect().await.unwrap(),
            );
            assert_eq!(matched[0][0], rows.to_string(), "{table}.{column}");
            if kpis.insert(column.clone()) {
                expected_rows += rows;
            }
        }
    }
    let total = query_outputs(&out, "SELECT COUNT(*), COUNT(value) FROM kpi_summary").await;
    assert_eq!(total[0][0], expected_rows.to_string());
    // Nulls are kept (e.g. NPS of a month without answers).
    assert_ne!(total[0][0], total[0][1]);
}

/// Spec 4.8-4.9 properties on generated data (as_of 2025-06-30, so W =
/// Jul 2024 - Jun 2025): the overhead service costs of W are allocated to
/// the cent, every health score lies in [0, 100], and every customer
/// active at as_of (from the raw input, less the rejected rows) has one.
#[tokio::test]
async fn value_and_health_properties_on_generated_data() {
    let dir = tempfile::tempdir().unwrap();
    generate_and_run(dir.path(), 300).await;
    let ctx = datafusion::prelude::SessionContext::new();
    for input in ["customers", "costs"] {
        ctx.register_parquet(
            input,
            &dir.path()
                .join(format!("{input}.parquet"))
                .display()
                .to_string(),
            Default::default(),
        )
        .await
        .unwrap();
    }
    for output in ["customer_value", "customer_health", "rejects"] {
        ctx.register_parquet(
            output,
            &format!("{}/", dir.path().join("out").join(output).display()),
            Default::default(),
        )
        .await
        .unwrap();
    }
    let rows = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            super::fixture::batches_to_rows(&batches)
        }
    };
    let overhead = rows(
        "SELECT SUM(amount) FROM costs WHERE category = 'service' AND customer_id IS NULL \
         AND amount IS NOT NULL AND month >= DATE '2024-07-01' AND month <= DATE '2025-06-30'",
    )
    .await;
    let allocated = rows("SELECT SUM(allocated_cost) FROM customer_value").await;
    let (overhead, allocated): (f64, f64) = (
        overhead[0][0].parse().unwrap(),
        allocated[0][0].parse().unwrap(),
    );
    assert!(overhead > 1000.0, "{overhead}");
    assert!(
        (overhead - allocated).abs() < 0.005,
        "{overhead} vs {allocated}"
    );

    let out_of_range = rows(
        "SELECT COUNT(*) FROM customer_health \
         WHERE health_score IS NULL OR health_score < 0 OR health_score > 100",
    )
    .await;
    assert_eq!(out_of_range[0][0], "0");

    let missing = rows(
        "WITH active AS (
            SELECT customer_id FROM customers
            WHERE signup_date <= DATE '2025-06-30'
              AND (churn_date IS NULL OR churn_date > DATE '2025-06-30')
              AND customer_id NOT IN (SELECT key FROM rejects WHERE input = 'customers')
         )
         SELECT (SELECT COUNT(*) FROM active) AS active,
                (SELECT COUNT(*) FROM active WHERE customer_id NOT IN
                    (SELECT customer_id FROM customer_health)) AS without_row,
                (SELECT COUNT(*) FROM customer_health WHERE customer_id NOT IN
                    (SELECT customer_id FROM active)) AS not_active",
    )
    .await;
    assert!(missing[0][0].parse::<u64>().unwrap() > 100, "{missing:?}");
    assert_eq!(missing[0][1..], ["0", "0"], "{missing:?}");
}

/// Point in time: a backfill as of a past day gives the tables a run on
/// that day would have given, i.e. a run on the inputs cut down to what
/// existed then (later rows dropped, later churn and resolution dates
/// unknown). Every table but `rejects` (whose raw rows show the later
/// values) must be byte-identical.
#[tokio::test]
async fn backfill_equals_a_run_on_the_data_as_it_was() {
    let full = tempfile::tempdir().unwrap();
    let job = dataset(full.path(), 250, 5).await;
    let as_of = "2025-02-14";
    let options = RunOptions {
        as_of: Some(super::fixture::date(as_of)),
        progress: false,
    };
    run_job(&job, &options).await.unwrap();

    let then = tempfile::tempdir().unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    for t in input_names() {
        ctx.register_parquet(
            t,
            &full
                .path()
                .join(format!("{t}.parquet"))
                .display()
                .to_string(),
            Default::default(),
        )
        .await
        .unwrap();
    }
    let late = "customer_id IS NULL OR customer_id NOT IN (SELECT customer_id FROM customers \
                GROUP BY customer_id HAVING MIN(signup_date) > DATE '2025-02-14')";
    let end = "TIMESTAMP '2025-02-15 00:00:00'";
    let cuts = [
        (
            "customers",
            "SELECT * EXCLUDE (churn_date), \
             CASE WHEN churn_date <= DATE '2025-02-14' THEN churn_date END AS churn_date \
             FROM customers WHERE signup_date IS NULL OR signup_date <= DATE '2025-02-14'"
                .to_string(),
        ),
        (
            "orders",
            format!(
                "SELECT * FROM orders WHERE (order_date IS NULL OR order_date <= DATE '2025-02-14') AND ({late})"
            ),
        ),
        (
            "tickets",
            format!(
                "SELECT * EXCLUDE (resolved_at), CASE WHEN resolved_at < {end} THEN resolved_at END AS resolved_at \
                 FROM tickets WHERE (opened_at IS NULL OR opened_at < {end}) AND ({late})"
            ),
        ),
        (
            "surveys",
            format!(
                "SELECT * FROM surveys WHERE (responded_at IS NULL OR responded_at < {end}) AND ({late})"
            ),
        ),
        (
            "usage",
            format!(
                "SELECT * FROM usage WHERE (day IS NULL OR day <= DATE '2025-02-14') AND ({late})"
            ),
        ),
        (
            "costs",
            format!(
                "SELECT * FROM costs WHERE (month IS NULL OR month < DATE '2025-03-01') AND ({late})"
            ),
        ),
    ];
    for (table, query) in cuts {
        let path = then.path().join(format!("{table}.parquet"));
        ctx.sql(&format!(
            "COPY ({query}) TO '{}' STORED AS PARQUET",
            path.display()
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    }
    let text = std::fs::read_to_string(full.path().join("job.toml")).unwrap();
    std::fs::write(then.path().join("job.toml"), text).unwrap();
    let then_job = JobConfig::load(&then.path().join("job.toml")).unwrap();
    run_job(&then_job, &options).await.unwrap();

    for table in cskpi::run::output_tables() {
        if table.name == "rejects" {
            continue;
        }
        let file = |root: &Path| super::fixture::table_files(&root.join("out"), table.name);
        assert!(
            file(full.path()) == file(then.path()),
            "{} differs between the backfill and the run on the data as it was",
            table.name
        );
    }
    let keys = "SELECT input, key, reason FROM rejects ORDER BY 1, 2, 3";
    assert_eq!(
        query_outputs(&full.path().join("out"), keys).await,
        query_outputs(&then.path().join("out"), keys).await
    );
}

/// Both layouts of one seed hold the same rows, so the layout must not
/// change any number: every output file is byte-identical, except the CSI
/// estimates, whose floating sums follow respondent order (within 1e-9).
/// The date layout also keeps its promises: several part files, usage in
/// month folders, decimal money, rows in event order.
#[tokio::test]
async fn date_and_customer_layouts_give_the_same_outputs() {
    use cskpi::datagen::{GenOptions, Layout};
    use datafusion::arrow::datatypes::DataType;

    let dir = tempfile::tempdir().unwrap();
    let by_customer = dir.path().join("customer");
    let by_date = dir.path().join("date");
    for (path, layout) in [(&by_customer, Layout::Customer), (&by_date, Layout::Date)] {
        let options = GenOptions {
            customers: 400,
            seed: 13,
            start: super::fixture::date("2024-01-01"),
            end: super::fixture::date("2025-06-30"),
            bad_row_rate: 0.004,
            layout,
            rows_per_file: 1_500,
        };
        cskpi::datagen::generate(&options, path).await.unwrap();
    }

    let parts = |table: &str| {
        let mut files: Vec<_> = table_files(&by_date, table)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        files.sort();
        files
    };
    let orders = parts("orders");
    assert!(orders.len() > 2, "{orders:?}");
    assert!(orders.iter().all(|f| f.starts_with("part-")), "{orders:?}");
    let usage = parts("usage");
    assert!(
        usage.iter().any(|f| f.starts_with("month=2025-06/part-"))
            && usage.iter().any(|f| f.starts_with("month=2025-03/part-")),
        "{usage:?}"
    );
    // Order dates never go back, across the part files in name order.
    let mut last = i32::MIN;
    for file in &orders {
        let reader = ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(by_date.join("orders").join(file)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            reader
                .schema()
                .field_with_name("amount")
                .unwrap()
                .data_type(),
            &DataType::Decimal128(18, 2)
        );
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            let dates = batch
                .column_by_name("order_date")
                .unwrap()
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Date32Array>()
                .unwrap();
            for d in dates.values() {
                assert!(*d >= last, "orders are not in date order in {file}");
                last = *d;
            }
        }
    }

    for path in [&by_customer, &by_date] {
        let job = JobConfig::load(&path.join("job.toml")).unwrap();
        run_job(&job, &RunOptions::default()).await.unwrap();
    }
    let (a, b) = (by_customer.join("out"), by_date.join("out"));
    for table in cskpi::run::output_tables() {
        if table.name.starts_with("csi_") {
            let query = format!("SELECT * FROM {} ORDER BY {}", table.name, table.order_by);
            let (x, y) = (
                query_outputs(&a, &query).await,
                query_outputs(&b, &query).await,
            );
            assert!(!x.is_empty(), "{} is empty", table.name);
            assert_eq!(x.len(), y.len(), "{}", table.name);
            for (row_x, row_y) in x.iter().zip(&y) {
                for (cell_x, cell_y) in row_x.iter().zip(row_y) {
                    assert!(
                        same_numbers(cell_x, cell_y, 1e-9),
                        "{}: {cell_x} against {cell_y}",
                        table.name
                    );
                }
            }
        } else {
            let (x, y) = (table_files(&a, table.name), table_files(&b, table.name));
            assert!(!x.is_empty(), "{} has no files", table.name);
            assert!(x == y, "{} differs between the layouts", table.name);
        }
    }
}

/// Two printed values that hold the same text around numbers within
/// `tolerance` (relative, or absolute below 1) of each other.
fn same_numbers(x: &str, y: &str, tolerance: f64) -> bool {
    let split = |s: &str| -> Vec<String> {
        s.split(|c: char| "[]{},: ".contains(c))
            .map(String::from)
            .collect()
    };
    let (xs, ys) = (split(x), split(y));
    xs.len() == ys.len()
        && xs.iter().zip(&ys).all(|(a, b)| {
            a == b
                || match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(a), Ok(b)) => (a - b).abs() <= tolerance * a.abs().max(1.0),
                    _ => false,
                }
        })
}
