//! Aggregates that need all the rows of a group at once (every line of a
//! customer). Such an aggregate says how its rows come out of its
//! arguments and its state and what each group's answer is
//! ([`WholeGroupAggregate`]); [`WholeGroupsAccumulator`] and
//! [`WholeGroupAccumulator`] do the rest. The rows of all groups live in
//! one vector of `(group, row)`, so a million groups cost no allocation
//! each, sorted by group when emitted.

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, ListArray, PrimitiveArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, ScalarValue};
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
        self.rows.set_groups(total_num_groups);
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
        self.rows.set_groups(total_num_groups);
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
        let rows = Emitted {
            groups: values.first().map_or(0, |v| v.len()),
            rows: self.aggregate.rows_of(values, opt_filter)?.collect(),
        };
        Ok(self.aggregate.state_lists(&rows))
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
            groups: 1,
            rows: self.rows.iter().map(|row| (0, *row)).collect(),
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

#[derive(Debug)]
pub(super) struct GroupedRows<T> {
    rows: Vec<(usize, T)>,
    groups: usize,
}

impl<T> Default for GroupedRows<T> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            groups: 0,
        }
    }
}

impl<T: Copy> GroupedRows<T> {
    /// Notes the number of groups the aggregation has now.
    pub fn set_groups(&mut self, total_num_groups: usize) {
        self.groups = self.groups.max(total_num_groups);
    }

    pub fn push(&mut self, group: usize, row: T) {
        self.rows.push((group, row));
    }

    /// Takes the rows of the groups `emit_to` emits and renumbers the
    /// groups that stay, as the hash aggregation does.
    pub fn take(&mut self, emit_to: EmitTo) -> Emitted<T> {
        let groups = match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(n) => n.min(self.groups),
        };
        let mut rows = std::mem::take(&mut self.rows);
        if groups < self.groups {
            let kept;
            (rows, kept) = rows.into_iter().partition(|(group, _)| *group < groups);
            self.rows = kept
                .into_iter()
                .map(|(group, row)| (group - groups, row))
                .collect();
        }
        self.groups -= groups;
        Emitted {
            groups,
            rows: by_group(rows, groups),
        }
    }

    /// Bytes held (called once per batch: O(1)).
    pub fn size(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<(usize, T)>()
    }
}

/// `rows` ordered by group, rows of a group in arrival order: a counting
/// sort (groups are numbered `0..groups`), two sequential passes where a
/// comparison sort of millions of rows took several.
fn by_group<T: Copy>(rows: Vec<(usize, T)>, groups: usize) -> Vec<(usize, T)> {
    let Some(&first) = rows.first() else {
        return rows;
    };
    let mut next = vec![0usize; groups + 1];
    for (group, _) in &rows {
        next[group + 1] += 1;
    }
    for group in 1..=groups {
        next[group] += next[group - 1];
    }
    let mut sorted = vec![first; rows.len()];
    for row in rows {
        sorted[next[row.0]] = row;
        next[row.0] += 1;
    }
    sorted
}

/// The rows of `groups` groups, sorted by group.
pub(super) struct Emitted<T> {
    pub groups: usize,
    pub rows: Vec<(usize, T)>,
}

impl<T> Emitted<T> {
    /// The rows of one group after another, an empty slice for a group
    /// without rows.
    pub fn per_group(&self) -> impl Iterator<Item = &[(usize, T)]> {
        let mut rest = &self.rows[..];
        (0..self.groups).map(move |group| {
            // A scan, not a binary search: groups are a few rows each, and
            // a binary search would jump across the whole vector per group.
            let in_group = rest.iter().take_while(|(g, _)| *g == group).count();
            let (rows, after) = rest.split_at(in_group);
            rest = after;
            rows
        })
    }

    /// One list per group of a field of each row (state columns).
    pub fn field_lists<P: ArrowPrimitiveType>(&self, field: impl Fn(&T) -> P::Native) -> ArrayRef {
        let values: PrimitiveArray<P> =
            PrimitiveArray::from_iter_values(self.rows.iter().map(|(_, row)| field(row)));
        self.lists(Arc::new(values))
    }

    /// One list per group of `values` (one value per row, in row order).
    pub fn lists(&self, values: ArrayRef) -> ArrayRef {
        let lengths = self.per_group().map(<[_]>::len);
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
        rows.set_groups(4);
        for (group, row) in [(3, 'x'), (1, 'a'), (3, 'y'), (1, 'b'), (1, 'c'), (3, 'z')] {
            rows.push(group, row);
        }
        let emitted = rows.take(EmitTo::All);
        let groups: Vec<String> = emitted
            .per_group()
            .map(|g| g.iter().map(|(_, r)| *r).collect())
            .collect();
        assert_eq!(groups, ["", "abc", "", "xyz"]);
    }

    #[test]
    fn emitting_the_first_groups_renumbers_the_rest() {
        let mut rows = GroupedRows::default();
        rows.set_groups(3);
        for (group, row) in [(2, 'c'), (0, 'a'), (1, 'b'), (0, 'A')] {
            rows.push(group, row);
        }
        let first = rows.take(EmitTo::First(1));
        assert_eq!(first.groups, 1);
        let first: Vec<Vec<char>> = first
            .per_group()
            .map(|g| g.iter().map(|(_, r)| *r).collect())
            .collect();
        assert_eq!(first, vec![vec!['a', 'A']]);
        rows.set_groups(3);
        rows.push(2, 'd');
        let rest = rows.take(EmitTo::All);
        let rest: Vec<Vec<char>> = rest
            .per_group()
            .map(|g| g.iter().map(|(_, r)| *r).collect())
            .collect();
        assert_eq!(rest, vec![vec!['b'], vec!['c'], vec!['d']]);
    }
}
