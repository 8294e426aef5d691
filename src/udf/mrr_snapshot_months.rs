//! `mrr_snapshot_months(period_start, period_end, as_of)`: the months whose
//! MRR snapshot day falls inside a service period (spec 4.3).
//!
//! A month's snapshot day is its last day, or as_of in as_of's month; a line
//! counts in month M when period_start <= snapshot(M) < period_end. Doing this
//! per line (a handful of months each) lets the MRR SQL unnest lines into
//! customer-months with an equi-join-free plan instead of a range join of
//! every line against every month.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Date32Builder, ListBuilder};
use datafusion::arrow::datatypes::{DataType, Date32Type, Field};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::calendar::{from_date32, from_month_index, month_end, month_index, to_date32};

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

/// The months (first days) of `[start, end)` whose snapshot day is covered,
/// never later than as_of's month.
pub fn snapshot_months(start: NaiveDate, end: NaiveDate, as_of: NaiveDate) -> Vec<NaiveDate> {
    let last = month_index(end).min(month_index(as_of));
    (month_index(start)..=last)
        .map(from_month_index)
        .filter(|&m| {
            let snapshot = if month_index(m) == month_index(as_of) {
                as_of
            } else {
                month_end(m)
            };
            start <= snapshot && snapshot < end
        })
        .collect()
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
        let mut out = ListBuilder::new(Date32Builder::new());
        for i in 0..start.len() {
            if start.is_null(i) || end.is_null(i) || as_of.is_null(i) {
                out.append_null();
                continue;
            }
            for m in snapshot_months(
                from_date32(start.value(i)),
                from_date32(end.value(i)),
                from_date32(as_of.value(i)),
            ) {
                out.values().append_value(to_date32(m));
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
