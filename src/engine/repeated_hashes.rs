//! The key hashes that occur more than once in an input, found by sorting.
//!
//! Finding duplicate keys is the heaviest check of validation: every key of
//! every row must be compared with all the others (60 M usage days at 1 M
//! customers). A hash aggregation keeps a table entry per distinct key and,
//! at that size, spills (benches/README.md, "Measured reasons").
//! Collecting the keys' 64-bit hashes (8 bytes each) and sorting them takes
//! a fraction of that; the few repeated hashes are then checked on the real
//! key columns in SQL (sql/validate.sql), so a collision cannot reject a
//! row. The hashes are reserved from the engine's memory pool; when the
//! pool cannot hold them, the caller falls back to the hash aggregation,
//! which spills.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, UInt64Type};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::prelude::SessionContext;
use futures::StreamExt;

/// Runs `query` (one UInt64 column of hashes) and registers `name` as a
/// table of the values that occur more than once (column `h`). Returns
/// false, registering nothing, when the memory pool cannot hold the hashes.
pub async fn register(
    ctx: &SessionContext,
    name: &str,
    query: &str,
) -> Result<bool, DataFusionError> {
    let frame = ctx.sql(query).await?;
    let streams = frame.execute_stream_partitioned().await?;
    let pool = ctx.runtime_env().memory_pool.clone();
    let mut tasks = Vec::new();
    for (partition, mut stream) in streams.into_iter().enumerate() {
        let reservation =
            MemoryConsumer::new(format!("RepeatedHashes[{name}][{partition}]")).register(&pool);
        tasks.push(tokio::spawn(async move {
            let mut hashes: Vec<u64> = Vec::new();
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let column = batch.column(0).as_primitive::<UInt64Type>();
                if !grow(&reservation, &hashes, column.len()) {
                    return Ok(None);
                }
                hashes.extend_from_slice(column.values());
            }
            // A radix sort needs a second buffer; without room for it in
            // the pool, a comparison sort in place.
            let room = reservation
                .try_grow(hashes.len() * std::mem::size_of::<u64>())
                .is_ok();
            let sorted = tokio::task::spawn_blocking(move || {
                match room {
                    true => radix_sort(&mut hashes),
                    false => hashes.sort_unstable(),
                }
                hashes
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
            Ok::<_, DataFusionError>(Some((sorted, reservation)))
        }));
    }
    let mut sorted_parts = Vec::new();
    let mut reservations = Vec::new();
    for task in tasks {
        let part = task
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        match part {
            Some((sorted, reservation)) => {
                sorted_parts.push(sorted);
                reservations.push(reservation);
            }
            None => return Ok(false),
        }
    }
    let repeated = repeated_values(&sorted_parts);
    drop(sorted_parts);
    drop(reservations);
    let schema = Arc::new(Schema::new(vec![Field::new("h", DataType::UInt64, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt64Array::from(repeated))])?;
    ctx.deregister_table(name)?;
    ctx.register_table(
        name,
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    Ok(true)
}

/// Reserves room for `more` hashes (amortised like the Vec grows).
fn grow(reservation: &MemoryReservation, hashes: &[u64], more: usize) -> bool {
    let needed = (hashes.len() + more) * std::mem::size_of::<u64>();
    needed <= reservation.size()
        || reservation
            .try_grow(needed.max(2 * reservation.size()) - reservation.size())
            .is_ok()
}

/// Sorts `values` ascending, 16 bits at a time from the lowest (four
/// stable counting passes through a second buffer): hashes are uniform, and
/// this takes a fraction of a comparison sort's time on tens of millions.
fn radix_sort(values: &mut Vec<u64>) {
    let mut other = vec![0u64; values.len()];
    for shift in (0..64).step_by(16) {
        let digit = |v: u64| ((v >> shift) & 0xFFFF) as usize;
        let mut next = vec![0usize; 1 << 16];
        for &v in values.iter() {
            next[digit(v)] += 1;
        }
        let mut start = 0;
        for slot in next.iter_mut() {
            (*slot, start) = (start, start + *slot);
        }
        for &v in values.iter() {
            let d = digit(v);
            other[next[d]] = v;
            next[d] += 1;
        }
        std::mem::swap(values, &mut other);
    }
}

/// The values occurring more than once across sorted lists, ascending.
fn repeated_values(parts: &[Vec<u64>]) -> Vec<u64> {
    let mut positions = vec![0usize; parts.len()];
    let mut repeated = Vec::new();
    loop {
        // the smallest value not yet consumed, and how often it occurs
        let Some(value) = parts
            .iter()
            .zip(&positions)
            .filter_map(|(part, &i)| part.get(i).copied())
            .min()
        else {
            return repeated;
        };
        let mut count = 0usize;
        for (part, i) in parts.iter().zip(positions.iter_mut()) {
            while part.get(*i) == Some(&value) {
                *i += 1;
                count += 1;
            }
        }
        if count > 1 {
            repeated.push(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{radix_sort, repeated_values};

    #[test]
    fn radix_sort_sorts_like_a_comparison_sort() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut values: Vec<u64> = (0..100_000)
            .map(|i| {
                // splitmix64, with repeats and extremes mixed in
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                match i % 1000 {
                    0 => u64::MAX,
                    1 => 0,
                    2 => 42,
                    _ => z ^ (z >> 31),
                }
            })
            .collect();
        let mut expected = values.clone();
        expected.sort_unstable();
        radix_sort(&mut values);
        assert_eq!(values, expected);
        let mut empty: Vec<u64> = Vec::new();
        radix_sort(&mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn repeats_within_and_across_parts() {
        let parts = vec![vec![1, 3, 3, 7, 9], vec![2, 7, 8], vec![], vec![9, 10]];
        assert_eq!(repeated_values(&parts), vec![3, 7, 9]);
        assert_eq!(repeated_values(&[vec![5, 6]]), Vec::<u64>::new());
    }
}
