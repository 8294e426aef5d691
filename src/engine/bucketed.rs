//! Stores a view as files of one value of a date column each (buckets), so
//! that a query of one value reads only that value's files (row-group
//! statistics prune the rest) and sorts a bucket, not the whole view.
//!
//! `mrr_movements` is published one file per month, each sorted by
//! customer; its rows came from one sort of the whole stored view by month
//! and customer, which spilled under the memory limit at 1M customers.
//! Bucketing the stored view by month while it is written (which happens
//! anyway) leaves one in-memory sort per month (benches/README.md,
//! "Measured reasons").

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::{BatchCoalescer, sort_to_indices, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Date32Type, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::arrow::async_writer::AsyncFileWriter;
use datafusion::parquet::basic::{Compression, Encoding};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream_partitioned};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::StreamExt;
use tokio::task::JoinSet;

use crate::engine::scratch::ViewDir;

/// Rows per row group of a bucket file: each open file buffers one row
/// group outside the memory pool, and a view can have a few dozen buckets
/// per partition open at once.
const ROWS_PER_GROUP: usize = 32 * 1024;

/// Writes view `name` under `dir/name/` as one file per value of the Date32
/// column `column` and per partition of the view's plan, and registers a
/// table of that name over the files in its place.
pub async fn materialize_view(
    ctx: &SessionContext,
    name: &str,
    dir: &ViewDir,
    column: &str,
) -> Result<()> {
    let started = std::time::Instant::now();
    let target = dir.prepare(name)?;
    let frame = ctx.table(name).await?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let index = schema.index_of(column)?;
    if schema.field(index).data_type() != &DataType::Date32 {
        return Err(DataFusionError::Plan(format!(
            "{name}: buckets need a date column, {column} is {}",
            schema.field(index).data_type()
        )));
    }
    let task_ctx = frame.task_ctx();
    let batch_size = task_ctx.session_config().batch_size();
    let plan = frame.create_physical_plan().await?;
    let mut writers = JoinSet::new();
    for (partition, stream) in execute_stream_partitioned(plan, Arc::new(task_ctx))?
        .into_iter()
        .enumerate()
    {
        writers.spawn(write_buckets(
            stream,
            (dir.clone(), name.to_string()),
            partition,
            index,
            batch_size,
        ));
    }
    while let Some(written) = writers.join_next().await {
        written.map_err(|e| DataFusionError::External(Box::new(e)))??;
    }
    ctx.deregister_table(name)?;
    ctx.register_parquet(name, &target, ParquetReadOptions::default().schema(&schema))
        .await?;
    tracing::info!(
        view = name,
        elapsed_s = crate::engine::log_seconds(started.elapsed().as_secs_f64()),
        "materialized by {column}"
    );
    Ok(())
}

/// Writes the rows of one partition's stream to `<value>-<partition>.parquet`
/// in the directory of view `view` (`dir`),
/// one file per value of the date column at `index` (`null-<partition>` for
/// rows without one). Each value's rows are gathered into batches of
/// `batch_size` rows before they are written: a batch of a view holds a few
/// rows of each of many values.
async fn write_buckets(
    mut stream: SendableRecordBatchStream,
    (dir, view): (ViewDir, String),
    partition: usize,
    index: usize,
    batch_size: usize,
) -> Result<()> {
    // No dictionaries: a bucket's date column is one value, which LZ4
    // squeezes as well; its customers appear about once each; and its
    // measures seldom repeat. Building the dictionaries was a fifth of
    // writing customer_mrr_movements' buckets (benches/README.md,
    // "Measured reasons"). Integers and dates are delta-encoded, as in
    // every scratch file.
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP));
    for field in stream.schema().fields() {
        if crate::engine::sql::delta_encoded(field.data_type()) {
            builder = builder
                .set_column_encoding(field.name().as_str().into(), Encoding::DELTA_BINARY_PACKED);
        }
    }
    let properties = builder.build();
    let mut buckets: BTreeMap<Option<i32>, Bucket> = BTreeMap::new();
    while let Some(batch) = stream.next().await {
        // The batch ordered by value (one gather), then a zero-copy slice
        // of each value's run for its bucket.
        let batch = batch?;
        let order = sort_to_indices(batch.column(index), None, None)?;
        let batch = take_record_batch(&batch, &order)?;
        let values = batch.column(index).as_primitive::<Date32Type>();
        let runs =
            datafusion::arrow::compute::partition(std::slice::from_ref(batch.column(index)))?;
        for run in runs.ranges() {
            let value = values.is_valid(run.start).then(|| values.value(run.start));
            let bucket = match buckets.entry(value) {
                Entry::Occupied(open) => open.into_mut(),
                Entry::Vacant(slot) => {
                    let name = value.map_or("null".into(), |day| {
                        crate::calendar::from_date32(day).to_string()
                    });
                    let file = dir
                        .create_file(&view, &format!("{name}-{partition}.parquet"))
                        .await?;
                    slot.insert(Bucket {
                        rows: BatchCoalescer::new(batch.schema(), batch_size),
                        file: AsyncArrowWriter::try_new(
                            file,
                            batch.schema(),
                            Some(properties.clone()),
                        )?,
                    })
                }
            };
            bucket.rows.push_batch(batch.slice(run.start, run.len()))?;
            bucket.write_completed().await?;
        }
    }
    for (_, mut bucket) in buckets {
        bucket.rows.finish_buffered_batch()?;
        bucket.write_completed().await?;
        bucket.file.close().await?;
    }
    Ok(())
}

/// One value's file and the rows waiting to be written to it.
struct Bucket {
    rows: BatchCoalescer,
    file: AsyncArrowWriter<Box<dyn AsyncFileWriter>>,
}

impl Bucket {
    async fn write_completed(&mut self) -> Result<()> {
        while let Some(batch) = self.rows.next_completed_batch() {
            self.file.write(&batch).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Date32Array, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;

    #[tokio::test]
    async fn a_view_is_stored_one_file_per_value_and_reads_back_whole() {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![
            Field::new("month", DataType::Date32, true),
            Field::new("n", DataType::Int64, false),
        ]));
        // Two partitions, each with rows of several months in no order.
        let batch = |months: Vec<Option<i32>>, n: Vec<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Date32Array::from(months)) as ArrayRef,
                    Arc::new(Int64Array::from(n)) as ArrayRef,
                ],
            )
            .unwrap()
        };
        let table = MemTable::try_new(
            schema.clone(),
            vec![
                vec![batch(
                    vec![Some(31), Some(0), Some(31), None],
                    vec![1, 2, 3, 4],
                )],
                vec![batch(vec![Some(0), Some(59)], vec![5, 6])],
            ],
        )
        .unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx.sql("CREATE VIEW v AS SELECT * FROM t").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        materialize_view(
            &ctx,
            "v",
            &ViewDir::Local(dir.path().to_path_buf()),
            "month",
        )
        .await
        .unwrap();

        let mut files: Vec<String> = std::fs::read_dir(dir.path().join("v"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "1970-01-01-0.parquet",
                "1970-01-01-1.parquet",
                "1970-02-01-0.parquet",
                "1970-03-01-1.parquet",
                "null-0.parquet"
            ]
        );
        let sums = ctx
            .sql("SELECT COUNT(*), SUM(n), SUM(CASE WHEN month = DATE '1970-02-01' THEN n END) FROM v")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let value = |i: usize| sums[0].column(i).as_primitive::<Int64Type>().value(0);
        assert_eq!((value(0), value(1), value(2)), (6, 21, 4));
        let encodings = crate::engine::sql::tests::column_encodings(&dir.path().join("v"));
        for column in ["month", "n"] {
            let used = &encodings[column];
            assert!(
                used.contains(&Encoding::DELTA_BINARY_PACKED),
                "{column}: {used:?}"
            );
        }
    }
}
