//! Signup cohorts: logo and revenue retention by months since signup
//! (spec 4.10): `sql/cohorts.sql`.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringViewArray,
};
use datafusion::arrow::datatypes::{Date32Type, Int64Type};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::definitions::{KpiDefinition, kpi};
use super::{KpiFamily, Registration};
use crate::calendar::{self, RunWindow};
use crate::config::JobConfig;
use crate::engine::sql;
use crate::error::Error;
use crate::output::OutputTable;
use crate::sbg::{self, Cohort, Fit};

pub const FAMILY: KpiFamily = KpiFamily {
    name: "cohorts",
    script: sql::COHORTS,
    outputs: &[
        OutputTable {
            name: "cohort_retention",
            order_by: "cohort_month, segment, months_since",
            partition_by: None,
            sorted_per_partition: false,
        },
        OutputTable {
            name: "retention_model",
            order_by: "as_of, segment",
            partition_by: None,
            sorted_per_partition: false,
        },
        OutputTable {
            name: "retention_forecast",
            order_by: "as_of, segment, period",
            partition_by: None,
            sorted_per_partition: false,
        },
    ],
    // Published and read again by the retention model.
    materialize: &["cohort_retention"],
    materialize_by_value: &[],
    kpis: KPIS,
    tests: &["tests/it/cohorts.rs", "tests/it/sbg_reference.rs"],
    registration: Registration::CohortModel,
};

/// Fits the sBG model (spec 4.11) per segment on `cohort_retention`'s
/// counts and registers `retention_model` and `retention_forecast`. A
/// segment with too few customers or without a fit gets nulls and a
/// warning, never an error.
pub async fn register_model(
    ctx: &SessionContext,
    job: &JobConfig,
    window: &RunWindow,
) -> Result<(), Error> {
    let batches = ctx
        .sql(
            "SELECT arrow_cast(segment, 'Utf8') AS segment, cohort_month, cohort_customers, \
             active_customers FROM cohort_retention ORDER BY segment, cohort_month, months_since",
        )
        .await?
        .collect()
        .await?;
    // segment -> cohort month -> [cohort customers, active after k = 0, 1, ...]
    let mut survival: BTreeMap<String, BTreeMap<i32, Vec<u64>>> = BTreeMap::new();
    for batch in &batches {
        let segments = batch.column(0).as_string::<i32>();
        let months = batch.column(1).as_primitive::<Date32Type>();
        let customers = batch.column(2).as_primitive::<Int64Type>();
        let active = batch.column(3).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let alive = survival
                .entry(segments.value(row).to_string())
                .or_default()
                .entry(months.value(row))
                .or_default();
            if alive.is_empty() {
                alive.push(customers.value(row) as u64);
            }
            alive.push(active.value(row) as u64);
        }
    }
    let value = &job.value;
    let as_of = calendar::to_date32(window.as_of);
    let max_tenure = longest_tenure(ctx, window).await?;
    let mut model = ModelColumns::default();
    let mut forecast = ForecastColumns::default();
    let mut derl = DerlColumns::default();
    for (segment, by_cohort) in survival {
        let cohorts: Vec<Cohort> = by_cohort
            .into_values()
            .filter(|alive| alive[0] > 0)
            .map(|alive| Cohort { alive })
            .collect();
        let customers: u64 = cohorts.iter().map(|c| c.alive[0]).sum();
        let fitted = if customers < value.min_model_customers {
            tracing::warn!(
                %segment,
                customers,
                min_model_customers = value.min_model_customers,
                "no retention model for the segment: too few customers"
            );
            None
        } else {
            match sbg::fit(&cohorts) {
                Ok(fit) => Some(fit),
                Err(reason) => {
                    tracing::warn!(%segment, %reason, "no retention model for the segment");
                    None
                }
            }
        };
        model.push(as_of, &segment, customers, cohorts.len(), fitted);
        forecast.push(as_of, &segment, value.forecast_months, fitted);
        if let Some(fit) = fitted {
            derl.push(&segment, value.monthly_discount, fit, max_tenure);
        }
    }
    register_batch(ctx, "retention_model", model.finish()?)?;
    register_batch(ctx, "retention_forecast", forecast.finish()?)?;
    register_batch(ctx, "retention_derl", derl.finish()?)?;
    Ok(())
}

/// The largest tenure m of 4.11 (complete months survived) a customer can
/// have at as_of: that of the earliest visible signup.
async fn longest_tenure(ctx: &SessionContext, window: &RunWindow) -> Result<u32, Error> {
    let Some(earliest) = super::earliest_signup(ctx).await? else {
        return Ok(0);
    };
    let months =
        calendar::month_index(window.last_complete_month()) - calendar::month_index(earliest) + 1;
    Ok(months.max(0) as u32)
}
fn register_batch(ctx: &SessionContext, name: &str, batch: RecordBatch) -> Result<(), Error> {
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}

#[derive(Default)]
struct ModelColumns {
    as_of: Vec<i32>,
    segment: Vec<String>,
    customers: Vec<i64>,
    cohorts: Vec<i64>,
    alpha: Vec<Option<f64>>,
    beta: Vec<Option<f64>>,
    log_likelihood: Vec<Option<f64>>,
    expected_retention_12m: Vec<Option<f64>>,
}

impl ModelColumns {
    fn push(
        &mut self,
        as_of: i32,
        segment: &str,
        customers: u64,
        cohorts: usize,
        fit: Option<Fit>,
    ) {
        self.as_of.push(as_of);
        self.segment.push(segment.to_string());
        self.customers.push(customers as i64);
        self.cohorts.push(cohorts as i64);
        self.alpha.push(fit.map(|f| f.alpha));
        self.beta.push(fit.map(|f| f.beta));
        self.log_likelihood.push(fit.map(|f| f.log_likelihood));
        self.expected_retention_12m
            .push(fit.map(|f| sbg::survival(f.alpha, f.beta, 12)[11]));
    }

    fn finish(self) -> Result<RecordBatch, Error> {
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("as_of", Arc::new(Date32Array::from(self.as_of))),
            (
                "segment",
                Arc::new(StringViewArray::from_iter_values(self.segment)),
            ),
            ("customers", Arc::new(Int64Array::from(self.customers))),
            ("cohorts", Arc::new(Int64Array::from(self.cohorts))),
            ("alpha", Arc::new(Float64Array::from(self.alpha))),
            ("beta", Arc::new(Float64Array::from(self.beta))),
            (
                "log_likelihood",
                Arc::new(Float64Array::from(self.log_likelihood)),
            ),
            (
                "expected_retention_12m",
                Arc::new(Float64Array::from(self.expected_retention_12m)),
            ),
        ];
        Ok(RecordBatch::try_from_iter(columns)?)
    }
}

#[derive(Default)]
struct ForecastColumns {
    as_of: Vec<i32>,
    segment: Vec<String>,
    period: Vec<i64>,
    retention_rate: Vec<Option<f64>>,
    survival: Vec<Option<f64>>,
}

impl ForecastColumns {
    /// Periods 1..=months, null values without a fit.
    fn push(&mut self, as_of: i32, segment: &str, months: u32, fit: Option<Fit>) {
        let survival = fit.map(|f| sbg::survival(f.alpha, f.beta, months));
        for t in 1..=months {
            self.as_of.push(as_of);
            self.segment.push(segment.to_string());
            self.period.push(i64::from(t));
            self.retention_rate
                .push(fit.map(|f| sbg::retention_rate(f.alpha, f.beta, t)));
            self.survival
                .push(survival.as_ref().map(|s| s[t as usize - 1]));
        }
    }

    fn finish(self) -> Result<RecordBatch, Error> {
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("as_of", Arc::new(Date32Array::from(self.as_of))),
            (
                "segment",
                Arc::new(StringViewArray::from_iter_values(self.segment)),
            ),
            ("period", Arc::new(Int64Array::from(self.period))),
            (
                "retention_rate",
                Arc::new(Float64Array::from(self.retention_rate)),
            ),
            ("survival", Arc::new(Float64Array::from(self.survival))),
        ];
        Ok(RecordBatch::try_from_iter(columns)?)
    }
}

/// `retention_derl` (segment, tenure_months, derl_months): DERL at the
/// job's discount for every tenure 0..=max of each fitted segment, which
/// customer_value (sql/value.sql) looks up per customer.
#[derive(Default)]
struct DerlColumns {
    segment: Vec<String>,
    tenure_months: Vec<i64>,
    derl_months: Vec<Option<f64>>,
}

impl DerlColumns {
    fn push(&mut self, segment: &str, discount: f64, fit: Fit, max_tenure: u32) {
        let derls = sbg::derl_by_tenure(discount, fit.alpha, fit.beta, max_tenure);
        if derls.is_none() {
            tracing::warn!(
                %segment,
                discount,
                alpha = fit.alpha,
                "no derl_months for the segment: the expected lifetime is infinite without a discount"
            );
        }
        for m in 0..=max_tenure {
            self.segment.push(segment.to_string());
            self.tenure_months.push(i64::from(m));
            self.derl_months
                .push(derls.as_ref().map(|all| all[m as usize]));
        }
    }

    fn finish(self) -> Result<RecordBatch, Error> {
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "segment",
                Arc::new(StringViewArray::from_iter_values(self.segment)),
            ),
            (
                "tenure_months",
                Arc::new(Int64Array::from(self.tenure_months)),
            ),
            (
                "derl_months",
                Arc::new(Float64Array::from(self.derl_months)),
            ),
        ];
        Ok(RecordBatch::try_from_iter(columns)?)
    }
}

/// The KPIs the family publishes (`cskpi kpis`, docs/KPIS.md).
pub const KPIS: &[KpiDefinition] = &[
    kpi!(
        "cohort_customers",
        "Cohort size",
        "4.10",
        "customers",
        ["customers"],
        "cohort_retention.cohort_customers",
        "customers whose signup_date falls in the cohort month (visible at as_of)"
    ),
    kpi!(
        "cohort_active_customers",
        "Cohort customers still active",
        "4.10",
        "customers",
        ["customers"],
        "cohort_retention.active_customers",
        "cohort customers whose churn_date is null or after the last day of month cohort + months_since"
    ),
    kpi!(
        "logo_retention",
        "Logo retention of a cohort",
        "4.10",
        "fraction 0-1",
        ["customers"],
        "cohort_retention.logo_retention",
        "active_customers / cohort_customers; null for an empty cohort"
    ),
    kpi!(
        "cohort_mrr",
        "Cohort MRR",
        "4.10",
        "currency",
        ["orders", "customers"],
        "cohort_retention.mrr",
        "sum of the cohort's customers' MRR snapshots (4.3) in month cohort + months_since"
    ),
    kpi!(
        "mrr_retention",
        "Revenue retention of a cohort",
        "4.10",
        "fraction",
        ["orders", "customers"],
        "cohort_retention.mrr_retention",
        "mrr / mrr at months_since = 0; null when that is 0"
    ),
    kpi!(
        "retention_alpha",
        "sBG alpha",
        "4.11",
        "> 0",
        ["customers"],
        "retention_model.alpha",
        "maximum-likelihood alpha of the shifted-beta-geometric model over the segment's cohorts (right-censored); null under value.min_model_customers or without a fit"
    ),
    kpi!(
        "retention_beta",
        "sBG beta",
        "4.11",
        "> 0",
        ["customers"],
        "retention_model.beta",
        "maximum-likelihood beta, as alpha"
    ),
    kpi!(
        "retention_log_likelihood",
        "sBG log-likelihood",
        "4.11",
        "log-likelihood",
        ["customers"],
        "retention_model.log_likelihood",
        "sum over cohorts of lost_t * ln P(T = t) + survivors * ln S(n) at the fit"
    ),
    kpi!(
        "expected_retention_12m",
        "Expected 12-month survival",
        "4.11",
        "fraction 0-1",
        ["customers"],
        "retention_model.expected_retention_12m",
        "S(12) = B(alpha, beta + 12) / B(alpha, beta): a new customer's chance to be active after 12 months"
    ),
    kpi!(
        "forecast_retention_rate",
        "Forecast retention rate",
        "4.11",
        "fraction 0-1",
        ["customers"],
        "retention_forecast.retention_rate",
        "r(t) = (beta + t - 1) / (alpha + beta + t - 1), t = 1 .. value.forecast_months"
    ),
    kpi!(
        "forecast_survival",
        "Forecast survival",
        "4.11",
        "fraction 0-1",
        ["customers"],
        "retention_forecast.survival",
        "S(t) = r(1) * ... * r(t)"
    ),
];
