//! `mrr_snapshot_months(period_start, period_end, as_of)`: the months whose
//! MRR snapshot day falls inside a service period (spec 4.3).
//!
//! A month's snapshot day is its last day, or as_of in as_of's month; a line
//! counts in month M when period_start <= snapshot(M) < period_end. Doing this
//! per line (a handful of months each) lets the MRR SQL unnest lines into
//! customer-months with an equi-join-free plan instead of a range join of
//! every line against every month.

use std::sync::Arc;

use datafusion::arrow::array::builder::NullBufferBuilder;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Date32Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Date32Type, Field};
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::calendar::{first_day32_of_month_index, month_index_of_day32};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MrrSnapshotMonths {
    signature: Signature,
}

impl MrrSnapshotMonths {
    pub fn new() -> Self {
        Self {
            signature: Signature::exact(
                vec![DataType::Date32, DataType::Date32, DataType::Date32],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for MrrSnapshotMonths {
    fn default() -> Self {
        Self::new()
    }
}

/// Appends the months (first days, as Date32) of `[start, end)` whose
/// snapshot day is covered, never later than as_of's month. Integer
/// arithmetic on Date32 days: this runs for every order line.
pub(super) fn push_snapshot_months(start: i32, end: i32, as_of: i32, months: &mut Vec<i32>) {
    let as_of_month = month_index_of_day32(as_of);
    let last = month_index_of_day32(end).min(as_of_month);
    let mut first_day = first_day32_of_month_index(month_index_of_day32(start));
    for month in month_index_of_day32(start)..=last {
        let next_first_day = first_day32_of_month_index(month + 1);
        let snapshot = if month == as_of_month {
            as_of
        } else {
            next_first_day - 1
        };
        if start <= snapshot && snapshot < end {
            months.push(first_day);
        }
        first_day = next_first_day;
    }
}

impl ScalarUDFImpl for MrrSnapshotMonths {
    fn name(&self) -> &str {
        "mrr_snapshot_months"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Date32,
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [start, end, as_of] = arrays.as_slice() else {
            return exec_err!("mrr_snapshot_months takes 3 arguments");
        };
        let (start, end, as_of) = (
            start.as_primitive::<Date32Type>(),
            end.as_primitive::<Date32Type>(),
            as_of.as_primitive::<Date32Type>(),
        );
        let mut months = Vec::with_capacity(start.len() * 2);
        let mut offsets = Vec::with_capacity(start.len() + 1);
        let mut valid = NullBufferBuilder::new(start.len());
        offsets.push(0);
        for i in 0..start.len() {
            if start.is_null(i) || end.is_null(i) || as_of.is_null(i) {
                valid.append_null();
            } else {
                push_snapshot_months(start.value(i), end.value(i), as_of.value(i), &mut months);
                valid.append_non_null();
            }
            offsets.push(i32::try_from(months.len()).map_err(|_| {
                DataFusionError::Execution(
                    "mrr_snapshot_months: too many months in one batch".into(),
                )
            })?);
        }
        let list = ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Date32, true)),
            OffsetBuffer::new(offsets.into()),
            Arc::new(Date32Array::from(months)),
            valid.finish(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(list) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{from_date32, to_date32};
    use chrono::{Datelike, Days, NaiveDate};
    use std::cmp::Ordering;

    fn snapshot_months(start: NaiveDate, end: NaiveDate, as_of: NaiveDate) -> Vec<NaiveDate> {
        let mut months = Vec::new();
        push_snapshot_months(
            to_date32(start),
            to_date32(end),
            to_date32(as_of),
            &mut months,
        );
        months.into_iter().map(from_date32).collect()
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn monthly_plan_starting_mid_month_counts_in_its_first_month_only() {
        // Jan 20 - Feb 20: Jan 31 is covered, Feb 28 is not.
        let as_of = d(2025, 6, 30);
        assert_eq!(
            snapshot_months(d(2025, 1, 20), d(2025, 2, 20), as_of),
            vec![d(2025, 1, 1)]
        );
    }

    #[test]
    fn annual_plan_mid_month_covers_twelve_snapshots() {
        let months = snapshot_months(d(2024, 3, 15), d(2025, 3, 15), d(2025, 12, 31));
        assert_eq!(months.len(), 12);
        assert_eq!(months[0], d(2024, 3, 1));
        assert_eq!(months[11], d(2025, 2, 1));
    }

    #[test]
    fn as_of_month_uses_as_of_as_snapshot_day() {
        // Renewed on the 20th; on the 18th the old line still counts.
        assert_eq!(
            snapshot_months(d(2025, 5, 20), d(2025, 6, 20), d(2025, 6, 18)),
            vec![d(2025, 5, 1), d(2025, 6, 1)]
        );
        // A line starting after as_of within as_of's month is not covered yet.
        assert!(snapshot_months(d(2025, 6, 19), d(2025, 7, 19), d(2025, 6, 18)).is_empty());
    }

    /// Every line of up to 70 days starting in 2024-11 .. 2025-03 against
    /// as_of dates around a month's end: the months are those whose
    /// snapshot day (its last day, as_of in as_of's month), walked day by
    /// day with chrono, lies in [start, end), up to as_of's month.
    #[test]
    fn the_months_are_those_whose_snapshot_day_the_line_covers() {
        for as_of in [
            d(2025, 1, 30),
            d(2025, 1, 31),
            d(2025, 2, 1),
            d(2025, 2, 28),
        ] {
            let as_of_month = (as_of.year(), as_of.month());
            for start in d(2024, 11, 25).iter_days().take(100) {
                for end in start.iter_days().skip(1).take(70) {
                    let expected: Vec<NaiveDate> = start
                        .iter_days()
                        .take_while(|day| *day < end)
                        .filter(|day| match (day.year(), day.month()).cmp(&as_of_month) {
                            Ordering::Less => (*day + Days::new(1)).month() != day.month(),
                            Ordering::Equal => *day == as_of,
                            Ordering::Greater => false,
                        })
                        .map(|day| d(day.year(), day.month(), 1))
                        .collect();
                    assert_eq!(
                        snapshot_months(start, end, as_of),
                        expected,
                        "{start} .. {end}, as_of {as_of}"
                    );
                }
            }
        }
    }

    #[test]
    fn period_ending_on_the_last_day_misses_that_month() {
        // period_end is exclusive: [Jan 1, Jan 31) does not cover Jan 31.
        assert!(snapshot_months(d(2025, 1, 1), d(2025, 1, 31), d(2025, 6, 1)).is_empty());
        assert_eq!(
            snapshot_months(d(2025, 1, 1), d(2025, 2, 1), d(2025, 6, 1)),
            vec![d(2025, 1, 1)]
        );
    }
}
