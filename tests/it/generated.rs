//! Properties on generated data: the MRR bridge and the generator's promises.

use std::path::Path;

use cskpi::config::JobConfig;
use cskpi::run::{RunOptions, run_job};

use datafusion::arrow::util::display::array_value_to_string;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::fixture::{generate_dataset, input_names, query_outputs, table_files};

fn dataset(dir: &Path, customers: u64, seed: u64) -> JobConfig {
    generate_dataset(dir, customers, seed, "2024-01-01", "2025-06-30")
}

async fn generate_and_run(dir: &Path, customers: u64) {
    let job = dataset(dir, customers, 7);
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
            .strip_prefix("month=")
            .and_then(|r| r.strip_suffix("/part-0.parquet"))
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

#[test]
fn same_seed_same_files_other_seed_other_files() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    dataset(a.path(), 50, 1);
    dataset(b.path(), 50, 1);
    dataset(c.path(), 50, 2);
    for t in input_names() {
        let file = format!("{t}.parquet");
        let (x, y) = (
            std::fs::read(a.path().join(&file)).unwrap(),
            std::fs::read(b.path().join(&file)).unwrap(),
        );
        assert_eq!(x, y, "{t} differs between two runs with the same seed");
    }
    assert_ne!(
        std::fs::read(a.path().join("orders.parquet")).unwrap(),
        std::fs::read(c.path().join("orders.parquet")).unwrap()
    );
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
        assert!(job.csi_model().unwrap().is_some());
    }
}

/// `nps`, `nps_moe` and `csat` over the views' responses give the numbers
/// of survey_monthly, for every month and segment of a generated data set.
#[tokio::test]
async fn survey_udafs_agree_with_survey_monthly() {
    let dir = tempfile::tempdir().unwrap();
    let job = dataset(dir.path(), 300, 11);
    let as_of = super::fixture::date("2025-06-30");
    let (ctx, _) = cskpi::run::open_views(&job, as_of).await.unwrap();
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
    let job = dataset(dir.path(), 300, 5);
    let as_of = super::fixture::date("2025-06-30");
    let (ctx, _) = cskpi::run::open_views(&job, as_of).await.unwrap();
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
    let job = dataset(full.path(), 250, 5);
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
