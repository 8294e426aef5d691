//! `directory_customer_id(customer_id, customer_key, may_be_null)`:
//! `customer_id` where it is given, else the customer_id the run's
//! customer directory gives `customer_key`. `may_be_null`, a literal, is
//! whether the ids were nullable before they were left out, which the
//! result keeps: a published table's schema must not change with how the
//! run stored its inputs.
//!
//! A run stores each input's checked rows, and the stored KPI views with
//! both columns, without the customer_id string of a row whose
//! customer_key names it (`engine::sql::store_without_directory_ids`):
//! writing 75 M customer ids of usage to a scratch
//! file, none of them read back, was a fifth of storing the checked usage
//! rows (benches/README.md, "Measured reasons"). This function puts the
//! id back for the queries that read it; a query that does not read
//! customer_id never calls it. It exists only in a run's local session,
//! holding that run's directory, so it is not among the functions of
//! `cskpi sql`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::customer_directory::CustomerDirectory;
use super::prefetch::AHEAD;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, LargeStringArray, MAX_INLINE_VIEW_LEN, NullBufferBuilder,
    StringArray, StringViewArray, make_view,
};
use datafusion::arrow::buffer::{Buffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_datafusion_err, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

pub const NAME: &str = "directory_customer_id";

#[derive(Debug)]
pub struct DirectoryCustomerId {
    signature: Signature,
    directory: Arc<CustomerDirectory>,
}

impl DirectoryCustomerId {
    pub fn new(directory: Arc<CustomerDirectory>) -> Self {
        Self {
            signature: Signature::any(3, Volatility::Immutable),
            directory,
        }
    }

    /// Fails on a key outside the directory, so that `restore` need not.
    fn check_keys(&self, keys: &ArrayRef) -> Result<()> {
        let keys = keys.as_primitive::<Int64Type>();
        match keys
            .iter()
            .flatten()
            .find(|&key| !matches!(usize::try_from(key), Ok(index) if index < self.directory.len()))
        {
            Some(key) => exec_err!(
                "{NAME}: customer_key {key} is not in the customer directory (0..{})",
                self.directory.len()
            ),
            None => Ok(()),
        }
    }

    /// `given` where not null, else the id of `keys`' key (null for none);
    /// the keys checked by `check_keys`.
    fn restore<'a>(
        &'a self,
        given: impl Iterator<Item = Option<&'a str>>,
        keys: &'a ArrayRef,
    ) -> impl Iterator<Item = Option<&'a str>> {
        let keys = keys.as_primitive::<Int64Type>();
        given
            .zip(keys.iter())
            .map(|(id, key)| id.or_else(|| key.map(|key| self.directory.id(key as usize))))
    }

    /// `restore` for string views, built view by view: a given id keeps its
    /// view (and the buffers it points into), a restored id of up to 12
    /// bytes is written into its view, a longer one is copied into one new
    /// buffer. Collecting the ids through a builder copied every one of
    /// them: 13% of writing mrr_movements (benches/README.md, "Measured
    /// reasons").
    fn restore_views(&self, given: &StringViewArray, keys: &Int64Array) -> Result<StringViewArray> {
        let mut buffers = given.data_buffers().to_vec();
        let long_block = u32::try_from(buffers.len())
            .map_err(|_| exec_datafusion_err!("{NAME}: {} string buffers", buffers.len()))?;
        let mut long_ids: Vec<u8> = Vec::new();
        let mut views = Vec::with_capacity(given.len());
        let mut nulls = NullBufferBuilder::new(given.len());
        let key_values = keys.values();
        for (row, &view) in given.views().iter().enumerate() {
            // The keys come in no order (a grouping's or a join's): each
            // row's view is asked for AHEAD rows before it is read.
            if let Some(&ahead) = key_values.get(row + AHEAD) {
                self.directory.prefetch_view(ahead as usize);
            }
            if given.is_valid(row) {
                views.push(view);
                nulls.append_non_null();
            } else if keys.is_valid(row) {
                let key = keys.value(row) as usize;
                let short = self.directory.view(key);
                if short as u32 <= MAX_INLINE_VIEW_LEN {
                    views.push(short);
                } else {
                    let id = self.directory.id(key).as_bytes();
                    let offset = u32::try_from(long_ids.len()).map_err(|_| {
                        exec_datafusion_err!("{NAME}: a batch's restored ids exceed 4 GiB")
                    })?;
                    long_ids.extend_from_slice(id);
                    views.push(make_view(id, long_block, offset));
                }
                nulls.append_non_null();
            } else {
                views.push(0);
                nulls.append_null();
            }
        }
        if !long_ids.is_empty() {
            buffers.push(Buffer::from_vec(long_ids));
        }
        Ok(StringViewArray::try_new(
            ScalarBuffer::from(views),
            buffers,
            nulls.finish(),
        )?)
    }
}

// Two instances are the same function when they hold the same directory.
impl PartialEq for DirectoryCustomerId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.directory, &other.directory)
    }
}

impl Eq for DirectoryCustomerId {}

impl Hash for DirectoryCustomerId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.directory).hash(state);
    }
}

impl ScalarUDFImpl for DirectoryCustomerId {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [
                id @ (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
                key,
                DataType::Boolean,
            ] if key.is_integer() => Ok(id.clone()),
            _ => exec_err!(
                "{NAME} takes a customer_id string, an integer customer_key and whether ids may be null"
            ),
        }
    }

    /// The id's type, nullable as the third argument says.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let Some(Some(ScalarValue::Boolean(Some(nullable)))) = args.scalar_arguments.get(2) else {
            return exec_err!("{NAME}: whether ids may be null must be a literal true or false");
        };
        let nullable = *nullable;
        Ok(Arc::new(Field::new(
            NAME,
            self.return_type(&types)?,
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [given, keys, _] = arrays.as_slice() else {
            return exec_err!("{NAME} takes three arguments");
        };
        let keys = cast(keys, &DataType::Int64)?;
        self.check_keys(&keys)?;
        let restored: ArrayRef = match given.data_type() {
            DataType::Utf8View => Arc::new(
                self.restore_views(given.as_string_view(), keys.as_primitive::<Int64Type>())?,
            ),
            DataType::Utf8 => Arc::new(
                self.restore(given.as_string::<i32>().iter(), &keys)
                    .collect::<StringArray>(),
            ),
            DataType::LargeUtf8 => Arc::new(
                self.restore(given.as_string::<i64>().iter(), &keys)
                    .collect::<LargeStringArray>(),
            ),
            other => return exec_err!("{NAME}: customer_id is {other}, not a string"),
        };
        Ok(ColumnarValue::Array(restored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BooleanArray, Date32Array, Int32Array};
    use datafusion::config::ConfigOptions;
    use datafusion::execution::memory_pool::{MemoryPool, UnboundedMemoryPool};

    fn directory(ids: Vec<&str>) -> DirectoryCustomerId {
        let signups = Date32Array::from(vec![Some(0); ids.len()]);
        let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        let directory = CustomerDirectory::new(StringArray::from(ids), signups, &pool).unwrap();
        DirectoryCustomerId::new(Arc::new(directory))
    }

    fn call(given: ArrayRef, keys: ArrayRef) -> Result<ArrayRef> {
        let rows = given.len();
        let may_be_null: ArrayRef = Arc::new(BooleanArray::from(vec![true; rows]));
        let arg_fields = [&given, &keys, &may_be_null]
            .iter()
            .map(|a| Arc::new(Field::new("a", a.data_type().clone(), true)))
            .collect();
        let directory = directory(vec!["A-1", "B-22", "C-333", "D-an-id-longer-than-12"]);
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Array(given),
                ColumnarValue::Array(keys),
                ColumnarValue::Array(may_be_null),
            ],
            arg_fields,
            number_rows: rows,
            return_field: Arc::new(Field::new("r", DataType::Utf8View, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        match directory.invoke_with_args(args)? {
            ColumnarValue::Array(a) => Ok(a),
            ColumnarValue::Scalar(_) => unreachable!(),
        }
    }

    #[test]
    fn a_given_id_wins_a_missing_one_comes_from_the_key() {
        let given: ArrayRef = Arc::new(StringViewArray::from(vec![Some("X-9"), None, None, None]));
        let keys: ArrayRef = Arc::new(Int32Array::from(vec![Some(0), Some(2), Some(1), None]));
        let restored = call(given, keys).unwrap();
        let restored: Vec<Option<&str>> = restored.as_string_view().iter().collect();
        assert_eq!(restored, [Some("X-9"), Some("C-333"), Some("B-22"), None]);
    }

    #[test]
    fn long_ids_given_and_restored_are_kept_whole() {
        // Views of more than 12 bytes point into buffers: the given ones
        // into the input's, the restored ones into a new one.
        let given: ArrayRef = Arc::new(StringViewArray::from(vec![
            None,
            Some("given-id-longer-than-twelve"),
            None,
            Some("short"),
            None,
        ]));
        let keys: ArrayRef = Arc::new(Int32Array::from(vec![
            Some(3),
            Some(0),
            Some(1),
            None,
            Some(3),
        ]));
        let restored = call(given, keys).unwrap();
        let restored: Vec<Option<&str>> = restored.as_string_view().iter().collect();
        assert_eq!(
            restored,
            [
                Some("D-an-id-longer-than-12"),
                Some("given-id-longer-than-twelve"),
                Some("B-22"),
                Some("short"),
                Some("D-an-id-longer-than-12"),
            ]
        );
    }

    #[test]
    fn ids_at_the_edges_of_a_view_are_restored_from_many_keys() {
        // empty, 12 bytes (the longest a view holds), 13 bytes; more keys
        // than the look-up fetches ahead, in no order
        let ids = vec!["", "twelve-bytes", "thirteen-byte"];
        let function = directory(ids.clone());
        let keys: Vec<i64> = (0..100).map(|row| (row * 7 % 3) as i64).collect();
        let given = StringViewArray::from(vec![None::<&str>; keys.len()]);
        let restored = function
            .restore_views(&given, &Int64Array::from(keys.clone()))
            .unwrap();
        let expected: Vec<Option<&str>> = keys.iter().map(|&k| Some(ids[k as usize])).collect();
        assert_eq!(restored.iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn the_type_of_the_given_ids_is_kept() {
        let given: ArrayRef = Arc::new(StringArray::from(vec![None::<&str>]));
        let keys: ArrayRef = Arc::new(Int32Array::from(vec![1]));
        let restored = call(given, keys).unwrap();
        assert_eq!(restored.data_type(), &DataType::Utf8);
        assert_eq!(restored.as_string::<i32>().value(0), "B-22");
    }

    #[test]
    fn the_result_is_nullable_as_the_literal_says() {
        let directory = directory(vec!["A-1"]);
        let fields = [
            Arc::new(Field::new("customer_id", DataType::Utf8View, true)),
            Arc::new(Field::new("customer_key", DataType::Int32, true)),
            Arc::new(Field::new("may_be_null", DataType::Boolean, false)),
        ];
        for may_be_null in [false, true] {
            let literal = ScalarValue::Boolean(Some(may_be_null));
            let field = directory
                .return_field_from_args(ReturnFieldArgs {
                    arg_fields: &fields,
                    scalar_arguments: &[None, None, Some(&literal)],
                })
                .unwrap();
            assert_eq!(field.is_nullable(), may_be_null);
            assert_eq!(field.data_type(), &DataType::Utf8View);
        }
        let column = directory.return_field_from_args(ReturnFieldArgs {
            arg_fields: &fields,
            scalar_arguments: &[None, None, None],
        });
        assert!(column.is_err());
    }

    #[test]
    fn a_key_outside_the_directory_is_an_error() {
        let given: ArrayRef = Arc::new(StringViewArray::from(vec![None::<&str>]));
        let keys: ArrayRef = Arc::new(Int32Array::from(vec![4]));
        let error = call(given, keys).unwrap_err().to_string();
        assert!(
            error.contains("customer_key 4 is not in the customer directory"),
            "{error}"
        );
    }
}
