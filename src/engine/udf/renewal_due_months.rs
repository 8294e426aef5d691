//! `renewal_due_months(period_start, window_start, window_end, period_end)`:
//! a customer's subscription lines by due month (spec 4.2), as a list of
//! `{due_month, won, latest_due_end}`, one entry per month that contains a
//! line's period_end. A line is renewed when some line of the group starts
//! inside its renewal window `[window_start, window_end]` (the SQL passes
//! `[max(period_end - 7 days, period_start + 1 day), period_end + grace]`);
//! a month is won when one of its lines is renewed.
//!
//! Grouped by customer, this replaces a sort of every line and its window
//! probe by customer and date and a running window over them (a per-row
//! window partition per customer, the slowest operator of the run): the
//! accumulator keeps the lines of all its groups in one vector and answers
//! each group with a sort and binary searches when it is emitted.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Date32Array, Date32Builder, ListArray,
    StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, FieldRef, Fields};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, GroupsAccumulator, Signature, Volatility,
};

use super::grouped_rows::{
    Emitted, WholeGroupAccumulator, WholeGroupAggregate, WholeGroupsAccumulator, list_array,
    list_type,
};
use crate::calendar::{first_day32_of_month_index, month_index_of_day32};

/// One subscription line, in Date32 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    start: i32,
    window_start: i32,
    window_end: i32,
    end: i32,
}

/// The state columns, one list of days per field of [`Line`].
const STATE_FIELDS: [&str; 4] = [
    "period_starts",
    "window_starts",
    "window_ends",
    "period_ends",
];

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RenewalDueMonths {
    signature: Signature,
}

impl RenewalDueMonths {
    pub fn new() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Date32; 4], Volatility::Immutable),
        }
    }
}

impl Default for RenewalDueMonths {
    fn default() -> Self {
        Self::new()
    }
}

fn due_month_fields() -> Fields {
    Fields::from(vec![
        Field::new("due_month", DataType::Date32, false),
        Field::new("won", DataType::Boolean, false),
        Field::new("latest_due_end", DataType::Date32, false),
    ])
}

fn result_type() -> DataType {
    list_type(DataType::Struct(due_month_fields()))
}

impl AggregateUDFImpl for RenewalDueMonths {
    fn name(&self) -> &str {
        "renewal_due_months"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(result_type())
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(WholeGroupAccumulator::new(DueMonthsOfLines)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(STATE_FIELDS
            .iter()
            .map(|name| {
                Arc::new(Field::new(
                    format_state_name(args.name, name),
                    list_type(DataType::Date32),
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
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(WholeGroupsAccumulator::new(DueMonthsOfLines)))
    }
}

/// The aggregate's rows are a customer's subscription lines.
#[derive(Debug, Clone, Copy)]
struct DueMonthsOfLines;

impl WholeGroupAggregate for DueMonthsOfLines {
    type Row = Line;

    /// The lines of a batch with their row numbers; rows with a null day or
    /// filtered out are skipped.
    fn rows_of<'a>(
        &'a self,
        values: &'a [ArrayRef],
        filter: Option<&'a BooleanArray>,
    ) -> Result<impl Iterator<Item = (usize, Line)> + 'a> {
        let [start, window_start, window_end, end] = values else {
            return exec_err!("renewal_due_months takes four dates");
        };
        let days: [&Date32Array; 4] =
            [start, window_start, window_end, end].map(|a| a.as_primitive());
        Ok((0..start.len()).filter_map(move |row| {
            if filter.is_some_and(|f| !f.is_valid(row) || !f.value(row))
                || days.iter().any(|d| d.is_null(row))
            {
                return None;
            }
            let [start, window_start, window_end, end] = days.map(|d| d.value(row));
            Some((
                row,
                Line {
                    start,
                    window_start,
                    window_end,
                    end,
                },
            ))
        }))
    }

    /// The lines stored in state lists: row `row` of the four list columns.
    fn rows_of_state(&self, states: &[ArrayRef]) -> Result<Vec<Vec<Line>>> {
        let [starts, window_starts, window_ends, ends] = states else {
            return exec_err!("renewal_due_months state has four lists");
        };
        let lists: [&ListArray; 4] =
            [starts, window_starts, window_ends, ends].map(|a| a.as_list());
        Ok((0..starts.len())
            .map(|row| {
                if lists[0].is_null(row) {
                    return Vec::new();
                }
                let [s, ws, we, e] = lists.map(|l| l.value(row));
                let [s, ws, we, e] = [&s, &ws, &we, &e].map(|a| a.as_primitive::<Date32Type>());
                (0..s.len())
                    .map(|i| Line {
                        start: s.value(i),
                        window_start: ws.value(i),
                        window_end: we.value(i),
                        end: e.value(i),
                    })
                    .collect()
            })
            .collect())
    }

    /// Four list columns holding each group's lines.
    fn state_lists(&self, lines: &Emitted<Line>) -> Vec<ArrayRef> {
        vec![
            lines.field_lists::<Date32Type>(|l| l.start),
            lines.field_lists::<Date32Type>(|l| l.window_start),
            lines.field_lists::<Date32Type>(|l| l.window_end),
            lines.field_lists::<Date32Type>(|l| l.end),
        ]
    }

    /// Each group's due months.
    fn result_lists(&self, lines: &Emitted<Line>) -> ArrayRef {
        let mut months = Vec::new();
        let mut lengths = Vec::with_capacity(lines.groups());
        let mut group_lines = Vec::new();
        for group in lines.per_group() {
            group_lines.clear();
            group_lines.extend(group.iter().copied());
            let before = months.len();
            due_months(&mut group_lines, &mut months);
            lengths.push(months.len() - before);
        }
        let mut due_month = Date32Builder::with_capacity(months.len());
        let mut won = BooleanBuilder::with_capacity(months.len());
        let mut latest_due_end = Date32Builder::with_capacity(months.len());
        for (month, renewed, latest) in months {
            due_month.append_value(month);
            won.append_value(renewed);
            latest_due_end.append_value(latest);
        }
        let entries = StructArray::new(
            due_month_fields(),
            vec![
                Arc::new(due_month.finish()),
                Arc::new(won.finish()),
                Arc::new(latest_due_end.finish()),
            ],
            None,
        );
        list_array(OffsetBuffer::from_lengths(lengths), Arc::new(entries))
    }
}

/// Appends one group's due months to `out`, in month order: (first day,
/// won, latest end).
fn due_months(lines: &mut [Line], out: &mut Vec<(i32, bool, i32)>) {
    let first_of_group = out.len();
    let mut starts: Vec<i32> = lines.iter().map(|l| l.start).collect();
    starts.sort_unstable();
    lines.sort_unstable_by_key(|l| l.end);
    for line in lines.iter() {
        let first_on_or_after = starts.partition_point(|&s| s < line.window_start);
        let renewed = starts
            .get(first_on_or_after)
            .is_some_and(|&s| s <= line.window_end);
        let due_month = first_day32_of_month_index(month_index_of_day32(line.end));
        match out[first_of_group..].last_mut() {
            Some((month, won, latest)) if *month == due_month => {
                *won |= renewed;
                *latest = line.end;
            }
            _ => out.push((due_month, renewed, line.end)),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use datafusion::logical_expr::EmitTo;

    use super::super::grouped_rows::GroupedRows;
    use super::*;
    use crate::calendar::{from_date32, to_date32};

    fn day(date: &str) -> i32 {
        to_date32(NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap())
    }

    /// A line with the spec's window: [max(end - 7, start + 1), end + grace].
    fn line(start: &str, end: &str, grace: i32) -> Line {
        let (start, end) = (day(start), day(end));
        Line {
            start,
            window_start: (end - 7).max(start + 1),
            window_end: end + grace,
            end,
        }
    }

    fn dates(values: &[&str]) -> ArrayRef {
        Arc::new(Date32Array::from_iter_values(values.iter().map(|d| day(d))))
    }

    /// (due month, won, latest due end) of each group in a result list.
    fn months_of(result: &ArrayRef) -> Vec<Vec<(String, bool, String)>> {
        let lists = result.as_list::<i32>();
        (0..lists.len())
            .map(|group| {
                let entries = lists.value(group);
                let entries = entries.as_struct();
                let month = entries.column(0).as_primitive::<Date32Type>();
                let won = entries.column(1).as_boolean();
                let latest = entries.column(2).as_primitive::<Date32Type>();
                (0..entries.len())
                    .map(|i| {
                        (
                            from_date32(month.value(i)).to_string(),
                            won.value(i),
                            from_date32(latest.value(i)).to_string(),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    fn due(month: &str, won: bool, latest: &str) -> (String, bool, String) {
        (month.to_string(), won, latest.to_string())
    }

    /// The edges of tests/sql/renewals.slt, grace 30 days, worked by hand:
    /// X1 is renewed by X2 starting on its period_end - 7 days, X2 by X3
    /// starting on its period_end + 30 days, X3 not by X4 (+ 31 days), X4
    /// by nothing; Y2 starts 17 days before Y1 ends (too early), and nothing
    /// follows Y2. Z has one line, due in X's last month.
    #[test]
    fn windows_by_hand() {
        let x = [
            line("2025-01-01", "2025-02-01", 30),
            line("2025-01-25", "2025-02-25", 30),
            line("2025-03-27", "2025-04-27", 30),
            line("2025-05-28", "2025-06-28", 30),
        ];
        let y = [
            line("2025-01-10", "2025-02-10", 30),
            line("2025-01-24", "2025-02-24", 30),
        ];
        // Z's only month is X's last: each group has its own entry.
        let z = [line("2025-06-01", "2025-06-20", 30)];
        // Lines of the customers interleaved, out of date order.
        let mut lines = GroupedRows::default();
        lines.set_groups(3).unwrap();
        let interleaved = [
            (0, x[3]),
            (1, y[1]),
            (0, x[0]),
            (0, x[2]),
            (1, y[0]),
            (0, x[1]),
        ];
        for (group, line) in interleaved.into_iter().chain([(2, z[0])]) {
            lines.push(group, line);
        }
        let months = months_of(&DueMonthsOfLines.result_lists(&lines.take(EmitTo::All)));
        assert_eq!(
            months,
            vec![
                vec![
                    due("2025-02-01", true, "2025-02-25"),
                    due("2025-04-01", false, "2025-04-27"),
                    due("2025-06-01", false, "2025-06-28"),
                ],
                vec![due("2025-02-01", false, "2025-02-24")],
                vec![due("2025-06-01", false, "2025-06-20")],
            ]
        );
    }

    /// The two-phase path: partial states of two batches, one emitted early,
    /// merged in a final accumulator, give the answer of one accumulator.
    #[test]
    fn partial_states_merge_to_the_same_answer() {
        let batch = |starts: &[&str], ends: &[&str]| -> Vec<ArrayRef> {
            let lines: Vec<Line> = starts
                .iter()
                .zip(ends)
                .map(|(s, e)| line(s, e, 10))
                .collect();
            let column = |f: fn(&Line) -> i32| -> ArrayRef {
                Arc::new(Date32Array::from_iter_values(lines.iter().map(f)))
            };
            vec![
                column(|l| l.start),
                column(|l| l.window_start),
                column(|l| l.window_end),
                column(|l| l.end),
            ]
        };
        // Group 0: Jan and Feb lines in different batches (Jan renewed by
        // Feb, Feb not renewed); group 1: a March line, not renewed.
        let first = batch(&["2025-01-01", "2025-03-01"], &["2025-02-01", "2025-04-01"]);
        let second = batch(&["2025-02-01"], &["2025-03-01"]);
        let mut partial = WholeGroupsAccumulator::new(DueMonthsOfLines);
        partial.update_batch(&first, &[0, 1], None, 2).unwrap();
        let early = partial.state(EmitTo::First(1)).unwrap();
        partial.update_batch(&second, &[1], None, 2).unwrap();
        let late = partial.state(EmitTo::All).unwrap();

        let mut last = WholeGroupsAccumulator::new(DueMonthsOfLines);
        last.merge_batch(&early, &[0], 1).unwrap();
        // `late` holds the renumbered March group (0) and the Feb line's group (1).
        last.merge_batch(&late, &[1, 0], 2).unwrap();
        assert_eq!(
            months_of(&last.evaluate(EmitTo::All).unwrap()),
            vec![
                vec![
                    due("2025-02-01", true, "2025-02-01"),
                    due("2025-03-01", false, "2025-03-01"),
                ],
                vec![due("2025-04-01", false, "2025-04-01")],
            ]
        );
    }

    #[test]
    fn convert_to_state_keeps_one_line_a_row_and_drops_filtered_and_null_rows() {
        let acc = WholeGroupsAccumulator::new(DueMonthsOfLines);
        let start = dates(&["2025-01-01", "2025-02-01", "2025-03-01"]);
        let with_null: ArrayRef = Arc::new(Date32Array::from(vec![
            Some(day("2025-02-01")),
            None,
            Some(day("2025-04-01")),
        ]));
        let values = vec![start.clone(), start.clone(), with_null.clone(), with_null];
        let filter = BooleanArray::from(vec![true, true, false]);
        let state = acc.convert_to_state(&values, Some(&filter)).unwrap();
        let lines = DueMonthsOfLines.rows_of_state(&state).unwrap();
        assert_eq!(lines.iter().map(Vec::len).collect::<Vec<_>>(), [1, 0, 0]);
        assert_eq!(lines[0][0].end, day("2025-02-01"));
    }
}
