//! The bundled SQL of `sql/` (compiled into the binary) and how it is run.
//!
//! Files are scripts of `CREATE VIEW` statements. Run parameters appear as
//! `${name}` placeholders and are substituted as typed SQL literals before
//! planning, so the optimiser sees constants (partition pruning, filter
//! pushdown into the Parquet scans).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use datafusion::sql::parser::DFParser;
use futures::future::BoxFuture;

use crate::engine::log_seconds;
use crate::engine::scratch::ViewDir;
use crate::engine::udf::DIRECTORY_CUSTOMER_ID;
use crate::inputs;

/// A bundled SQL file: its name (as in `sql/<name>.sql`) and text, or one
/// section of it: the statements from a line `-- @section <name>` to the
/// next such line (a family whose script runs in parts, e.g. once per date).
#[derive(Debug, Clone, Copy)]
pub struct SqlScript {
    pub name: &'static str,
    pub text: &'static str,
    pub section: Option<&'static str>,
}

pub const VALIDATE: SqlScript = SqlScript {
    name: "validate",
    text: include_str!("../../sql/validate.sql"),
    section: None,
};
pub const DIMENSIONS: SqlScript = SqlScript {
    name: "dimensions",
    text: include_str!("../../sql/dimensions.sql"),
    section: None,
};
pub const RETENTION: SqlScript = SqlScript {
    name: "retention",
    text: include_str!("../../sql/retention.sql"),
    section: None,
};
pub const SUPPORT: SqlScript = SqlScript {
    name: "support",
    text: include_str!("../../sql/support.sql"),
    section: None,
};
pub const SURVEYS: SqlScript = SqlScript {
    name: "surveys",
    text: include_str!("../../sql/surveys.sql"),
    section: None,
};
pub const MRR: SqlScript = SqlScript {
    name: "mrr",
    text: include_str!("../../sql/mrr.sql"),
    section: None,
};
pub const FEEDBACK: SqlScript = SqlScript {
    name: "feedback",
    text: include_str!("../../sql/feedback.sql"),
    section: None,
};
pub const COHORTS: SqlScript = SqlScript {
    name: "cohorts",
    text: include_str!("../../sql/cohorts.sql"),
    section: None,
};
pub const VALUE: SqlScript = SqlScript {
    name: "value",
    text: include_str!("../../sql/value.sql"),
    section: None,
};
/// The health score at one date (run once per date of 4.9 and 4.12).
pub const HEALTH_SCORES: SqlScript = SqlScript {
    name: "health",
    text: include_str!("../../sql/health.sql"),
    section: Some("scores"),
};
pub const HEALTH: SqlScript = SqlScript {
    name: "health",
    text: include_str!("../../sql/health.sql"),
    section: Some("customer_health"),
};
pub const CSI: SqlScript = SqlScript {
    name: "csi",
    text: include_str!("../../sql/csi.sql"),
    section: None,
};
pub const SUMMARY: SqlScript = SqlScript {
    name: "summary",
    text: include_str!("../../sql/summary.sql"),
    section: None,
};

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("sql/{script}.sql: unknown placeholder ${{{name}}}")]
    UnknownPlaceholder { script: String, name: String },
    #[error("sql/{script}.sql: no line `-- @section {section}`")]
    NoSection { script: String, section: String },
    #[error(
        "{path}: {source} (CSKPI_SQL_DIR names a folder of KPI SQL to use instead of the bundled copy)"
    )]
    Override {
        path: String,
        source: std::io::Error,
    },
    #[error("sql/{script}.sql: {source}")]
    Engine {
        script: String,
        source: DataFusionError,
    },
}

/// Values for the `${...}` placeholders, already rendered as SQL.
#[derive(Debug, Clone, Default)]
pub struct SqlParams(BTreeMap<String, String>);

impl SqlParams {
    pub fn date(mut self, name: &str, value: NaiveDate) -> Self {
        self.0.insert(name.into(), format!("DATE '{value}'"));
        self
    }
    pub fn number(mut self, name: &str, value: f64) -> Self {
        self.0
            .insert(name.into(), format!("CAST({value:?} AS DOUBLE)"));
        self
    }
    pub fn integer(mut self, name: &str, value: i64) -> Self {
        self.0.insert(name.into(), value.to_string());
        self
    }
    /// A value already written as SQL (e.g. a timestamp literal).
    pub fn raw(mut self, name: &str, sql: String) -> Self {
        self.0.insert(name.into(), sql);
        self
    }
    pub fn ident(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.into(), quote_ident(value));
        self
    }

    pub fn render(&self, script: &SqlScript) -> Result<String, SqlError> {
        let text = script_text(script)?;
        let mut out = String::with_capacity(text.len());
        let mut rest: &str = &text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| SqlError::UnknownPlaceholder {
                    script: script.name.into(),
                    name: after.chars().take(20).collect(),
                })?;
            let name = &after[..end];
            let value = self
                .0
                .get(name)
                .ok_or_else(|| SqlError::UnknownPlaceholder {
                    script: script.name.into(),
                    name: name.into(),
                })?;
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The statements to run: the script's text, or its section's.
fn script_text(script: &SqlScript) -> Result<String, SqlError> {
    let text = file_text(script)?;
    let Some(section) = script.section else {
        return Ok(text.into_owned());
    };
    let marker = format!("-- @section {section}");
    let mut lines = text.lines().skip_while(|line| line.trim_end() != marker);
    if lines.next().is_none() {
        return Err(SqlError::NoSection {
            script: script.name.into(),
            section: section.into(),
        });
    }
    let body: Vec<&str> = lines
        .take_while(|line| !line.starts_with("-- @section "))
        .collect();
    Ok(body.join("\n"))
}

/// The script's text: the bundled copy, or `$CSKPI_SQL_DIR/<name>.sql` when
/// that variable is set, so that SQL can be tried and timed without
/// recompiling (a developer's aid; a run logs that it is in effect).
fn file_text(script: &SqlScript) -> Result<std::borrow::Cow<'static, str>, SqlError> {
    let Some(dir) = std::env::var_os("CSKPI_SQL_DIR") else {
        return Ok(script.text.into());
    };
    let path = Path::new(&dir).join(format!("{}.sql", script.name));
    tracing::warn!(
        "using {} instead of the bundled sql/{}.sql",
        path.display(),
        script.name
    );
    std::fs::read_to_string(&path)
        .map(Into::into)
        .map_err(|source| SqlError::Override {
            path: path.display().to_string(),
            source,
        })
}

/// Views a run computes once and reads back from Parquet, because several
/// later views (or output tables) read them.
#[derive(Clone, Copy)]
pub struct Materialize<'a> {
    pub views: &'a [&'a str],
    pub dir: &'a ViewDir,
    /// How each of them is stored; `store_parquet` unless the caller knows
    /// a better way for some.
    pub store: Store,
    /// Views (of `views` or not) stored one file per value of a date
    /// column, as (view, column): see `bucketed.rs`.
    pub by_value: &'a [(&'a str, &'a str)],
}

/// Stores view `name` (computed once) and registers a table of that name in
/// its place; `dir` is the run's scratch directory.
pub type Store = for<'c> fn(
    &'c SessionContext,
    &'c str,
    &'c ViewDir,
) -> BoxFuture<'c, Result<(), DataFusionError>>;

/// The usual [`Store`]: `materialize_view`.
pub fn store_parquet<'c>(
    ctx: &'c SessionContext,
    name: &'c str,
    dir: &'c ViewDir,
) -> BoxFuture<'c, Result<(), DataFusionError>> {
    Box::pin(materialize_view(ctx, name, dir))
}

/// Renders a script and runs each of its statements in order. A view named
/// in `materialize` is written to Parquet right after it is created and
/// replaced by a table over those files, so the statements after it (whose
/// plans are fixed when they are created) read the stored rows.
pub async fn run_script(
    ctx: &SessionContext,
    script: &SqlScript,
    params: &SqlParams,
    materialize: Option<Materialize<'_>>,
) -> Result<(), SqlError> {
    let engine = |source| SqlError::Engine {
        script: script.name.into(),
        source,
    };
    let text = params.render(script)?;
    let statements = DFParser::parse_sql(&text).map_err(engine)?;
    let state = ctx.state();
    for statement in statements {
        let plan = state.statement_to_plan(statement).await.map_err(engine)?;
        let created = match &plan {
            LogicalPlan::Ddl(DdlStatement::CreateView(view)) => Some(view.name.table().to_string()),
            _ => None,
        };
        ctx.execute_logical_plan(plan)
            .await
            .map_err(engine)?
            .collect()
            .await
            .map_err(engine)?;
        let (Some(m), Some(name)) = (materialize, created) else {
            continue;
        };
        if let Some((_, column)) = m.by_value.iter().find(|(view, _)| *view == name) {
            store_without_directory_ids(ctx, &name, &[], async |stored| {
                crate::engine::bucketed::materialize_view(ctx, stored, m.dir, column).await
            })
            .await
            .map_err(engine)?;
        } else if m.views.contains(&name.as_str()) {
            (m.store)(ctx, &name, m.dir).await.map_err(engine)?;
        }
    }
    Ok(())
}

/// Stores view `name` by `store`, without the customer_id of a row whose
/// customer_key names it when the view has both columns and the run's
/// session holds its customer directory (`directory_customer_id`): the
/// rows go to `<name>_stored` with those ids null, and `name` becomes a
/// view over them that puts the ids back by key, which a query that reads
/// no customer_id never calls. Writing the ids was a fifth of storing
/// usage's checked rows, and most queries of stored rows read only the
/// key (benches/README.md, "Measured reasons"). The `replaced` columns
/// (name, SQL expression) are stored as their expressions, in both cases.
pub async fn store_without_directory_ids(
    ctx: &SessionContext,
    name: &str,
    replaced: &[(String, String)],
    store: impl AsyncFnOnce(&str) -> Result<(), DataFusionError>,
) -> Result<(), DataFusionError> {
    let quoted = quote_ident(name);
    let key = inputs::CUSTOMER_KEY;
    let view = ctx.table(quoted.as_str()).await?;
    let schema = view.schema();
    let mut stored_as: Vec<String> = replaced
        .iter()
        .map(|(column, expression)| format!("{expression} AS {}", quote_ident(column)))
        .collect();
    let restore = match (
        schema.field_with_unqualified_name("customer_id"),
        schema.has_column_with_unqualified_name(key),
        ctx.udf(DIRECTORY_CUSTOMER_ID).is_ok(),
    ) {
        (Ok(id), true, true) => {
            stored_as.push(format!(
                "CASE WHEN {key} IS NULL THEN customer_id END AS customer_id"
            ));
            Some(id.is_nullable())
        }
        _ => None,
    };
    if stored_as.is_empty() {
        return store(name).await;
    }
    let stored = format!("{name}_stored");
    let stored_quoted = quote_ident(&stored);
    ctx.sql(&format!(
        "CREATE OR REPLACE VIEW {stored_quoted} AS SELECT * REPLACE ({}) FROM {quoted}",
        stored_as.join(", ")
    ))
    .await?;
    store(&stored).await?;
    let read_back = match restore {
        Some(may_be_null) => format!(
            "SELECT * REPLACE ({DIRECTORY_CUSTOMER_ID}(customer_id, {key}, {may_be_null}) \
             AS customer_id) FROM {stored_quoted}"
        ),
        None => format!("SELECT * FROM {stored_quoted}"),
    };
    ctx.sql(&format!("CREATE OR REPLACE VIEW {quoted} AS {read_back}"))
        .await?;
    Ok(())
}

/// The columns that name a customer. Rows in event order hold nearly every
/// customer in each row group, and a stored bucket or a published file
/// holds each customer about once: a dictionary of these columns grows as
/// large as the column and is then dropped for plain encoding, work for
/// nothing (benches/README.md, "Measured reasons").
const CUSTOMER_COLUMNS: [&str; 2] = [inputs::CUSTOMER_KEY, "customer_id"];

/// Turns the dictionary off for the [`CUSTOMER_COLUMNS`] that `schema` has.
pub fn without_customer_dictionaries(options: &mut TableParquetOptions, schema: &Schema) {
    let present = CUSTOMER_COLUMNS
        .into_iter()
        .filter(|column| schema.field_with_name(column).is_ok());
    without_dictionaries(options, present);
}

/// Turns the dictionary off for `columns` in files written with `options`.
pub fn without_dictionaries<'a>(
    options: &mut TableParquetOptions,
    columns: impl IntoIterator<Item = &'a str>,
) {
    for column in columns {
        let options = options.column_specific_options.entry(column.into());
        options.or_default().dictionary_enabled = Some(false);
    }
}

/// Whether a scratch file stores a column of `data_type` delta-encoded
/// (DELTA_BINARY_PACKED) instead of through a dictionary: integers, dates
/// and timestamps. A dictionary hashes every value as it is written (a
/// seventh of the time storing usage's checked rows took), and the deltas
/// of days and times in event order, or of small counts, pack into a few
/// bits each (benches/README.md, "Measured reasons").
pub fn delta_encoded(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int32 | DataType::Int64 | DataType::Date32 | DataType::Timestamp(_, _)
    )
}

/// Sets the [`delta_encoded`] columns of `schema` to that encoding, without
/// a dictionary, in files written with `options`.
fn delta_encode(options: &mut TableParquetOptions, schema: &Schema) {
    for field in schema.fields() {
        if delta_encoded(field.data_type()) {
            let column = options
                .column_specific_options
                .entry(field.name().clone())
                .or_default();
            column.dictionary_enabled = Some(false);
            column.encoding = Some("delta_binary_packed".into());
        }
    }
}

/// The codec of the views a run stores in its scratch directory.
const SCRATCH_COMPRESSION: &str = "lz4_raw";

/// Writes view `name` to Parquet under `dir/name/` and registers a table of
/// that name over the files in its place.
pub async fn materialize_view(
    ctx: &SessionContext,
    name: &str,
    dir: &ViewDir,
) -> Result<(), DataFusionError> {
    let started = std::time::Instant::now();
    let target = dir.prepare(name)?;
    if let Some(dir) = explain_dir() {
        let query = format!("SELECT * FROM {}", quote_ident(name));
        explain_analyze(ctx, &query, &dir, name).await?;
    }
    let view = ctx.table(name).await?;
    // An empty view writes no file: the schema is given, not inferred.
    let schema = view.schema().as_arrow().clone();
    // Scratch files are read back once or twice by this run and deleted:
    // a fast codec, where the published tables use zstd.
    let mut options = ctx.state().default_table_options().parquet;
    options.global.compression = Some(SCRATCH_COMPRESSION.into());
    without_customer_dictionaries(&mut options, &schema);
    delta_encode(&mut options, &schema);
    // Written by this machine's session when the rows come from a cluster
    // (engine/writer.rs).
    let view = crate::engine::writer::read_by(&crate::engine::writer::writer_of(ctx), view).await?;
    view.write_parquet(&target, DataFrameWriteOptions::new(), Some(options))
        .await?;
    ctx.deregister_table(name)?;
    ctx.register_parquet(name, &target, ParquetReadOptions::default().schema(&schema))
        .await?;
    tracing::info!(
        view = name,
        elapsed_s = log_seconds(started.elapsed().as_secs_f64()),
        "materialized"
    );
    Ok(())
}

/// Profiling aid: the folder named by CSKPI_EXPLAIN_DIR, if set.
pub fn explain_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("CSKPI_EXPLAIN_DIR").map(Into::into)
}

/// Profiling aid (CSKPI_EXPLAIN_DIR): runs `query` once more under EXPLAIN
/// ANALYZE and keeps the plan with its metrics in `dir/<file>.txt`.
pub async fn explain_analyze(
    ctx: &SessionContext,
    query: &str,
    dir: &Path,
    file: &str,
) -> Result<(), DataFusionError> {
    std::fs::create_dir_all(dir)?;
    let batches = ctx
        .sql(&format!("EXPLAIN ANALYZE {query}"))
        .await?
        .collect()
        .await?;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    std::fs::write(dir.join(format!("{file}.txt")), text)?;
    Ok(())
}

/// A double-quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted SQL string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use datafusion::parquet::basic::Encoding;
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};

    /// The encodings of each column in the Parquet files of `dir`, over
    /// every file and row group.
    pub(crate) fn column_encodings(dir: &Path) -> BTreeMap<String, Vec<Encoding>> {
        let mut encodings: BTreeMap<String, Vec<Encoding>> = BTreeMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let file = std::fs::File::open(entry.unwrap().path()).unwrap();
            let reader = SerializedFileReader::new(file).unwrap();
            for group in reader.metadata().row_groups() {
                for column in group.columns() {
                    let seen = encodings.entry(column.column_path().string()).or_default();
                    for encoding in column.encodings() {
                        if !seen.contains(&encoding) {
                            seen.push(encoding);
                        }
                    }
                }
            }
        }
        encodings
    }

    #[tokio::test]
    async fn a_stored_view_delta_encodes_its_integers_dates_and_times_only() {
        let ctx = SessionContext::new();
        ctx.sql(
            "CREATE VIEW v AS SELECT * FROM (VALUES \
             (1, DATE '2025-01-01', TIMESTAMP '2025-01-01 10:00:00', 'a', 1.5), \
             (2, DATE '2025-01-01', TIMESTAMP '2025-01-03 11:30:00', 'a', 2.5), \
             (40, DATE '2025-01-02', TIMESTAMP '2024-12-31 09:15:00', 'b', 1.5)) \
             AS t(n, day, at, label, amount)",
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        materialize_view(&ctx, "v", &ViewDir::Local(dir.path().to_path_buf()))
            .await
            .unwrap();

        let encodings = column_encodings(&dir.path().join("v"));
        for column in ["n", "day", "at"] {
            let used = &encodings[column];
            assert!(
                used.contains(&Encoding::DELTA_BINARY_PACKED),
                "{column}: {used:?}"
            );
            assert!(
                !used.contains(&Encoding::RLE_DICTIONARY),
                "{column}: {used:?}"
            );
        }
        for column in ["label", "amount"] {
            let used = &encodings[column];
            assert!(
                used.contains(&Encoding::RLE_DICTIONARY),
                "{column}: {used:?}"
            );
        }
        let rows = ctx
            .sql("SELECT * FROM v ORDER BY n")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
            .unwrap()
            .to_string();
        assert_eq!(
            text,
            "+----+------------+---------------------+-------+--------+\n\
             | n  | day        | at                  | label | amount |\n\
             +----+------------+---------------------+-------+--------+\n\
             | 1  | 2025-01-01 | 2025-01-01T10:00:00 | a     | 1.5    |\n\
             | 2  | 2025-01-01 | 2025-01-03T11:30:00 | a     | 2.5    |\n\
             | 40 | 2025-01-02 | 2024-12-31T09:15:00 | b     | 1.5    |\n\
             +----+------------+---------------------+-------+--------+"
        );
    }

    #[test]
    fn placeholders_are_substituted_and_unknown_ones_rejected() {
        let script = SqlScript {
            name: "t",
            text: "SELECT ${as_of}, ${days} FROM ${col}",
            section: None,
        };
        let params = SqlParams::default()
            .date("as_of", NaiveDate::from_ymd_opt(2025, 1, 2).unwrap())
            .integer("days", 30)
            .ident("col", "seg\"x");
        assert_eq!(
            params.render(&script).unwrap(),
            "SELECT DATE '2025-01-02', 30 FROM \"seg\"\"x\""
        );
        let missing = SqlScript {
            name: "t",
            text: "SELECT ${nope}",
            section: None,
        };
        assert!(params.render(&missing).is_err());
    }

    #[test]
    fn a_section_runs_from_its_marker_to_the_next() {
        let text = "-- header\nSELECT 0;\n-- @section one\nSELECT 1;\n-- note\n\
                    -- @section two\nSELECT 2;\n";
        let section = |name| SqlScript {
            name: "t",
            text,
            section: Some(name),
        };
        let params = SqlParams::default();
        assert_eq!(
            params.render(&section("one")).unwrap(),
            "SELECT 1;\n-- note"
        );
        assert_eq!(params.render(&section("two")).unwrap(), "SELECT 2;");
        let err = params.render(&section("three")).unwrap_err();
        assert!(err.to_string().contains("-- @section three"), "{err}");
    }
}
