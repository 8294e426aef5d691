//! Calendar arithmetic shared by the run window, the UDFs and the generator.
//! Months are represented by their first day (spec section 2).

use chrono::{Datelike, Duration, NaiveDate};

pub fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).expect("day 1 exists in every month")
}

/// Months since year 0: `year * 12 + month0`; the spec's period count is a
/// difference of these.
pub fn month_index(d: NaiveDate) -> i32 {
    d.year() * 12 + d.month0() as i32
}

pub fn from_month_index(index: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1)
        .expect("valid month index")
}

pub fn add_months(d: NaiveDate, months: i32) -> NaiveDate {
    let target = from_month_index(month_index(d) + months);
    let last = month_end(target).day();
    target
        .with_day(d.day().min(last))
        .expect("day clamped to month length")
}

pub fn month_end(d: NaiveDate) -> NaiveDate {
    from_month_index(month_index(d) + 1) - Duration::days(1)
}

/// The calendar months of a run, and the as_of that bounds what is visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunWindow {
    pub as_of: NaiveDate,
    /// First reported month (first day).
    pub first_month: NaiveDate,
}

impl RunWindow {
    pub fn as_of_month(&self) -> NaiveDate {
        month_start(self.as_of)
    }

    /// Every reported month, first days, oldest first.
    pub fn months(&self) -> Vec<NaiveDate> {
        months_between(self.first_month, self.as_of_month())
    }

    /// The first day of the month `n` months before as_of's month.
    pub fn months_before_as_of(&self, n: i32) -> NaiveDate {
        from_month_index(month_index(self.as_of) - n)
    }

    /// W of spec 4.8: the 12 months ending with as_of's month.
    pub fn trailing_months(&self) -> Vec<NaiveDate> {
        months_between(self.months_before_as_of(11), self.as_of_month())
    }
}

/// First days of the months from `first` to `last`, inclusive.
pub fn months_between(first: NaiveDate, last: NaiveDate) -> Vec<NaiveDate> {
    (month_index(first)..=month_index(last))
        .map(from_month_index)
        .collect()
}

/// Days since 1970-01-01, Arrow's Date32 representation.
pub fn to_date32(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

pub fn from_date32(days: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + Duration::days(days as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn month_arithmetic() {
        assert_eq!(month_end(d(2024, 2, 10)), d(2024, 2, 29));
        assert_eq!(add_months(d(2024, 1, 31), 1), d(2024, 2, 29));
        assert_eq!(add_months(d(2024, 11, 15), 3), d(2025, 2, 15));
        assert_eq!(month_index(d(2025, 1, 1)) - month_index(d(2024, 12, 31)), 1);
        assert_eq!(from_date32(to_date32(d(1999, 12, 31))), d(1999, 12, 31));
    }

    #[test]
    fn window_months_include_the_as_of_month() {
        let w = RunWindow {
            as_of: d(2025, 3, 5),
            first_month: d(2024, 12, 1),
        };
        assert_eq!(
            w.months(),
            vec![d(2024, 12, 1), d(2025, 1, 1), d(2025, 2, 1), d(2025, 3, 1)]
        );
    }

    #[test]
    fn trailing_months_are_the_twelve_ending_with_as_of_month() {
        let w = RunWindow {
            as_of: d(2025, 3, 5),
            first_month: d(2025, 1, 1),
        };
        let trailing = w.trailing_months();
        assert_eq!(trailing.len(), 12);
        assert_eq!((trailing[0], trailing[11]), (d(2024, 4, 1), d(2025, 3, 1)));
        assert_eq!(w.months_before_as_of(3), d(2024, 12, 1));
        assert_eq!(w.months_before_as_of(-1), d(2025, 4, 1));
    }
}
