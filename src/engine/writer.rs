//! Which process writes a session's results. A session whose queries run
//! on a cluster carries [`WritesHere`]: a session of this machine, which
//! writes the run's stored views and output tables from the rows the
//! cluster streams back, so that files are written once, by one writer,
//! whatever computed their rows. (Ballista 55.0.0 runs a write's last
//! stage as one task per partition restricted to its own slice, and a
//! `COPY` of a two-partition join kept one partition's rows: half of
//! data-samples' costs.)

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{BatchCoalescer, cast};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, SortExpr};
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::SessionContext;
use futures::{Stream, TryStreamExt};

/// A session-config extension: this machine's session, which writes what
/// the session carrying it computes.
#[derive(Clone)]
pub struct WritesHere(pub SessionContext);

/// The session that writes `ctx`'s results: the one it carries in
/// [`WritesHere`], or itself.
pub fn writer_of(ctx: &SessionContext) -> SessionContext {
    writes_here(ctx)
        .map(|w| w.0.clone())
        .unwrap_or_else(|| ctx.clone())
}

/// Whether `ctx`'s queries run on a cluster (it carries [`WritesHere`]).
pub fn runs_on_cluster(ctx: &SessionContext) -> bool {
    writes_here(ctx).is_some()
}

fn writes_here(ctx: &SessionContext) -> Option<Arc<WritesHere>> {
    ctx.state().config().get_extension::<WritesHere>()
}

/// `frame` as a frame of `writer`'s session: itself when it is one, else
/// its rows as computed by its own session (a cluster's), read as one
/// stream by `writer`, so that a write planned on it runs on this machine.
pub async fn read_by(
    writer: &SessionContext,
    frame: DataFrame,
) -> Result<DataFrame, DataFusionError> {
    if frame.task_ctx().session_id() == writer.session_id() {
        return Ok(frame);
    }
    streamed_to(writer, frame, None, None).await
}

/// `frame` as a frame of `writer`'s session whose rows come in batches of
/// exactly the session's batch size (the last one fewer), for writing a
/// table file: a Parquet writer cuts pages where a batch's chunks end, so
/// a file's bytes follow the batches it is handed. A local plan and a
/// cluster's stream cut the same rows differently; batches of one size
/// make their files byte-identical.
///
/// `types` is `frame`'s schema with the types the file gets: a column of
/// another type is cast batch by batch as the rows stream, not by a
/// projection in the plan. The planner spreads a projection that computes
/// something over the session's partitions (a round-robin repartition),
/// and the rows would reach the file out of their order.
pub async fn in_fixed_batches(
    writer: &SessionContext,
    frame: DataFrame,
    types: SchemaRef,
) -> Result<DataFrame, DataFusionError> {
    let batch_rows = writer.state().config().batch_size();
    streamed_to(writer, frame, Some(batch_rows), Some(types)).await
}

/// `frame`'s rows as one stream `writer` reads, in its declared order,
/// recut into batches of `batch_rows` rows and cast to `types` if given. A
/// frame of `writer`'s own session is planned once: that plan both runs
/// and tells the order.
async fn streamed_to(
    writer: &SessionContext,
    frame: DataFrame,
    batch_rows: Option<usize>,
    types: Option<SchemaRef>,
) -> Result<DataFrame, DataFusionError> {
    let schema = types.unwrap_or_else(|| Arc::clone(frame.schema().inner()));
    let (order, source) = if frame.task_ctx().session_id() == writer.session_id() {
        let task_ctx = Arc::new(frame.task_ctx());
        let logical = frame.logical_plan().clone();
        let plan = frame.create_physical_plan().await?;
        (sorted_by(&logical, &plan), Source::Plan(plan, task_ctx))
    } else {
        let order = match is_sorted_query(frame.logical_plan()) {
            true => {
                let here = writer
                    .state()
                    .create_physical_plan(frame.logical_plan())
                    .await?;
                sorted_by(frame.logical_plan(), &here)
            }
            false => None,
        };
        (order, Source::Frame(frame))
    };
    let rows = ComputedElsewhere {
        schema: Arc::clone(&schema),
        source: Mutex::new(Some(source)),
        batch_rows,
    };
    let mut table =
        StreamingTable::try_new(schema, vec![Arc::new(rows) as Arc<dyn PartitionStream>])?;
    if let Some(order) = order {
        table = table.with_sort_order(order);
    }
    writer.read_table(Arc::new(table))
}

/// Whether `plan` ends with an ORDER BY without a limit.
fn is_sorted_query(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Sort(sort) if sort.fetch.is_none())
}

/// The order of `plan`'s rows when it ends with an ORDER BY of columns
/// (and no limit), which the rows come sorted by: a writer records it in
/// the Parquet footer (`sorting_columns`), so the stream must declare it,
/// as a local run would record it, without the columns a filter or a
/// literal makes constant (those `physical`, the query as planned by the
/// writer's session, no longer orders by).
fn sorted_by(plan: &LogicalPlan, physical: &Arc<dyn ExecutionPlan>) -> Option<Vec<SortExpr>> {
    let LogicalPlan::Sort(sort) = plan else {
        return None;
    };
    if sort.fetch.is_some() {
        return None;
    }
    let schema = physical.schema();
    let ordering = physical.properties().output_ordering()?;
    let left: Vec<&str> = ordering
        .iter()
        .filter_map(|s| s.expr.downcast_ref::<PhysicalColumn>())
        .map(|c| schema.field(c.index()).name().as_str())
        .collect();
    let mut order = Vec::new();
    for s in &sort.expr {
        let Expr::Column(column) = &s.expr else {
            return None;
        };
        if left.contains(&column.name.as_str()) {
            order.push(SortExpr::new(
                Expr::Column(Column::new_unqualified(column.name.clone())),
                s.asc,
                s.nulls_first,
            ));
        }
    }
    (!order.is_empty()).then_some(order)
}

/// Where a [`ComputedElsewhere`]'s rows come from.
enum Source {
    /// A frame of another session (a cluster's), run by it.
    Frame(DataFrame),
    /// A plan of the writer's own session.
    Plan(Arc<dyn ExecutionPlan>, Arc<TaskContext>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Frame(_) => f.write_str("Source::Frame"),
            Source::Plan(plan, _) => write!(f, "Source::Plan({})", plan.name()),
        }
    }
}

/// The rows of a frame (of another session, or recut), computed when
/// first read.
#[derive(Debug)]
struct ComputedElsewhere {
    schema: SchemaRef,
    source: Mutex<Option<Source>>,
    /// Recut into batches of this many rows.
    batch_rows: Option<usize>,
}

impl PartitionStream for ComputedElsewhere {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
        let source = self.source.lock().map(|mut f| f.take()).ok().flatten();
        let rows = futures::stream::once(async move {
            match source {
                Some(Source::Frame(frame)) => frame.execute_stream().await,
                Some(Source::Plan(plan, task_ctx)) => execute_stream(plan, task_ctx),
                None => Err(DataFusionError::Internal(
                    "the rows of a computed frame were read twice".into(),
                )),
            }
        })
        .try_flatten();
        let schema = Arc::clone(&self.schema);
        let cast_to = Arc::clone(&schema);
        let rows = rows.and_then(move |batch| {
            let cast_to = Arc::clone(&cast_to);
            async move { cast_batch(batch, &cast_to) }
        });
        match self.batch_rows {
            Some(size) => Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&schema),
                fixed_batches(rows, schema, size),
            )),
            None => Box::pin(RecordBatchStreamAdapter::new(schema, rows)),
        }
    }
}

/// `batch` with its columns cast to `schema`'s types (itself when they
/// are those already).
fn cast_batch(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, DataFusionError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// `rows` recut into batches of exactly `size` rows, the last one fewer
/// (Arrow's `BatchCoalescer`, which copies the rows into them).
fn fixed_batches(
    rows: impl Stream<Item = Result<RecordBatch, DataFusionError>> + Send + 'static,
    schema: SchemaRef,
    size: usize,
) -> impl Stream<Item = Result<RecordBatch, DataFusionError>> + Send + 'static {
    let state = (Box::pin(rows), BatchCoalescer::new(schema, size), false);
    futures::stream::try_unfold(state, |(mut rows, mut batches, mut ended)| async move {
        loop {
            if let Some(batch) = batches.next_completed_batch() {
                return Ok(Some((batch, (rows, batches, ended))));
            }
            if ended {
                return Ok(None);
            }
            match rows.try_next().await? {
                Some(batch) => batches.push_batch(batch)?,
                None => {
                    batches.finish_buffered_batch()?;
                    ended = true;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::compute::concat_batches;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::dataframe::DataFrameWriteOptions;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionConfig;

    fn numbered(schema: &SchemaRef, from: usize, to: usize) -> RecordBatch {
        let n: Vec<i64> = (from as i64..to as i64).collect();
        let text: Vec<String> = n.iter().map(|i| format!("row {}", i % 977)).collect();
        RecordBatch::try_new(
            Arc::clone(schema),
            vec![
                Arc::new(Int64Array::from(n)),
                Arc::new(StringArray::from(text)),
            ],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn rows_are_recut_into_batches_of_one_size_in_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let cuts = [0, 3, 13, 14, 14, 21];
        let batches: Vec<Result<RecordBatch, DataFusionError>> = cuts
            .windows(2)
            .map(|w| Ok(numbered(&schema, w[0], w[1])))
            .collect();
        let recut: Vec<RecordBatch> =
            fixed_batches(futures::stream::iter(batches), Arc::clone(&schema), 4)
                .try_collect()
                .await
                .unwrap();
        let sizes: Vec<usize> = recut.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, [4, 4, 4, 4, 4, 1]);
        let all = concat_batches(&schema, &recut).unwrap();
        assert_eq!(all, numbered(&schema, 0, 21));
    }

    #[tokio::test]
    async fn a_file_written_in_fixed_batches_does_not_depend_on_the_input_batches() {
        // One partition: the scan hands the batches on as they are, in order.
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let rows = 50_000;
        let cut_at = |cuts: Vec<usize>| {
            let batches: Vec<RecordBatch> = cuts
                .windows(2)
                .map(|w| numbered(&schema, w[0], w[1]))
                .collect();
            MemTable::try_new(Arc::clone(&schema), vec![batches]).unwrap()
        };
        let regular: Vec<usize> = (0..rows).step_by(8192).chain([rows]).collect();
        let irregular: Vec<usize> = (0..rows).step_by(1000).chain([rows]).collect();
        let dir = tempfile::tempdir().unwrap();
        let write = |table: MemTable, fixed: bool, name: &'static str| {
            let (ctx, dir) = (ctx.clone(), dir.path().to_path_buf());
            async move {
                let mut frame = ctx.read_table(Arc::new(table)).unwrap();
                if fixed {
                    let types = Arc::clone(frame.schema().inner());
                    frame = in_fixed_batches(&ctx, frame, types).await.unwrap();
                }
                let path = dir.join(name);
                frame
                    .write_parquet(
                        path.to_str().unwrap(),
                        DataFrameWriteOptions::new().with_single_file_output(true),
                        None,
                    )
                    .await
                    .unwrap();
                std::fs::read(path).unwrap()
            }
        };
        // As handed: the pages (cut where a batch's chunks end) differ.
        let as_cut = write(cut_at(regular.clone()), false, "a.parquet").await;
        let as_cut_too = write(cut_at(irregular.clone()), false, "b.parquet").await;
        assert_ne!(as_cut, as_cut_too);
        // Recut: the same bytes.
        let fixed = write(cut_at(regular), true, "c.parquet").await;
        let fixed_too = write(cut_at(irregular), true, "d.parquet").await;
        assert!(fixed == fixed_too, "the files differ");
    }

    #[tokio::test]
    async fn a_session_carrying_a_writer_is_written_by_it_with_every_row() {
        let here = SessionContext::new();
        let config = SessionConfig::new().with_extension(Arc::new(WritesHere(here.clone())));
        let elsewhere = SessionContext::new_with_config(config);
        assert_eq!(writer_of(&elsewhere).session_id(), here.session_id());
        assert_eq!(writer_of(&here).session_id(), here.session_id());

        let frame = elsewhere
            .sql("SELECT x FROM (VALUES (1), (2), (3)) t(x) WHERE x > 1")
            .await
            .unwrap();
        let read = read_by(&here, frame).await.unwrap();
        assert_eq!(read.task_ctx().session_id(), here.session_id());
        let rows: usize = read
            .collect()
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 2);

        // An ORDER BY of columns is declared, so a writer records it;
        // without the columns a filter makes constant, as a local plan has
        // them; nothing without ORDER BY.
        let declared = |sql: String| {
            let (here, elsewhere) = (here.clone(), elsewhere.clone());
            async move {
                let frame = elsewhere.sql(&sql).await.unwrap();
                let plan = read_by(&here, frame)
                    .await
                    .unwrap()
                    .create_physical_plan()
                    .await
                    .unwrap();
                plan.properties().output_ordering().map(|o| o.to_string())
            }
        };
        let values = "SELECT x, y FROM (VALUES (2, 'b'), (1, 'a')) t(x, y)";
        assert_eq!(
            declared(format!("{values} ORDER BY x DESC, y"))
                .await
                .as_deref(),
            Some("x@0 DESC, y@1 ASC NULLS LAST")
        );
        assert_eq!(
            declared(format!("{values} WHERE x = 2 ORDER BY x, y"))
                .await
                .as_deref(),
            Some("y@1 ASC NULLS LAST")
        );
        assert_eq!(declared(values.to_string()).await, None);
    }
}
