//! Registers the job's inputs as DataFusion tables and checks them against
//! the input contract (spec sections 1 and 3, schema errors).
//!
//! For every input `<t>` this registers:
//! - `<t>_input`: the Parquet files as stored (a listing table over a file, a
//!   directory with optional hive `key=value/` folders, or an s3:// prefix);
//! - `<t>_typed`: a view with every contract column cast to its logical type
//!   (integer ids to strings, timestamps to dates, money to DOUBLE, ...) and
//!   the extra columns passed through unchanged.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::parquet::arrow::parquet_column;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::parquet::file::statistics::Statistics;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext, ident, isnan};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;

use crate::config::JobConfig;
use crate::engine::sql::quote_ident;
use crate::inputs::{self, ColumnKind, TableSpec};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("input {table}: cannot open {location}: {message}")]
    Missing {
        table: String,
        location: String,
        message: String,
    },
    #[error("input {table}: no Parquet files at {location}")]
    NoFiles { table: String, location: String },
    #[error("input {table}: file {file} is not readable Parquet: {message}")]
    Unreadable {
        table: String,
        file: String,
        message: String,
    },
    #[error("input {table}: file {file} has no column {column} (required {kind})")]
    MissingColumn {
        table: String,
        file: String,
        column: String,
        kind: &'static str,
    },
    #[error(
        "input {table}: file {file} column {column} has type {found}, which cannot be read as {kind}"
    )]
    WrongType {
        table: String,
        file: String,
        column: String,
        found: DataType,
        kind: &'static str,
    },
    #[error(
        "input {table}: file {file} has a column {column}, a name cskpi reserves for the key it gives each customer; rename the column"
    )]
    ReservedColumn {
        table: String,
        file: String,
        column: String,
    },
    #[error("input {table}: files disagree on the schema ({files}): {message}")]
    Incompatible {
        table: String,
        files: String,
        message: String,
    },
    #[error(
        "input {table}: the cluster read {read} rows at {location}, where the files' Parquet footers hold {footers}: every node must reach the input at the same location (s3://, or a path mounted alike everywhere)"
    )]
    RowsRead {
        table: String,
        location: String,
        read: u64,
        footers: u64,
    },
    #[error("input {table}: {message}")]
    Engine { table: String, message: String },
}

/// What was found for one input, for logs and the manifest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegisteredInput {
    pub table: String,
    pub location: String,
    pub files: Vec<InputFile>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct InputFile {
    pub path: String,
    pub size: u64,
    /// Rows, as the file's Parquet footer says.
    pub rows: u64,
}

/// The location configured for a table, if any.
pub fn location_of<'a>(job: &'a JobConfig, table: &str) -> Option<&'a str> {
    job.input
        .locations()
        .into_iter()
        .find(|(name, _)| *name == table)
        .and_then(|(_, location)| location)
}

/// Registers every configured input, failing on the first schema error.
pub async fn register_inputs(
    ctx: &SessionContext,
    job: &JobConfig,
) -> Result<Vec<RegisteredInput>, InputError> {
    let mut registered = Vec::new();
    for spec in inputs::ALL {
        let Some(location) = location_of(job, spec.name) else {
            continue;
        };
        let extra_required = (spec.name == "customers").then_some(job.run.segment_by.as_str());
        registered.push(register_input(ctx, spec, location, extra_required).await?);
    }
    if job.cluster.scheduler.is_some() {
        for input in &registered {
            check_rows_read(ctx, input).await?;
        }
    }
    register_typed_views(ctx).await?;
    Ok(registered)
}

/// On a cluster: the rows the executors read of `input` are the rows its
/// footers (read here, on the driver) hold. A node that cannot see a path
/// scans it as empty, without an error. `SUM(1)`, not `COUNT(*)`, which
/// the planner would answer from the footers' statistics without a scan.
async fn check_rows_read(ctx: &SessionContext, input: &RegisteredInput) -> Result<(), InputError> {
    let engine = |e: datafusion::error::DataFusionError| InputError::Engine {
        table: input.table.clone(),
        message: e.to_string(),
    };
    let query = format!(
        "SELECT CAST(COALESCE(SUM(1), 0) AS BIGINT) FROM {}",
        quote_ident(&format!("{}_input", input.table))
    );
    let batches = ctx
        .sql(&query)
        .await
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)?;
    let read = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| b.column(0).as_primitive::<Int64Type>().value(0).max(0) as u64)
        .unwrap_or(0);
    let footers = input.files.iter().map(|f| f.rows).sum();
    if read == footers {
        return Ok(());
    }
    Err(InputError::RowsRead {
        table: input.table.clone(),
        location: input.location.clone(),
        read,
        footers,
    })
}

/// Registers `<t>_typed` over every `<t>_input` table present in the session
/// (however it got there: files, or `CREATE TABLE` in a SQL test), and an
/// empty one for every input that is absent.
pub async fn register_typed_views(ctx: &SessionContext) -> Result<(), InputError> {
    for spec in inputs::ALL {
        let engine = |e: datafusion::error::DataFusionError| InputError::Engine {
            table: spec.name.into(),
            message: e.to_string(),
        };
        let input = format!("{}_input", spec.name);
        if ctx.table_exist(input.as_str()).map_err(engine)? {
            let provider = ctx.table_provider(input.as_str()).await.map_err(engine)?;
            let schema = provider.schema();
            let provider: &dyn std::any::Any = provider.as_ref();
            let hive_columns = provider
                .downcast_ref::<ListingTable>()
                .map(|listing| {
                    listing
                        .options()
                        .table_partition_cols
                        .iter()
                        .map(|(name, _)| name.clone())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            ctx.sql(&typed_view_sql(spec, &schema, &hive_columns))
                .await
                .map_err(engine)?;
        } else {
            register_absent_input(ctx, spec).await?;
        }
    }
    Ok(())
}

async fn register_input(
    ctx: &SessionContext,
    spec: &TableSpec,
    location: &str,
    extra_required: Option<&str>,
) -> Result<RegisteredInput, InputError> {
    let table = spec.name.to_string();
    let engine = |e: datafusion::error::DataFusionError| InputError::Engine {
        table: table.clone(),
        message: e.to_string(),
    };
    let missing = |message: String| InputError::Missing {
        table: table.clone(),
        location: location.into(),
        message,
    };
    let unreadable = |file: String, message: String| InputError::Unreadable {
        table: table.clone(),
        file,
        message,
    };
    let url =
        ListingTableUrl::parse(normalise_location(location)).map_err(|e| missing(e.to_string()))?;
    if url.scheme() == "file" {
        let exists = url::Url::parse(url.as_str())
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .is_some_and(|p| p.exists());
        if !exists {
            return Err(missing("no such file or directory".into()));
        }
    }
    let state = ctx.state();
    let store = state
        .runtime_env()
        .object_store(url.object_store())
        .map_err(engine)?;
    let mut files: Vec<ObjectMeta> = url
        .list_all_files(&state, store.as_ref(), ".parquet")
        .await
        .map_err(|e| missing(e.to_string()))?
        .try_collect()
        .await
        .map_err(|e| missing(e.to_string()))?;
    if files.is_empty() {
        return Err(InputError::NoFiles {
            table,
            location: location.into(),
        });
    }
    files.sort_by(|a, b| a.location.cmp(&b.location));

    let format = ParquetFormat::default();
    let footers: Vec<Footer> = futures::stream::iter(files.iter())
        .map(|file| {
            let (format, state, store) = (&format, &state, &store);
            async move {
                let schema = format
                    .infer_schema(state, store, std::slice::from_ref(file))
                    .await;
                // The footer infer_schema read, from the session's cache.
                let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
                let metadata = DFParquetMetadata::new(store.as_ref(), file)
                    .with_file_metadata_cache(Some(cache))
                    .fetch_metadata()
                    .await;
                (
                    file.location.to_string(),
                    schema.and_then(|s| Ok((s, metadata?))),
                )
            }
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|(file, footer)| {
            footer
                .map(|(schema, metadata)| (file.clone(), schema, metadata))
                .map_err(|e| unreadable(file, e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let schemas: Vec<(String, SchemaRef)> = footers
        .iter()
        .map(|(file, schema, _)| (file.clone(), Arc::clone(schema)))
        .collect();

    let partition_cols = hive_partition_columns(&url, &files, &schemas);
    for (file, schema) in &schemas {
        check_file_schema(spec, file, schema, &partition_cols, extra_required)?;
    }
    let merged = Schema::try_merge(mergeable_schemas(spec, &schemas)).map_err(|e| {
        InputError::Incompatible {
            table: table.clone(),
            files: schemas
                .iter()
                .map(|(f, _)| f.as_str())
                .take(5)
                .collect::<Vec<_>>()
                .join(", "),
            message: e.to_string(),
        }
    })?;
    for ((file, schema, metadata), meta) in footers.iter().zip(&files) {
        let hidden = column_hiding_a_nan(ctx, &url, meta, schema, metadata)
            .await
            .map_err(|e| unreadable(file.clone(), e.to_string()))?;
        if let Some(column) = hidden {
            tracing::warn!(
                table = %table,
                file = %file,
                column = %column,
                "the file's statistics hide a NaN (they say every value is the same): \
                 reading the inputs without file statistics, so that validation sees it"
            );
            ctx.state_ref()
                .write()
                .config_mut()
                .options_mut()
                .execution
                .collect_statistics = false;
        }
    }

    let options = ListingOptions::new(Arc::new(format))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            partition_cols
                .iter()
                .map(|c| (c.clone(), DataType::Utf8))
                .collect(),
        );
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(Arc::new(merged));
    let listing = ListingTable::try_new(config).map_err(engine)?;
    ctx.register_table(format!("{}_input", spec.name), Arc::new(listing))
        .map_err(engine)?;

    Ok(RegisteredInput {
        table,
        location: location.into(),
        files: files
            .iter()
            .zip(&footers)
            .map(|(f, (_, _, metadata))| InputFile {
                path: f.location.to_string(),
                size: f.size,
                rows: metadata.file_metadata().num_rows().max(0) as u64,
            })
            .collect(),
    })
}

/// A file of an input: its path, Arrow schema and Parquet footer.
type Footer = (String, SchemaRef, Arc<ParquetMetaData>);

/// The first float column of a file whose Parquet statistics hide a NaN.
/// DataFusion reads a column whose statistics say min == max and no nulls
/// as that one value, without decoding it (`constant_columns_from_stats`
/// in its Parquet opener), and Parquet statistics leave NaN out: amounts
/// 10, NaN, 10 would read as three 10s, and the NaN would escape the
/// finite-amount check. So only a file whose statistics look like that is
/// read here, that column alone, without file statistics, to count NaNs.
async fn column_hiding_a_nan(
    ctx: &SessionContext,
    url: &ListingTableUrl,
    file: &ObjectMeta,
    schema: &Schema,
    metadata: &ParquetMetaData,
) -> datafusion::error::Result<Option<String>> {
    if metadata.file_metadata().num_rows() < 2 {
        return Ok(None);
    }
    let parquet_schema = metadata.file_metadata().schema_descr();
    for field in schema.fields() {
        if !matches!(field.data_type(), DataType::Float32 | DataType::Float64) {
            continue;
        }
        let Some((leaf, _)) = parquet_column(parquet_schema, schema, field.name()) else {
            continue;
        };
        if !statistics_say_constant(metadata, leaf) {
            continue;
        }
        let without_statistics = SessionContext::new_with_config_rt(
            SessionConfig::new().with_collect_statistics(false),
            ctx.runtime_env(),
        );
        let path = format!("{}{}", url.object_store().as_str(), file.location);
        let nans = without_statistics
            .read_parquet(path, ParquetReadOptions::default())
            .await?
            .filter(isnan(ident(field.name())))?
            .count()
            .await?;
        if nans > 0 {
            return Ok(Some(field.name().clone()));
        }
    }
    Ok(None)
}

/// Whether every row group of a float column has statistics with one and
/// the same min and max and no nulls (what DataFusion reads as a constant).
fn statistics_say_constant(metadata: &ParquetMetaData, leaf: usize) -> bool {
    let mut constant = None;
    metadata.row_groups().iter().all(|group| {
        let Some(statistics) = group.column(leaf).statistics() else {
            return false;
        };
        let (min, max) = match statistics {
            Statistics::Double(s) => (s.min_opt().copied(), s.max_opt().copied()),
            Statistics::Float(s) => (
                s.min_opt().map(|v| f64::from(*v)),
                s.max_opt().map(|v| f64::from(*v)),
            ),
            _ => return false,
        };
        match (min, max) {
            (Some(min), Some(max)) => {
                statistics.null_count_opt() == Some(0)
                    && min == max
                    && *constant.get_or_insert(min) == min
            }
            _ => false,
        }
    })
}

/// The files' schemas, ready to merge into the table's: metadata dropped
/// (writers disagree on it, and nothing here reads it), and a contract
/// column whose accepted types differ between files (Float64 and Decimal
/// amounts, ms and µs timestamps, a Date32 and a timestamp date) given the
/// type of its typed view, to which each file's values are then cast as
/// they are read. An extra column of different types stays an error.
fn mergeable_schemas(spec: &TableSpec, schemas: &[(String, SchemaRef)]) -> Vec<Schema> {
    let differing: Vec<(&str, DataType)> = spec
        .columns
        .iter()
        .filter(|column| {
            let types: std::collections::HashSet<&DataType> = schemas
                .iter()
                .filter_map(|(_, s)| s.field_with_name(column.name).ok())
                .map(|f| f.data_type())
                .collect();
            types.len() > 1
        })
        .map(|column| (column.name, merged_type(column.kind)))
        .collect();
    schemas
        .iter()
        .map(|(_, schema)| {
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .map(|field| {
                    let data_type = differing
                        .iter()
                        .find(|(name, _)| name == field.name())
                        .map_or_else(|| field.data_type().clone(), |(_, t)| t.clone());
                    Field::new(field.name(), data_type, field.is_nullable())
                })
                .collect();
            Schema::new(fields)
        })
        .collect()
}

/// The type a contract column is read as when its files disagree: its
/// typed view's, except that dates and timestamps are read in microseconds
/// (nanoseconds end in 2262), dates as UTC instants so that the typed view
/// takes a zoned timestamp's UTC date, as it does for a single file.
fn merged_type(kind: ColumnKind) -> DataType {
    match kind {
        ColumnKind::Date => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ColumnKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        other => other.arrow_type(),
    }
}

/// An optional input that the job does not name reads as an empty table, so
/// every view exists and the KPIs that need it come out empty or null.
async fn register_absent_input(ctx: &SessionContext, spec: &TableSpec) -> Result<(), InputError> {
    let engine = |e: datafusion::error::DataFusionError| InputError::Engine {
        table: spec.name.into(),
        message: e.to_string(),
    };
    let fields: Vec<Field> = spec
        .columns
        .iter()
        .map(|c| Field::new(c.name, c.kind.arrow_type(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let table = MemTable::try_new(Arc::clone(&schema), vec![vec![]]).map_err(engine)?;
    ctx.register_table(format!("{}_input", spec.name), Arc::new(table))
        .map_err(engine)?;
    ctx.sql(&typed_view_sql(spec, &schema, &[]))
        .await
        .map_err(engine)?;
    Ok(())
}

/// Column names of a plan's schema without their table qualifiers.
pub fn unqualified_names(schema: &datafusion::common::DFSchema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// s3 prefixes without a trailing slash are directories too.
fn normalise_location(location: &str) -> String {
    if location.starts_with("s3://") && !location.ends_with('/') && !location.ends_with(".parquet")
    {
        format!("{location}/")
    } else {
        location.to_string()
    }
}

/// The keys of the `key=value` folders right below the table root (plain
/// folders may follow them), when every file has the same keys and the key
/// is not also a column inside the files. DataFusion reads a partition
/// value only from the folders the root starts with, and would skip a file
/// whose path does not start with all of them.
fn hive_partition_columns(
    url: &ListingTableUrl,
    files: &[ObjectMeta],
    schemas: &[(String, SchemaRef)],
) -> Vec<String> {
    let prefix = url.prefix().as_ref().trim_end_matches('/').to_string();
    let mut common: Option<Vec<String>> = None;
    for file in files {
        let path = file.location.as_ref();
        let relative = path.strip_prefix(&prefix).unwrap_or(path);
        let mut folders: Vec<&str> = relative.split('/').filter(|s| !s.is_empty()).collect();
        folders.pop(); // the file's own name
        let keys: Vec<String> = folders
            .iter()
            .map_while(|segment| segment.split_once('=').map(|(k, _)| k.to_string()))
            .collect();
        match &common {
            None => common = Some(keys),
            Some(c) if *c != keys => return Vec::new(),
            _ => {}
        }
    }
    let in_files: BTreeSet<&str> = schemas
        .iter()
        .flat_map(|(_, s)| s.fields().iter().map(|f| f.name().as_str()))
        .collect();
    common
        .unwrap_or_default()
        .into_iter()
        .filter(|k| !in_files.contains(k.as_str()))
        .collect()
}

fn check_file_schema(
    spec: &TableSpec,
    file: &str,
    schema: &Schema,
    partition_cols: &[String],
    extra_required: Option<&str>,
) -> Result<(), InputError> {
    for column in spec.columns {
        if partition_cols.iter().any(|p| p == column.name) {
            continue; // hive values are strings, cast in the typed view
        }
        match schema.field_with_name(column.name) {
            Ok(field) if !column.kind.accepts(field.data_type()) => {
                return Err(InputError::WrongType {
                    table: spec.name.into(),
                    file: file.into(),
                    column: column.name.into(),
                    found: field.data_type().clone(),
                    kind: column.kind.describe(),
                });
            }
            Ok(_) => {}
            // Nullable contract columns may be absent: they read as null.
            Err(_) if !column.required => {}
            Err(_) => {
                return Err(InputError::MissingColumn {
                    table: spec.name.into(),
                    file: file.into(),
                    column: column.name.into(),
                    kind: column.kind.describe(),
                });
            }
        }
    }
    if schema.field_with_name(inputs::CUSTOMER_KEY).is_ok()
        || partition_cols.iter().any(|p| p == inputs::CUSTOMER_KEY)
    {
        return Err(InputError::ReservedColumn {
            table: spec.name.into(),
            file: file.into(),
            column: inputs::CUSTOMER_KEY.into(),
        });
    }
    if let Some(name) = extra_required
        && spec.column(name).is_none()
        && schema.field_with_name(name).is_err()
        && !partition_cols.iter().any(|p| p == name)
    {
        return Err(InputError::MissingColumn {
            table: spec.name.into(),
            file: file.into(),
            column: name.into(),
            kind: "run.segment_by dimension",
        });
    }
    Ok(())
}

/// The folder value Hive, Spark and DataFusion write for a null partition
/// value.
const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// The typed view of an input whose table has schema `input`: contract
/// columns cast to their logical types (absent nullable ones as typed
/// NULLs), extra columns unchanged; a hive folder column (`hive_columns`)
/// reads its null folder value as NULL. A date column holding timestamps
/// with a time zone takes their UTC date, as a timestamp column reads them
/// in UTC (a plain cast to DATE would take the zone's local date).
fn typed_view_sql(spec: &TableSpec, input: &Schema, hive_columns: &[String]) -> String {
    let value = |name: &str| {
        let quoted = quote_ident(name);
        match hive_columns.iter().any(|h| h == name) {
            true => format!("NULLIF({quoted}, '{HIVE_NULL}')"),
            false => quoted,
        }
    };
    let mut select = Vec::new();
    for column in spec.columns {
        let ty = column.kind.sql_type();
        let name = quote_ident(column.name);
        let Ok(field) = input.field_with_name(column.name) else {
            select.push(format!("CAST(NULL AS {ty}) AS {name}"));
            continue;
        };
        let read = match (column.kind, field.data_type()) {
            (ColumnKind::Date, DataType::Timestamp(unit, Some(_))) => format!(
                "arrow_cast({}, '{}')",
                value(column.name),
                DataType::Timestamp(*unit, Some("UTC".into()))
            ),
            _ => value(column.name),
        };
        select.push(format!("CAST({read} AS {ty}) AS {name}"));
    }
    for extra in input.fields().iter().map(|f| f.name()) {
        if spec.column(extra).is_none() {
            select.push(format!("{} AS {}", value(extra), quote_ident(extra)));
        }
    }
    format!(
        "CREATE OR REPLACE VIEW {}_typed AS SELECT {} FROM {}_input",
        spec.name,
        select.join(", "),
        spec.name
    )
}

/// `column` of a `<t>_typed` view shown as the input held it, for
/// `rejects.raw_row`: typed_view_sql's cast undone where
/// [`ColumnKind::input_form`] says that is exact, else the typed value. A
/// timestamp with a time zone goes back by way of UTC, since the typed
/// (zoneless) value is the instant in UTC: a zoneless value cast to a zone
/// would be read as that zone's local time.
pub fn input_form_sql(kind: ColumnKind, input: &DataType, column: &str) -> String {
    let quoted = quote_ident(column);
    match kind.input_form(input) {
        None => quoted,
        Some(DataType::Timestamp(unit, Some(zone))) => format!(
            "arrow_cast(arrow_cast({quoted}, '{}'), '{}')",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            DataType::Timestamp(unit, Some(zone))
        ),
        Some(form) => format!("arrow_cast({quoted}, '{form}')"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_columns_are_the_key_folders_right_below_the_root() {
        let url = ListingTableUrl::parse("file:///data/customers/").unwrap();
        let files = |paths: &[&str]| -> Vec<ObjectMeta> {
            paths
                .iter()
                .map(|p| ObjectMeta {
                    location: object_store::path::Path::from(format!("data/customers/{p}")),
                    last_modified: chrono::DateTime::UNIX_EPOCH,
                    size: 1,
                    e_tag: None,
                    version: None,
                })
                .collect()
        };
        let in_files = |names: &[&str]| -> Vec<(String, SchemaRef)> {
            let fields: Vec<Field> = names
                .iter()
                .map(|n| Field::new(*n, DataType::Utf8, true))
                .collect();
            vec![("f".into(), Arc::new(Schema::new(fields)))]
        };
        let columns = |paths: &[&str], names: &[&str]| {
            hive_partition_columns(&url, &files(paths), &in_files(names))
        };
        // Plain folders may follow the keys.
        assert_eq!(
            columns(&["region=eu/a.parquet", "region=us/2025/05/b.parquet"], &[]),
            ["region"]
        );
        assert_eq!(
            columns(
                &["region=eu/tier=1/a.parquet", "region=us/tier=2/b.parquet"],
                &[]
            ),
            ["region", "tier"]
        );
        // A key below a plain folder is not one DataFusion would read.
        assert!(columns(&["2025/region=eu/a.parquet"], &[]).is_empty());
        // Files at different keys, or a key that is also a column: none.
        assert!(columns(&["region=eu/a.parquet", "b.parquet"], &[]).is_empty());
        assert!(columns(&["2025/a.parquet", "2026/b.parquet"], &[]).is_empty());
        assert!(columns(&["region=eu/a.parquet"], &["region"]).is_empty());
    }

    #[tokio::test]
    async fn rows_read_must_be_the_rows_the_footers_hold() {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = datafusion::arrow::record_batch::RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(datafusion::arrow::array::Int64Array::from(vec![
                1, 2,
            ]))],
        )
        .unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("orders_input", Arc::new(table)).unwrap();
        let input = |rows: &[u64]| RegisteredInput {
            table: "orders".into(),
            location: "/data/orders/".into(),
            files: rows
                .iter()
                .enumerate()
                .map(|(i, &rows)| InputFile {
                    path: format!("/data/orders/part-{i}.parquet"),
                    size: 100,
                    rows,
                })
                .collect(),
        };
        assert!(check_rows_read(&ctx, &input(&[1, 1])).await.is_ok());
        let error = check_rows_read(&ctx, &input(&[2, 3])).await.unwrap_err();
        let line = error.to_string();
        assert!(
            line.starts_with("input orders: the cluster read 2 rows at /data/orders/")
                && line.contains("footers hold 5"),
            "{line}"
        );
    }

    /// A file is read for NaNs only where its statistics make DataFusion
    /// read a float column as one value: min = max, no nulls, 2 rows or more.
    #[tokio::test]
    async fn a_nan_is_looked_for_where_statistics_say_constant() {
        use datafusion::arrow::array::{ArrayRef, Float32Array, Float64Array};
        use datafusion::parquet::arrow::ArrowWriter;
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};

        let dir = tempfile::tempdir().unwrap();
        let ctx = SessionContext::new();
        let url = ListingTableUrl::parse("file:///").unwrap();
        let nan = f64::NAN;
        let cases: [(&str, ArrayRef, Option<&str>); 6] = [
            (
                "same",
                Arc::new(Float64Array::from(vec![10.0, 10.0, 10.0])),
                None,
            ),
            (
                "hidden",
                Arc::new(Float64Array::from(vec![10.0, nan, 10.0])),
                Some("amount"),
            ),
            (
                "two",
                Arc::new(Float64Array::from(vec![nan, 10.0])),
                Some("amount"),
            ),
            // min 10, max 11: DataFusion decodes the column and sees the NaN
            (
                "varied",
                Arc::new(Float64Array::from(vec![10.0, nan, 11.0])),
                None,
            ),
            (
                "nulls",
                Arc::new(Float64Array::from(vec![Some(10.0), Some(nan), None])),
                None,
            ),
            (
                "single",
                Arc::new(Float32Array::from(vec![1.5, f32::NAN])),
                Some("amount"),
            ),
        ];
        for (name, values, expected) in cases {
            let path = dir.path().join(format!("{name}.parquet"));
            let schema = Arc::new(Schema::new(vec![Field::new(
                "amount",
                values.data_type().clone(),
                true,
            )]));
            let batch = datafusion::arrow::record_batch::RecordBatch::try_new(
                Arc::clone(&schema),
                vec![values],
            )
            .unwrap();
            let mut writer =
                ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), None)
                    .unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
            let metadata = SerializedFileReader::new(std::fs::File::open(&path).unwrap())
                .unwrap()
                .metadata()
                .clone();
            let file = ObjectMeta {
                location: object_store::path::Path::from_absolute_path(&path).unwrap(),
                last_modified: chrono::DateTime::UNIX_EPOCH,
                size: std::fs::metadata(&path).unwrap().len(),
                e_tag: None,
                version: None,
            };
            let found = column_hiding_a_nan(&ctx, &url, &file, &schema, &metadata)
                .await
                .unwrap();
            assert_eq!(found.as_deref(), expected, "{name}");
        }
    }

    #[test]
    fn typed_view_casts_contract_columns_and_keeps_extras() {
        let schema = |columns: &[(&str, DataType)]| {
            Schema::new(
                columns
                    .iter()
                    .map(|(n, t)| Field::new(*n, t.clone(), true))
                    .collect::<Vec<_>>(),
            )
        };
        let sql = typed_view_sql(
            &inputs::CUSTOMERS,
            &schema(&[
                ("customer_id", DataType::Utf8),
                ("signup_date", DataType::Date32),
                ("region", DataType::Utf8),
            ]),
            &[],
        );
        assert!(sql.contains(r#"CAST("customer_id" AS VARCHAR) AS "customer_id""#));
        assert!(sql.contains(r#"CAST(NULL AS DATE) AS "churn_date""#));
        assert!(sql.contains(r#", "region" AS "region" FROM customers_input"#));
        assert!(sql.contains(r#"CAST("signup_date" AS DATE) AS "signup_date""#));
        let zoned = typed_view_sql(
            &inputs::CUSTOMERS,
            &schema(&[(
                "signup_date",
                DataType::Timestamp(TimeUnit::Millisecond, Some("-05:00".into())),
            )]),
            &[],
        );
        let utc = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        assert!(
            zoned.contains(&format!(
                r#"CAST(arrow_cast("signup_date", '{utc}') AS DATE) AS "signup_date""#
            )),
            "{zoned}"
        );
        let hive = typed_view_sql(
            &inputs::CUSTOMERS,
            &schema(&[
                ("customer_id", DataType::Utf8),
                ("segment", DataType::Utf8),
                ("region", DataType::Utf8),
            ]),
            &["segment".into(), "region".into()],
        );
        assert!(hive.contains(
            r#"CAST(NULLIF("segment", '__HIVE_DEFAULT_PARTITION__') AS VARCHAR) AS "segment""#
        ));
        assert!(hive.contains(r#"NULLIF("region", '__HIVE_DEFAULT_PARTITION__') AS "region""#));
    }
}
