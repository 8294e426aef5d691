//! A limit on how long a driver waits for a cluster that sends nothing.
//!
//! Ballista 55.0.0 can wait for ever after it loses an executor: seen
//! here, a launch to a SIGKILLed executor removed it and rolled its stages
//! back, and the job then stayed "running" with no task on the executor
//! left (upstream apache/datafusion-ballista#2029 and #2226, fixed after
//! 55). A nightly job must end, so every query a driver sends to the
//! cluster fails once `cluster.quiet_limit_seconds` pass without a batch
//! from it; the run then ends with that one line and publishes nothing.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{FutureExt, Stream, StreamExt};

/// Plans as `inner` does (Ballista's planner, which sends the query to the
/// scheduler), each plan under a [`QuietLimitExec`].
#[derive(Debug)]
pub struct QuietLimitPlanner {
    pub inner: Arc<dyn QueryPlanner + Send + Sync>,
    pub limit: Duration,
}

#[async_trait]
impl QueryPlanner for QuietLimitPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = self
            .inner
            .create_physical_plan(logical_plan, session_state)
            .await?;
        Ok(Arc::new(QuietLimitExec {
            input: plan,
            limit: self.limit,
        }))
    }
}

/// Its input's batches, or an error once `limit` passes without one.
#[derive(Debug)]
pub struct QuietLimitExec {
    input: Arc<dyn ExecutionPlan>,
    limit: Duration,
}

impl DisplayAs for QuietLimitExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "QuietLimitExec: limit={}s", self.limit.as_secs())
    }
}

impl ExecutionPlan for QuietLimitExec {
    fn name(&self) -> &str {
        "QuietLimitExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(QuietLimitExec {
            input: children.remove(0),
            limit: self.limit,
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            within_quiet_limit(input, self.limit),
        )))
    }
}

/// `input`'s items; an error, and nothing after it, when `limit` passes
/// before the next one.
fn within_quiet_limit(
    input: impl Stream<Item = Result<RecordBatch>> + Send + Unpin + 'static,
    limit: Duration,
) -> impl Stream<Item = Result<RecordBatch>> + Send + 'static {
    Quiet {
        input,
        limit,
        timer: Box::pin(tokio::time::sleep(limit)),
        ended: false,
    }
}

struct Quiet<S> {
    input: S,
    limit: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    ended: bool,
}

impl<S: Stream<Item = Result<RecordBatch>> + Unpin> Stream for Quiet<S> {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = self.input.poll_next_unpin(cx) {
            let next = tokio::time::Instant::now() + self.limit;
            self.timer.as_mut().reset(next);
            return Poll::Ready(item);
        }
        if self.timer.poll_unpin(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(Some(Err(DataFusionError::External(Box::new(
                super::ClusterError::Quiet {
                    seconds: self.limit.as_secs_f64().ceil() as u64,
                },
            )))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;

    #[tokio::test]
    async fn a_stream_quiet_for_the_limit_ends_with_one_error_and_a_busy_one_does_not() {
        let batch = || Ok(RecordBatch::new_empty(Arc::new(Schema::empty())));
        let limit = Duration::from_millis(300);
        // A batch every 100 ms under a 300 ms limit: all five arrive,
        // though together they take longer than the limit.
        let busy = futures::stream::iter(0..5).then(move |_| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            batch()
        });
        let items: Vec<_> = within_quiet_limit(Box::pin(busy), limit).collect().await;
        assert_eq!(items.len(), 5);
        assert!(items.iter().all(|i| i.is_ok()));

        // One batch, then nothing for ever: the batch, then one error
        // naming the limit, then the end.
        let stalls = futures::stream::iter([batch()]).chain(futures::stream::pending());
        let items: Vec<_> = within_quiet_limit(Box::pin(stalls), limit).collect().await;
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        let error = items[1].as_ref().unwrap_err().to_string();
        assert!(error.contains("cluster.quiet_limit_seconds"), "{error}");
    }
}
