//! Turns the typed inputs into clean views plus rejects (spec section 3).
//!
//! `sql/validate.sql` defines, for every input `<t>`, `<t>_checked` (the
//! visible rows as they are in the input, with a reject reason) and `<t>`
//! (the clean rows, with as_of applied to later dates: what every KPI
//! reads). A run stores the checked rows once in a local scratch directory,
//! so the checks (duplicate keys, customer look-ups) run once however many
//! KPI views read the inputs. `rejects` (built here, over every input's
//! columns) holds every rejected row with its raw row as JSON.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Date32Builder, RecordBatch, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Date32Type, Int64Type, Schema};
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;
use futures::future::BoxFuture;

use crate::engine::scratch::ViewDir;
use crate::engine::sql::{self, SqlError, SqlParams, quote_ident, quote_literal};
use crate::engine::udf::{
    CustomerDirectory, DIRECTORY_CUSTOMER_KEY, DIRECTORY_FIRST_SIGNUP, DirectoryCustomerId,
    DirectoryLookup,
};
use crate::inputs::{self, TableSpec};

#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error("validating {table}: {source}")]
    Engine {
        table: String,
        source: DataFusionError,
    },
    #[error(
        "input {table}: {rejected} of {visible} visible rows rejected ({ratio:.2}%), over run.max_reject_ratio {max:.2}%; most common: {top_reasons}"
    )]
    TooManyRejects {
        table: String,
        rejected: u64,
        visible: u64,
        ratio: f64,
        max: f64,
        top_reasons: String,
    },
}

/// Rows seen and rejected for one input.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InputCounts {
    pub table: String,
    pub visible: u64,
    pub rejected: u64,
    pub clean: u64,
}

/// How the checks join: hash joins, each build side (the customer
/// directory, one row per customer, or the duplicated keys) collected once
/// and probed by every partition of the input as it is read. A build side
/// over DataFusion's single-partition thresholds (128k rows) would
/// otherwise be split by hash, and every input row repartitioned by
/// customer_id (moved between threads) to meet its half, which was slower
/// (benches/README.md, "Measured reasons"). The thresholds are usize::MAX:
/// no build side of the checks is split.
const CHECK_JOINS: [(&str, &str); 3] = [
    ("datafusion.optimizer.prefer_hash_join", "true"),
    (
        "datafusion.optimizer.hash_join_single_partition_threshold",
        "18446744073709551615",
    ),
    (
        "datafusion.optimizer.hash_join_single_partition_threshold_rows",
        "18446744073709551615",
    ),
];

/// Which columns a session's stored checked rows keep on clean rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanColumns {
    /// Every column of the input: what `cskpi sql` and `cskpi validate`
    /// show.
    All,
    /// Those the KPI SQL reads (`TableSpec::kpi_columns`), the others kept
    /// on rejected rows only and left out of the clean views: a run's.
    ReadByKpis,
}

/// Registers the views of sql/validate.sql. With `scratch` (a run), the
/// customer directory, each input's duplicated keys and its checked rows are
/// stored there as soon as they are defined, so the clean views read the
/// stored rows.
///
/// The checks join each input with the customer directory (one row per
/// customer) and with its duplicated keys (a handful): small build sides,
/// so they are planned as hash joins, which stream the input once, rather
/// than the session's default sort-merge joins (which sort whole inputs).
pub async fn register_checked_views(
    ctx: &SessionContext,
    params: &SqlParams,
    scratch: Option<&ViewDir>,
    columns: CleanColumns,
) -> Result<(), ValidationError> {
    let Some(dir) = scratch else {
        sql::run_script(ctx, &sql::VALIDATE, params, None).await?;
        return Ok(());
    };
    let engine = |source| ValidationError::Engine {
        table: "(every input)".into(),
        source,
    };
    let mut params = params.clone();
    let only_read = inputs::ALL
        .iter()
        .filter(|spec| columns == CleanColumns::ReadByKpis && spec.kpi_columns.is_some());
    for spec in only_read {
        let left_out: String = rejects_only_columns(ctx, spec)
            .await
            .map_err(engine)?
            .iter()
            .map(|column| format!(", {}", quote_ident(column)))
            .collect();
        params = params.raw(&left_out_param(spec), left_out);
    }
    let joins_before = crate::engine::session::set_options(ctx, &CHECK_JOINS).map_err(engine)?;
    let store: sql::Store = match columns {
        CleanColumns::All => store_check,
        CleanColumns::ReadByKpis => store_check_read_by_kpis,
    };
    let result = store_checks(ctx, &params, dir, store).await;
    crate::engine::session::restore_options(ctx, joins_before).map_err(engine)?;
    result
}

async fn store_checks(
    ctx: &SessionContext,
    params: &SqlParams,
    dir: &ViewDir,
    store: sql::Store,
) -> Result<(), ValidationError> {
    let mut stored = vec!["customer_directory".to_string()];
    for spec in inputs::ALL {
        if spec.name != inputs::CUSTOMERS.name {
            stored.push(format!("{}_keyed", spec.name));
        }
        if !spec.key.is_empty() {
            stored.push(format!("{}_repeated_hashes", spec.name));
            stored.push(format!("{}_duplicates", spec.name));
        }
        stored.push(format!("{}_checked", spec.name));
    }
    let stored: Vec<&str> = stored.iter().map(String::as_str).collect();
    let materialize = sql::Materialize {
        views: &stored,
        dir,
        store,
        by_value: &[],
    };
    sql::run_script(ctx, &sql::VALIDATE, params, Some(materialize)).await?;
    Ok(())
}

/// Stores a view of sql/validate.sql: `<t>_keyed` by redefining it with the
/// directory's look-up functions (`key_by_lookup`), `<t>_repeated_hashes` by grouping the
/// hashes of `<t>_key_hashes` when the memory pool holds them, the checked
/// rows of an input that names customers without the customer ids the
/// directory holds (`sql::store_without_directory_ids`), everything else (and
/// those, on a cluster or when the pool cannot hold the hashes) as Parquet.
fn store_check<'c>(
    ctx: &'c SessionContext,
    name: &'c str,
    dir: &'c ViewDir,
) -> BoxFuture<'c, Result<(), DataFusionError>> {
    store_check_keeping(ctx, name, dir, CleanColumns::All)
}

/// [`store_check`], the checked rows stored with the columns no KPI reads
/// on rejected rows only ([`CleanColumns::ReadByKpis`]).
fn store_check_read_by_kpis<'c>(
    ctx: &'c SessionContext,
    name: &'c str,
    dir: &'c ViewDir,
) -> BoxFuture<'c, Result<(), DataFusionError>> {
    store_check_keeping(ctx, name, dir, CleanColumns::ReadByKpis)
}

fn store_check_keeping<'c>(
    ctx: &'c SessionContext,
    name: &'c str,
    dir: &'c ViewDir,
    columns: CleanColumns,
) -> BoxFuture<'c, Result<(), DataFusionError>> {
    Box::pin(async move {
        if name == "customer_directory" {
            sql::materialize_view(ctx, name, dir).await?;
            // The function holds this run's directory in this process: a
            // cluster's executors could not call it.
            if !crate::engine::writer::runs_on_cluster(ctx) {
                let directory = Arc::new(read_directory(ctx).await?);
                ctx.register_udf(ScalarUDF::new_from_impl(DirectoryCustomerId::new(
                    directory.clone(),
                )));
                ctx.register_udf(ScalarUDF::new_from_impl(DirectoryLookup::customer_key(
                    directory.clone(),
                )));
                ctx.register_udf(ScalarUDF::new_from_impl(DirectoryLookup::first_signup(
                    directory,
                )));
            }
            return Ok(());
        }
        if let Some(table) = name.strip_suffix("_keyed") {
            return key_by_lookup(ctx, table).await;
        }
        if let Some(spec) = name
            .strip_suffix("_checked")
            .and_then(|table| inputs::ALL.iter().find(|spec| spec.name == table))
            .filter(|spec| spec.name != inputs::CUSTOMERS.name)
        {
            let rejects_only = match columns {
                CleanColumns::All => Vec::new(),
                CleanColumns::ReadByKpis => rejects_only_columns(ctx, spec).await?,
            };
            let rejects_only: Vec<(String, String)> = rejects_only
                .into_iter()
                .map(|column| {
                    let kept = format!(
                        "CASE WHEN reject_reason IS NOT NULL THEN {} END",
                        quote_ident(&column)
                    );
                    (column, kept)
                })
                .collect();
            return sql::store_without_directory_ids(ctx, name, &rejects_only, async |stored| {
                sql::materialize_view(ctx, stored, dir).await
            })
            .await;
        }
        if let Some(table) = name.strip_suffix("_repeated_hashes") {
            let query = format!(
                "SELECT h FROM {}",
                quote_ident(&format!("{table}_key_hashes"))
            );
            if crate::engine::repeated_hashes::register(ctx, name, &query).await? {
                return Ok(());
            }
            tracing::info!(
                view = name,
                "key hashes exceed the memory pool: grouping them"
            );
        }
        sql::materialize_view(ctx, name, dir).await
    })
}

/// The columns of input `spec` (its typed view's) that no KPI reads
/// (`TableSpec::kpi_columns`; none when it is None). A run stores them on
/// rejected rows only, where `rejects` shows them, and the clean view
/// leaves them out (`${<t>_left_out}` in sql/validate.sql): writing
/// usage's active users and hive month for 75 M clean rows nobody reads
/// was a sixth of storing its checked rows (benches/README.md, "Measured
/// reasons").
async fn rejects_only_columns(
    ctx: &SessionContext,
    spec: &TableSpec,
) -> Result<Vec<String>, DataFusionError> {
    let Some(read) = spec.kpi_columns else {
        return Ok(Vec::new());
    };
    let typed = ctx.table(format!("{}_typed", spec.name).as_str()).await?;
    Ok(typed
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .filter(|column| !read.contains(&column.as_str()))
        .collect())
}

/// The SQL parameter that lists, each after a comma, the columns the
/// clean view of `spec` leaves out: empty outside a run.
pub fn left_out_param(spec: &TableSpec) -> String {
    format!("{}_left_out", spec.name)
}

/// The stored customer directory in memory (the customer id and first
/// signup of customer_key k at index k), its bytes taken from the
/// session's memory pool.
async fn read_directory(ctx: &SessionContext) -> Result<CustomerDirectory, DataFusionError> {
    let batches = ctx
        .sql(
            "SELECT customer_key, customer_id, first_signup_date FROM customer_directory \
             ORDER BY customer_key",
        )
        .await?
        .collect()
        .await?;
    let mut ids = StringBuilder::new();
    let mut first_signups = Date32Builder::new();
    let mut expected = 0i64;
    for batch in &batches {
        let keys = cast(batch.column(0), &DataType::Int64)?;
        let customer_ids = cast(batch.column(1), &DataType::Utf8)?;
        let signups = cast(batch.column(2), &DataType::Date32)?;
        let (keys, customer_ids, signups) = (
            keys.as_primitive::<Int64Type>(),
            customer_ids.as_string::<i32>(),
            signups.as_primitive::<Date32Type>(),
        );
        for row in 0..batch.num_rows() {
            if keys.is_null(row) || keys.value(row) != expected || customer_ids.is_null(row) {
                return Err(DataFusionError::Internal(format!(
                    "customer_directory: row {expected} has key {:?} and id {:?}, not key {expected} and an id",
                    keys.is_valid(row).then(|| keys.value(row)),
                    customer_ids.is_valid(row).then(|| customer_ids.value(row)),
                )));
            }
            ids.append_value(customer_ids.value(row));
            first_signups.append_option(signups.is_valid(row).then(|| signups.value(row)));
            expected += 1;
        }
    }
    let pool = ctx.runtime_env().memory_pool.clone();
    CustomerDirectory::new(ids.finish(), first_signups.finish(), &pool)
}

/// Redefines `<table>_keyed` (sql/validate.sql: the typed input with its
/// customer's key and first signup, by a join with the directory) by the
/// look-up functions of the directory this session holds, when it holds
/// one. The two definitions must give the same columns: a difference is
/// an error, not a silent change of every later view.
async fn key_by_lookup(ctx: &SessionContext, table: &str) -> Result<(), DataFusionError> {
    if ctx.udf(DIRECTORY_CUSTOMER_KEY).is_err() {
        return Ok(());
    }
    let keyed = format!("{table}_keyed");
    let joined = ctx.table(keyed.as_str()).await?.schema().as_arrow().clone();
    ctx.sql(&format!(
        "CREATE OR REPLACE VIEW {} AS \
         SELECT *, {DIRECTORY_FIRST_SIGNUP}(customer_key) AS first_signup_date \
         FROM (SELECT *, {DIRECTORY_CUSTOMER_KEY}(customer_id) AS customer_key FROM {})",
        quote_ident(&keyed),
        quote_ident(&format!("{table}_typed"))
    ))
    .await?;
    let looked_up = ctx.table(keyed.as_str()).await?.schema().as_arrow().clone();
    let columns = |schema: &Schema| {
        schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect::<Vec<_>>()
    };
    if columns(&joined) != columns(&looked_up) {
        return Err(DataFusionError::Internal(format!(
            "{keyed}: the directory look-up gives columns {:?}, the join {:?}",
            columns(&looked_up),
            columns(&joined)
        )));
    }
    Ok(())
}

/// Registers the `rejects` view: every rejected row of every input, its
/// key, reason and raw row.
pub async fn register_rejects_view(ctx: &SessionContext) -> Result<(), ValidationError> {
    let mut reject_selects = Vec::new();
    for spec in inputs::ALL {
        let engine = |source| ValidationError::Engine {
            table: spec.name.into(),
            source,
        };
        let checked = format!("{}_checked", spec.name);
        let schema = ctx
            .table(checked.as_str())
            .await
            .map_err(engine)?
            .schema()
            .clone();
        let input = format!("{}_input", spec.name);
        let input_schema = match ctx.table_exist(input.as_str()).map_err(engine)? {
            true => Some(
                ctx.table_provider(input.as_str())
                    .await
                    .map_err(engine)?
                    .schema(),
            ),
            false => None,
        };
        reject_selects.push(rejects_select(
            spec,
            &checked,
            crate::catalog::unqualified_names(&schema),
            input_schema.as_deref(),
        ));
    }
    ctx.sql(&format!(
        "CREATE OR REPLACE VIEW rejects AS {}",
        reject_selects.join(" UNION ALL ")
    ))
    .await
    .map_err(|source| ValidationError::Engine {
        table: "rejects".into(),
        source,
    })?;
    Ok(())
}

/// `raw_row` shows each value as the input held it (`input`: the schema of
/// `<t>_input`), where the typed view's cast can be undone exactly.
fn rejects_select(
    spec: &TableSpec,
    checked: &str,
    columns: Vec<String>,
    input: Option<&Schema>,
) -> String {
    let raw_value = |column: &str| {
        let contract = spec.column(column);
        let field = input.and_then(|schema| schema.field_with_name(column).ok());
        match (contract, field) {
            (Some(contract), Some(field)) => {
                crate::catalog::input_form_sql(contract.kind, field.data_type(), column)
            }
            _ => quote_ident(column),
        }
    };
    let fields: Vec<String> = columns
        .iter()
        .filter(|c| *c != "reject_reason" && *c != inputs::CUSTOMER_KEY)
        .map(|c| format!("{}, {}", quote_literal(c), raw_value(c)))
        .collect();
    format!(
        "SELECT {} AS input, {} AS key, reject_reason AS reason, \
         to_json(named_struct({})) AS raw_row FROM {checked} WHERE reject_reason IS NOT NULL",
        quote_literal(spec.name),
        reject_key(spec),
        fields.join(", ")
    )
}

/// `rejects.key`: the key columns joined with '|' (a missing second part is
/// empty); null for an input without a key (costs). Built only for the
/// rejected rows, not stored with every checked row.
fn reject_key(spec: &TableSpec) -> String {
    let parts: Vec<String> = spec
        .key
        .iter()
        .enumerate()
        .map(|(i, column)| match i {
            0 => format!("CAST({} AS VARCHAR)", quote_ident(column)),
            _ => format!("COALESCE(CAST({} AS VARCHAR), '')", quote_ident(column)),
        })
        .collect();
    match parts.is_empty() {
        true => "CAST(NULL AS VARCHAR)".into(),
        false => parts.join(" || '|' || "),
    }
}

/// Visible and rejected rows per input.
pub async fn count_rows(ctx: &SessionContext) -> Result<Vec<InputCounts>, ValidationError> {
    let mut counts = Vec::new();
    for spec in inputs::ALL {
        let batches = collect(
            ctx,
            spec.name,
            &format!(
                "SELECT COUNT(*), COUNT(reject_reason) FROM {}_checked",
                spec.name
            ),
        )
        .await?;
        let (visible, rejected) = batches
            .first()
            .filter(|b| b.num_rows() == 1)
            .map(|b| {
                (
                    b.column(0).as_primitive::<Int64Type>().value(0) as u64,
                    b.column(1).as_primitive::<Int64Type>().value(0) as u64,
                )
            })
            .unwrap_or((0, 0));
        counts.push(InputCounts {
            table: spec.name.into(),
            visible,
            rejected,
            clean: visible - rejected,
        });
    }
    Ok(counts)
}

/// Fails when any input rejects more than `max_ratio` of its visible rows.
pub async fn enforce_reject_ratio(
    ctx: &SessionContext,
    counts: &[InputCounts],
    max_ratio: f64,
) -> Result<(), ValidationError> {
    for c in counts {
        if c.visible == 0 {
            continue;
        }
        let ratio = c.rejected as f64 / c.visible as f64;
        if ratio > max_ratio {
            return Err(ValidationError::TooManyRejects {
                table: c.table.clone(),
                rejected: c.rejected,
                visible: c.visible,
                ratio: ratio * 100.0,
                max: max_ratio * 100.0,
                top_reasons: top_reasons(ctx, &c.table).await?,
            });
        }
    }
    Ok(())
}

/// "reason (count), ..." for the three most common reasons of a table.
pub async fn top_reasons(ctx: &SessionContext, table: &str) -> Result<String, ValidationError> {
    let batches = collect(
        ctx,
        table,
        &format!(
            "SELECT reject_reason, COUNT(*) AS n FROM {table}_checked \
             WHERE reject_reason IS NOT NULL GROUP BY reject_reason \
             ORDER BY n DESC, reject_reason LIMIT 3"
        ),
    )
    .await?;
    let mut parts = Vec::new();
    for b in &batches {
        let reasons = datafusion::arrow::compute::cast(
            b.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .map_err(|e| ValidationError::Engine {
            table: table.into(),
            source: e.into(),
        })?;
        let reasons = reasons.as_string::<i32>();
        let n = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            parts.push(format!("{} ({})", reasons.value(i), n.value(i)));
        }
    }
    Ok(parts.join(", "))
}

async fn collect(
    ctx: &SessionContext,
    table: &str,
    query: &str,
) -> Result<Vec<RecordBatch>, ValidationError> {
    let engine = |source| ValidationError::Engine {
        table: table.into(),
        source,
    };
    ctx.sql(query)
        .await
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)
}
