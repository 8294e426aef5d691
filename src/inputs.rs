//! The input contract of spec section 1: which tables exist, their columns,
//! the Arrow types each logical type accepts, and their keys.

use datafusion::arrow::datatypes::DataType;

/// Logical column types of the spec, each accepting several Arrow types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Utf8 / LargeUtf8 / Utf8View, or integer ids (cast to string).
    String,
    /// Date32 / Date64 or a timestamp (its UTC date part).
    Date,
    /// Any timestamp unit and zone, or Date32 (midnight UTC).
    Timestamp,
    /// Decimal128 or a float or integer; read as Float64.
    Money,
    Integer,
    Double,
    Boolean,
}

impl ColumnKind {
    pub fn accepts(self, t: &DataType) -> bool {
        use DataType::*;
        match self {
            ColumnKind::String => matches!(t, Utf8 | LargeUtf8 | Utf8View) || t.is_integer(),
            ColumnKind::Date => matches!(t, Date32 | Date64 | Timestamp(_, _)),
            ColumnKind::Timestamp => matches!(t, Timestamp(_, _) | Date32 | Date64),
            ColumnKind::Money | ColumnKind::Double => {
                matches!(t, Decimal128(_, _) | Float64 | Float32 | Float16) || t.is_integer()
            }
            ColumnKind::Integer => t.is_integer(),
            ColumnKind::Boolean => matches!(t, Boolean),
        }
    }

    /// The SQL type every accepted Arrow type is cast to in the typed views.
    pub fn sql_type(self) -> &'static str {
        match self {
            ColumnKind::String => "VARCHAR",
            ColumnKind::Date => "DATE",
            ColumnKind::Timestamp => "TIMESTAMP",
            ColumnKind::Money | ColumnKind::Double => "DOUBLE",
            ColumnKind::Integer => "BIGINT",
            ColumnKind::Boolean => "BOOLEAN",
        }
    }

    /// The Arrow type of the typed views (and of an absent optional input).
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnKind::String => DataType::Utf8,
            ColumnKind::Date => DataType::Date32,
            ColumnKind::Timestamp => {
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None)
            }
            ColumnKind::Money | ColumnKind::Double => DataType::Float64,
            ColumnKind::Integer => DataType::Int64,
            ColumnKind::Boolean => DataType::Boolean,
        }
    }

    /// The type to show a typed value in as the input held it
    /// (`rejects.raw_row`): the input's own type where the typed view's
    /// cast can be undone exactly and JSON would show another value: an
    /// integer id is a number, not a string; a Float32 prints its own
    /// shortest digits (12.3, where its Float64 prints 12.300000190734863);
    /// a timestamp keeps its unit and zone. `None` where JSON shows the
    /// same value either way (a Decimal or an integer amount is the same
    /// JSON number as its Float64: 12.30 is 12.3) or the cast lost
    /// something (a date taken from a timestamp keeps no time).
    pub fn input_form(self, input: &DataType) -> Option<DataType> {
        use DataType::*;
        let undoable = match self {
            ColumnKind::String => input.is_integer(),
            ColumnKind::Money | ColumnKind::Double => matches!(input, Float32 | Float16),
            ColumnKind::Timestamp => matches!(input, Timestamp(_, _) | Date32 | Date64),
            ColumnKind::Date | ColumnKind::Integer | ColumnKind::Boolean => false,
        };
        (undoable && *input != self.arrow_type()).then(|| input.clone())
    }

    pub fn describe(self) -> &'static str {
        match self {
            ColumnKind::String => "string (Utf8, LargeUtf8, Utf8View or an integer id)",
            ColumnKind::Date => "date (Date32, Date64 or a timestamp)",
            ColumnKind::Timestamp => "timestamp (any unit and zone, or Date32/Date64)",
            ColumnKind::Money => "money (Decimal128, a float or an integer)",
            ColumnKind::Double => "double (a float, Decimal128 or an integer)",
            ColumnKind::Integer => "integer",
            ColumnKind::Boolean => "boolean",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub kind: ColumnKind,
    /// A null here makes the row a reject ("null in required column").
    /// Conditionally required columns (period_*, item) are checked by the
    /// validation SQL instead.
    pub required: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    pub name: &'static str,
    pub optional: bool,
    pub columns: &'static [ColumnSpec],
    /// Key columns, joined with `|` in `rejects.key`; empty for costs.
    pub key: &'static [&'static str],
    /// The columns the KPI SQL reads, where that is fewer than the input
    /// has: a run stores the others (the contract's and any more, like a
    /// hive folder's) on rejected rows only, for `rejects`, and leaves them
    /// out of the clean view (`validate::CleanColumns::ReadByKpis`). None:
    /// all.
    pub kpi_columns: Option<&'static [&'static str]>,
}

impl TableSpec {
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }
}

const fn col(name: &'static str, kind: ColumnKind, required: bool) -> ColumnSpec {
    ColumnSpec {
        name,
        kind,
        required,
    }
}

use ColumnKind as K;

pub const CUSTOMERS: TableSpec = TableSpec {
    name: "customers",
    optional: false,
    columns: &[
        col("customer_id", K::String, true),
        col("signup_date", K::Date, true),
        col("churn_date", K::Date, false),
        col("segment", K::String, false),
    ],
    key: &["customer_id"],
    kpi_columns: None,
};

pub const ORDERS: TableSpec = TableSpec {
    name: "orders",
    optional: false,
    columns: &[
        col("order_id", K::String, true),
        col("customer_id", K::String, true),
        col("order_date", K::Date, true),
        col("amount", K::Money, true),
        col("kind", K::String, true),
        col("period_start", K::Date, false),
        col("period_end", K::Date, false),
    ],
    key: &["order_id"],
    kpi_columns: None,
};

pub const TICKETS: TableSpec = TableSpec {
    name: "tickets",
    optional: false,
    columns: &[
        col("ticket_id", K::String, true),
        col("customer_id", K::String, true),
        col("opened_at", K::Timestamp, true),
        col("resolved_at", K::Timestamp, false),
        col("contacts", K::Integer, true),
        col("reopened", K::Boolean, false),
    ],
    key: &["ticket_id"],
    kpi_columns: None,
};

pub const SURVEYS: TableSpec = TableSpec {
    name: "surveys",
    optional: true,
    columns: &[
        col("response_id", K::String, true),
        col("customer_id", K::String, true),
        col("responded_at", K::Timestamp, true),
        col("survey", K::String, true),
        col("item", K::String, false),
        col("score", K::Double, true),
        col("comment", K::String, false),
    ],
    key: &["response_id", "item"],
    kpi_columns: None,
};

pub const USAGE: TableSpec = TableSpec {
    name: "usage",
    optional: true,
    columns: &[
        col("customer_id", K::String, true),
        col("day", K::Date, true),
        col("active_users", K::Integer, true),
        col("events", K::Integer, true),
    ],
    key: &["customer_id", "day"],
    kpi_columns: Some(&["customer_id", "day", "events"]),
};

pub const COSTS: TableSpec = TableSpec {
    name: "costs",
    optional: true,
    columns: &[
        col("month", K::Date, true),
        col("category", K::String, true),
        col("customer_id", K::String, false),
        col("amount", K::Money, true),
    ],
    key: &[],
    kpi_columns: None,
};

/// The column validation adds to every row of a known customer (see
/// `customer_directory` in sql/validate.sql): not part of a raw row, and
/// reserved, so an input may not have a column of that name.
pub const CUSTOMER_KEY: &str = "customer_key";

/// Every input, in the order they are registered and validated (customers
/// first: the other tables' checks look customers up).
pub const ALL: [&TableSpec; 6] = [&CUSTOMERS, &ORDERS, &TICKETS, &SURVEYS, &USAGE, &COSTS];

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::TimeUnit;

    #[test]
    fn accepted_types_follow_the_spec() {
        assert!(K::String.accepts(&DataType::Utf8View));
        assert!(K::String.accepts(&DataType::Int64));
        assert!(!K::String.accepts(&DataType::Float64));
        assert!(K::Date.accepts(&DataType::Timestamp(
            TimeUnit::Millisecond,
            Some("UTC".into())
        )));
        assert!(!K::Date.accepts(&DataType::Utf8));
        assert!(K::Money.accepts(&DataType::Decimal128(12, 2)));
        assert!(!K::Money.accepts(&DataType::Utf8));
        assert!(K::Timestamp.accepts(&DataType::Date32));
    }

    #[test]
    fn input_form_undoes_only_exact_casts_that_print_differently() {
        let zoned = DataType::Timestamp(TimeUnit::Millisecond, Some("+07:00".into()));
        assert_eq!(K::Timestamp.input_form(&zoned), Some(zoned.clone()));
        assert_eq!(
            K::Money.input_form(&DataType::Float32),
            Some(DataType::Float32)
        );
        assert_eq!(K::Money.input_form(&DataType::Decimal128(18, 2)), None);
        assert_eq!(
            K::String.input_form(&DataType::Int32),
            Some(DataType::Int32)
        );
        assert_eq!(K::String.input_form(&DataType::Utf8View), None);
        assert_eq!(K::Money.input_form(&DataType::Float64), None);
        assert_eq!(K::Integer.input_form(&DataType::Int32), None);
        assert_eq!(K::Date.input_form(&zoned), None);
        assert_eq!(K::Timestamp.input_form(&K::Timestamp.arrow_type()), None);
    }
}
