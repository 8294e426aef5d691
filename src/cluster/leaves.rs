//! A physical rule of the scheduler's sessions: leaves that make up their
//! own rows (`PlaceholderRowExec`, the one row of `SELECT 'all'`, and
//! `EmptyExec`) become in-memory scans of the same rows.
//!
//! Why: Ballista 55.0.0 restricts each task's copy of a stage to the task's
//! partitions, and replaces such a leaf that a task does not own (a union
//! branch of another task) with an empty in-memory scan. An in-memory scan
//! reports metrics and these leaves do not, so that task reports one
//! operator's metrics more than the task that owns the leaf; the scheduler
//! rejects the second report ("task metrics array size 7 does not equal
//! with the stage metrics array size 6") with the task's status, and the
//! job never finishes. Every `UNION` with a literal branch (cskpi's
//! `'all'` rows) did that. Scans of memory are restricted like file scans,
//! so every task of a stage reports the same operators.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, new_null_array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;

#[derive(Debug, Default)]
pub struct LeavesAsMemoryScans;

impl PhysicalOptimizerRule for LeavesAsMemoryScans {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let rows_per_partition = if node.is::<PlaceholderRowExec>() {
                1
            } else if node.is::<EmptyExec>() {
                0
            } else {
                return Ok(Transformed::no(node));
            };
            let partitions = node.properties().output_partitioning().partition_count();
            match memory_scan(node.schema(), rows_per_partition, partitions)? {
                Some(scan) => Ok(Transformed::yes(scan)),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "leaves_as_memory_scans"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `partitions` partitions of `rows` all-null rows each; `None` when a
/// column cannot hold a null (no such leaf makes rows for it either).
fn memory_scan(
    schema: SchemaRef,
    rows: usize,
    partitions: usize,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if rows > 0 && schema.fields().iter().any(|f| !f.is_nullable()) {
        return Ok(None);
    }
    let batch = || -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), rows))
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&schema),
            columns,
            &options,
        )?)
    };
    let data = (0..partitions)
        .map(|_| Ok(if rows == 0 { vec![] } else { vec![batch()?] }))
        .collect::<Result<Vec<_>>>()?;
    let source = MemorySourceConfig::try_new(&data, Arc::clone(&schema), None)?;
    Ok(Some(DataSourceExec::from_data_source(source)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::SessionContext;

    async fn planned(sql: &str) -> (Arc<dyn ExecutionPlan>, Arc<dyn ExecutionPlan>) {
        let ctx = SessionContext::new();
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let rewritten = LeavesAsMemoryScans
            .optimize(Arc::clone(&plan), &ConfigOptions::default())
            .unwrap();
        (plan, rewritten)
    }

    fn shown(plan: &Arc<dyn ExecutionPlan>) -> String {
        displayable(plan.as_ref()).indent(false).to_string()
    }

    #[tokio::test]
    async fn a_literal_union_branch_reads_memory_and_gives_the_same_rows() {
        let (plan, rewritten) =
            planned("SELECT 'all' AS s UNION ALL SELECT 'x' UNION ALL SELECT 'y' ORDER BY s").await;
        assert!(
            shown(&plan).contains("PlaceholderRowExec"),
            "{}",
            shown(&plan)
        );
        assert!(!shown(&rewritten).contains("PlaceholderRowExec"));
        assert!(shown(&rewritten).contains("DataSourceExec"));
        let ctx = SessionContext::new();
        let after = pretty_format_batches(&collect(rewritten, ctx.task_ctx()).await.unwrap())
            .unwrap()
            .to_string();
        let expected = [
            "+-----+", "| s   |", "+-----+", "| all |", "| x   |", "| y   |", "+-----+",
        ];
        assert_eq!(after.lines().collect::<Vec<_>>(), expected);
        let before = pretty_format_batches(&collect(plan, ctx.task_ctx()).await.unwrap())
            .unwrap()
            .to_string();
        assert_eq!(before, after);
    }

    #[tokio::test]
    async fn an_empty_relation_stays_empty() {
        let (plan, rewritten) = planned("SELECT 1 AS one WHERE false").await;
        let ctx = SessionContext::new();
        let count = |batches: Vec<RecordBatch>| batches.iter().map(|b| b.num_rows()).sum::<usize>();
        assert!(
            !shown(&rewritten).contains("EmptyExec"),
            "{}",
            shown(&rewritten)
        );
        assert_eq!(count(collect(rewritten, ctx.task_ctx()).await.unwrap()), 0);
        assert_eq!(count(collect(plan, ctx.task_ctx()).await.unwrap()), 0);
    }
}
