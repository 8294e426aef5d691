//! Aggregates that need all the rows of a group at once (every line of a
//! customer). Such an aggregate says how its rows come out of its
//! arguments and its state and what each group's answer is
//! ([`WholeGroupAggregate`]); [`WholeGroupsAccumulator`] and
//! [`WholeGroupAccumulator`] do the rest. The rows of all groups live in
//! chunks of a fixed number of rows, each row beside its group's number,
//! so a million groups cost no allocation each; they are sorted by group
//! when emitted.

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, ListArray, PrimitiveArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};

/// The parts of an aggregate over whole groups that differ between
/// aggregates.
pub(super) trait WholeGroupAggregate: Debug + Send + Sync + 'static {
    type Row: Copy + Debug + Send + Sync + 'static;

    /// The rows of a batch of arguments with their row numbers, without
    /// the rows the filter drops or that cannot count (a null argument).
    fn rows_of<'a>(
        &'a self,
        values: &'a [ArrayRef],
        filter: Option<&'a BooleanArray>,
    ) -> Result<impl Iterator<Item = (usize, Self::Row)> + 'a>;

    /// The rows held in state columns, per state row.
    fn rows_of_state(&self, states: &[ArrayRef]) -> Result<Vec<Vec<Self::Row>>>;

    /// State columns holding each group's rows.
    fn state_lists(&self, rows: &Emitted<Self::Row>) -> Vec<ArrayRef>;

    /// The answer of each group (one list per group).
    fn result_lists(&self, rows: &Emitted<Self::Row>) -> ArrayRef;
}

/// The grouped form of a [`WholeGroupAggregate`].
#[derive(Debug)]
pub(super) struct WholeGroupsAccumulator<A: WholeGroupAggregate> {
    aggregate: A,
    rows: GroupedRows<A::Row>,
}

impl<A: WholeGroupAggregate> WholeGroupsAccumulator<A> {
    pub fn new(aggregate: A) -> Self {
        Self {
            aggregate,
            rows: GroupedRows::default(),
        }
    }
}

impl<A: WholeGroupAggregate> GroupsAccumulator for WholeGroupsAccumulator<A> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.rows.set_groups(total_num_groups)?;
        for (row, value) in self.aggregate.rows_of(values, opt_filter)? {
            self.rows.push(group_indices[row], value);
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.aggregate.result_lists(&self.rows.take(emit_to)))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(self.aggregate.state_lists(&self.rows.take(emit_to)))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.rows.set_groups(total_num_groups)?;
        for (row, rows) in self
            .aggregate
            .rows_of_state(values)?
            .into_iter()
            .enumerate()
        {
            for value in rows {
                self.rows.push(group_indices[row], value);
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // Each input row is its own group.
        let groups = values.first().map_or(0, |v| v.len());
        let mut rows = GroupedRows::default();
        rows.set_groups(groups)?;
        for (row, value) in self.aggregate.rows_of(values, opt_filter)? {
            rows.push(row, value);
        }
        Ok(self.aggregate.state_lists(&rows.take(EmitTo::All)))
    }

    fn size(&self) -> usize {
        self.rows.size()
    }
}

/// The single-group form of a [`WholeGroupAggregate`] (no GROUP BY, or a
/// window).
#[derive(Debug)]
pub(super) struct WholeGroupAccumulator<A: WholeGroupAggregate> {
    aggregate: A,
    rows: Vec<A::Row>,
}

impl<A: WholeGroupAggregate> WholeGroupAccumulator<A> {
    pub fn new(aggregate: A) -> Self {
        Self {
            aggregate,
            rows: Vec::new(),
        }
    }

    fn as_one_group(&self) -> Emitted<A::Row> {
        Emitted {
            starts: vec![0, self.rows.len()],
            rows: self.rows.clone(),
        }
    }
}

impl<A: WholeGroupAggregate> Accumulator for WholeGroupAccumulator<A> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = self.aggregate.rows_of(values, None)?.map(|(_, row)| row);
        self.rows.extend(rows);
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let list = self.aggregate.result_lists(&self.as_one_group());
        Ok(ScalarValue::List(Arc::new(list.as_list::<i32>().clone())))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.rows.capacity() * std::mem::size_of::<A::Row>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.aggregate
            .state_lists(&self.as_one_group())
            .iter()
            .map(|list| ScalarValue::try_from_array(list, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for rows in self.aggregate.rows_of_state(states)? {
            self.rows.extend(rows);
        }
        Ok(())
    }
}

/// Rows per chunk of [`GroupedRows`]: about a megabyte of 16-byte rows.
const CHUNK_ROWS: usize = 64 * 1024;

/// The rows of every group of an aggregation, in arrival order.
///
/// They are kept in chunks of [`CHUNK_ROWS`] rows, each allocated whole,
/// with the group numbers apart from the rows (four bytes each, without a
/// row's padding). One vector doubled as it grew: it held up to twice its
/// rows' bytes, all of them counted against the engine's memory pool, and
/// copied them at each doubling; the aggregation of a million customers'
/// lines spilled at `--memory-limit 2G` for want of memory it did not use
/// (benches/README.md, "Measured reasons").
#[derive(Debug)]
pub(super) struct GroupedRows<T> {
    chunks: Vec<Chunk<T>>,
    groups: usize,
}

#[derive(Debug)]
struct Chunk<T> {
    groups: Vec<u32>,
    rows: Vec<T>,
}

impl<T> Chunk<T> {
    fn new() -> Self {
        Self {
            groups: Vec::with_capacity(CHUNK_ROWS),
            rows: Vec::with_capacity(CHUNK_ROWS),
        }
    }

    fn entries(&self) -> impl Iterator<Item = (usize, &T)> {
        self.groups.iter().map(|&g| g as usize).zip(&self.rows)
    }
}

impl<T> Default for GroupedRows<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            groups: 0,
        }
    }
}

impl<T: Copy> GroupedRows<T> {
    /// Notes the number of groups the aggregation has now; fails past the
    /// four billion a group number can hold.
    pub fn set_groups(&mut self, total_num_groups: usize) -> Result<()> {
        if u32::try_from(total_num_groups).is_err() {
            return exec_err!(
                "an aggregate over whole groups holds at most {} groups, not {total_num_groups}",
                u32::MAX
            );
        }
        self.groups = self.groups.max(total_num_groups);
        Ok(())
    }

    /// Adds a row of `group`, which must be below the number of groups
    /// [`Self::set_groups`] was last given.
    pub fn push(&mut self, group: usize, row: T) {
        if self
            .chunks
            .last()
            .is_none_or(|chunk| chunk.rows.len() == CHUNK_ROWS)
        {
            self.chunks.push(Chunk::new());
        }
        let chunk = self.chunks.last_mut().expect("a chunk with room");
        chunk.groups.push(group as u32);
        chunk.rows.push(row);
    }

    /// Takes the rows of the groups `emit_to` emits and renumbers the
    /// groups that stay, as the hash aggregation does.
    pub fn take(&mut self, emit_to: EmitTo) -> Emitted<T> {
        let groups = match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(n) => n.min(self.groups),
        };
        let chunks = std::mem::take(&mut self.chunks);
        self.groups -= groups;
        // A counting sort (groups are numbered `0..groups`): two sequential
        // passes where a comparison sort of millions of rows took several.
        let mut starts = vec![0usize; groups + 1];
        for chunk in &chunks {
            for (group, _) in chunk.entries().filter(|(group, _)| *group < groups) {
                starts[group + 1] += 1;
            }
        }
        for group in 1..=groups {
            starts[group] += starts[group - 1];
        }
        let taken = starts[groups];
        let Some(&first) = chunks.iter().flat_map(|chunk| chunk.rows.first()).next() else {
            return Emitted {
                starts,
                rows: Vec::new(),
            };
        };
        let mut rows = vec![first; taken];
        let mut next = starts.clone();
        // Each chunk is freed once its rows are placed.
        for chunk in chunks {
            for (group, &row) in chunk.entries() {
                if group < groups {
                    rows[next[group]] = row;
                    next[group] += 1;
                } else {
                    self.push(group - groups, row);
                }
            }
        }
        Emitted { starts, rows }
    }

    /// Bytes held (called once per batch: O(1)).
    pub fn size(&self) -> usize {
        let chunk = CHUNK_ROWS * (std::mem::size_of::<u32>() + std::mem::size_of::<T>());
        self.chunks.len() * chunk + self.chunks.capacity() * std::mem::size_of::<Chunk<T>>()
    }
}

/// The rows of some groups, sorted by group (rows of a group in arrival
/// order).
pub(super) struct Emitted<T> {
    /// Group g's rows are `rows[starts[g]..starts[g + 1]]`.
    pub starts: Vec<usize>,
    pub rows: Vec<T>,
}

impl<T> Emitted<T> {
    /// How many groups.
    pub fn groups(&self) -> usize {
        self.starts.len() - 1
    }

    /// The rows of one group after another, an empty slice for a group
    /// without rows.
    pub fn per_group(&self) -> impl Iterator<Item = &[T]> {
        self.starts
            .windows(2)
            .map(|bounds| &self.rows[bounds[0]..bounds[1]])
    }

    /// One list per group of a field of each row (state columns).
    pub fn field_lists<P: ArrowPrimitiveType>(&self, field: impl Fn(&T) -> P::Native) -> ArrayRef {
        let values: PrimitiveArray<P> =
            PrimitiveArray::from_iter_values(self.rows.iter().map(field));
        self.lists(Arc::new(values))
    }

    /// One list per group of `values` (one value per row, in row order).
    pub fn lists(&self, values: ArrayRef) -> ArrayRef {
        let lengths = self.starts.windows(2).map(|bounds| bounds[1] - bounds[0]);
        list_array(OffsetBuffer::from_lengths(lengths), values)
    }
}

/// A list array of nullable items without null lists.
pub(super) fn list_array(offsets: OffsetBuffer<i32>, values: ArrayRef) -> ArrayRef {
    let item = Arc::new(Field::new_list_field(values.data_type().clone(), true));
    Arc::new(ListArray::new(item, offsets, values, None))
}

/// The type of [`list_array`]'s result.
pub(super) fn list_type(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_by_group_in_arrival_order_with_empty_groups_empty() {
        let mut rows = GroupedRows::default();
        rows.set_groups(4).unwrap();
        for (group, row) in [(3, 'x'), (1, 'a'), (3, 'y'), (1, 'b'), (1, 'c'), (3, 'z')] {
            rows.push(group, row);
        }
        let emitted = rows.take(EmitTo::All);
        let groups: Vec<String> = emitted
            .per_group()
            .map(|g| g.iter().copied().collect())
            .collect();
        assert_eq!(groups, ["", "abc", "", "xyz"]);
    }

    #[test]
    fn emitting_the_first_groups_renumbers_the_rest() {
        let mut rows = GroupedRows::default();
        rows.set_groups(3).unwrap();
        for (group, row) in [(2, 'c'), (0, 'a'), (1, 'b'), (0, 'A')] {
            rows.push(group, row);
        }
        let first = rows.take(EmitTo::First(1));
        assert_eq!(first.groups(), 1);
        let first: Vec<Vec<char>> = first.per_group().map(<[char]>::to_vec).collect();
        assert_eq!(first, vec![vec!['a', 'A']]);
        rows.set_groups(3).unwrap();
        rows.push(2, 'd');
        let rest = rows.take(EmitTo::All);
        let rest: Vec<Vec<char>> = rest.per_group().map(<[char]>::to_vec).collect();
        assert_eq!(rest, vec![vec!['b'], vec!['c'], vec!['d']]);
    }

    /// Rows of 7 groups over several chunks, in an order no group follows
    /// (row i is group i * 3 mod 7): emitted by group in arrival order,
    /// the first groups taken and the rest renumbered; the bytes counted
    /// grow a chunk at a time.
    #[test]
    fn rows_over_many_chunks_keep_their_order_and_are_counted_by_chunk() {
        let total = 3 * CHUNK_ROWS + 5;
        let group_of = |i: usize| i * 3 % 7;
        let mut rows = GroupedRows::default();
        rows.set_groups(7).unwrap();
        let chunk_bytes = CHUNK_ROWS * (4 + std::mem::size_of::<u64>());
        for i in 0..total {
            rows.push(group_of(i), i as u64);
            let chunks = i / CHUNK_ROWS + 1;
            assert!(rows.size() >= chunks * chunk_bytes, "row {i}");
            assert!(rows.size() < chunks * chunk_bytes + 4096, "row {i}");
        }
        let expected = |group: usize| -> Vec<u64> {
            (0..total as u64)
                .filter(|&i| group_of(i as usize) == group)
                .collect()
        };
        let first = rows.take(EmitTo::First(2));
        assert_eq!(first.groups(), 2);
        let first: Vec<Vec<u64>> = first.per_group().map(<[u64]>::to_vec).collect();
        assert_eq!(first, vec![expected(0), expected(1)]);
        let rest = rows.take(EmitTo::All);
        assert_eq!(rest.groups(), 5);
        for (group, got) in rest.per_group().enumerate() {
            assert_eq!(got, expected(group + 2), "group {}", group + 2);
        }
        assert_eq!(rows.size(), 0);
    }

    #[test]
    fn more_groups_than_a_group_number_holds_are_refused() {
        let mut rows = GroupedRows::<u8>::default();
        assert!(rows.set_groups(u32::MAX as usize).is_ok());
        let error = rows.set_groups(u32::MAX as usize + 1).unwrap_err();
        assert!(
            error.to_string().contains("at most 4294967295 groups"),
            "{error}"
        );
    }
}
