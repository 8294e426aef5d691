//! `cargo bench --profile dev --bench udfs`: Criterion micro-benchmarks of
//! the feedback UDFs (`comment_themes`, `comment_sentiment`), the survey
//! score UDAFs (`nps`, `csat`) and the order-line functions
//! (`mrr_snapshot_months`, `renewal_due_months`), reported in rows per
//! second ("elem/s"). Each runs as a query calls it: SQL over an in-memory
//! table of 100,000 survey answers (English and Vietnamese comments) or
//! 100,000 subscription lines, on one partition, so the figure is one
//! core's throughput. `cargo test` runs each case once (Criterion's test
//! mode), so the benchmark cannot rot unnoticed.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

const ROWS: usize = 100_000;
const BATCH_ROWS: usize = 8192;
const COMMENTS: &[&str] = &[
    "Great support team, very fast response",
    "The app is slow and keeps crashing, many bugs",
    "Too expensive for what we get, billing is confusing",
    "Onboarding took longer than expected but the docs helped",
    "Love the new reporting features, good value for the price",
    "Dịch vụ hỗ trợ rất tốt, phản hồi nhanh",
    "Ứng dụng chậm và hay bị lỗi",
    "Giá quá đắt so với chất lượng",
    "Giao diện ổn nhưng cần thêm tính năng báo cáo",
    "",
];

/// Registers `columns` as an in-memory table of one partition, in batches
/// of the engine's default size.
fn register(ctx: &SessionContext, name: &str, columns: Vec<(&str, ArrayRef)>) {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let all = RecordBatch::try_new(
        Arc::clone(&schema),
        columns.into_iter().map(|(_, array)| array).collect(),
    )
    .unwrap();
    let batches = (0..ROWS)
        .step_by(BATCH_ROWS)
        .map(|start| all.slice(start, BATCH_ROWS.min(ROWS - start)))
        .collect();
    let table = MemTable::try_new(schema, vec![batches]).unwrap();
    ctx.register_table(name, Arc::new(table)).unwrap();
}

/// `answers`: comment, score (0-10) and customer_group (1,000 groups);
/// `lines`: monthly subscription lines of 10,000 customers, ten each.
fn tables() -> SessionContext {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    cskpi::engine::udf::register_all(&ctx, Arc::new(cskpi::feedback::Taxonomy::built_in()));
    let comments: StringArray = (0..ROWS)
        .map(|i| Some(format!("{} (#{i})", COMMENTS[i % COMMENTS.len()])))
        .collect();
    let scores: Float64Array = (0..ROWS).map(|i| Some(((i * 7) % 11) as f64)).collect();
    let groups: Int64Array = (0..ROWS).map(|i| Some((i % 1000) as i64)).collect();
    register(
        &ctx,
        "answers",
        vec![
            ("comment", Arc::new(comments)),
            ("score", Arc::new(scores)),
            ("customer_group", Arc::new(groups)),
        ],
    );
    // 2024-01-01 is day 19723; every customer renews each 30 days, the
    // tenth line of a customer is not renewed.
    let customers: Int64Array = (0..ROWS).map(|i| Some((i % 10_000) as i64)).collect();
    let starts: Date32Array = (0..ROWS)
        .map(|i| Some(19_723 + 30 * (i / 10_000) as i32))
        .collect();
    let ends: Date32Array = (0..ROWS)
        .map(|i| Some(19_753 + 30 * (i / 10_000) as i32))
        .collect();
    register(
        &ctx,
        "lines",
        vec![
            ("customer_id", Arc::new(customers)),
            ("period_start", Arc::new(starts)),
            ("period_end", Arc::new(ends)),
        ],
    );
    ctx
}

fn udfs(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ctx = tables();
    let mut group = c.benchmark_group("udfs");
    group.throughput(Throughput::Elements(ROWS as u64));
    // 20 samples of the slowest case (about half a second) fit in 12 s.
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(12));
    for (name, sql) in [
        (
            "comment_themes",
            "SELECT sum(cardinality(comment_themes(comment))) FROM answers",
        ),
        (
            "comment_sentiment",
            "SELECT sum(comment_sentiment(comment)) FROM answers",
        ),
        ("nps", "SELECT nps(score) FROM answers"),
        (
            "nps_1000_groups",
            "SELECT customer_group, nps(score) FROM answers GROUP BY customer_group",
        ),
        (
            "csat_1000_groups",
            "SELECT customer_group, csat(score) FROM answers GROUP BY customer_group",
        ),
        (
            "mrr_snapshot_months",
            "SELECT sum(cardinality(mrr_snapshot_months(period_start, period_end, DATE '2024-12-31'))) FROM lines",
        ),
        (
            "renewal_due_months_10000_groups",
            "SELECT customer_id, renewal_due_months(period_start, \
                 CAST(period_end - INTERVAL '7 days' AS DATE), \
                 CAST(period_end + INTERVAL '30 days' AS DATE), period_end) \
             FROM lines GROUP BY customer_id",
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let rows = ctx.sql(sql).await.unwrap().collect().await.unwrap();
                    assert!(!rows.is_empty());
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, udfs);
criterion_main!(benches);
