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

    /// The last month whose last day is <= as_of (first day): as_of's own
    /// month when as_of is its last day, else the month before.
    pub fn last_complete_month(&self) -> NaiveDate {
        let tomorrow = self.as_of + chrono::Duration::days(1);
        if month_start(tomorrow) != self.as_of_month() {
            self.as_of_month()
        } else {
            self.months_before_as_of(1)
        }
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

// Date32 arithmetic without chrono, for UDFs over millions of rows. The
// Gregorian calendar repeats every 400 years (146,097 days); counting years
// from 1 March puts the leap day last, so a day's place in its year gives
// the month by a linear formula (months of 31 and 30 days alternate in
// 153-day runs of five months). 719,468 is the number of days from
// 0000-03-01 to 1970-01-01.
const DAYS_PER_ERA: i64 = 146_097;
const MARCH_ZERO_TO_EPOCH: i64 = 719_468;

/// `month_index` of the date `days` after 1970-01-01.
pub fn month_index_of_day32(days: i32) -> i32 {
    let z = days as i64 + MARCH_ZERO_TO_EPOCH;
    let era = z.div_euclid(DAYS_PER_ERA);
    let day_of_era = z - era * DAYS_PER_ERA;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let (year, month0) = if month_from_march < 10 {
        (era * 400 + year_of_era, month_from_march + 2)
    } else {
        (era * 400 + year_of_era + 1, month_from_march - 10)
    };
    (year * 12 + month0) as i32
}

/// Days since 1970-01-01 of the first day of month `index` (see `month_index`).
pub fn first_day32_of_month_index(index: i32) -> i32 {
    let (year, month0) = (index.div_euclid(12) as i64, index.rem_euclid(12) as i64);
    let (year, month_from_march) = if month0 >= 2 {
        (year, month0 - 2)
    } else {
        (year - 1, month0 + 10)
    };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * month_from_march + 2) / 5;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * DAYS_PER_ERA + day_of_era - MARCH_ZERO_TO_EPOCH) as i32
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
    fn date32_month_arithmetic_agrees_with_chrono_on_every_day_of_eight_centuries() {
        let (first, last) = (to_date32(d(1600, 1, 1)), to_date32(d(2400, 12, 31)));
        for days in first..=last {
            let date = from_date32(days);
            assert_eq!(month_index_of_day32(days), month_index(date), "{date}");
            if date.day() == 1 {
                assert_eq!(
                    first_day32_of_month_index(month_index(date)),
                    days,
                    "{date}"
                );
            }
        }
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
    fn the_last_complete_month_ends_on_or_before_as_of() {
        let at = |as_of| RunWindow {
            as_of,
            first_month: d(2024, 1, 1),
        };
        assert_eq!(at(d(2025, 3, 5)).last_complete_month(), d(2025, 2, 1));
        assert_eq!(at(d(2025, 3, 30)).last_complete_month(), d(2025, 2, 1));
        assert_eq!(at(d(2025, 3, 31)).last_complete_month(), d(2025, 3, 1));
        assert_eq!(at(d(2024, 2, 29)).last_complete_month(), d(2024, 2, 1));
        assert_eq!(at(d(2025, 1, 1)).last_complete_month(), d(2024, 12, 1));
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
        assert_eq!(w.last_complete_month(), d(2025, 2, 1));
    }
}
