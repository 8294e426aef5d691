//! Which process writes a session's results. A session whose queries run
//! on a cluster carries [`WritesHere`]: a session of this machine, which
//! writes the run's stored views and output tables from the rows the
//! cluster streams back, so that files are written once, by one writer,
//! whatever computed their rows. (Ballista 55.0.0 runs a write's last
//! stage as one task per partition restricted to its own slice, and a
//! `COPY` of a two-partition join kept one partition's rows: half of
//! data-samples' costs.)

use std::sync::{Arc, Mutex};

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
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;

/// A session-config extension: this machine's session, which writes what
/// the session carrying it computes.
#[derive(Clone)]
pub struct WritesHere(pub SessionContext);

/// The session that writes `ctx`'s results: the one it carries in
/// [`WritesHere`], or itself.
pub fn writer_of(ctx: &SessionContext) -> SessionContext {
    ctx.state()
        .config()
        .get_extension::<WritesHere>()
        .map(|w| w.0.clone())
        .unwrap_or_else(|| ctx.clone())
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
    let schema = Arc::clone(frame.schema().inner());
    let order = sorted_by(writer, frame.logical_plan()).await?;
    let rows = ComputedElsewhere {
        schema: Arc::clone(&schema),
        frame: Mutex::new(Some(frame)),
    };
    let mut table =
        StreamingTable::try_new(schema, vec![Arc::new(rows) as Arc<dyn PartitionStream>])?;
    if let Some(order) = order {
        table = table.with_sort_order(order);
    }
    writer.read_table(Arc::new(table))
}

/// The order of `plan`'s rows when it ends with an ORDER BY of columns,
/// which the cluster sorts by: a writer records it in the Parquet footer
/// (`sorting_columns`), so the stream must declare it, as a local run
/// would record it, without the columns a filter or a literal makes
/// constant (`writer` plans the query, without running it, to learn which
/// are left).
async fn sorted_by(
    writer: &SessionContext,
    plan: &LogicalPlan,
) -> Result<Option<Vec<SortExpr>>, DataFusionError> {
    let LogicalPlan::Sort(sort) = plan else {
        return Ok(None);
    };
    if sort.fetch.is_some() {
        return Ok(None);
    }
    let physical = writer.state().create_physical_plan(plan).await?;
    let schema = physical.schema();
    let Some(ordering) = physical.properties().output_ordering() else {
        return Ok(None);
    };
    let left: Vec<&str> = ordering
        .iter()
        .filter_map(|s| s.expr.downcast_ref::<PhysicalColumn>())
        .map(|c| schema.field(c.index()).name().as_str())
        .collect();
    let mut order = Vec::new();
    for s in &sort.expr {
        let Expr::Column(column) = &s.expr else {
            return Ok(None);
        };
        if left.contains(&column.name.as_str()) {
            order.push(SortExpr::new(
                Expr::Column(Column::new_unqualified(column.name.clone())),
                s.asc,
                s.nulls_first,
            ));
        }
    }
    Ok((!order.is_empty()).then_some(order))
}

/// The rows of a frame of another session, computed when first read.
#[derive(Debug)]
struct ComputedElsewhere {
    schema: SchemaRef,
    frame: Mutex<Option<DataFrame>>,
}

impl PartitionStream for ComputedElsewhere {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
        let frame = self.frame.lock().map(|mut f| f.take()).ok().flatten();
        let rows = futures::stream::once(async move {
            match frame {
                Some(frame) => frame.execute_stream().await,
                None => Err(DataFusionError::Internal(
                    "the rows of another session were read twice".into(),
                )),
            }
        })
        .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            rows,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionConfig;

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
