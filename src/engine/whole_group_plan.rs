//! Aggregates over whole groups (every line of a customer, see
//! `udf/grouped_rows.rs`) in one stage.
//!
//! DataFusion plans a grouping as a partial aggregation in each input
//! partition, a repartition of the partial states by group key, and a final
//! aggregation that merges them. That pays when partial aggregation shrinks
//! the rows; an aggregate over whole groups keeps every row in its state, so
//! the partial stage only packs the rows into lists that the final stage
//! unpacks again. When the input is not clustered by the group key (order
//! lines in date order), every partition holds a state for almost every
//! customer, and the states are as big as the input. This rule hashes the
//! rows themselves to the partition of their group instead, where one
//! aggregation (DataFusion's `SinglePartitioned` mode) sees all of a group.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};

/// Physical optimizer rule: a partial and a final aggregation of only
/// whole-group aggregates ([`crate::engine::udf::WHOLE_GROUP_AGGREGATES`]) become
/// one aggregation after a repartition of the input rows by group key.
#[derive(Debug, Default)]
pub struct AggregateWholeGroupsOnce;

impl PhysicalOptimizerRule for AggregateWholeGroupsOnce {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match one_stage(&node)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "aggregate_whole_groups_once"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `final <- repartition by hash <- partial <- input` as
/// `single partitioned <- repartition by hash <- input`, when `node` is such
/// a final aggregation of whole-group aggregates only.
fn one_stage(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(last) = node.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    let whole_groups_only = !last.aggr_expr().is_empty()
        && last
            .aggr_expr()
            .iter()
            .all(|a| crate::engine::udf::WHOLE_GROUP_AGGREGATES.contains(&a.fun().name()));
    if *last.mode() != AggregateMode::FinalPartitioned || !whole_groups_only {
        return Ok(None);
    }
    let Some(repartition) = last.input().downcast_ref::<RepartitionExec>() else {
        return Ok(None);
    };
    let Partitioning::Hash(_, partitions) = repartition.partitioning() else {
        return Ok(None);
    };
    let Some(first) = repartition.input().downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    if *first.mode() != AggregateMode::Partial
        || !first.group_expr().is_single()
        || first.limit_options().is_some()
    {
        return Ok(None);
    }
    let rows = RepartitionExec::try_new(
        Arc::clone(first.input()),
        Partitioning::Hash(first.group_expr().input_exprs(), *partitions),
    )?;
    let once = AggregateExec::try_new(
        AggregateMode::SinglePartitioned,
        first.group_expr().clone(),
        first.aggr_expr().to_vec(),
        first.filter_expr().to_vec(),
        Arc::new(rows),
        first.input_schema(),
    )?;
    Ok(Some(Arc::new(once)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::displayable;

    /// Plans `query` in a cskpi session with two partitions over a table of
    /// order lines, and returns the physical plan as text.
    async fn plan(query: &str) -> String {
        let ctx = crate::engine::session::context(
            crate::engine::session::session_config()
                .unwrap()
                .with_target_partitions(2),
            crate::engine::session::runtime(None, None).unwrap(),
        );
        crate::engine::udf::register_all(&ctx, Arc::new(crate::feedback::Taxonomy::built_in()));
        ctx.sql(
            "CREATE TABLE lines (customer_id VARCHAR, period_start DATE, period_end DATE, \
             monthly BIGINT) AS VALUES ('a', DATE '2025-01-01', DATE '2025-02-01', 10), \
             ('b', DATE '2025-01-05', DATE '2025-02-05', 20)",
        )
        .await
        .unwrap();
        let frame = ctx.sql(query).await.unwrap();
        let physical = frame.create_physical_plan().await.unwrap();
        displayable(physical.as_ref()).indent(false).to_string()
    }

    #[tokio::test]
    async fn whole_group_aggregates_run_in_one_stage_and_others_in_two() {
        let whole = plan(
            "SELECT customer_id, customer_mrr_months(period_start, period_end, monthly, \
             DATE '2025-06-30', CAST(5000 AS BIGINT)) AS m FROM lines GROUP BY customer_id",
        )
        .await;
        assert!(whole.contains("mode=SinglePartitioned"), "{whole}");
        assert!(!whole.contains("mode=Partial"), "{whole}");

        let sums =
            plan("SELECT customer_id, SUM(monthly) AS m FROM lines GROUP BY customer_id").await;
        assert!(sums.contains("mode=Partial"), "{sums}");
    }
}
