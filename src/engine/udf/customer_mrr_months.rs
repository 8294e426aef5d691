//! `customer_mrr_months(period_start, period_end, monthly_micros, as_of,
//! paid_micros)`: a customer's MRR month by month (spec 4.3), from the
//! customer's subscription and add-on lines, as a list of
//! `{month, mrr_micros, prev_micros, has_lines, first_paid_month}`:
//!
//! - one entry for every month with a line covering its snapshot day
//!   (`has_lines`, see `mrr_snapshot_months`) and for the month after each
//!   such month before as_of's month (where the MRR may drop to nothing);
//! - `mrr_micros` = the sum of the monthly amounts of the lines covering the
//!   month, `prev_micros` = the same for the month before;
//! - `first_paid_month` = the customer's first month with `mrr_micros >=
//!   paid_micros`, the same in every entry (null when there is none).
//!
//! `as_of` and `paid_micros` are constants. Grouped by customer this
//! replaces a grouping of every line month by customer and month (a group
//! per customer-month, spilling) and a join with each customer's first
//! paid month.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Date32Builder, Int64Builder, ListArray,
    StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, FieldRef, Fields, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, GroupsAccumulator, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;

use super::grouped_rows::{
    Emitted, WholeGroupAccumulator, WholeGroupAggregate, WholeGroupsAccumulator, list_array,
    list_type,
};
use super::mrr_snapshot_months::push_snapshot_months;
use crate::calendar::{first_day32_of_month_index, month_index_of_day32};

/// One order line, in Date32 days and micro-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    start: i32,
    end: i32,
    monthly_micros: i64,
}

/// The constant arguments.
#[derive(Debug, Clone, Copy)]
struct Constants {
    as_of: i32,
    paid_micros: i64,
}

impl Constants {
    fn of(args: &AccumulatorArgs) -> Result<Self> {
        let literal = |index: usize, name: &str| -> Result<ScalarValue> {
            match args
                .exprs
                .get(index)
                .and_then(|e| e.downcast_ref::<Literal>())
            {
                Some(literal) => Ok(literal.value().clone()),
                None => plan_err!("customer_mrr_months: {name} must be a constant"),
            }
        };
        match (literal(3, "as_of")?, literal(4, "paid_micros")?) {
            (ScalarValue::Date32(Some(as_of)), ScalarValue::Int64(Some(paid_micros))) => {
                Ok(Self { as_of, paid_micros })
            }
            (as_of, paid) => plan_err!(
                "customer_mrr_months: as_of must be a date and paid_micros a BIGINT, got {as_of} and {paid}"
            ),
        }
    }
}

const STATE_FIELDS: [(&str, DataType); 3] = [
    ("period_starts", DataType::Date32),
    ("period_ends", DataType::Date32),
    ("monthly_micros", DataType::Int64),
];

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CustomerMrrMonths {
    signature: Signature,
}

impl CustomerMrrMonths {
    pub fn new() -> Self {
        Self {
            signature: Signature::exact(
                vec![
                    DataType::Date32,
                    DataType::Date32,
                    DataType::Int64,
                    DataType::Date32,
                    DataType::Int64,
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for CustomerMrrMonths {
    fn default() -> Self {
        Self::new()
    }
}

fn month_fields() -> Fields {
    Fields::from(vec![
        Field::new("month", DataType::Date32, false),
        Field::new("mrr_micros", DataType::Int64, false),
        Field::new("prev_micros", DataType::Int64, false),
        Field::new("has_lines", DataType::Boolean, false),
        Field::new("first_paid_month", DataType::Date32, true),
    ])
}

impl AggregateUDFImpl for CustomerMrrMonths {
    fn name(&self) -> &str {
        "customer_mrr_months"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(list_type(DataType::Struct(month_fields())))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(WholeGroupAccumulator::new(Constants::of(&args)?)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(STATE_FIELDS
            .iter()
            .map(|(name, item)| {
                Arc::new(Field::new(
                    format_state_name(args.name, name),
                    list_type(item.clone()),
                    false,
                ))
            })
            .collect())
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(WholeGroupsAccumulator::new(Constants::of(&args)?)))
    }
}

/// One month of a customer: first day, mrr, previous month's mrr, whether
/// a line covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Month {
    month: i32,
    mrr_micros: i64,
    prev_micros: i64,
    has_lines: bool,
}

/// Appends one customer's months to `out`, in month order; returns the
/// first paid month. `line_months` is scratch space.
fn customer_months(
    lines: impl Iterator<Item = Line>,
    constants: Constants,
    line_months: &mut Vec<i32>,
    out: &mut Vec<Month>,
) -> Option<i32> {
    let first = out.len();
    let as_of_month = first_day32_of_month_index(month_index_of_day32(constants.as_of));
    for line in lines {
        line_months.clear();
        push_snapshot_months(line.start, line.end, constants.as_of, line_months);
        for &month in line_months.iter() {
            out.push(Month {
                month,
                mrr_micros: line.monthly_micros,
                prev_micros: 0,
                has_lines: true,
            });
            if month < as_of_month {
                out.push(Month {
                    month: first_day32_of_month_index(month_index_of_day32(month) + 1),
                    mrr_micros: 0,
                    prev_micros: line.monthly_micros,
                    has_lines: false,
                });
            }
        }
    }
    let months = &mut out[first..];
    months.sort_unstable_by_key(|m| m.month);
    // Sum each month's contributions into its first entry.
    let mut kept = 0;
    for i in 0..months.len() {
        if kept > 0 && months[kept - 1].month == months[i].month {
            let m = months[i];
            let sum = &mut months[kept - 1];
            sum.mrr_micros += m.mrr_micros;
            sum.prev_micros += m.prev_micros;
            sum.has_lines |= m.has_lines;
        } else {
            months[kept] = months[i];
            kept += 1;
        }
    }
    out.truncate(first + kept);
    out[first..]
        .iter()
        .find(|m| m.mrr_micros >= constants.paid_micros)
        .map(|m| m.month)
}

/// The aggregate's rows are a customer's lines; the constants are its
/// parameters.
impl WholeGroupAggregate for Constants {
    type Row = Line;

    /// The lines of a batch with their row numbers; rows with a null value or
    /// filtered out are skipped (a null amount adds nothing).
    fn rows_of<'a>(
        &'a self,
        values: &'a [ArrayRef],
        filter: Option<&'a BooleanArray>,
    ) -> Result<impl Iterator<Item = (usize, Line)> + 'a> {
        let [start, end, micros, ..] = values else {
            return exec_err!("customer_mrr_months takes five arguments");
        };
        let (start, end) = (
            start.as_primitive::<Date32Type>(),
            end.as_primitive::<Date32Type>(),
        );
        let micros = micros.as_primitive::<Int64Type>();
        Ok((0..start.len()).filter_map(move |row| {
            let skipped = filter.is_some_and(|f| !f.is_valid(row) || !f.value(row))
                || start.is_null(row)
                || end.is_null(row)
                || micros.is_null(row);
            (!skipped).then(|| {
                (
                    row,
                    Line {
                        start: start.value(row),
                        end: end.value(row),
                        monthly_micros: micros.value(row),
                    },
                )
            })
        }))
    }

    /// The lines stored in state lists, per state row.
    fn rows_of_state(&self, states: &[ArrayRef]) -> Result<Vec<Vec<Line>>> {
        let [starts, ends, micros] = states else {
            return exec_err!("customer_mrr_months state has three lists");
        };
        let (starts, ends, micros): (&ListArray, &ListArray, &ListArray) =
            (starts.as_list(), ends.as_list(), micros.as_list());
        Ok((0..starts.len())
            .map(|row| {
                if starts.is_null(row) {
                    return Vec::new();
                }
                let (s, e, m) = (starts.value(row), ends.value(row), micros.value(row));
                let (s, e, m) = (
                    s.as_primitive::<Date32Type>(),
                    e.as_primitive::<Date32Type>(),
                    m.as_primitive::<Int64Type>(),
                );
                (0..s.len())
                    .map(|i| Line {
                        start: s.value(i),
                        end: e.value(i),
                        monthly_micros: m.value(i),
                    })
                    .collect()
            })
            .collect())
    }

    fn state_lists(&self, lines: &Emitted<Line>) -> Vec<ArrayRef> {
        vec![
            lines.field_lists::<Date32Type>(|l| l.start),
            lines.field_lists::<Date32Type>(|l| l.end),
            lines.field_lists::<Int64Type>(|l| l.monthly_micros),
        ]
    }

    /// Each customer's months.
    fn result_lists(&self, lines: &Emitted<Line>) -> ArrayRef {
        let mut months = Vec::with_capacity(lines.rows.len() * 2);
        let mut first_paid = Vec::with_capacity(lines.groups());
        let mut lengths = Vec::with_capacity(lines.groups());
        let mut scratch = Vec::new();
        for group in lines.per_group() {
            let before = months.len();
            let paid = customer_months(group.iter().copied(), *self, &mut scratch, &mut months);
            lengths.push(months.len() - before);
            first_paid.push(paid);
        }
        let mut month = Date32Builder::with_capacity(months.len());
        let mut mrr = Int64Builder::with_capacity(months.len());
        let mut prev = Int64Builder::with_capacity(months.len());
        let mut has_lines = BooleanBuilder::with_capacity(months.len());
        let mut first_paid_month = Date32Builder::with_capacity(months.len());
        let mut entries = months.iter();
        for (length, paid) in lengths.iter().zip(&first_paid) {
            for m in entries.by_ref().take(*length) {
                month.append_value(m.month);
                mrr.append_value(m.mrr_micros);
                prev.append_value(m.prev_micros);
                has_lines.append_value(m.has_lines);
                first_paid_month.append_option(*paid);
            }
        }
        let entries = StructArray::new(
            month_fields(),
            vec![
                Arc::new(month.finish()),
                Arc::new(mrr.finish()),
                Arc::new(prev.finish()),
                Arc::new(has_lines.finish()),
                Arc::new(first_paid_month.finish()),
            ],
            None,
        );
        list_array(OffsetBuffer::from_lengths(lengths), Arc::new(entries))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, Days, NaiveDate};

    use datafusion::arrow::array::{Date32Array, Int64Array};
    use datafusion::logical_expr::EmitTo;

    use super::*;
    use crate::calendar::{from_date32, to_date32};

    fn day(date: &str) -> i32 {
        to_date32(NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap())
    }

    fn line(start: &str, end: &str, monthly_micros: i64) -> Line {
        Line {
            start: day(start),
            end: day(end),
            monthly_micros,
        }
    }

    /// (month, mrr, prev, has_lines) of an entry.
    type Entry = (String, i64, i64, bool);

    /// The entries of a customer's months and the first paid month.
    fn months(lines: &[Line], as_of: &str) -> (Vec<Entry>, Option<String>) {
        let constants = Constants {
            as_of: day(as_of),
            paid_micros: 5000,
        };
        let mut out = Vec::new();
        let paid = customer_months(lines.iter().copied(), constants, &mut Vec::new(), &mut out);
        (
            out.iter()
                .map(|m| {
                    (
                        from_date32(m.month).to_string(),
                        m.mrr_micros,
                        m.prev_micros,
                        m.has_lines,
                    )
                })
                .collect(),
            paid.map(|d| from_date32(d).to_string()),
        )
    }

    fn month(m: &str, mrr: i64, prev: i64, has_lines: bool) -> Entry {
        (m.to_string(), mrr, prev, has_lines)
    }

    /// Worked by hand, as_of 2025-04-15: a free line (0 a month) Jan 1 -
    /// Feb 1 covers Jan 31; a monthly 10.00 line Feb 1 - Mar 1 covers Feb 28;
    /// an add-on 2.50 Feb 10 - Apr 10 covers Feb 28 and Mar 31; a 10.00 line
    /// Apr 1 - May 1 covers as_of (Apr 15). So Jan 0 (has lines), Feb 12.50,
    /// Mar 2.50, Apr 10.00, each with the month before as prev; no entry
    /// after April (as_of's month); the first paid month is February.
    #[test]
    fn months_of_a_customer_by_hand() {
        let lines = [
            line("2025-04-01", "2025-05-01", 10_000_000),
            line("2025-01-01", "2025-02-01", 0),
            line("2025-02-10", "2025-04-10", 2_500_000),
            line("2025-02-01", "2025-03-01", 10_000_000),
        ];
        let (entries, paid) = months(&lines, "2025-04-15");
        assert_eq!(
            entries,
            vec![
                month("2025-01-01", 0, 0, true),
                month("2025-02-01", 12_500_000, 0, true),
                month("2025-03-01", 2_500_000, 12_500_000, true),
                month("2025-04-01", 10_000_000, 2_500_000, true),
            ]
        );
        assert_eq!(paid.as_deref(), Some("2025-02-01"));
    }

    /// A line ending before as_of leaves a month with prev only (the churn
    /// month); a customer who never reaches paid_micros has no first paid
    /// month.
    #[test]
    fn the_month_after_the_last_line_and_no_paid_month() {
        let (entries, paid) = months(&[line("2025-01-01", "2025-02-01", 4999)], "2025-06-30");
        assert_eq!(
            entries,
            vec![
                month("2025-01-01", 4999, 0, true),
                month("2025-02-01", 0, 4999, false),
            ]
        );
        assert_eq!(paid, None);
    }

    /// Customers of 1 to 5 lines drawn at random (a fixed seed) against the
    /// rule applied month by month with chrono: a month's mrr is the sum of
    /// the lines with start <= snapshot < end (the snapshot its last day,
    /// as_of in as_of's month), its prev the month before's; a month up to
    /// as_of's has an entry when lines cover it or the month before.
    #[test]
    fn random_customers_follow_the_rule_month_by_month() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut draw = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let base = NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
        for _ in 0..500 {
            let as_of = base + Days::new(draw(900));
            let lines: Vec<Line> = (0..1 + draw(5))
                .map(|_| {
                    let start = base + Days::new(draw(900));
                    let end = start + Days::new(1 + draw(400));
                    Line {
                        start: to_date32(start),
                        end: to_date32(end),
                        monthly_micros: draw(20_000) as i64 - 2_000,
                    }
                })
                .collect();
            let first_day = |month: u32| {
                NaiveDate::from_ymd_opt(2023 + (month / 12) as i32, month % 12 + 1, 1).unwrap()
            };
            let as_of_month = ((as_of.year() - 2023) * 12) as u32 + as_of.month0();
            let mrr = |month: u32| {
                let snapshot = to_date32(match month == as_of_month {
                    true => as_of,
                    false => first_day(month + 1).pred_opt().unwrap(),
                });
                let covering: Vec<i64> = lines
                    .iter()
                    .filter(|l| l.start <= snapshot && snapshot < l.end)
                    .map(|l| l.monthly_micros)
                    .collect();
                (!covering.is_empty()).then(|| covering.iter().sum::<i64>())
            };
            let mut expected = Vec::new();
            for month in 0..=as_of_month {
                let (now, before) = (mrr(month), month.checked_sub(1).and_then(mrr));
                if now.is_some() || before.is_some() {
                    expected.push((
                        first_day(month).to_string(),
                        now.unwrap_or(0),
                        before.unwrap_or(0),
                        now.is_some(),
                    ));
                }
            }
            let expected_paid = expected
                .iter()
                .find(|(_, mrr, _, _)| *mrr >= 5000)
                .map(|(month, ..)| month.clone());
            assert_eq!(
                months(&lines, &as_of.to_string()),
                (expected, expected_paid),
                "{lines:?}, as_of {as_of}"
            );
        }
    }

    /// Two groups through partial states (one group emitted early) and a
    /// final merge give each customer's months.
    #[test]
    fn partial_states_merge_per_group() {
        let constants = Constants {
            as_of: day("2025-03-31"),
            paid_micros: 5000,
        };
        let columns = |lines: &[Line]| -> Vec<ArrayRef> {
            vec![
                Arc::new(Date32Array::from_iter_values(lines.iter().map(|l| l.start))),
                Arc::new(Date32Array::from_iter_values(lines.iter().map(|l| l.end))),
                Arc::new(Int64Array::from_iter_values(
                    lines.iter().map(|l| l.monthly_micros),
                )),
            ]
        };
        let jan = line("2025-01-01", "2025-02-01", 7_000_000);
        let feb = line("2025-02-01", "2025-03-01", 9_000_000);
        let mut partial = WholeGroupsAccumulator::new(constants);
        // Customer A (group 0) has Jan, then is emitted; B (group 1) has Feb;
        // A's Feb line arrives later as group 1 (B is renumbered 0).
        partial
            .update_batch(&columns(&[jan, feb]), &[0, 1], None, 2)
            .unwrap();
        let early = partial.state(EmitTo::First(1)).unwrap();
        partial
            .update_batch(&columns(&[feb]), &[1], None, 2)
            .unwrap();
        let late = partial.state(EmitTo::All).unwrap();
        let mut last = WholeGroupsAccumulator::new(constants);
        last.merge_batch(&early, &[0], 1).unwrap();
        last.merge_batch(&late, &[1, 0], 2).unwrap();
        let result = last.evaluate(EmitTo::All).unwrap();
        let lists = result.as_list::<i32>();
        let mrr_of = |group: usize| -> Vec<i64> {
            let entries = lists.value(group);
            entries
                .as_struct()
                .column(1)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        };
        // A: Jan 7.00, Feb 9.00, Mar 0 (prev 9.00); B: Feb 9.00, Mar 0.
        assert_eq!(mrr_of(0), [7_000_000, 9_000_000, 0]);
        assert_eq!(mrr_of(1), [9_000_000, 0]);
    }
}
