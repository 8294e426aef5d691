//! `sums_by_key(key, value1[, value2 ...])`: per key, the sum of each
//! value, as one list of `{key, sum1, sum2, ...}` entries (in key order,
//! one per key that had a row) for `unnest`. It gives what
//! `SELECT key, SUM(value1), ... GROUP BY key` gives, for keys that are
//! small and dense as customer_key is (0 .. customers): the sums sit in
//! arrays indexed by the key, where DataFusion's hash grouping probes a
//! table for every row. Over the ~60 M date-ordered usage rows of a health
//! score's windows at 1M customers (each a random customer), that probing
//! was about 1.3 s of the query's 1.5 s (benches/README.md, "Measured
//! reasons"). The arrays are out of cache too: each row's slot is
//! prefetched some rows before it is updated.
//!
//! As SUM: null values are skipped and a sum without any is null; a row
//! with a null key counts for no key. Sums wrap on overflow, as DataFusion's
//! SUM of BIGINT does. A key must be 0 or more; the arrays are as long as
//! the greatest key, so a sparse key (an id hash) is the wrong key.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, Int64Array, ListArray, StructArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int32Type, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use super::prefetch::{AHEAD, prefetch};

pub const NAME: &str = "sums_by_key";

/// At most this many values: a key's flags are one word, bit 0 for "a row
/// had this key" and bit 1 + i for "value i had a non-null value".
const MAX_VALUES: usize = 31;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SumsByKey {
    signature: Signature,
}

impl SumsByKey {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for SumsByKey {
    fn default() -> Self {
        Self::new()
    }
}

/// The type of an entry: the key, then `sum1` .. `sum<values>`.
fn entry_fields(values: usize) -> Fields {
    let key = Field::new("key", DataType::Int32, false);
    let sums = (1..=values).map(|i| Field::new(format!("sum{i}"), DataType::Int64, true));
    std::iter::once(key).chain(sums).collect()
}

fn list_type(values: usize) -> DataType {
    DataType::new_list(DataType::Struct(entry_fields(values)), true)
}

impl AggregateUDFImpl for SumsByKey {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// An integer key (as INT) and 1 to 31 integer values (as BIGINT).
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let Some((key, values)) = args.split_first() else {
            return plan_err!("{NAME}(key, value1[, value2 ...]) takes a key and values");
        };
        if values.is_empty() || values.len() > MAX_VALUES {
            return plan_err!(
                "{NAME} takes 1 to {MAX_VALUES} values to sum, got {}",
                values.len()
            );
        }
        if !(key.is_integer() || key.is_null()) {
            return plan_err!("{NAME}: the key must be an integer, not {key}");
        }
        if let Some(other) = values.iter().find(|v| !(v.is_integer() || v.is_null())) {
            return plan_err!("{NAME}: the values must be integers, not {other}");
        }
        Ok(std::iter::once(DataType::Int32)
            .chain(values.iter().map(|_| DataType::Int64))
            .collect())
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(list_type(args.len() - 1))
    }

    /// The state is the result: the partial sums of the keys seen.
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let values = args.input_fields.len() - 1;
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "entries"),
            list_type(values),
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(DenseSums::new(args.exprs.len() - 1)))
    }
}

/// The sums of one group, indexed by key: one slot per key, its flags then
/// its sums, so that a row's update touches one cache line (two at worst),
/// prefetched [`AHEAD`] rows before.
#[derive(Debug)]
struct DenseSums {
    values: usize,
    /// `1 + values` words per key: the flags (bit 0, a row had the key; bit
    /// 1 + i, value i was set), then the sums.
    slots: Vec<i64>,
}

impl DenseSums {
    fn new(values: usize) -> Self {
        Self {
            values,
            slots: Vec::new(),
        }
    }

    fn stride(&self) -> usize {
        1 + self.values
    }

    fn keys(&self) -> usize {
        self.slots.len() / self.stride()
    }

    /// Makes room for key `key`, doubling so that keys arriving in random
    /// order grow the slots a few times, not once per new greatest key.
    fn reserve_key(&mut self, key: usize) {
        if key >= self.keys() {
            let keys = (key + 1).max(self.keys() * 2);
            self.slots.resize(keys * self.stride(), 0);
        }
    }

    /// Adds rows of (key, value1, ...): the arguments, or the entries of a
    /// state, whose columns are the same.
    fn add(&mut self, keys: &Int32Array, values: &[&Int64Array]) -> Result<()> {
        if let Some(negative) = keys.iter().flatten().find(|k| *k < 0) {
            return exec_err!("{NAME}: a key must be 0 or more, got {negative}");
        }
        if let Some(greatest) = keys.iter().flatten().max() {
            self.reserve_key(greatest as usize);
        }
        let stride = self.stride();
        let rows = keys.len();
        let key_values = keys.values();
        let no_nulls = keys.null_count() == 0 && values.iter().all(|v| v.null_count() == 0);
        if no_nulls {
            // every row counts for every value: all flags set at once
            let all = (1i64 << stride) - 1;
            for row in 0..rows {
                if let Some(&ahead) = key_values.get(row + AHEAD) {
                    prefetch(&self.slots[ahead as usize * stride]);
                }
                let start = key_values[row] as usize * stride;
                let slot = &mut self.slots[start..start + stride];
                slot[0] |= all;
                for (sum, value) in slot[1..].iter_mut().zip(values) {
                    *sum = sum.wrapping_add(value.values()[row]);
                }
            }
            return Ok(());
        }
        for row in 0..rows {
            if row + AHEAD < rows && keys.is_valid(row + AHEAD) {
                prefetch(&self.slots[key_values[row + AHEAD] as usize * stride]);
            }
            if keys.is_null(row) {
                continue;
            }
            let start = key_values[row] as usize * stride;
            let slot = &mut self.slots[start..start + stride];
            slot[0] |= 1;
            for (i, value) in values.iter().enumerate() {
                if value.is_valid(row) {
                    slot[0] |= 1 << (i + 1);
                    slot[1 + i] = slot[1 + i].wrapping_add(value.value(row));
                }
            }
        }
        Ok(())
    }

    /// The keys with a row, in key order, as one list of entries.
    fn entries(&self) -> Result<ScalarValue> {
        let stride = self.stride();
        let slots: Vec<(usize, &[i64])> = self
            .slots
            .chunks_exact(stride)
            .enumerate()
            .filter(|(_, slot)| slot[0] & 1 != 0)
            .collect();
        let key_column = Int32Array::from_iter_values(slots.iter().map(|(k, _)| *k as i32));
        let mut columns: Vec<ArrayRef> = vec![Arc::new(key_column)];
        for i in 0..self.values {
            let sums = slots.iter().map(|(_, slot)| slot[1 + i]).collect();
            let nulls =
                NullBuffer::from_iter(slots.iter().map(|(_, slot)| slot[0] & (1 << (i + 1)) != 0));
            let nulls = Some(nulls).filter(|n| n.null_count() > 0);
            columns.push(Arc::new(Int64Array::new(sums, nulls)));
        }
        let entries = StructArray::try_new(entry_fields(self.values), columns, None)?;
        let item = Arc::new(Field::new_list_field(entries.data_type().clone(), true));
        let list = ListArray::try_new(
            item,
            OffsetBuffer::from_lengths([entries.len()]),
            Arc::new(entries),
            None,
        )?;
        Ok(ScalarValue::List(Arc::new(list)))
    }
}

/// The key and value columns of `columns`, typed.
fn typed(columns: &[ArrayRef]) -> Result<(Int32Array, Vec<Int64Array>)> {
    let Some((key, values)) = columns.split_first() else {
        return exec_err!("{NAME} takes a key and values");
    };
    let key = cast(key, &DataType::Int32)?
        .as_primitive::<Int32Type>()
        .clone();
    let values = values
        .iter()
        .map(|v| {
            Ok(cast(v, &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .clone())
        })
        .collect::<Result<_>>()?;
    Ok((key, values))
}

impl Accumulator for DenseSums {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (keys, values) = typed(values)?;
        let values: Vec<&Int64Array> = values.iter().collect();
        self.add(&keys, &values)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [entries] = states else {
            return exec_err!("{NAME}: a state is one list, got {}", states.len());
        };
        let lists = entries.as_list::<i32>();
        // a null list (no state) has no entries: take only the valid ones'
        let entries = lists.values().as_struct();
        for row in (0..lists.len()).filter(|&r| lists.is_valid(r)) {
            let range =
                lists.value_offsets()[row] as usize..lists.value_offsets()[row + 1] as usize;
            let part = entries.slice(range.start, range.len());
            let (keys, values) = typed(part.columns())?;
            let values: Vec<&Int64Array> = values.iter().collect();
            self.add(&keys, &values)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.entries()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.entries()
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.slots.capacity() * size_of::<i64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(accumulator: &mut DenseSums) -> Vec<(i32, Vec<Option<i64>>)> {
        let ScalarValue::List(list) = accumulator.evaluate().unwrap() else {
            panic!("a list")
        };
        let entries = list.value(0);
        let entries = entries.as_struct();
        let keys = entries.column(0).as_primitive::<Int32Type>();
        (0..entries.len())
            .map(|row| {
                let values = (1..entries.num_columns())
                    .map(|c| {
                        let column = entries.column(c).as_primitive::<Int64Type>();
                        column.is_valid(row).then(|| column.value(row))
                    })
                    .collect();
                (keys.value(row), values)
            })
            .collect()
    }

    fn batch(keys: Vec<Option<i32>>, values: Vec<Vec<Option<i64>>>) -> Vec<ArrayRef> {
        std::iter::once(Arc::new(Int32Array::from(keys)) as ArrayRef)
            .chain(
                values
                    .into_iter()
                    .map(|v| Arc::new(Int64Array::from(v)) as ArrayRef),
            )
            .collect()
    }

    #[test]
    fn sums_per_key_in_key_order_skipping_nulls_as_sum_does() {
        let mut accumulator = DenseSums::new(2);
        accumulator
            .update_batch(&batch(
                vec![Some(5), Some(0), Some(5), None, Some(2)],
                vec![
                    vec![Some(1), Some(10), Some(2), Some(100), None],
                    vec![Some(7), None, Some(-3), Some(100), None],
                ],
            ))
            .unwrap();
        // key 5: 1 + 2 and 7 - 3; key 0: 10 and no value; key 2: a row
        // without values; the null key counts nowhere; keys 1, 3, 4 had no row
        assert_eq!(
            sums(&mut accumulator),
            [
                (0, vec![Some(10), None]),
                (2, vec![None, None]),
                (5, vec![Some(3), Some(4)]),
            ]
        );
    }

    #[test]
    fn partial_sums_merge_into_the_sums_of_all_rows() {
        let rows = |keys: Vec<i32>, values: Vec<i64>| {
            batch(
                keys.into_iter().map(Some).collect(),
                vec![values.into_iter().map(Some).collect()],
            )
        };
        let mut first = DenseSums::new(1);
        first
            .update_batch(&rows(vec![3, 1, 3], vec![1, 2, 4]))
            .unwrap();
        let mut second = DenseSums::new(1);
        second.update_batch(&rows(vec![1, 7], vec![8, 16])).unwrap();
        let mut empty = DenseSums::new(1);

        let mut merged = DenseSums::new(1);
        for partial in [&mut first, &mut second, &mut empty] {
            let state = partial.state().unwrap()[0].to_array().unwrap();
            merged.merge_batch(&[state]).unwrap();
        }
        assert_eq!(
            sums(&mut merged),
            [(1, vec![Some(10)]), (3, vec![Some(5)]), (7, vec![Some(16)])]
        );
        assert_eq!(sums(&mut empty), []);
    }

    #[test]
    fn a_negative_key_is_an_error() {
        let mut accumulator = DenseSums::new(1);
        let error = accumulator
            .update_batch(&batch(vec![Some(-1)], vec![vec![Some(1)]]))
            .unwrap_err();
        assert!(error.to_string().contains("0 or more, got -1"), "{error}");
    }
}
