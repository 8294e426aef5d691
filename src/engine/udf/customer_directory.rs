//! A run's customer directory in memory (the customer_id and first signup
//! of every customer_key) and the functions that look customers up in it:
//!
//! - `directory_customer_key(customer_id)`: the directory's customer_key
//!   of the id; null for a null id or one the directory does not hold;
//! - `directory_first_signup(customer_key)`: that customer's
//!   first_signup_date (null for a null key).
//!
//! They give each input row its customer in validation, where the
//! portable SQL joins the input with the stored directory
//! (sql/validate.sql, `<t>_keyed`). Such a join took about 130 ns a row on
//! a million customers (75 M usage rows: 9.5 s of the run's two cores;
//! benches/README.md, "Measured reasons"): each probe reads the join's hash
//! table, its chain of row indices, the directory row's id to compare and
//! two more columns to copy, each out of cache. A slot of this table holds
//! the id's length and first 12 bytes beside its key, so an id of up to
//! 12 bytes is found, and compared, in one slot; and each row's slot is
//! prefetched 16 rows before it is probed, so that the cache misses of
//! consecutive rows overlap instead of following each other.
//!
//! Like `directory_customer_id`, they exist only in a run's local session.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Int32Array, Int32Builder, StringArray, make_view,
};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type};
use datafusion::common::hash_utils::RandomState;
use datafusion::common::{Result, exec_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::prefetch::{AHEAD, prefetch};

pub const KEY_NAME: &str = "directory_customer_key";
pub const FIRST_SIGNUP_NAME: &str = "directory_first_signup";

/// Bytes of an id kept in its slot.
const INLINE: usize = 12;

/// A key of the open-addressing table; `EMPTY` marks a free slot.
#[derive(Clone, Copy)]
struct Slot {
    len: u32,
    head: [u8; INLINE],
    key: u32,
}

const EMPTY: u32 = u32::MAX;

impl Slot {
    const FREE: Slot = Slot {
        len: 0,
        head: [0; INLINE],
        key: EMPTY,
    };

    fn of(id: &str, key: u32) -> Slot {
        let bytes = id.as_bytes();
        let mut head = [0; INLINE];
        let shown = bytes.len().min(INLINE);
        head[..shown].copy_from_slice(&bytes[..shown]);
        Slot {
            len: bytes.len() as u32,
            head,
            key,
        }
    }

    /// Whether `id` may be this slot's id: same length and first bytes
    /// (the whole id when it is short).
    fn may_hold(&self, id: &[u8]) -> bool {
        let shown = id.len().min(INLINE);
        self.len as usize == id.len() && self.head[..shown] == id[..shown]
    }
}

pub struct CustomerDirectory {
    /// The customer_id of customer_key k at index k.
    ids: StringArray,
    /// The Arrow string view of customer_key k's id at index k (buffer 0,
    /// offset 0 for an id longer than a view holds): restoring the ids of
    /// keys in no order reads one view each, which can be fetched ahead,
    /// instead of an offset and then the bytes it points to.
    views: Vec<u128>,
    /// The first signup of customer_key k at index k.
    first_signups: Date32Array,
    slots: Vec<Slot>,
    mask: usize,
    hasher: RandomState,
    /// The directory's bytes, taken from the session's memory pool (held
    /// until the directory is dropped with the session).
    _reservation: MemoryReservation,
}

// A million customers: show the size, not the contents.
impl std::fmt::Debug for CustomerDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomerDirectory({} customers)", self.len())
    }
}

impl CustomerDirectory {
    /// `ids` and `first_signups`: the directory's rows in customer_key
    /// order from 0. Its memory is taken from `pool`. Fails on a null or
    /// repeated id, or when the pool cannot hold the directory.
    pub fn new(
        ids: StringArray,
        first_signups: Date32Array,
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<Self> {
        if ids.len() != first_signups.len() || ids.len() >= EMPTY as usize {
            return exec_err!(
                "customer directory: {} ids and {} first signups",
                ids.len(),
                first_signups.len()
            );
        }
        // At most half full: a probe rarely passes more than one slot.
        let capacity = (ids.len() * 2).next_power_of_two().max(16);
        let reservation = MemoryConsumer::new("customer directory").register(pool);
        reservation.try_grow(
            capacity * std::mem::size_of::<Slot>()
                + ids.len() * std::mem::size_of::<u128>()
                + ids.get_array_memory_size()
                + first_signups.get_array_memory_size(),
        )?;
        let views = ids
            .iter()
            .map(|id| make_view(id.unwrap_or_default().as_bytes(), 0, 0))
            .collect();
        let mut directory = CustomerDirectory {
            ids,
            views,
            first_signups,
            slots: vec![Slot::FREE; capacity],
            mask: capacity - 1,
            hasher: RandomState::with_seed(0x6373_6b70_6964_6972),
            _reservation: reservation,
        };
        for key in 0..directory.ids.len() {
            if directory.ids.is_null(key) {
                return exec_err!("customer directory: customer_key {key} has no customer_id");
            }
            let id = directory.ids.value(key);
            let mut index = directory.first_slot(id);
            while directory.slots[index].key != EMPTY {
                if directory.holds(&directory.slots[index], id) {
                    return exec_err!("customer directory: customer_id {id:?} appears twice");
                }
                index = (index + 1) & directory.mask;
            }
            directory.slots[index] = Slot::of(id, key as u32);
        }
        Ok(directory)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The customer_id of `key`, which must be below `len()`.
    pub fn id(&self, key: usize) -> &str {
        self.ids.value(key)
    }

    /// The string view of `key`'s id, which must be below `len()`: the id
    /// itself when it is at most 12 bytes long, else its length, first
    /// bytes, buffer 0 and offset 0.
    pub fn view(&self, key: usize) -> u128 {
        self.views[key]
    }

    /// Asks for the view of `key`, if it is in the directory, to be
    /// brought into cache.
    pub fn prefetch_view(&self, key: usize) {
        if let Some(view) = self.views.get(key) {
            prefetch(view);
        }
    }

    /// The customer_key of `id`, if the directory holds it.
    pub fn key_of(&self, id: &str) -> Option<i32> {
        self.find(id, self.first_slot(id))
    }

    /// `id`'s key, looking from slot `index` on.
    fn find(&self, id: &str, mut index: usize) -> Option<i32> {
        loop {
            let slot = &self.slots[index];
            if slot.key == EMPTY {
                return None;
            }
            if self.holds(slot, id) {
                return Some(slot.key as i32);
            }
            index = (index + 1) & self.mask;
        }
    }

    /// The keys of `rows` ids (`id(row)`), each row's slot fetched
    /// [`AHEAD`] rows before it is probed.
    fn keys_of_rows<'a>(&self, rows: usize, id: impl Fn(usize) -> Option<&'a str>) -> Int32Array {
        let firsts: Vec<Option<usize>> = (0..rows)
            .map(|row| id(row).map(|id| self.first_slot(id)))
            .collect();
        let mut keys = Int32Builder::with_capacity(rows);
        for row in 0..rows {
            if let Some(Some(ahead)) = firsts.get(row + AHEAD) {
                prefetch(&self.slots[*ahead]);
            }
            keys.append_option(
                id(row)
                    .zip(firsts[row])
                    .and_then(|(id, first)| self.find(id, first)),
            );
        }
        keys.finish()
    }

    fn first_slot(&self, id: &str) -> usize {
        self.hasher.hash_one(id) as usize & self.mask
    }

    fn holds(&self, slot: &Slot, id: &str) -> bool {
        slot.may_hold(id.as_bytes())
            && (id.len() <= INLINE || self.ids.value(slot.key as usize) == id)
    }

    /// The keys of `ids` (any string type), null where unknown or null.
    fn keys_of(&self, ids: &ArrayRef) -> Result<Int32Array> {
        let keys = match ids.data_type() {
            DataType::Utf8View => {
                let ids = ids.as_string_view();
                self.keys_of_rows(ids.len(), |row| ids.is_valid(row).then(|| ids.value(row)))
            }
            DataType::Utf8 => {
                let ids = ids.as_string::<i32>();
                self.keys_of_rows(ids.len(), |row| ids.is_valid(row).then(|| ids.value(row)))
            }
            DataType::LargeUtf8 => {
                let ids = ids.as_string::<i64>();
                self.keys_of_rows(ids.len(), |row| ids.is_valid(row).then(|| ids.value(row)))
            }
            DataType::Dictionary(_, value) if value.is_string() => {
                return self.keys_of(&cast(ids, value)?);
            }
            other => return exec_err!("{KEY_NAME}: customer_id is {other}, not a string"),
        };
        Ok(keys)
    }

    /// The first signups of `keys` (any integer type), null for a null key,
    /// each fetched [`AHEAD`] rows before it is read. One pass over the key
    /// values without a builder: a row costs the read of its signup, which
    /// the prefetch mostly hides (usage's 75 M rows took 0.77 s of CPU with
    /// the keys widened to 64 bits and appended one by one).
    fn first_signups_of(&self, keys: &ArrayRef) -> Result<Date32Array> {
        let not_held = |key: &dyn std::fmt::Display| {
            exec_err!(
                "{FIRST_SIGNUP_NAME}: customer_key {key} is not in the customer directory (0..{})",
                self.len()
            )
        };
        let keys = match keys.data_type() {
            DataType::Int32 => Arc::clone(keys),
            _ => {
                let wide = cast(keys, &DataType::Int64)?;
                let wide = wide.as_primitive::<Int64Type>();
                if let Some(key) = wide
                    .iter()
                    .flatten()
                    .find(|&key| i32::try_from(key).is_err())
                {
                    return not_held(&key);
                }
                cast(&wide, &DataType::Int32)?
            }
        };
        let keys = keys.as_primitive::<Int32Type>();
        let values = keys.values();
        let signups = self.first_signups.values();
        let mut first_signups = Vec::with_capacity(values.len());
        for (row, &key) in values.iter().enumerate() {
            if let Some(signup) = values
                .get(row + AHEAD)
                .and_then(|&ahead| signups.get(ahead as u32 as usize))
            {
                prefetch(signup);
            }
            // A null row's value may be anything: in range it reads a
            // signup the null hides, out of range it is no error.
            match signups.get(key as u32 as usize) {
                Some(&signup) => first_signups.push(signup),
                None if keys.is_null(row) => first_signups.push(0),
                None => return not_held(&key),
            }
        }
        let nulls = match self.first_signups.nulls() {
            None => keys.nulls().cloned(),
            Some(unknown) => {
                let valid = (0..values.len())
                    .map(|row| keys.is_valid(row) && unknown.is_valid(values[row] as u32 as usize));
                Some(NullBuffer::from_iter(valid))
            }
        };
        Ok(Date32Array::new(ScalarBuffer::from(first_signups), nulls))
    }
}

/// Which look-up a [`DirectoryLookup`] function does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lookup {
    Key,
    FirstSignup,
}

/// `directory_customer_key` or `directory_first_signup` over one directory.
#[derive(Debug)]
pub struct DirectoryLookup {
    lookup: Lookup,
    signature: Signature,
    directory: Arc<CustomerDirectory>,
}

impl DirectoryLookup {
    pub fn customer_key(directory: Arc<CustomerDirectory>) -> Self {
        Self::new(Lookup::Key, directory)
    }

    pub fn first_signup(directory: Arc<CustomerDirectory>) -> Self {
        Self::new(Lookup::FirstSignup, directory)
    }

    fn new(lookup: Lookup, directory: Arc<CustomerDirectory>) -> Self {
        // The key look-up is deterministic, but declared volatile so that
        // the planner keeps it where the SQL calls it: a filter on its
        // result (the first signup's visibility) pushed below that
        // projection would look every row up twice.
        let volatility = match lookup {
            Lookup::Key => Volatility::Volatile,
            Lookup::FirstSignup => Volatility::Immutable,
        };
        Self {
            lookup,
            signature: Signature::any(1, volatility),
            directory,
        }
    }
}

// Two instances are the same function when they do the same look-up in
// the same directory.
impl PartialEq for DirectoryLookup {
    fn eq(&self, other: &Self) -> bool {
        self.lookup == other.lookup && Arc::ptr_eq(&self.directory, &other.directory)
    }
}

impl Eq for DirectoryLookup {}

impl Hash for DirectoryLookup {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.lookup.hash(state);
        Arc::as_ptr(&self.directory).hash(state);
    }
}

impl ScalarUDFImpl for DirectoryLookup {
    fn name(&self) -> &str {
        match self.lookup {
            Lookup::Key => KEY_NAME,
            Lookup::FirstSignup => FIRST_SIGNUP_NAME,
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match (self.lookup, args) {
            (Lookup::Key, [DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View]) => {
                Ok(DataType::Int32)
            }
            (Lookup::Key, [DataType::Dictionary(_, value)]) if value.is_string() => {
                Ok(DataType::Int32)
            }
            (Lookup::FirstSignup, [key]) if key.is_integer() => Ok(DataType::Date32),
            (Lookup::Key, _) => exec_err!("{KEY_NAME} takes a customer_id string"),
            (Lookup::FirstSignup, _) => {
                exec_err!("{FIRST_SIGNUP_NAME} takes an integer customer_key")
            }
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [argument] = arrays.as_slice() else {
            return exec_err!("{} takes one argument", self.name());
        };
        let result: ArrayRef = match self.lookup {
            Lookup::Key => Arc::new(self.directory.keys_of(argument)?),
            Lookup::FirstSignup => Arc::new(self.directory.first_signups_of(argument)?),
        };
        Ok(ColumnarValue::Array(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringViewArray};
    use datafusion::execution::memory_pool::{GreedyMemoryPool, UnboundedMemoryPool};

    fn pool() -> Arc<dyn MemoryPool> {
        Arc::new(UnboundedMemoryPool::default())
    }

    const IDS: [&str; 4] = [
        "A-1",
        "abcdefghijkl",
        // longer than a slot holds, differing only after the slot's bytes
        "customer-000000000001",
        "customer-000000000002",
    ];

    fn directory() -> CustomerDirectory {
        CustomerDirectory::new(
            StringArray::from(IDS.to_vec()),
            Date32Array::from(vec![Some(10), None, Some(30), Some(40)]),
            &pool(),
        )
        .unwrap()
    }

    #[test]
    fn every_id_finds_its_key_and_nothing_else_does() {
        let directory = directory();
        for (key, id) in IDS.iter().enumerate() {
            assert_eq!(directory.key_of(id), Some(key as i32), "{id}");
        }
        for stranger in [
            "",
            "A-",
            "A-10",
            "abcdefghijk",
            "abcdefghijklm",
            "customer-000000000003",
            "customer-00000000000",
        ] {
            assert_eq!(directory.key_of(stranger), None, "{stranger:?}");
        }
    }

    #[test]
    fn a_full_table_of_many_ids_finds_each() {
        let ids: Vec<String> = (0..5000).map(|i| format!("C{i}")).collect();
        let signups = Date32Array::from(vec![Some(0); ids.len()]);
        let directory =
            CustomerDirectory::new(StringArray::from(ids.clone()), signups, &pool()).unwrap();
        for (key, id) in ids.iter().enumerate() {
            assert_eq!(directory.key_of(id), Some(key as i32));
        }
        assert_eq!(directory.key_of("C5000"), None);
    }

    #[test]
    fn a_repeated_or_missing_id_is_refused() {
        let repeated = CustomerDirectory::new(
            StringArray::from(vec!["A", "B", "A"]),
            Date32Array::from(vec![Some(0); 3]),
            &pool(),
        );
        assert!(
            repeated
                .unwrap_err()
                .to_string()
                .contains("\"A\" appears twice")
        );
        let missing = CustomerDirectory::new(
            StringArray::from(vec![Some("A"), None]),
            Date32Array::from(vec![Some(0); 2]),
            &pool(),
        );
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("customer_key 1 has no customer_id")
        );
    }

    #[test]
    fn keys_of_any_string_type_and_their_first_signups() {
        let directory = directory();
        let ids: Vec<Option<&str>> = vec![
            Some("customer-000000000002"),
            None,
            Some("zzz"),
            Some("A-1"),
            Some("abcdefghijkl"),
        ];
        let expected = Int32Array::from(vec![Some(3), None, None, Some(0), Some(1)]);
        let arrays: [ArrayRef; 2] = [
            Arc::new(StringArray::from(ids.clone())),
            Arc::new(StringViewArray::from(ids)),
        ];
        for ids in arrays {
            assert_eq!(directory.keys_of(&ids).unwrap(), expected);
        }
        let keys: ArrayRef = Arc::new(expected);
        assert_eq!(
            directory.first_signups_of(&keys).unwrap(),
            Date32Array::from(vec![Some(40), None, None, Some(10), None])
        );
        // any integer type; a null key's value is not read
        let wide: ArrayRef = Arc::new(Int64Array::from(vec![Some(3), None, Some(1), Some(0)]));
        assert_eq!(
            directory.first_signups_of(&wide).unwrap(),
            Date32Array::from(vec![Some(40), None, None, Some(10)])
        );
        let null_beyond: ArrayRef = Arc::new(Int32Array::new(
            vec![2, 99, -7].into(),
            Some(NullBuffer::from(vec![true, false, false])),
        ));
        assert_eq!(
            directory.first_signups_of(&null_beyond).unwrap(),
            Date32Array::from(vec![Some(30), None, None])
        );
        let outside: [(ArrayRef, &str); 3] = [
            (Arc::new(Int32Array::from(vec![0, 4])), "4"),
            (Arc::new(Int32Array::from(vec![-1])), "-1"),
            (Arc::new(Int64Array::from(vec![1 << 40])), "1099511627776"),
        ];
        for (keys, key) in outside {
            let error = directory.first_signups_of(&keys).unwrap_err().to_string();
            assert!(
                error.contains(&format!(
                    "customer_key {key} is not in the customer directory"
                )),
                "{error}"
            );
        }
    }

    #[test]
    fn the_directory_takes_its_memory_from_the_pool() {
        let ids = StringArray::from(vec!["A", "B"]);
        let signups = Date32Array::from(vec![Some(0); 2]);
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1 << 20));
        let directory = CustomerDirectory::new(ids.clone(), signups.clone(), &pool).unwrap();
        // 16 slots of 20 bytes, two views of 16 and the two arrays
        assert!(pool.reserved() >= 16 * 20 + 2 * 16, "{}", pool.reserved());
        drop(directory);
        assert_eq!(pool.reserved(), 0);
        let small: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(100));
        let error = CustomerDirectory::new(ids, signups, &small)
            .unwrap_err()
            .to_string();
        assert!(error.contains("customer directory"), "{error}");
    }
}
