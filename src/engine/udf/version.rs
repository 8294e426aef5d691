//! `cskpi_version()`: the version of the cskpi build that evaluates it.
//! Volatile, so that no planner folds it into a constant: on a cluster it
//! is the version of the executor that ran the task, which a driver
//! compares with its own (`cluster::connect`).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CskpiVersion {
    signature: Signature,
}

impl CskpiVersion {
    pub fn new() -> Self {
        Self {
            signature: Signature::nullary(Volatility::Volatile),
        }
    }
}

impl Default for CskpiVersion {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for CskpiVersion {
    fn name(&self) -> &str {
        "cskpi_version"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let versions = StringArray::from(vec![VERSION; args.number_rows]);
        Ok(ColumnarValue::Array(Arc::new(versions) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Array;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn every_row_gets_the_builds_version() {
        let ctx = SessionContext::new();
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            CskpiVersion::new(),
        ));
        let batches = ctx
            .sql("SELECT cskpi_version() AS v FROM (VALUES (1), (2)) t(x)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let column = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(column.len(), 2);
        assert!(column.iter().all(|v| v == Some(env!("CARGO_PKG_VERSION"))));
        assert!(!VERSION.is_empty());
    }
}
