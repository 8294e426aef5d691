//! `to_json(struct)`: one JSON object per row, used to keep the raw row of
//! every reject. Nulls are written explicitly so a reader sees which
//! required column was empty.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::json::{LineDelimitedWriter, WriterBuilder, writer::LineDelimited};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToJson {
    signature: Signature,
}

impl ToJson {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for ToJson {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ToJson {
    fn name(&self) -> &str {
        "to_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [DataType::Struct(_)] => Ok(DataType::Utf8),
            other => exec_err!("to_json expects a struct, e.g. named_struct(...), got {other:?}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = arrays[0].as_struct();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(rows.fields().clone())),
            rows.columns().to_vec(),
        )?;
        let mut buffer = Vec::new();
        {
            let mut writer: LineDelimitedWriter<&mut Vec<u8>> = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, LineDelimited>(&mut buffer);
            writer.write(&batch)?;
            writer.finish()?;
        }
        let text = String::from_utf8(buffer)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        // JSON escapes newlines inside strings, so each line is one row.
        let mut out = StringBuilder::new();
        for (i, line) in text.lines().enumerate() {
            if rows.is_null(i) {
                out.append_null();
            } else {
                out.append_value(line);
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}
