//! Compacts sliced batches before they are sorted, so that sorts account
//! for the memory their input really holds.
//!
//! DataFusion 55's aggregates emit their result as one large batch cut into
//! zero-copy slices, and a sort reserves, for every batch it buffers, the
//! whole buffers the batch points into (twice). A sort over the groups of an
//! aggregate therefore reserves the aggregate's entire output once per
//! slice: with a million groups that is gigabytes for megabytes of rows.
//! The sort then spills for nothing, or, under a fair memory pool, fails
//! with "Not enough memory to continue external sort" on its first batch.
//! Copying such a batch into buffers of its own size costs a memcpy and
//! makes the accounting (and the spilling) match the data. Likewise a
//! window over whole partitions emits everything it buffered as one batch;
//! a sort must reserve such a batch at once, so it is cut into batches of
//! the session's batch size (each copied, for the reason above).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

/// A batch is copied when the buffers it keeps alive exceed twice its rows'
/// own size by more than this.
const SLACK_BYTES: usize = 1 << 20;

/// Physical optimizer rule: puts a [`CompactBatchesExec`] under every sort.
#[derive(Debug, Default)]
pub struct CompactBeforeSort;

impl PhysicalOptimizerRule for CompactBeforeSort {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(sort) = node.downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(node));
            };
            let input = sort.input();
            if input.is::<CompactBatchesExec>() {
                return Ok(Transformed::no(node));
            }
            let compacted: Arc<dyn ExecutionPlan> =
                Arc::new(CompactBatchesExec::new(Arc::clone(input)));
            #[expect(deprecated)]
            let rebuilt = Arc::clone(&node).with_new_children(vec![compacted])?;
            Ok(Transformed::yes(rebuilt))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "compact_before_sort"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes batches through, copying those that are slices of much larger
/// buffers. Same schema, partitioning and order as its input.
#[derive(Debug)]
pub struct CompactBatchesExec {
    input: Arc<dyn ExecutionPlan>,
}

impl CompactBatchesExec {
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self { input }
    }
}

impl DisplayAs for CompactBatchesExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CompactBatchesExec")
    }
}

impl ExecutionPlan for CompactBatchesExec {
    fn name(&self) -> &str {
        "CompactBatchesExec"
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
        Ok(Arc::new(CompactBatchesExec::new(children.remove(0))))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let batch_size = context.session_config().batch_size().max(1);
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let compacted = input.flat_map(move |batch| {
            let pieces = match batch {
                Ok(batch) => split(batch, batch_size),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(pieces)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, compacted)))
    }
}

/// A batch longer than `batch_size` as compacted pieces of that size.
fn split(batch: RecordBatch, batch_size: usize) -> Vec<Result<RecordBatch>> {
    if batch.num_rows() <= batch_size {
        return vec![compact(batch)];
    }
    (0..batch.num_rows())
        .step_by(batch_size)
        .map(|start| compact(batch.slice(start, batch_size.min(batch.num_rows() - start))))
        .collect()
}

/// The batch itself, or a copy in buffers of its own size when it is a
/// small window into large ones.
pub fn compact(batch: RecordBatch) -> Result<RecordBatch> {
    let held: usize = batch
        .columns()
        .iter()
        .map(|c| c.get_array_memory_size())
        .sum();
    let own: usize = batch.columns().iter().map(own_size).sum();
    if held <= own.saturating_mul(2).saturating_add(SLACK_BYTES) {
        return Ok(batch);
    }
    let rows = UInt32Array::from_iter_values(0..batch.num_rows() as u32);
    let columns = batch
        .columns()
        .iter()
        .map(|column| copy_column(column, &rows))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// The bytes a column's rows need in buffers of their own. Arrow counts
/// only the 16-byte views of a view array; the strings longer than 12 bytes
/// live in shared data buffers and are added here.
fn own_size(column: &ArrayRef) -> usize {
    let outlined = |views: &[u128]| -> usize {
        views
            .iter()
            .map(|&view| view as u32 as usize)
            .filter(|&len| len > 12)
            .sum()
    };
    let data_bytes = match column.data_type() {
        DataType::Utf8View => outlined(column.as_string_view().views()),
        DataType::BinaryView => outlined(column.as_binary_view().views()),
        _ => 0,
    };
    column
        .to_data()
        .get_slice_memory_size()
        .map_or(usize::MAX, |size| size.saturating_add(data_bytes))
}

fn copy_column(column: &ArrayRef, rows: &UInt32Array) -> Result<ArrayRef> {
    // `take` copies values, but view arrays keep pointing into the shared
    // data buffers; `gc` copies the strings they use.
    Ok(match column.data_type() {
        DataType::Utf8View => Arc::new(column.as_string_view().gc()),
        DataType::BinaryView => Arc::new(column.as_binary_view().gc()),
        _ => take(column.as_ref(), rows, None)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringViewArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    fn batch(rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8View, false),
        ]));
        let n = Int64Array::from_iter_values(0..rows as i64);
        let s = StringViewArray::from_iter_values((0..rows).map(|i| format!("customer-{i:012}")));
        RecordBatch::try_new(schema, vec![Arc::new(n), Arc::new(s)]).unwrap()
    }

    fn held(batch: &RecordBatch) -> usize {
        batch
            .columns()
            .iter()
            .map(|c| c.get_array_memory_size())
            .sum()
    }

    #[test]
    fn a_small_slice_of_a_large_batch_is_copied_with_its_values() {
        let large = batch(1_000_000);
        let slice = large.slice(500_000, 8192);
        let compacted = compact(slice.clone()).unwrap();
        assert_eq!(compacted, slice);
        assert!(held(&slice) > 20_000_000, "the slice keeps the whole batch");
        assert!(held(&compacted) < 1_000_000, "held {}", held(&compacted));
    }

    #[test]
    fn a_long_batch_is_cut_into_compact_pieces() {
        let long = batch(100_000);
        let pieces: Vec<RecordBatch> = split(long.clone(), 8192)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        // 12 x 8192 + 1696 = 100,000
        assert_eq!(pieces.len(), 13);
        assert!(pieces[..12].iter().all(|p| p.num_rows() == 8192));
        assert_eq!(pieces[12], long.slice(98_304, 1696));
        assert!(held(&pieces[0]) < held(&long) / 5);
    }

    #[test]
    fn long_strings_a_batch_really_uses_are_not_copied_but_a_sorted_few_are() {
        let long = |i: usize| format!("{i:06}-{}", "x".repeat(200));
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Utf8View,
            false,
        )]));
        let own = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(StringViewArray::from_iter_values(
                (0..8192).map(long),
            ))],
        )
        .unwrap();
        let kept = compact(own.clone()).unwrap();
        assert!(Arc::ptr_eq(own.column(0), kept.column(0)));

        // What a sort emits: views picked from many batches' buffers.
        let big = StringViewArray::from_iter_values((0..100_000).map(long));
        let picked = UInt32Array::from_iter_values((0..8192).map(|i| i * 12));
        let sorted = take(&big, &picked, None).unwrap();
        let sorted = RecordBatch::try_new(schema, vec![sorted]).unwrap();
        assert!(held(&sorted) > 20_000_000);
        let compacted = compact(sorted.clone()).unwrap();
        assert_eq!(compacted, sorted);
        assert!(held(&compacted) < 3_000_000, "held {}", held(&compacted));
    }

    #[test]
    fn a_batch_of_its_own_is_passed_through() {
        let own = batch(8192);
        let compacted = compact(own.clone()).unwrap();
        assert!(Arc::ptr_eq(own.column(0), compacted.column(0)));
    }
}
