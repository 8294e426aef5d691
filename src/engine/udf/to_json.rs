//! `to_json(struct)`: one JSON object per row, used to keep the raw row of
//! every reject. Nulls are written explicitly so a reader sees which
//! required column was empty, and a NaN or infinite float as the string
//! `"NaN"`, `"Infinity"` or `"-Infinity"` (JSON has no such numbers; arrow
//! writes null, which would show an amount rejected as not finite as if it
//! were missing).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, FieldRef, Float32Type, Float64Type, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::writer::{
    Encoder, EncoderFactory, EncoderOptions, NullableEncoder, make_encoder,
};
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
                .with_encoder_factory(Arc::new(NonFiniteAsStrings))
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

/// Encodes float columns: non-finite values as strings, the rest with
/// arrow's own encoder (so finite numbers read exactly as before).
#[derive(Debug)]
struct NonFiniteAsStrings;

/// Options without this factory, for arrow's encoder of the finite values.
static ARROW_DEFAULTS: LazyLock<EncoderOptions> = LazyLock::new(EncoderOptions::default);

impl EncoderFactory for NonFiniteAsStrings {
    fn make_default_encoder<'a>(
        &self,
        field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        let value: Box<dyn Fn(usize) -> f64 + 'a> = match array.data_type() {
            DataType::Float64 => {
                let floats = array.as_primitive::<Float64Type>();
                Box::new(move |i| floats.value(i))
            }
            DataType::Float32 => {
                let floats = array.as_primitive::<Float32Type>();
                Box::new(move |i| f64::from(floats.value(i)))
            }
            _ => return Ok(None),
        };
        let finite = make_encoder(field, array, &ARROW_DEFAULTS)?;
        Ok(Some(NullableEncoder::new(
            Box::new(FloatEncoder { value, finite }),
            array.nulls().cloned(),
        )))
    }
}

struct FloatEncoder<'a> {
    value: Box<dyn Fn(usize) -> f64 + 'a>,
    finite: NullableEncoder<'a>,
}

impl Encoder for FloatEncoder<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let value = (self.value)(idx);
        if value.is_nan() {
            out.extend_from_slice(b"\"NaN\"");
        } else if value == f64::INFINITY {
            out.extend_from_slice(b"\"Infinity\"");
        } else if value == f64::NEG_INFINITY {
            out.extend_from_slice(b"\"-Infinity\"");
        } else {
            self.finite.encode(idx, out);
        }
    }
}
