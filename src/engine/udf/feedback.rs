//! `comment_themes(text)` and `comment_sentiment(text)`: the text analysis
//! of [`crate::feedback`] for SQL. `comment_themes` carries the job's theme
//! taxonomy, so ad hoc SQL and the run see the same themes.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, ListBuilder, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::feedback::{Taxonomy, sentiment};

fn text_signature() -> Signature {
    Signature::uniform(
        1,
        vec![DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View],
        Volatility::Immutable,
    )
}

/// The single text argument as a Utf8 array.
fn text_argument(name: &str, args: ScalarFunctionArgs) -> Result<ArrayRef> {
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    let [text] = arrays.as_slice() else {
        return exec_err!("{name} takes one text argument");
    };
    Ok(cast(text, &DataType::Utf8)?)
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CommentThemes {
    signature: Signature,
    taxonomy: Arc<Taxonomy>,
}

impl CommentThemes {
    pub fn new(taxonomy: Arc<Taxonomy>) -> Self {
        Self {
            signature: text_signature(),
            taxonomy,
        }
    }

    pub fn taxonomy(&self) -> &Arc<Taxonomy> {
        &self.taxonomy
    }
}

impl ScalarUDFImpl for CommentThemes {
    fn name(&self) -> &str {
        "comment_themes"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Utf8,
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let texts = text_argument(self.name(), args)?;
        let texts = texts.as_string::<i32>();
        let mut out = ListBuilder::new(StringBuilder::new());
        for text in texts.iter() {
            match text {
                Some(text) => {
                    for theme in self.taxonomy.themes_of(text) {
                        out.values().append_value(theme);
                    }
                    out.append(true);
                }
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CommentSentiment {
    signature: Signature,
}

impl CommentSentiment {
    pub fn new() -> Self {
        Self {
            signature: text_signature(),
        }
    }
}

impl Default for CommentSentiment {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for CommentSentiment {
    fn name(&self) -> &str {
        "comment_sentiment"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let texts = text_argument(self.name(), args)?;
        let texts = texts.as_string::<i32>();
        let mut out = Float64Builder::with_capacity(texts.len());
        for text in texts.iter() {
            out.append_option(text.map(sentiment));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
