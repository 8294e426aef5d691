//! The key hashes that occur more than once in an input, found by grouping
//! them by their top bits and counting each group in a small table.
//!
//! Finding duplicate keys is the heaviest check of validation: every key of
//! every row must be compared with all the others (60 M usage days at 1 M
//! customers). A hash aggregation keeps a table entry per distinct key and,
//! at that size, spills (benches/README.md, "Measured reasons").
//! Collecting the keys' 64-bit hashes (8 bytes each) and looking for
//! repeats among them in cache-sized groups takes a fraction of that; the few repeated hashes are then checked on the real
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
            // Grouping by bucket writes into a second buffer; without room
            // for it in the pool, a comparison sort in place (which groups
            // them too).
            let room = reservation
                .try_grow(hashes.len() * std::mem::size_of::<u64>())
                .is_ok();
            let grouped = tokio::task::spawn_blocking(move || match room {
                true => group_by_bucket(&hashes),
                false => {
                    hashes.sort_unstable();
                    let starts = bucket_starts(&hashes);
                    Grouped {
                        values: hashes,
                        starts,
                    }
                }
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
            Ok::<_, DataFusionError>(Some((grouped, reservation)))
        }));
    }
    let mut grouped_parts = Vec::new();
    let mut reservations = Vec::new();
    for task in tasks {
        let part = task
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        match part {
            Some((grouped, reservation)) => {
                grouped_parts.push(grouped);
                reservations.push(reservation);
            }
            None => return Ok(false),
        }
    }
    let repeated = tokio::task::spawn_blocking(move || repeated_values(&grouped_parts))
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
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

/// Hashes are grouped by their top bits into this many buckets; one
/// bucket's hashes of a 75 M-row input fit a cache-sized table.
const BUCKET_BITS: u32 = 12;
const BUCKETS: usize = 1 << BUCKET_BITS;

fn bucket_of(hash: u64) -> usize {
    (hash >> (64 - BUCKET_BITS)) as usize
}

/// One partition's hashes, grouped by bucket: bucket `b` is
/// `values[starts[b]..starts[b + 1]]`.
struct Grouped {
    values: Vec<u64>,
    starts: Vec<usize>,
}

impl Grouped {
    fn bucket(&self, b: usize) -> &[u64] {
        &self.values[self.starts[b]..self.starts[b + 1]]
    }
}

/// Where each bucket starts in values already grouped by bucket (sorted
/// values are), plus the end.
fn bucket_starts(values: &[u64]) -> Vec<usize> {
    let mut starts = vec![0usize; BUCKETS + 1];
    for &v in values {
        starts[bucket_of(v) + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    starts
}

/// Groups `values` by bucket in one counting pass and one scatter into a
/// second buffer: hashes are uniform, so the buckets are even, and a few
/// thousand destinations keep the scatter's writes in cache (a full radix
/// sort on 16-bit digits took 2.7 s per 37 M hashes, this 0.5-0.7 s).
fn group_by_bucket(values: &[u64]) -> Grouped {
    let starts = bucket_starts(values);
    let mut next = starts.clone();
    let mut grouped = vec![0u64; values.len()];
    for &v in values {
        let slot = &mut next[bucket_of(v)];
        grouped[*slot] = v;
        *slot += 1;
    }
    Grouped {
        values: grouped,
        starts,
    }
}

/// The values occurring more than once across the parts, ascending. The
/// buckets are split in as many ranges as there are parts (the session's
/// partitions), each counted on a thread of its own.
fn repeated_values(parts: &[Grouped]) -> Vec<u64> {
    let threads = parts.len().clamp(1, BUCKETS);
    let per_thread = BUCKETS.div_ceil(threads);
    let mut repeated: Vec<u64> = std::thread::scope(|scope| {
        let counting: Vec<_> = (0..threads)
            .map(|t| {
                let buckets = t * per_thread..((t + 1) * per_thread).min(BUCKETS);
                scope.spawn(move || repeated_in(parts, buckets))
            })
            .collect();
        counting
            .into_iter()
            .flat_map(|thread| thread.join().expect("counting thread panicked"))
            .collect()
    });
    // A value seen three times was pushed twice.
    repeated.sort_unstable();
    repeated.dedup();
    repeated
}

/// The repeated values of some buckets (a value pushed once per repeat):
/// each bucket's values from every part go through one open-addressing
/// table (twice the bucket's size, so probes are short), 0 marking a free
/// slot and the value 0 itself, which lives in bucket 0, counted apart.
fn repeated_in(parts: &[Grouped], buckets: std::ops::Range<usize>) -> Vec<u64> {
    let mut repeated = Vec::new();
    let mut zeros = 0usize;
    let mut table: Vec<u64> = Vec::new();
    for b in buckets {
        let len: usize = parts.iter().map(|part| part.bucket(b).len()).sum();
        let size = (2 * len).next_power_of_two();
        table.clear();
        table.resize(size, 0);
        let mask = size - 1;
        for &v in parts.iter().flat_map(|part| part.bucket(b)) {
            if v == 0 {
                zeros += 1;
                continue;
            }
            // The bucket shares the top bits; the low bits are uniform.
            let mut slot = v as usize & mask;
            loop {
                match table[slot] {
                    0 => {
                        table[slot] = v;
                        break;
                    }
                    seen if seen == v => {
                        repeated.push(v);
                        break;
                    }
                    _ => slot = (slot + 1) & mask,
                }
            }
        }
    }
    if zeros > 1 {
        repeated.push(0);
    }
    repeated
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{Grouped, bucket_of, bucket_starts, group_by_bucket, repeated_values};

    /// splitmix64 values, with repeats (within and across parts, some
    /// three times) and the extremes 0 and u64::MAX mixed in.
    fn hashes(seed: u64, n: usize) -> Vec<u64> {
        let mut state = seed;
        (0..n)
            .map(|i| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                match i % 1000 {
                    0 => u64::MAX,
                    1 => 0,
                    2 => 42,
                    3 => 7 + (i as u64 / 1000) % 3,
                    _ => z ^ (z >> 31),
                }
            })
            .collect()
    }

    fn sorted_grouping(mut values: Vec<u64>) -> Grouped {
        values.sort_unstable();
        let starts = bucket_starts(&values);
        Grouped { values, starts }
    }

    #[test]
    fn grouping_keeps_every_value_in_its_bucket() {
        let values = hashes(1, 50_000);
        for grouped in [group_by_bucket(&values), sorted_grouping(values.clone())] {
            let mut all = grouped.values.clone();
            all.sort_unstable();
            let mut expected = values.clone();
            expected.sort_unstable();
            assert_eq!(all, expected);
            for b in 0..super::BUCKETS {
                assert!(grouped.bucket(b).iter().all(|&v| bucket_of(v) == b));
            }
        }
        assert!(group_by_bucket(&[]).values.is_empty());
    }

    #[test]
    fn repeats_are_the_values_counted_more_than_once() {
        let parts = [hashes(1, 30_000), hashes(2, 20_000), Vec::new(), vec![5, 5]];
        let mut counts = BTreeMap::new();
        for v in parts.iter().flatten() {
            *counts.entry(*v).or_insert(0) += 1;
        }
        let expected: Vec<u64> = counts
            .into_iter()
            .filter(|&(_, n)| n > 1)
            .map(|(v, _)| v)
            .collect();
        assert!(expected.contains(&0) && expected.contains(&u64::MAX) && expected.contains(&5));
        let grouped: Vec<Grouped> = parts.iter().map(|p| group_by_bucket(p)).collect();
        assert_eq!(repeated_values(&grouped), expected);
        let sorted: Vec<Grouped> = parts.iter().map(|p| sorted_grouping(p.clone())).collect();
        assert_eq!(repeated_values(&sorted), expected);
    }

    #[test]
    fn no_repeats_among_distinct_values() {
        let grouped = [group_by_bucket(&[1, 2, 3]), group_by_bucket(&[4, 0])];
        assert_eq!(repeated_values(&grouped), Vec::<u64>::new());
        assert_eq!(repeated_values(&[group_by_bucket(&[0, 0])]), vec![0]);
    }
}
