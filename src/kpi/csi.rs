//! The customer satisfaction index (spec 4.7): `sql/csi.sql` pivots the csi
//! answers to one row per respondent; here the complete respondents of
//! `all` and of each segment with at least `csi.min_respondents` are read,
//! the weights estimated (PLS, [`crate::csi::pls`], or the configured ones)
//! and `csi_factors`, `csi_paths` and `csi_index` registered as tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::datasource::TableType;
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Date32Array, Float64Array, Int64Array, ListArray, RecordBatch,
    StringArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Float64Type, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use nalgebra::DMatrix;

use super::definitions::{KpiDefinition, kpi};
use super::{KpiFamily, Registration};
use crate::calendar::{self, RunWindow};
use crate::config::JobConfig;
use crate::csi::bootstrap;
use crate::csi::moments::{AnswerRows, Moments};
use crate::csi::pls::{self, Fit};
use crate::csi::quality::{self, BlockQuality, Effects};
use crate::csi::{CsiError, CsiModel};
use crate::engine::sql::{self, SqlParams, quote_ident, quote_literal};
use crate::error::Error;
use crate::output::OutputTable;

pub const FAMILY: KpiFamily = KpiFamily {
    name: "csi",
    script: sql::CSI,
    outputs: &[
        OutputTable {
            name: "csi_factors",
            order_by: "period, segment, factor",
            partition_by: None,
            sorted_per_partition: false,
        },
        OutputTable {
            name: "csi_paths",
            order_by: "period, segment, from_factor, to_factor",
            partition_by: None,
            sorted_per_partition: false,
        },
        OutputTable {
            name: "csi_index",
            order_by: "period, segment",
            partition_by: None,
            sorted_per_partition: false,
        },
    ],
    materialize: &[],
    materialize_by_value: &[],
    kpis: KPIS,
    tests: &["tests/it/csi.rs", "tests/it/csi_reference.rs"],
    registration: Registration::CsiEstimation,
};

/// The KPIs the family publishes (`cskpi kpis`, docs/KPIS.md).
pub const KPIS: &[KpiDefinition] = &[
    kpi!(
        "csi",
        "Customer satisfaction index",
        "4.7",
        "0-100",
        ["surveys"],
        "csi_index.csi",
        "the score of csi.index_factor"
    ),
    kpi!(
        "csi_factor_score",
        "CSI factor score",
        "4.7",
        "0-100",
        ["surveys"],
        "csi_factors.score",
        "(sum_i w_i * mean_i / sum_i w_i - scale_min) / (scale_max - scale_min) * 100 over the factor's items, w the PLS (or configured) outer weights"
    ),
    kpi!(
        "csi_r_squared",
        "R² of a CSI factor",
        "4.7",
        "0-1",
        ["surveys"],
        "csi_factors.r_squared",
        "share of the factor score's variance explained by its drivers (PLS inner model)"
    ),
    kpi!(
        "csi_path_coefficient",
        "CSI path coefficient",
        "4.7",
        "standardised coefficient",
        ["surveys"],
        "csi_paths.path_coefficient",
        "least-squares coefficient of from_factor in the regression of to_factor's score on its drivers (standardised scores)"
    ),
    kpi!(
        "csi_ave",
        "Average variance extracted",
        "4.7",
        "0-1",
        ["surveys"],
        "csi_factors.ave",
        "mean squared loading of the factor's items (>= 0.5: the factor explains most of its items' variance); null when an item has no variance"
    ),
    kpi!(
        "csi_cronbach_alpha",
        "Cronbach's alpha",
        "4.7",
        "<= 1",
        ["surveys"],
        "csi_factors.cronbach_alpha",
        "p / (p - 1) * (1 - p / sum of the items' correlation matrix), p items; 1 for one item (>= 0.7: the items agree); null when an item has no variance"
    ),
    kpi!(
        "csi_dg_rho",
        "Dillon-Goldstein's rho",
        "4.7",
        "0-1",
        ["surveys"],
        "csi_factors.dg_rho",
        "(sum l)^2 / ((sum l)^2 + sum(1 - l^2)), l = the items' loadings on their first principal component (>= 0.7); null when an item has no variance"
    ),
    kpi!(
        "csi_eig_1st",
        "First eigenvalue of a block",
        "4.7",
        "eigenvalue",
        ["surveys"],
        "csi_factors.eig_1st",
        "largest eigenvalue of the items' correlation matrix (> 1 for a block that measures one thing); null when an item has no variance"
    ),
    kpi!(
        "csi_eig_2nd",
        "Second eigenvalue of a block",
        "4.7",
        "eigenvalue",
        ["surveys"],
        "csi_factors.eig_2nd",
        "second largest eigenvalue (< 1 for a block that measures one thing); null for one item or when an item has no variance"
    ),
    kpi!(
        "csi_indirect_effect",
        "Indirect effect of a CSI path",
        "4.7",
        "standardised coefficient",
        ["surveys"],
        "csi_paths.indirect_effect",
        "sum over every chain of two or more paths from from_factor to to_factor of the product of their coefficients"
    ),
    kpi!(
        "csi_total_effect",
        "Total effect of a CSI path",
        "4.7",
        "standardised coefficient",
        ["surveys"],
        "csi_paths.total_effect",
        "path_coefficient + indirect_effect"
    ),
    kpi!(
        "csi_gof",
        "Goodness of fit of the CSI model",
        "4.7",
        "0-1",
        ["surveys"],
        "csi_index.gof",
        "sqrt(mean squared loading of the items of blocks with more than one item * mean R² of the factors with drivers); null when an item has no variance"
    ),
    kpi!(
        "csi_path_std_error",
        "Bootstrap standard error of a CSI path",
        "4.7",
        "standardised coefficient",
        ["surveys"],
        "csi_paths.std_error",
        "standard deviation of the path coefficient over csi.bootstrap resamples of the respondents (null when csi.bootstrap = 0)"
    ),
    kpi!(
        "csi_path_ci_low",
        "Lower end of a CSI path's 95% interval",
        "4.7",
        "standardised coefficient",
        ["surveys"],
        "csi_paths.ci_low",
        "2.5% percentile of the resamples' path coefficients (an interval containing 0: not distinguishable from no effect)"
    ),
    kpi!(
        "csi_path_ci_high",
        "Upper end of a CSI path's 95% interval",
        "4.7",
        "standardised coefficient",
        ["surveys"],
        "csi_paths.ci_high",
        "97.5% percentile of the resamples' path coefficients"
    ),
    kpi!(
        "csi_std_error",
        "Bootstrap standard error of the CSI",
        "4.7",
        "0-100 points",
        ["surveys"],
        "csi_index.csi_std_error",
        "standard deviation of csi over the bootstrap resamples"
    ),
    kpi!(
        "csi_ci_low",
        "Lower end of the CSI's 95% interval",
        "4.7",
        "0-100",
        ["surveys"],
        "csi_index.csi_ci_low",
        "2.5% percentile of the resamples' csi"
    ),
    kpi!(
        "csi_ci_high",
        "Upper end of the CSI's 95% interval",
        "4.7",
        "0-100",
        ["surveys"],
        "csi_index.csi_ci_high",
        "97.5% percentile of the resamples' csi"
    ),
    kpi!(
        "csi_bootstrap_resamples",
        "Bootstrap resamples used",
        "4.7",
        "count",
        ["surveys"],
        "csi_index.bootstrap_resamples",
        "resamples whose estimation succeeded (csi.bootstrap unless it gave up; null when off)"
    ),
    kpi!(
        "csi_bootstrap_failures",
        "Bootstrap resamples that failed",
        "4.7",
        "count",
        ["surveys"],
        "csi_index.bootstrap_failures",
        "draws whose estimation failed (did not converge, or a constant block) and were drawn again; at 2 x csi.bootstrap the intervals are left null"
    ),
];

/// The complete respondents' answers of one group, and how many
/// respondents of the group were left out for a missing item.
#[derive(Debug, Default)]
struct Group {
    rows: Vec<Vec<f64>>,
    incomplete: i64,
}

/// One group's estimate.
struct Estimate {
    segment: String,
    respondents: usize,
    incomplete: i64,
    fit: Fit,
    /// 0-100 score per factor (None when its weights sum to 0).
    scores: Vec<Option<f64>>,
    /// Measurement quality per factor, effects and GoF (spec v2 4.7).
    quality: Vec<BlockQuality>,
    effects: Effects,
    gof: Option<f64>,
    /// Spreads of the path coefficients then the index; None when off.
    bootstrap: Option<bootstrap::Outcome>,
}

/// Registers the csi views and the `csi_factors`, `csi_paths` and
/// `csi_index` tables. A run (`lazily` false) estimates here; views for ad
/// hoc SQL (`lazily` true) estimate when a query first reads one of the
/// tables, so opening a shell does not wait for the estimation.
pub async fn register(
    ctx: &SessionContext,
    job: &JobConfig,
    window: &RunWindow,
    params: &SqlParams,
    lazily: bool,
) -> Result<(), Error> {
    let model = job.csi_model();
    let period = calendar::to_date32(window.as_of_month());
    let Some(model) = model else {
        tracing::info!("no [csi] model in the job file: the csi tables are empty");
        return register_tables(ctx, tables(None, &[], period)?);
    };
    let params = params
        .clone()
        .raw("csi_items", item_list(model))
        .integer("csi_item_count", model.items.len() as i64)
        .raw("csi_item_columns", pivot_columns(model));
    sql::run_script(ctx, &sql::CSI, &params, None).await?;
    if !lazily {
        let estimates = estimate(ctx, model, window).await?;
        return register_tables(ctx, tables(Some(model), &estimates, period)?);
    }
    let empty = tables(Some(model), &[], period)?;
    let estimation = Arc::new(LazyEstimation {
        model: model.clone(),
        window: *window,
        tables: tokio::sync::OnceCell::new(),
    });
    for (index, (name, batch)) in TABLES.iter().zip(empty).enumerate() {
        let table = EstimatedTable {
            estimation: Arc::clone(&estimation),
            index,
            schema: batch.schema(),
        };
        ctx.register_table(*name, Arc::new(table))?;
    }
    Ok(())
}

/// The tables the estimation fills, in the order of [`tables`].
const TABLES: [&str; 3] = ["csi_factors", "csi_paths", "csi_index"];

fn register_tables(ctx: &SessionContext, batches: [RecordBatch; 3]) -> Result<(), Error> {
    for (name, batch) in TABLES.iter().zip(batches) {
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        ctx.register_table(*name, Arc::new(table))?;
    }
    Ok(())
}

/// The estimates of `all` and of every segment with enough respondents,
/// from the csi views. The numeric work (the bootstrap's resamples on as
/// many threads as the session has partitions) runs off the async runtime.
async fn estimate(
    ctx: &SessionContext,
    model: &CsiModel,
    window: &RunWindow,
) -> Result<Vec<Estimate>, Error> {
    let (groups, answered) = read_groups(ctx, model).await?;
    // Every configured item answered by someone: nothing to check, and no
    // second scan of the surveys for the answered items.
    if answered.iter().any(|&item| !item) {
        check_items_answered(ctx, model, window).await?;
    }
    let threads = ctx.state().config().target_partitions();
    let model = model.clone();
    let estimates = tokio::task::spawn_blocking(move || estimate_groups(&model, groups, threads))
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))??;
    Ok(estimates)
}

/// The rows of the three tables (each empty without estimates).
fn tables(
    model: Option<&CsiModel>,
    estimates: &[Estimate],
    period: i32,
) -> Result<[RecordBatch; 3], Error> {
    Ok([
        factor_table(model, estimates, period)?,
        path_table(model, estimates, period)?,
        index_table(model, estimates, period)?,
    ])
}

/// One estimation shared by the three tables, run at the first scan.
#[derive(Debug)]
struct LazyEstimation {
    model: CsiModel,
    window: RunWindow,
    tables: tokio::sync::OnceCell<[RecordBatch; 3]>,
}

impl LazyEstimation {
    async fn tables(&self, session: &dyn Session) -> DFResult<&[RecordBatch; 3]> {
        let Some(state) = session.as_any().downcast_ref::<SessionState>() else {
            return Err(DataFusionError::Internal(
                "csi tables are read through a SessionState".into(),
            ));
        };
        self.tables
            .get_or_try_init(|| async {
                let ctx = SessionContext::new_with_state(state.clone());
                let estimates = estimate(&ctx, &self.model, &self.window).await?;
                let period = calendar::to_date32(self.window.as_of_month());
                tables(Some(&self.model), &estimates, period)
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

/// `csi_factors`, `csi_paths` or `csi_index` before the estimation ran.
#[derive(Debug)]
struct EstimatedTable {
    estimation: Arc<LazyEstimation>,
    /// Position in [`TABLES`].
    index: usize,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for EstimatedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let batch = self.estimation.tables(state).await?[self.index].clone();
        MemTable::try_new(Arc::clone(&self.schema), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

fn item_list(model: &CsiModel) -> String {
    model
        .items
        .iter()
        .map(|i| quote_literal(i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `MAX(CASE WHEN a.item = 'x' THEN a.score END) AS "x"` per item.
fn pivot_columns(model: &CsiModel) -> String {
    model
        .items
        .iter()
        .map(|i| {
            format!(
                "MAX(CASE WHEN a.item = {} THEN a.score END) AS {}",
                quote_literal(i),
                quote_ident(i)
            )
        })
        .collect::<Vec<_>>()
        .join(",\n       ")
}

/// A configured item nobody answered is most likely a typo in the job file:
/// every respondent would be incomplete. Fails when csi answers exist in the
/// window but some configured item never occurs among them.
async fn check_items_answered(
    ctx: &SessionContext,
    model: &CsiModel,
    window: &RunWindow,
) -> Result<(), Error> {
    let batches = ctx
        .sql("SELECT DISTINCT item FROM csi_items_answered ORDER BY item")
        .await?
        .collect()
        .await?;
    let mut seen: Vec<String> = Vec::new();
    for batch in &batches {
        let column = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        seen.extend(column.as_string::<i32>().iter().flatten().map(String::from));
    }
    if seen.is_empty() {
        return Ok(());
    }
    let missing: Vec<&str> = model
        .items
        .iter()
        .filter(|i| !seen.contains(i))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = seen.iter().take(30).map(String::as_str).collect();
    Err(CsiError::ItemsNotAnswered {
        missing: missing.join(", "),
        seen: shown.join(", "),
        since: window.first_month,
    }
    .into())
}

/// Complete respondents by segment (in response_id order) and the count of
/// incomplete ones; `all` holds everyone. Also, per configured item,
/// whether any respondent answered it.
async fn read_groups(
    ctx: &SessionContext,
    model: &CsiModel,
) -> Result<(BTreeMap<String, Group>, Vec<bool>), Error> {
    let columns: Vec<String> = model.items.iter().map(|i| quote_ident(i)).collect();
    let query = format!(
        "SELECT segment, complete, {} FROM csi_respondents ORDER BY response_id, customer_id",
        columns.join(", ")
    );
    let batches = ctx.sql(&query).await?.collect().await?;
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut answered = vec![false; model.items.len()];
    for batch in &batches {
        let segments = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let segments = segments.as_string::<i32>();
        let complete: &BooleanArray = batch.column(1).as_boolean();
        let items: Vec<ArrayRef> = (2..batch.num_columns())
            .map(|c| datafusion::arrow::compute::cast(batch.column(c), &DataType::Float64))
            .collect::<Result<_, _>>()?;
        for (item, column) in answered.iter_mut().zip(&items) {
            *item |= column.null_count() < column.len();
        }
        for row in 0..batch.num_rows() {
            let segment = segments.value(row).to_string();
            if complete.value(row) {
                let answers: Vec<f64> = items
                    .iter()
                    .map(|a| a.as_primitive::<Float64Type>().value(row))
                    .collect();
                groups
                    .entry("all".into())
                    .or_default()
                    .rows
                    .push(answers.clone());
                groups.entry(segment).or_default().rows.push(answers);
            } else {
                groups.entry("all".into()).or_default().incomplete += 1;
                groups.entry(segment).or_default().incomplete += 1;
            }
        }
    }
    Ok((groups, answered))
}

fn estimate_groups(
    model: &CsiModel,
    groups: BTreeMap<String, Group>,
    threads: usize,
) -> Result<Vec<Estimate>, CsiError> {
    let path_model = model.path_model();
    let mut estimates = Vec::new();
    for (segment, group) in groups {
        let respondents = group.rows.len();
        if (respondents as u64) < model.min_respondents {
            tracing::info!(
                %segment,
                respondents,
                min = model.min_respondents,
                incomplete = group.incomplete,
                "csi: too few complete respondents, segment left out"
            );
            continue;
        }
        // the answers are kept once, for the sample and every resample
        let rows = AnswerRows::new(&DMatrix::from_fn(respondents, model.items.len(), |r, c| {
            group.rows[r][c]
        }));
        drop(group.rows);
        let started = std::time::Instant::now();
        let moments = rows.moments();
        // One segment whose answers cannot be estimated (a constant block,
        // no convergence) leaves that segment out, as too few respondents
        // do: the other segments' CSI and every other table still publish.
        let fit = match estimate_once(model, &path_model, &moments, None) {
            Ok(fit) => fit,
            Err(source) => {
                let error = CsiError::Estimation {
                    segment: segment.clone(),
                    respondents,
                    source,
                };
                tracing::warn!(%segment, respondents, %error, "csi: segment left out");
                continue;
            }
        };
        let scores = factor_scores(model, &moments, &fit);
        tracing::info!(
            %segment,
            respondents,
            iterations = fit.iterations,
            seconds = started.elapsed().as_secs_f64(),
            "csi estimated"
        );
        let bootstrap = (model.bootstrap > 0).then(|| {
            let started = std::time::Instant::now();
            let plan = bootstrap::Plan {
                resamples: model.bootstrap,
                seed: model.seed,
                threads,
            };
            let statistics = fit.path_coefficients.len() + 1;
            let outcome = bootstrap::run(&rows, &segment, &plan, statistics, |resample| {
                let fit = estimate_once(model, &path_model, resample, Some(&fit.weights))?;
                let mut values: Vec<f64> = fit.path_coefficients.iter().map(|p| p.2).collect();
                values.push(
                    factor_scores(model, resample, &fit)[model.index_factor].unwrap_or(f64::NAN),
                );
                Ok::<_, pls::PlsError>(values)
            });
            tracing::info!(
                %segment,
                resamples = outcome.resamples,
                failures = outcome.failures,
                seconds = started.elapsed().as_secs_f64(),
                "csi bootstrapped"
            );
            outcome
        });
        estimates.push(Estimate {
            segment,
            respondents,
            incomplete: group.incomplete,
            quality: quality::block_quality(&moments, &path_model, &fit),
            effects: quality::effects(&path_model, &fit),
            gof: quality::goodness_of_fit(&path_model, &fit),
            fit,
            scores,
            bootstrap,
        });
    }
    Ok(estimates)
}

/// The model's estimate on one set of respondents: PLS (from `start`
/// weights if given) or the configured weights.
fn estimate_once(
    model: &CsiModel,
    path_model: &pls::PathModel,
    moments: &Moments,
    start: Option<&[f64]>,
) -> Result<Fit, pls::PlsError> {
    match &model.fixed_weights {
        Some(weights) => pls::with_fixed_weights(moments, path_model, weights),
        None => pls::estimate_moments(moments, path_model, &model.settings, start),
    }
}

/// Spec 4.7: (sum_i w_i * mean_i / sum_i w_i - min) / (max - min) * 100
/// over a factor's items, means of the raw answers. Weights estimated on
/// scaled items are turned back into weights of raw answers first.
fn factor_scores(model: &CsiModel, moments: &Moments, fit: &Fit) -> Vec<Option<f64>> {
    let (min, max) = model.scale;
    model
        .blocks
        .iter()
        .map(|block| {
            let (mut weighted, mut total) = (0.0, 0.0);
            for &c in block {
                let mut w = fit.weights[c];
                if model.settings.scaled && model.fixed_weights.is_none() {
                    w /= moments.sd(c);
                }
                weighted += w * moments.means[c];
                total += w;
            }
            (total != 0.0).then(|| (weighted / total - min) / (max - min) * 100.0)
        })
        .collect()
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// A list of (item, `value_name`) structs per row; the value may be null
/// only where `nullable` (a loading of an item with no variance).
fn item_list_array(
    value_name: &str,
    nullable: bool,
    rows: &[Vec<(String, Option<f64>)>],
) -> ListArray {
    let fields = item_fields(value_name, nullable);
    let flat: Vec<&(String, Option<f64>)> = rows.iter().flatten().collect();
    let values = StructArray::new(
        fields.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                flat.iter().map(|(i, _)| i.as_str()),
            )),
            Arc::new(Float64Array::from_iter(flat.iter().map(|(_, v)| *v))),
        ],
        None,
    );
    ListArray::new(
        Arc::new(Field::new_list_field(DataType::Struct(fields), false)),
        OffsetBuffer::from_lengths(rows.iter().map(Vec::len)),
        Arc::new(values),
        None,
    )
}

fn item_fields(value_name: &str, nullable: bool) -> Fields {
    Fields::from(vec![
        utf8("item"),
        Field::new(value_name, DataType::Float64, nullable),
    ])
}

fn item_list_type(value_name: &str, nullable: bool) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(item_fields(value_name, nullable)),
        false,
    )))
}

fn factor_table(
    model: Option<&CsiModel>,
    estimates: &[Estimate],
    period: i32,
) -> Result<RecordBatch, Error> {
    let schema = schema(vec![
        Field::new("period", DataType::Date32, false),
        utf8("segment"),
        utf8("factor"),
        Field::new("respondents", DataType::Int64, false),
        Field::new("score", DataType::Float64, true),
        Field::new("item_weights", item_list_type("weight", false), false),
        Field::new("item_loadings", item_list_type("loading", true), false),
        Field::new("r_squared", DataType::Float64, true),
        Field::new("ave", DataType::Float64, true),
        Field::new("cronbach_alpha", DataType::Float64, true),
        Field::new("dg_rho", DataType::Float64, true),
        Field::new("eig_1st", DataType::Float64, true),
        Field::new("eig_2nd", DataType::Float64, true),
    ]);
    let (mut segments, mut factors, mut respondents, mut scores, mut r2) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut quality: Vec<BlockQuality> = vec![];
    let (mut weights, mut loadings) = (vec![], vec![]);
    if let Some(model) = model {
        for e in estimates {
            for (j, factor) in model.factors.iter().enumerate() {
                segments.push(e.segment.clone());
                factors.push(factor.clone());
                respondents.push(e.respondents as i64);
                scores.push(e.scores[j]);
                r2.push(e.fit.r_squared[j]);
                quality.push(e.quality[j]);
                let block = &model.blocks[j];
                weights.push(
                    block
                        .iter()
                        .map(|&c| (model.items[c].clone(), Some(e.fit.weights[c])))
                        .collect(),
                );
                loadings.push(
                    block
                        .iter()
                        .map(|&c| (model.items[c].clone(), e.fit.loadings[c]))
                        .collect(),
                );
            }
        }
    }
    let rows = segments.len();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Date32Array::from(vec![period; rows])),
            Arc::new(StringArray::from(segments)),
            Arc::new(StringArray::from(factors)),
            Arc::new(Int64Array::from(respondents)),
            Arc::new(Float64Array::from(scores)),
            Arc::new(item_list_array("weight", false, &weights)),
            Arc::new(item_list_array("loading", true, &loadings)),
            Arc::new(Float64Array::from(r2)),
            Arc::new(Float64Array::from_iter(quality.iter().map(|q| q.ave))),
            Arc::new(Float64Array::from_iter(
                quality.iter().map(|q| q.cronbach_alpha),
            )),
            Arc::new(Float64Array::from_iter(quality.iter().map(|q| q.dg_rho))),
            Arc::new(Float64Array::from_iter(quality.iter().map(|q| q.eig_1st))),
            Arc::new(Float64Array::from_iter(quality.iter().map(|q| q.eig_2nd))),
        ],
    )?)
}

fn path_table(
    model: Option<&CsiModel>,
    estimates: &[Estimate],
    period: i32,
) -> Result<RecordBatch, Error> {
    let schema = schema(vec![
        Field::new("period", DataType::Date32, false),
        utf8("segment"),
        utf8("from_factor"),
        utf8("to_factor"),
        Field::new("path_coefficient", DataType::Float64, false),
        Field::new("indirect_effect", DataType::Float64, false),
        Field::new("total_effect", DataType::Float64, false),
        Field::new("std_error", DataType::Float64, true),
        Field::new("ci_low", DataType::Float64, true),
        Field::new("ci_high", DataType::Float64, true),
    ]);
    let (mut segments, mut from, mut to, mut coefficients) = (vec![], vec![], vec![], vec![]);
    let (mut indirect, mut total, mut spreads) = (vec![], vec![], vec![]);
    if let Some(model) = model {
        for e in estimates {
            for (p, &(f, t, c)) in e.fit.path_coefficients.iter().enumerate() {
                segments.push(e.segment.clone());
                from.push(model.factors[f].clone());
                to.push(model.factors[t].clone());
                coefficients.push(c);
                indirect.push(e.effects.indirect[(t, f)]);
                total.push(e.effects.total[(t, f)]);
                spreads.push(e.spread(p));
            }
        }
    }
    let rows = segments.len();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Date32Array::from(vec![period; rows])),
            Arc::new(StringArray::from(segments)),
            Arc::new(StringArray::from(from)),
            Arc::new(StringArray::from(to)),
            Arc::new(Float64Array::from(coefficients)),
            Arc::new(Float64Array::from(indirect)),
            Arc::new(Float64Array::from(total)),
            spread_column(&spreads, |s| s.std_error),
            spread_column(&spreads, |s| Some(s.ci_low)),
            spread_column(&spreads, |s| Some(s.ci_high)),
        ],
    )?)
}

/// One column of bootstrap spreads, null where there is none.
fn spread_column(
    spreads: &[Option<bootstrap::Spread>],
    value: impl Fn(&bootstrap::Spread) -> Option<f64>,
) -> ArrayRef {
    Arc::new(Float64Array::from_iter(
        spreads.iter().map(|s| s.as_ref().and_then(&value)),
    ))
}

impl Estimate {
    /// The bootstrap spread of statistic `index` (paths in the model's
    /// order, then the index), if bootstrapped.
    fn spread(&self, index: usize) -> Option<bootstrap::Spread> {
        self.bootstrap.as_ref().and_then(|b| b.spreads[index])
    }
}

fn index_table(
    model: Option<&CsiModel>,
    estimates: &[Estimate],
    period: i32,
) -> Result<RecordBatch, Error> {
    let schema = schema(vec![
        Field::new("period", DataType::Date32, false),
        utf8("segment"),
        Field::new("respondents", DataType::Int64, false),
        Field::new("csi", DataType::Float64, true),
        Field::new("incomplete_respondents", DataType::Int64, false),
        utf8("weights"),
        Field::new("iterations", DataType::Int64, false),
        Field::new("gof", DataType::Float64, true),
        Field::new("csi_std_error", DataType::Float64, true),
        Field::new("csi_ci_low", DataType::Float64, true),
        Field::new("csi_ci_high", DataType::Float64, true),
        Field::new("bootstrap_resamples", DataType::Int64, true),
        Field::new("bootstrap_failures", DataType::Int64, true),
    ]);
    let spreads: Vec<Option<bootstrap::Spread>> = estimates
        .iter()
        .map(|e| e.spread(e.fit.path_coefficients.len()))
        .collect();
    let method = match model.map(|m| m.fixed_weights.is_some()) {
        Some(true) => "configured",
        _ => "pls",
    };
    let index = model.map_or(0, |m| m.index_factor);
    let rows = estimates.len();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Date32Array::from(vec![period; rows])),
            Arc::new(StringArray::from_iter_values(
                estimates.iter().map(|e| e.segment.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                estimates.iter().map(|e| e.respondents as i64),
            )),
            Arc::new(Float64Array::from_iter(
                estimates.iter().map(|e| e.scores[index]),
            )),
            Arc::new(Int64Array::from_iter_values(
                estimates.iter().map(|e| e.incomplete),
            )),
            Arc::new(StringArray::from(vec![method; rows])),
            Arc::new(Int64Array::from_iter_values(
                estimates.iter().map(|e| e.fit.iterations as i64),
            )),
            Arc::new(Float64Array::from_iter(estimates.iter().map(|e| e.gof))),
            spread_column(&spreads, |s| s.std_error),
            spread_column(&spreads, |s| Some(s.ci_low)),
            spread_column(&spreads, |s| Some(s.ci_high)),
            Arc::new(Int64Array::from_iter(
                estimates
                    .iter()
                    .map(|e| e.bootstrap.as_ref().map(|b| b.resamples as i64)),
            )),
            Arc::new(Int64Array::from_iter(
                estimates
                    .iter()
                    .map(|e| e.bootstrap.as_ref().map(|b| b.failures as i64)),
            )),
        ],
    )?)
}
