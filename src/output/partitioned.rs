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
use datafusion::arrow::datatypes::{DataType, FieldRef, SchemaRef};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::Column;
use datafusion::dataframe::{DataFrame, DataFrameWriteOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, cast};
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
    crate::engine::writer::in_fixed_batches(writer, with_plain_strings(frame)?)
        .await?
        .write_parquet(
            path,
            DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await
}

/// `frame` with every Utf8View (the engine's string type, also inside
/// lists, structs and maps) cast to Utf8, the type spec 5 gives names: the
/// Arrow schema a file carries tells pyarrow and other Arrow readers which
/// type to read its strings as.
fn with_plain_strings(frame: DataFrame) -> Result<DataFrame, DataFusionError> {
    if frame
        .schema()
        .fields()
        .iter()
        .all(|f| plain_strings(f.data_type()) == *f.data_type())
    {
        return Ok(frame);
    }
    let columns: Vec<Expr> = frame
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::from((qualifier, field)));
            let plain = plain_strings(field.data_type());
            match plain == *field.data_type() {
                true => column,
                false => cast(column, plain).alias(field.name()),
            }
        })
        .collect();
    frame.select(columns)
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
