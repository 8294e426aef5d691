//! State for aggregates that need all the rows of a group at once (every
//! line of a customer): one vector of `(group, row)` for all groups, so a
//! million groups cost no allocation each, sorted by group when emitted.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::logical_expr::EmitTo;

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

impl<T> GroupedRows<T> {
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
        rows.sort_unstable_by_key(|(group, _)| *group);
        Emitted { groups, rows }
    }

    /// Bytes held (called once per batch: O(1)).
    pub fn size(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<(usize, T)>()
    }
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
            let in_group = rest.partition_point(|(g, _)| *g == group);
            let (rows, after) = rest.split_at(in_group);
            rest = after;
            rows
        })
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
