//! A query's rows as plain values, for the report to read by column name.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Number(f64),
    Text(String),
}

/// Rows of a query: numbers as f64, dates and names as text.
#[derive(Debug, Default)]
pub struct Frame {
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Frame {
    pub async fn query(ctx: &SessionContext, sql: &str) -> Result<Frame, DataFusionError> {
        let frame = ctx.sql(sql).await?;
        let columns = frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut rows = Vec::new();
        for batch in frame.collect().await? {
            let cells: Vec<Vec<Cell>> = batch
                .columns()
                .iter()
                .map(|column| cells(column.as_ref()))
                .collect::<Result<_, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(cells.iter().map(|column| column[row].clone()).collect());
            }
        }
        Ok(Frame { columns, rows })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn column(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("the report's query selects {name}"))
    }

    pub fn number(&self, row: usize, name: &str) -> Option<f64> {
        match &self.rows[row][self.column(name)] {
            Cell::Number(v) => Some(*v),
            _ => None,
        }
    }

    pub fn text(&self, row: usize, name: &str) -> String {
        match &self.rows[row][self.column(name)] {
            Cell::Text(t) => t.clone(),
            Cell::Number(v) => v.to_string(),
            Cell::Null => String::new(),
        }
    }

    /// The distinct values of a text column, in first-seen order.
    pub fn distinct(&self, name: &str) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for row in 0..self.len() {
            let value = self.text(row, name);
            if !seen.contains(&value) {
                seen.push(value);
            }
        }
        seen
    }

    /// The rows whose `name` column is `value`.
    pub fn rows_where(&self, name: &str, value: &str) -> Vec<usize> {
        (0..self.len())
            .filter(|&r| self.text(r, name) == value)
            .collect()
    }
}

fn cells(column: &dyn Array) -> Result<Vec<Cell>, DataFusionError> {
    let numeric = column.data_type().is_numeric();
    let as_text = matches!(
        column.data_type(),
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Date32
            | DataType::Boolean
    );
    if numeric {
        let values = cast(column, &DataType::Float64)?;
        let values = values.as_primitive::<Float64Type>();
        return Ok((0..values.len())
            .map(|i| match values.is_null(i) {
                true => Cell::Null,
                false => Cell::Number(values.value(i)),
            })
            .collect());
    }
    let text = match as_text {
        true => Some(cast(column, &DataType::Utf8)?),
        false => None,
    };
    (0..column.len())
        .map(|i| {
            if column.is_null(i) {
                return Ok(Cell::Null);
            }
            Ok(Cell::Text(match &text {
                Some(t) => t.as_string::<i32>().value(i).to_string(),
                None => array_value_to_string(column, i)?,
            }))
        })
        .collect()
}
