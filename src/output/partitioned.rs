//! Writes one output table's rows as Parquet: one file, or one file per
//! value of its partition column, side by side in the table's directory
//! (`month-2025-01-01.parquet`), the column in the files. No `key=value/`
//! folders: a reader that infers hive partitions (DataFusion's `CREATE
//! EXTERNAL TABLE`, pyarrow, Spark) then finds the column twice and refuses
//! the table, and one that does not would lose the column if the files left
//! it out (spec 5: readable as one table by each).

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::partition;
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::config::TableParquetOptions;
use datafusion::dataframe::{DataFrame, DataFrameWriteOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{OutputTable, TABLE_FILE};

/// Writes `frame`, whose rows come sorted by `column` (the table's order
/// starts with it), as one file per value, [`partition_file`]. Returns the
/// rows written.
///
/// DataFusion's own partitioned write formats every row's value as a
/// string to route it (a date through strftime) and feeds each file small
/// pieces. Sorted rows come a value at a time, so each run of a value is
/// handed as it comes to an ordinary single-file write of its own (which
/// encodes columns in parallel); a value's file is finished while the next
/// value's rows arrive.
pub(super) async fn write_partitioned(
    writer: &SessionContext,
    frame: DataFrame,
    dir: &str,
    column: &str,
) -> Result<u64, DataFusionError> {
    let mut batches = frame.execute_stream().await?;
    let schema = batches.schema();
    let index = schema.index_of(column)?;
    let mut open: Option<(String, mpsc::Sender<RecordBatch>)> = None;
    let mut files = JoinSet::new();
    let mut seen = std::collections::HashSet::new();
    let mut rows = 0u64;
    'batches: while let Some(batch) = batches.try_next().await? {
        let values = batch.column(index);
        for run in partition(std::slice::from_ref(values))?.ranges() {
            let value = partition_value(values, run.start)?;
            if open.as_ref().is_none_or(|(current, _)| *current != value) {
                // The previous value's rows are all sent: let its file finish.
                drop(open.take());
                if !seen.insert(value.clone()) {
                    return Err(DataFusionError::Internal(format!(
                        "rows to partition by {column} are not sorted by it ({column}={value} seen twice)"
                    )));
                }
                let (sender, receiver) = mpsc::channel(4);
                let rows_of_value = ChannelPartition {
                    schema: Arc::clone(&schema),
                    receiver: Mutex::new(Some(receiver)),
                };
                let table = StreamingTable::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(rows_of_value) as Arc<dyn PartitionStream>],
                )?;
                let file = writer.read_table(Arc::new(table))?;
                let path = partition_file(dir, column, &value);
                let writer = writer.clone();
                files.spawn(async move { write_file(&writer, file, &path).await.map(|_| ()) });
                open = Some((value, sender));
            }
            if let Some((_, sender)) = &open
                && sender
                    .send(batch.slice(run.start, run.len()))
                    .await
                    .is_err()
            {
                // The file's write failed; its error is reported below.
                break 'batches;
            }
            rows += run.len() as u64;
        }
    }
    drop(open);
    while let Some(written) = files.join_next().await {
        joined(written)?;
    }
    Ok(rows)
}

/// Writes table `table` partitioned by `column`, a date, each value by a
/// query of its own (as many at once as the session has partitions):
/// `SELECT * FROM <table> WHERE <column> = <value> ORDER BY <order_by>`
/// into [`partition_file`] (an empty table is one empty file). Returns the
/// rows written. Each value's sort is its own: for tables over a view
/// stored one file per value, whose other values' files the filter skips.
pub(super) async fn write_each_partition(
    ctx: &SessionContext,
    writer: &SessionContext,
    table: &OutputTable,
    dir: &str,
    column: &str,
) -> Result<u64, DataFusionError> {
    let name = table.name;
    let values = ctx
        .sql(&format!(
            "SELECT DISTINCT {column} FROM {name} ORDER BY {column}"
        ))
        .await?
        .collect()
        .await?;
    let mut rows = 0u64;
    let mut files = 0;
    // As many values as the session has partitions are sorted and written
    // at once: one value's query alone leaves a core idle while it plans,
    // merges and finishes its file (benches/README.md, "Measured reasons").
    // Dropping the set on an error stops the other writes.
    let at_once = ctx.state().config().target_partitions().max(1);
    let mut writing = JoinSet::new();
    for batch in &values {
        let values = batch.column(0);
        if values.data_type() != &DataType::Date32 {
            return Err(DataFusionError::Plan(format!(
                "{name}: written one {column} at a time, which must be a date, not {}",
                values.data_type()
            )));
        }
        for row in 0..values.len() {
            let value = partition_value(values, row)?;
            let of_value = match values.is_null(row) {
                true => format!("{column} IS NULL"),
                false => format!("{column} = DATE '{value}'"),
            };
            let query = format!(
                "SELECT * FROM {name} WHERE {of_value} ORDER BY {}",
                table.order_by
            );
            let path = partition_file(dir, column, &value);
            let (ctx, writer) = (ctx.clone(), writer.clone());
            if writing.len() == at_once
                && let Some(written) = writing.join_next().await
            {
                rows += joined(written)?;
            }
            writing.spawn(async move {
                let frame = ctx.sql(&query).await?;
                Ok(row_count(&write_file(&writer, frame, &path).await?))
            });
            files += 1;
        }
    }
    while let Some(written) = writing.join_next().await {
        rows += joined(written)?;
    }
    if files == 0 {
        let empty = ctx
            .sql(&format!("SELECT * FROM {name} ORDER BY {}", table.order_by))
            .await?;
        write_file(writer, empty, &format!("{dir}{TABLE_FILE}")).await?;
    }
    Ok(rows)
}

/// What a file's write task returned, its panic or cancellation as an
/// error.
fn joined<T>(
    written: Result<Result<T, DataFusionError>, tokio::task::JoinError>,
) -> Result<T, DataFusionError> {
    written.map_err(|e| DataFusionError::External(Box::new(e)))?
}

/// The file of one value of a table's partition column:
/// `<dir><column>-<value>.parquet`, as `month-2025-01-01.parquet`.
fn partition_file(dir: &str, column: &str, value: &str) -> String {
    format!("{dir}{column}-{value}.parquet")
}

/// A partition value as it appears in a file name (`null` for NULL).
fn partition_value(values: &dyn Array, row: usize) -> Result<String, DataFusionError> {
    match values.is_null(row) {
        true => Ok("null".into()),
        false => Ok(array_value_to_string(values, row)?),
    }
}

/// Writes `frame` as the one Parquet file `path`, by `writer`, in batches
/// of one size (so that the file's bytes do not depend on where its rows
/// were computed), its strings as the spec's Utf8 ([`with_plain_strings`]).
pub(super) async fn write_file(
    writer: &SessionContext,
    frame: DataFrame,
    path: &str,
) -> Result<Vec<RecordBatch>, DataFusionError> {
    let types = with_plain_strings(frame.schema().as_arrow());
    let mut options = writer.state().default_table_options().parquet;
    crate::engine::sql::without_customer_dictionaries(&mut options, &types);
    without_measure_dictionaries(&mut options, &types);
    crate::engine::writer::in_fixed_batches(writer, frame, types)
        .await?
        .write_parquet(
            path,
            DataFrameWriteOptions::new().with_single_file_output(true),
            Some(options),
        )
        .await
}

/// Turns the dictionary off for the floating-point columns of `schema`: a
/// table's measures (money, rates, scores) seldom repeat within a file, so
/// a dictionary of them saves next to nothing once the file is compressed
/// and costs a hash look-up per value (mrr_movements: files 0.6% larger,
/// written 15% faster; benches/README.md, "Measured reasons").
fn without_measure_dictionaries(options: &mut TableParquetOptions, schema: &Schema) {
    let measures = schema
        .fields()
        .iter()
        .filter(|field| field.data_type().is_floating())
        .map(|field| field.name().as_str());
    crate::engine::sql::without_dictionaries(options, measures);
}

/// `schema` with every Utf8View (the engine's string type, also inside
/// lists, structs and maps) made Utf8, the type spec 5 gives names: the
/// Arrow schema a file carries tells pyarrow and other Arrow readers which
/// type to read its strings as.
fn with_plain_strings(schema: &Schema) -> SchemaRef {
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| {
            Arc::new(
                f.as_ref()
                    .clone()
                    .with_data_type(plain_strings(f.data_type())),
            )
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `data_type` with Utf8View replaced by Utf8 wherever it occurs.
fn plain_strings(data_type: &DataType) -> DataType {
    let field = |f: &FieldRef| -> FieldRef {
        Arc::new(
            f.as_ref()
                .clone()
                .with_data_type(plain_strings(f.data_type())),
        )
    };
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect()),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        other => other.clone(),
    }
}

/// The rows of one partition value, as a stream DataFusion can read once.
#[derive(Debug)]
struct ChannelPartition {
    schema: SchemaRef,
    receiver: Mutex<Option<mpsc::Receiver<RecordBatch>>>,
}

impl PartitionStream for ChannelPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
        let receiver = self.receiver.lock().map(|mut r| r.take()).ok().flatten();
        let batches = futures::stream::unfold(receiver, |receiver| async move {
            let mut receiver = receiver?;
            let batch = receiver.recv().await?;
            Some((Ok(batch), Some(receiver)))
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}

pub(super) fn row_count(result: &[RecordBatch]) -> u64 {
    result
        .first()
        .map(|b| b.column(0).as_primitive::<UInt64Type>().value(0))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringViewArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use datafusion::prelude::SessionConfig;

    /// Sorted frames of many batches over several partitions reach their
    /// files in order, their string views written as Utf8: one file, and a
    /// file per value of a column. (The cast was a projection over the
    /// rows, which the planner spread over two partitions read back
    /// interleaved: 34 of 36 mrr_movements files out of order at 1M
    /// customers; here only when the two streams did not happen to take
    /// turns.) Ids C00000 .. C03999 in four partitions, in the order of
    /// k * 7919 mod 4000 (7919 is prime to 4000, so every id once), batches
    /// of 64 rows; half = k / 2000.
    #[tokio::test]
    async fn sorted_frames_are_written_in_their_order_with_plain_strings() {
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_batch_size(64);
        let ctx = SessionContext::new_with_config(config);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8View, false),
            Field::new("k", DataType::Int64, false),
        ]));
        let batch = |first: i64| {
            let keys: Vec<i64> = (first..first + 100).map(|k| k * 7919 % 4000).collect();
            let ids = keys.iter().map(|k| format!("C{k:05}"));
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringViewArray::from_iter_values(ids)),
                    Arc::new(Int64Array::from(keys)),
                ],
            )
            .unwrap()
        };
        let partitions = (0..4)
            .map(|p| (0..10).map(|b| batch(p * 1000 + b * 100)).collect())
            .collect();
        let table = MemTable::try_new(Arc::clone(&schema), partitions).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let ids = |range: std::ops::Range<i64>| -> Vec<String> {
            range.map(|k| format!("C{k:05}")).collect()
        };
        let dir = tempfile::tempdir().unwrap();

        let path = dir.path().join("t.parquet");
        let frame = ctx.sql("SELECT id, k FROM t ORDER BY id").await.unwrap();
        write_file(&ctx, frame, path.to_str().unwrap())
            .await
            .unwrap();
        assert_eq!(ids_in(&path), ids(0..4000));

        let by_half = format!("{}/", dir.path().join("by_half").display());
        let frame = ctx
            .sql("SELECT id, k, k / 2000 AS half FROM t ORDER BY half, id")
            .await
            .unwrap();
        assert_eq!(
            write_partitioned(&ctx, frame, &by_half, "half")
                .await
                .unwrap(),
            4000
        );
        let half = |value: i64| std::path::PathBuf::from(format!("{by_half}half-{value}.parquet"));
        assert_eq!(ids_in(&half(0)), ids(0..2000));
        assert_eq!(ids_in(&half(1)), ids(2000..4000));
    }

    /// The first column of a Parquet file, which must be Utf8.
    fn ids_in(path: &std::path::Path) -> Vec<String> {
        let file = std::fs::File::open(path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert_eq!(reader.schema().field(0).data_type(), &DataType::Utf8);
        let mut ids = Vec::new();
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            ids.extend(
                batch
                    .column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|id| id.unwrap().to_string()),
            );
        }
        ids
    }
}
