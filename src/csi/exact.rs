//! Moments of answers that are whole numbers (the answers of every rating
//! scale), from exact integer sums.
//!
//! The weighted sums a resample needs (of each answer and of each product
//! of two answers) are integers when the answers are: kept as 16-bit
//! integers, they are added exactly, in any order and on any CPU, so the
//! moments do not depend on how the work is split, and the covariances are
//! worked out from exact sums (`n * sum(xy) - sum(x) * sum(y)` in 128 bits)
//! without the cancellation that made centring necessary for floats.
//!
//! The 16-bit answers are also what makes a resample fast: two respondents'
//! answers interleaved in one 256-bit vector are multiplied and added in
//! pairs by one instruction (`vpmaddwd`), sixteen products at a time,
//! where floats take four; and the 427 K respondents' answers of the
//! benchmark take 14 MB instead of 55, read once per resample.

use nalgebra::DMatrix;

use super::moments::Moments;

/// The largest answer, in absolute value, kept as a whole number: a weight
/// of up to [`MAX_WEIGHT`] times it fits 16 bits.
const MAX_ANSWER: f64 = 127.0;

/// The largest weight (a respondent's count in a resample) the vector
/// kernel takes; a resample with a larger one is added by the scalar loop.
const MAX_WEIGHT: u32 = 255;

/// Columns per block: one 256-bit vector of 16-bit answers.
const BLOCK: usize = 16;

/// Pairs of rows added in 32-bit lanes before the lanes are moved to the
/// 64-bit totals: 128 pairs of at most 2 x 255 x 127 x 127 each stay below
/// 2^31.
const CHUNK_PAIRS: usize = 128;

/// The answers row by row as 16-bit integers, each row padded with zeros
/// to a multiple of [`BLOCK`] columns.
#[derive(Debug, Clone)]
pub(super) struct WholeRows {
    p: usize,
    stride: usize,
    values: Vec<i16>,
}

/// Exact weighted sums of `p` columns: the total weight, the sum of each
/// column and of each product of two columns (row k at k * p, entries
/// l >= k).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExactSums {
    total: u64,
    sums: Vec<i64>,
    products: Vec<i64>,
}

impl WholeRows {
    /// None when some answer is not a whole number within +-127.
    pub(super) fn new(data: &DMatrix<f64>) -> Option<Self> {
        let (n, p) = data.shape();
        let stride = p.next_multiple_of(BLOCK).max(BLOCK);
        let mut values = vec![0i16; n * stride];
        for r in 0..n {
            for c in 0..p {
                let value = data[(r, c)];
                if value.fract() != 0.0 || value.abs() > MAX_ANSWER {
                    return None;
                }
                values[r * stride + c] = value as i16;
            }
        }
        Some(WholeRows { p, stride, values })
    }

    pub(super) fn respondents(&self) -> usize {
        self.values.len() / self.stride
    }

    /// The moments of the rows, row i counted `count(i)` times.
    pub(super) fn weighted_moments(&self, count: impl Fn(usize) -> u32) -> Moments {
        let p = self.p;
        let mut sums = ExactSums {
            total: 0,
            sums: vec![0; p],
            products: vec![0; p * p],
        };
        let mut scratch = Scratch::new(self.stride);
        let vectors = has_avx2();
        // The rows with a weight, a chunk at a time, picked without a
        // branch per row: a resample leaves a third of the rows out, in no
        // order the CPU could predict.
        let mut chunk = [(0u32, 0u32); 2 * CHUNK_PAIRS];
        let n = self.respondents();
        let mut next = 0;
        while next < n {
            let (mut len, mut widest) = (0, 0);
            while len < chunk.len() && next < n {
                let weight = count(next);
                chunk[len] = (next as u32, weight);
                len += usize::from(weight != 0);
                widest = widest.max(weight);
                next += 1;
            }
            let rows = &chunk[..len];
            sums.total += rows.iter().map(|&(_, w)| u64::from(w)).sum::<u64>();
            #[cfg(target_arch = "x86_64")]
            if vectors && widest <= MAX_WEIGHT {
                // SAFETY: the CPU has AVX2 (`has_avx2`), the only feature
                // the function is compiled for.
                unsafe { self.add_pairs_avx2(rows, &mut scratch, &mut sums) };
                continue;
            }
            self.add_rows(rows, &mut sums);
        }
        sums.moments(p)
    }

    fn row(&self, i: u32) -> &[i16] {
        let start = i as usize * self.stride;
        &self.values[start..start + self.stride]
    }

    /// The sums row by row, one product at a time.
    fn add_rows(&self, rows: &[(u32, u32)], sums: &mut ExactSums) {
        let p = self.p;
        for &(i, w) in rows {
            let x = &self.row(i)[..p];
            for k in 0..p {
                let a = i64::from(w) * i64::from(x[k]);
                sums.sums[k] += a;
                let out = &mut sums.products[k * p + k..(k + 1) * p];
                for (product, &b) in out.iter_mut().zip(&x[k..]) {
                    *product += a * i64::from(b);
                }
            }
        }
    }

    /// [`Self::add_rows`] two rows at a time: their answers interleaved,
    /// (x_r[l], x_s[l]) in each 32-bit lane, and column k's weighted pair
    /// (w_r x_r[k], w_s x_s[k]) in every lane of another vector, `vpmaddwd`
    /// gives w_r x_r[k] x_r[l] + w_s x_s[k] x_s[l] for eight columns l. The
    /// interleaving works within each 128-bit half, so a block's low vector
    /// holds columns 0-3 and 8-11, its high vector 4-7 and 12-15 (`LANES`).
    /// Every product k, l is worked out, the lower triangle too (simpler
    /// than skipping it, and read by no one). Every weight is at most
    /// [`MAX_WEIGHT`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn add_pairs_avx2(&self, rows: &[(u32, u32)], scratch: &mut Scratch, sums: &mut ExactSums) {
        use std::arch::x86_64::{
            __m256i, _mm256_add_epi32, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_mullo_epi16,
            _mm256_set1_epi16, _mm256_set1_epi32, _mm256_setzero_si256, _mm256_storeu_si256,
            _mm256_unpackhi_epi16, _mm256_unpacklo_epi16,
        };
        /// The column of each 32-bit lane of a block's low and high
        /// vectors.
        const LANES: [[usize; 8]; 2] = [[0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]];
        /// Where column c's weighted pair is among a block's 16 lanes
        /// (low vector, then high).
        const POSITION: [usize; BLOCK] = [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15];

        assert!(rows.len() <= 2 * CHUNK_PAIRS);
        let (p, stride) = (self.p, self.stride);
        let blocks = stride / BLOCK;
        // columns k in groups of four: eight accumulators in registers
        let k_end = p.next_multiple_of(4);
        debug_assert!(k_end <= stride);
        let zero = _mm256_setzero_si256();
        let ones = _mm256_set1_epi16(1);
        let lanes = |vector: __m256i| -> [i32; 8] {
            let mut out = [0i32; 8];
            // SAFETY: out is 32 bytes, an unaligned store's width.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), vector) };
            out
        };
        let Scratch { answers, weighted } = scratch;
        let pairs = rows.len().div_ceil(2);
        // each column's weighted sum, in the lanes of the answers
        let mut column_sums = vec![zero; blocks * 2];
        // answers[(pair * blocks + b) * 2 + half]: a pair's interleaved
        // answers; weighted[pair * stride + ..]: their weighted pairs
        for (pair, two) in rows.chunks(2).enumerate() {
            let (r, w_r) = two[0];
            let partner = two.get(1).copied();
            let w_s = partner.map_or(0, |(_, w)| w);
            let weights = _mm256_set1_epi32(((w_s as i32) << 16) | w_r as i32);
            for b in 0..blocks {
                let block = |i: u32| {
                    let values = &self.row(i)[b * BLOCK..(b + 1) * BLOCK];
                    // SAFETY: 16 values of 2 bytes, an unaligned load's width.
                    unsafe { _mm256_loadu_si256(values.as_ptr().cast()) }
                };
                let x_r = block(r);
                let x_s = partner.map_or(zero, |(s, _)| block(s));
                let both = [
                    _mm256_unpacklo_epi16(x_r, x_s),
                    _mm256_unpackhi_epi16(x_r, x_s),
                ];
                for (half, &answer) in both.iter().enumerate() {
                    answers[(pair * blocks + b) * 2 + half] = answer;
                    let scaled = _mm256_mullo_epi16(answer, weights);
                    let at = pair * stride + b * BLOCK + half * 8;
                    let out = &mut weighted[at..at + 8];
                    // SAFETY: 8 values of 4 bytes, an unaligned store's width.
                    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), scaled) };
                    let sum = &mut column_sums[b * 2 + half];
                    *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(scaled, ones));
                }
            }
        }
        for (index, &sum) in column_sums.iter().enumerate() {
            let (b, half) = (index / 2, index % 2);
            for (lane, value) in lanes(sum).into_iter().enumerate() {
                let c = b * BLOCK + LANES[half][lane];
                if c < p {
                    sums.sums[c] += i64::from(value);
                }
            }
        }
        for b in 0..blocks {
            for first in (0..k_end).step_by(4) {
                let at: [usize; 4] = std::array::from_fn(|j| {
                    (first + j) / BLOCK * BLOCK + POSITION[(first + j) % BLOCK]
                });
                let mut acc = [zero; 8];
                for pair in 0..pairs {
                    let low = answers[(pair * blocks + b) * 2];
                    let high = answers[(pair * blocks + b) * 2 + 1];
                    let scaled = &weighted[pair * stride..(pair + 1) * stride];
                    for j in 0..4 {
                        let a = _mm256_set1_epi32(scaled[at[j]]);
                        acc[2 * j] = _mm256_add_epi32(acc[2 * j], _mm256_madd_epi16(low, a));
                        acc[2 * j + 1] =
                            _mm256_add_epi32(acc[2 * j + 1], _mm256_madd_epi16(high, a));
                    }
                }
                for j in 0..4 {
                    let k = first + j;
                    if k >= p {
                        break;
                    }
                    for half in 0..2 {
                        for (lane, value) in lanes(acc[2 * j + half]).into_iter().enumerate() {
                            let l = b * BLOCK + LANES[half][lane];
                            if l < p {
                                sums.products[k * p + l] += i64::from(value);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The vector kernel's buffers for one chunk, kept across chunks.
struct Scratch {
    #[cfg(target_arch = "x86_64")]
    answers: Vec<std::arch::x86_64::__m256i>,
    #[cfg(target_arch = "x86_64")]
    weighted: Vec<i32>,
}

impl Scratch {
    fn new(stride: usize) -> Self {
        #[cfg(not(target_arch = "x86_64"))]
        let _ = stride;
        Scratch {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an all-zero __m256i is a valid vector.
            answers: vec![unsafe { std::mem::zeroed() }; CHUNK_PAIRS * stride / BLOCK * 2],
            #[cfg(target_arch = "x86_64")]
            weighted: vec![0; CHUNK_PAIRS * stride],
        }
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

impl ExactSums {
    /// Means and population covariances: cov(k, l) = (n * sum(x_k x_l) -
    /// sum(x_k) * sum(x_l)) / n^2, the numerator exact in 128 bits (zero
    /// for a constant column), so each value is rounded once or twice.
    fn moments(&self, p: usize) -> Moments {
        let n = i128::from(self.total);
        let n_f64 = self.total as f64;
        let squared = (n * n) as f64;
        let covariance = DMatrix::from_fn(p, p, |i, j| {
            let (k, l) = (i.min(j), i.max(j));
            let numerator = n * i128::from(self.products[k * p + l])
                - i128::from(self.sums[k]) * i128::from(self.sums[l]);
            numerator as f64 / squared
        });
        Moments {
            n: self.total as usize,
            means: self.sums.iter().map(|&s| s as f64 / n_f64).collect(),
            covariance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of `p` answers between -127 and 127 (extremes included) from
    /// a fixed formula.
    fn data(n: usize, p: usize) -> DMatrix<f64> {
        DMatrix::from_fn(n, p, |r, c| match (r + c) % 9 {
            0 => 127.0,
            1 => -127.0,
            _ => ((r * 31 + c * 17) % 255) as f64 - 127.0,
        })
    }

    #[test]
    fn only_whole_answers_within_127_are_kept_whole() {
        assert!(WholeRows::new(&data(5, 3)).is_some());
        for odd in [0.5, 128.0, -128.0, f64::NAN, f64::INFINITY] {
            let mut d = data(5, 3);
            d[(4, 2)] = odd;
            assert!(WholeRows::new(&d).is_none(), "{odd}");
        }
    }

    #[test]
    fn the_vector_kernel_adds_what_the_scalar_loop_adds() {
        // One and two blocks of columns, a column count not a multiple of
        // four; an odd number of rows over several chunks, weights up to
        // the largest, every answer at an extreme somewhere.
        for p in [16, 6, 21] {
            for n in [0, 1, 2, 3, 2 * CHUNK_PAIRS + 1, 5 * CHUNK_PAIRS + 37] {
                let rows = WholeRows::new(&data(n, p)).unwrap();
                let weighted: Vec<(u32, u32)> = (0..n as u32)
                    .map(|i| (i, [1, MAX_WEIGHT, 3, 200, 7][i as usize % 5]))
                    .collect();
                let mut scalar = ExactSums {
                    total: 0,
                    sums: vec![0; p],
                    products: vec![0; p * p],
                };
                rows.add_rows(&weighted, &mut scalar);
                // by hand: row by row, in 128 bits
                for k in 0..p {
                    let sum: i128 = weighted
                        .iter()
                        .map(|&(i, w)| i128::from(w) * i128::from(rows.row(i)[k]))
                        .sum();
                    assert_eq!(i128::from(scalar.sums[k]), sum);
                }
                let mut vector = ExactSums {
                    total: 0,
                    sums: vec![0; p],
                    products: vec![0; p * p],
                };
                #[cfg(target_arch = "x86_64")]
                if has_avx2() {
                    let mut scratch = Scratch::new(rows.stride);
                    for chunk in weighted.chunks(2 * CHUNK_PAIRS) {
                        // SAFETY: the CPU has AVX2.
                        unsafe { rows.add_pairs_avx2(chunk, &mut scratch, &mut vector) };
                    }
                    assert_eq!(vector.sums, scalar.sums, "p {p}, n {n}");
                    for k in 0..p {
                        for l in k..p {
                            assert_eq!(
                                vector.products[k * p + l],
                                scalar.products[k * p + l],
                                "p {p}, n {n}, ({k}, {l})"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn moments_of_exact_sums_by_hand() {
        // x: 1 2 3 6 and y: 2 2 4 4, x's first row twice: n = 5,
        // sum x = 13, sum y = 14, sum x^2 = 51, sum y^2 = 44, sum xy = 44;
        // var x = 51/5 - (13/5)^2 = 86/25, var y = 44/5 - (14/5)^2 = 24/25,
        // cov = 44/5 - 13*14/25 = 38/25
        let data = DMatrix::from_row_slice(4, 2, &[1.0, 2.0, 2.0, 2.0, 3.0, 4.0, 6.0, 4.0]);
        let rows = WholeRows::new(&data).unwrap();
        let m = rows.weighted_moments(|i| if i == 0 { 2 } else { 1 });
        assert_eq!(m.n, 5);
        assert_eq!(m.means, vec![13.0 / 5.0, 14.0 / 5.0]);
        let expected = DMatrix::from_row_slice(2, 2, &[3.44, 1.52, 1.52, 0.96]);
        assert!((m.covariance - expected).abs().max() < 1e-15);
    }
}
