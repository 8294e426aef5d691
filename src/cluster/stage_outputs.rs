//! A physical rule of the scheduler's sessions: every batch that leaves a
//! Ballista stage is compacted first ([`CompactBatchesExec`]).
//!
//! Why: a stage's output is written as Arrow IPC and sent between
//! processes in gRPC messages of at most 16 MiB (Ballista's default, on
//! executors and on the driver alike). Arrow's IPC writer sends a string
//! view array with all the data buffers it points into, and the batches a
//! sort, a merge or an aggregate emits point into every buffer they were
//! built from: at 1,000,000 customers one sorted batch of
//! `feedback_comments` carried 26 MB of comments and the run failed
//! ("encoded message length too large"). Raising the limit would only move
//! it; copying the rows a batch uses bounds every message by the batch.
//!
//! Where stages end (Ballista 55.0.0's planner): below a hash
//! `RepartitionExec`, a `CoalescePartitionsExec` and a
//! `SortPreservingMergeExec` (the build side of a broadcast join is a
//! coalesce's input), below a `UnionExec` for each branch it cannot run
//! inline, and at the root, whose output the driver fetches. Every union
//! branch is compacted (which ones get a stage of their own is Ballista's
//! choice at stage planning); a compaction that finds nothing to copy
//! passes batches through.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};

use crate::engine::compact::CompactBatchesExec;

#[derive(Debug, Default)]
pub struct CompactStageOutputs;

impl PhysicalOptimizerRule for CompactStageOutputs {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = plan
            .transform_up(|node| {
                let children = node.children();
                if !ends_a_stage_below(&node)
                    || children.iter().all(|c| c.is::<CompactBatchesExec>())
                {
                    return Ok(Transformed::no(node));
                }
                let children = children
                    .into_iter()
                    .map(|child| match child.is::<CompactBatchesExec>() {
                        true => Arc::clone(child),
                        false => compacted(Arc::clone(child)),
                    })
                    .collect();
                #[expect(deprecated)]
                let rebuilt = Arc::clone(&node).with_new_children(children)?;
                Ok(Transformed::yes(rebuilt))
            })?
            .data;
        Ok(if plan.is::<CompactBatchesExec>() {
            plan
        } else {
            compacted(plan)
        })
    }

    fn name(&self) -> &str {
        "compact_stage_outputs"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn compacted(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    Arc::new(CompactBatchesExec::new(plan))
}

/// Whether Ballista may write this node's inputs as stages' outputs.
fn ends_a_stage_below(node: &Arc<dyn ExecutionPlan>) -> bool {
    if let Some(repartition) = node.downcast_ref::<RepartitionExec>() {
        return matches!(repartition.partitioning(), Partitioning::Hash(..));
    }
    node.is::<CoalescePartitionsExec>()
        || node.is::<SortPreservingMergeExec>()
        || node.is::<UnionExec>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    async fn physical_plan(sql: &str) -> Arc<dyn ExecutionPlan> {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..10))],
        )
        .unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch.clone()], vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx.sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
    }

    /// The names of the nodes in `plan` whose input is compacted, and of
    /// those whose input is not.
    fn stage_ends(plan: &Arc<dyn ExecutionPlan>) -> (Vec<String>, Vec<String>) {
        let (mut compacted, mut not) = (vec![], vec![]);
        plan.apply(|node| {
            if ends_a_stage_below(node) {
                for child in node.children() {
                    let list = if child.is::<CompactBatchesExec>() {
                        &mut compacted
                    } else {
                        &mut not
                    };
                    list.push(node.name().to_string());
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        (compacted, not)
    }

    #[tokio::test]
    async fn every_stage_output_and_the_root_are_compacted_once() {
        let sql = "SELECT a, COUNT(*) AS n FROM t GROUP BY a ORDER BY a";
        let plan = physical_plan(sql).await;
        let (compacted, not) = stage_ends(&plan);
        assert!(compacted.is_empty());
        // a hash shuffle for the groups, a merge of the sorted partitions
        assert_eq!(not, ["SortPreservingMergeExec", "RepartitionExec"]);

        let rule = CompactStageOutputs;
        let once = rule.optimize(plan, &ConfigOptions::default()).unwrap();
        let (compacted, not) = stage_ends(&once);
        assert_eq!(compacted, ["SortPreservingMergeExec", "RepartitionExec"]);
        assert!(not.is_empty());
        assert!(once.is::<CompactBatchesExec>());

        let twice = rule
            .optimize(Arc::clone(&once), &ConfigOptions::default())
            .unwrap();
        let shown = |p: &Arc<dyn ExecutionPlan>| {
            datafusion::physical_plan::displayable(p.as_ref())
                .indent(false)
                .to_string()
        };
        assert_eq!(shown(&twice), shown(&once));
    }

    #[tokio::test]
    async fn every_branch_of_a_union_is_compacted() {
        let sql = "SELECT a FROM t WHERE a < 3 UNION ALL SELECT a + 1 FROM t";
        let plan = physical_plan(sql).await;
        let (compacted, not) = stage_ends(&plan);
        assert!(compacted.is_empty());
        assert_eq!(not, ["UnionExec", "UnionExec"]);
        let plan = CompactStageOutputs
            .optimize(plan, &ConfigOptions::default())
            .unwrap();
        let (compacted, not) = stage_ends(&plan);
        assert_eq!(compacted, ["UnionExec", "UnionExec"]);
        assert!(not.is_empty());
    }
}
