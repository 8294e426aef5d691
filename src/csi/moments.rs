//! The respondents' answers reduced to what PLS path modelling reads: the
//! item means and their (population) covariance matrix. Mode A weights,
//! latent variable correlations, path coefficients, loadings and R² are all
//! functions of the covariances, so an estimate costs one pass over the
//! answers and then works on a p x p matrix, and a bootstrap resample
//! (which repeats respondents) costs one weighted pass over the same rows.
//! Answers that are whole numbers (every rating scale's) are summed exactly
//! as integers (`exact.rs`); others as floats centred on their means.

use nalgebra::DMatrix;

use super::exact::WholeRows;

/// Means and population covariances (divided by n) of the indicator
/// columns of `n` respondents.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub n: usize,
    pub means: Vec<f64>,
    pub covariance: DMatrix<f64>,
}

impl Moments {
    pub fn of(data: &DMatrix<f64>) -> Self {
        AnswerRows::new(data).moments()
    }

    /// Population standard deviation of column `c`.
    pub fn sd(&self, c: usize) -> f64 {
        self.covariance[(c, c)].sqrt()
    }

    /// The correlation matrix of the columns (NaN beside a constant one).
    pub fn correlation(&self) -> DMatrix<f64> {
        let p = self.means.len();
        DMatrix::from_fn(p, p, |i, j| {
            self.covariance[(i, j)] / (self.sd(i) * self.sd(j))
        })
    }
}

/// The respondents' answers (one row each), kept for the moments of the
/// sample and of its resamples.
#[derive(Debug, Clone)]
pub struct AnswerRows {
    form: Form,
}

#[derive(Debug, Clone)]
enum Form {
    /// Every answer a whole number within +-127: exact integer sums.
    Whole(WholeRows),
    /// Any other answers: floats, centred.
    Centred(CentredRows),
}

impl AnswerRows {
    pub fn new(data: &DMatrix<f64>) -> Self {
        let form = match WholeRows::new(data) {
            Some(whole) => Form::Whole(whole),
            None => Form::Centred(CentredRows::new(data)),
        };
        AnswerRows { form }
    }

    pub fn respondents(&self) -> usize {
        match &self.form {
            Form::Whole(rows) => rows.respondents(),
            Form::Centred(rows) => rows.n,
        }
    }

    /// The moments of every respondent once.
    pub fn moments(&self) -> Moments {
        self.weighted_moments(|_| 1)
    }

    /// The moments of a resample that holds respondent i `counts[i]` times
    /// (the counts sum to the number of respondents).
    pub fn resample_moments(&self, counts: &[u32]) -> Moments {
        debug_assert_eq!(counts.len(), self.respondents());
        self.weighted_moments(|i| counts[i])
    }

    fn weighted_moments(&self, count: impl Fn(usize) -> u32) -> Moments {
        match &self.form {
            Form::Whole(rows) => rows.weighted_moments(count),
            Form::Centred(rows) => rows.weighted_moments(count),
        }
    }
}

/// Products are added this many columns at a time (one 256-bit vector of
/// f64), so rows are stored padded with zeros to a multiple of it.
const LANES: usize = 4;

/// Answers that are not all whole numbers, row by row, each minus the
/// column means: contiguous rows make the weighted cross products of a
/// resample one sequential pass, and centring first keeps them accurate
/// (no large sums of squares to subtract).
#[derive(Debug, Clone)]
struct CentredRows {
    n: usize,
    p: usize,
    /// Values per stored row: p padded with zeros to a multiple of LANES.
    stride: usize,
    means: Vec<f64>,
    rows: Vec<f64>,
}

impl CentredRows {
    fn new(data: &DMatrix<f64>) -> Self {
        let (n, p) = data.shape();
        let stride = p.next_multiple_of(LANES);
        let means: Vec<f64> = (0..p).map(|c| data.column(c).sum() / n as f64).collect();
        let mut rows = Vec::with_capacity(n * stride);
        for r in 0..n {
            rows.extend((0..p).map(|c| data[(r, c)] - means[c]));
            rows.resize(rows.len() + stride - p, 0.0);
        }
        Self {
            n,
            p,
            stride,
            means,
            rows,
        }
    }

    fn weighted_moments(&self, count: impl Fn(usize) -> u32) -> Moments {
        let (p, stride) = (self.p, self.stride);
        let add_four_rows = four_rows_adder();
        let mut total = 0u64;
        let mut sums = vec![0.0; p];
        // upper triangle, row k at k * stride (a block of LANES columns
        // from k's own block on: the few columns left of k are unused)
        let mut products = vec![0.0; p * stride];
        // Rows are added four at a time: one load and store of each
        // product per four rows instead of per row.
        let mut batch: [(&[f64], f64); 4] = [(&[], 0.0); 4];
        let mut batched = 0;
        for (i, row) in self.rows.chunks_exact(stride).enumerate() {
            let c = count(i);
            if c == 0 {
                continue;
            }
            total += u64::from(c);
            batch[batched] = (row, f64::from(c));
            batched += 1;
            if batched == 4 {
                add_four_rows(&batch, &mut sums, &mut products);
                batched = 0;
            }
        }
        for &(row, weight) in &batch[..batched] {
            for k in 0..p {
                let a = weight * row[k];
                sums[k] += a;
                let out = &mut products[k * stride + k..k * stride + p];
                for (product, b) in out.iter_mut().zip(&row[k..p]) {
                    *product += a * b;
                }
            }
        }
        let n = total as f64;
        // the resample's mean minus the sample's, in centred units
        let shift: Vec<f64> = sums.iter().map(|s| s / n).collect();
        // A column whose drawn values are all equal has variance 0, but the
        // subtraction leaves rounding noise of the size of its terms: below
        // 1e-12 of them it is noise, and the column is made exactly
        // constant so that a constant block is recognised as such.
        let constant: Vec<bool> = (0..p)
            .map(|k| {
                let square = products[k * stride + k] / n;
                square - shift[k] * shift[k] <= 1e-12 * square
            })
            .collect();
        let covariance = DMatrix::from_fn(p, p, |i, j| {
            let (k, l) = (i.min(j), i.max(j));
            if constant[k] || constant[l] {
                0.0
            } else {
                products[k * stride + l] / n - shift[k] * shift[l]
            }
        });
        Moments {
            n: total as usize,
            means: self.means.iter().zip(&shift).map(|(m, s)| m + s).collect(),
            covariance,
        }
    }
}

/// Adds four weighted rows to the sums and the products: the function for
/// this CPU, chosen once per pass.
type FourRowsAdder = fn(&[(&[f64], f64); 4], &mut [f64], &mut [f64]);

/// [`add_four_rows_avx`] where the CPU has AVX, else [`add_four_rows`]:
/// the same operations in the same order (no fused multiply-add), so the
/// numbers are the same bits on every machine.
fn four_rows_adder() -> FourRowsAdder {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        return |batch, sums, products| {
            // SAFETY: the CPU has AVX, the only feature the function is
            // compiled for.
            unsafe { add_four_rows_avx(batch, sums, products) }
        };
    }
    add_four_rows
}

/// [`add_four_rows`] with each block of products one 256-bit vector (the
/// compiler, left to itself, used 128-bit ones).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn add_four_rows_avx(batch: &[(&[f64], f64); 4], sums: &mut [f64], products: &mut [f64]) {
    use std::arch::x86_64::{
        _mm256_add_pd, _mm256_loadu_pd, _mm256_mul_pd, _mm256_set1_pd, _mm256_storeu_pd,
    };
    let p = sums.len();
    let stride = products.len() / p;
    assert!(stride.is_multiple_of(LANES) && products.len() == p * stride);
    assert!(batch.iter().all(|(row, _)| row.len() >= stride));
    let [(r0, w0), (r1, w1), (r2, w2), (r3, w3)] = *batch;
    for k in 0..p {
        let (a0, a1, a2, a3) = (w0 * r0[k], w1 * r1[k], w2 * r2[k], w3 * r3[k]);
        sums[k] += a0 + a1 + a2 + a3;
        let (r0, r1, r2, r3) = (r0.as_ptr(), r1.as_ptr(), r2.as_ptr(), r3.as_ptr());
        // SAFETY: every offset read or written is below stride in a row
        // (asserted at least stride long) and below p * stride in products
        // (asserted exactly that long): the blocks of LANES = 4 f64 start
        // at multiples of 4 below stride, itself a multiple of 4.
        unsafe {
            let (a0, a1, a2, a3) = (
                _mm256_set1_pd(a0),
                _mm256_set1_pd(a1),
                _mm256_set1_pd(a2),
                _mm256_set1_pd(a3),
            );
            let out = products.as_mut_ptr().wrapping_add(k * stride);
            let mut j = k - k % LANES;
            while j < stride {
                let terms = _mm256_add_pd(
                    _mm256_add_pd(
                        _mm256_add_pd(
                            _mm256_mul_pd(a0, _mm256_loadu_pd(r0.wrapping_add(j))),
                            _mm256_mul_pd(a1, _mm256_loadu_pd(r1.wrapping_add(j))),
                        ),
                        _mm256_mul_pd(a2, _mm256_loadu_pd(r2.wrapping_add(j))),
                    ),
                    _mm256_mul_pd(a3, _mm256_loadu_pd(r3.wrapping_add(j))),
                );
                _mm256_storeu_pd(
                    out.wrapping_add(j),
                    _mm256_add_pd(_mm256_loadu_pd(out.wrapping_add(j)), terms),
                );
                j += LANES;
            }
        }
    }
}

/// sums += the weighted rows; products (upper triangle, row k at k *
/// stride, stride = products.len() / sums.len()) += their weighted outer
/// products.
fn add_four_rows(batch: &[(&[f64], f64); 4], sums: &mut [f64], products: &mut [f64]) {
    let p = sums.len();
    let stride = products.len() / p;
    let [(r0, w0), (r1, w1), (r2, w2), (r3, w3)] = *batch;
    for k in 0..p {
        let (a0, a1, a2, a3) = (w0 * r0[k], w1 * r1[k], w2 * r2[k], w3 * r3[k]);
        sums[k] += a0 + a1 + a2 + a3;
        let out = &mut products[k * stride + k..k * stride + p];
        let rest = r0[k..p].iter().zip(&r1[k..p]).zip(&r2[k..p]).zip(&r3[k..p]);
        for (product, (((b0, b1), b2), b3)) in out.iter_mut().zip(rest) {
            *product += a0 * b0 + a1 * b1 + a2 * b2 + a3 * b3;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_by_hand() {
        // x: 1 2 3 6 (mean 3, population variance (4 + 1 + 0 + 9) / 4 = 3.5)
        // y: 2 2 4 4 (mean 3, variance 1); cov = (-2*-1 + -1*-1 + 0 + 3*1) / 4 = 1.5
        let data = DMatrix::from_row_slice(4, 2, &[1.0, 2.0, 2.0, 2.0, 3.0, 4.0, 6.0, 4.0]);
        let m = Moments::of(&data);
        assert_eq!(m.n, 4);
        assert_eq!(m.means, vec![3.0, 3.0]);
        let expected = DMatrix::from_row_slice(2, 2, &[3.5, 1.5, 1.5, 1.0]);
        assert!((m.covariance - expected).abs().max() < 1e-15);
    }

    #[test]
    fn a_resample_is_the_data_with_rows_repeated() {
        // 11 rows: two batches of four rows and a tail of three
        let data = DMatrix::from_fn(11, 3, |r, c| ((r * 5 + c * 3) % 7) as f64 + 0.5 * c as f64);
        let counts = [2, 0, 1, 3, 0, 0, 1, 1, 2, 0, 1];
        let repeated: Vec<usize> = counts
            .iter()
            .enumerate()
            .flat_map(|(r, &c)| std::iter::repeat_n(r, c as usize))
            .collect();
        let repeated = DMatrix::from_fn(11, 3, |r, c| data[(repeated[r], c)]);
        let got = AnswerRows::new(&data).resample_moments(&counts);
        let want = Moments::of(&repeated);
        assert_eq!(got.n, 11);
        for (a, b) in got.means.iter().zip(&want.means) {
            assert!((a - b).abs() < 1e-14);
        }
        assert!((got.covariance - want.covariance).abs().max() < 1e-14);
        // and the moments of the data as numpy computes them
        let plain = Moments::of(&data);
        let means: Vec<f64> = (0..3).map(|c| data.column(c).sum() / 11.0).collect();
        let cov = |i: usize, j: usize| {
            (0..11)
                .map(|r| (data[(r, i)] - means[i]) * (data[(r, j)] - means[j]))
                .sum::<f64>()
                / 11.0
        };
        for i in 0..3 {
            for j in 0..3 {
                assert!((plain.covariance[(i, j)] - cov(i, j)).abs() < 1e-13);
            }
        }
    }

    #[test]
    fn four_rows_add_the_same_bits_on_every_path() {
        // p = 16 (the bundled models' item count) and 6 (padded to 8); the
        // weighted products worked out one element at a time in the
        // documented order: product + (((a0 b0 + a1 b1) + a2 b2) + a3 b3)
        for p in [16, 6] {
            let data = DMatrix::from_fn(9, p, |r, c| ((r * 7 + c * 5) % 11) as f64 * 0.37 - 1.3);
            let rows = CentredRows::new(&data);
            let row = |r: usize| &rows.rows[r * rows.stride..(r + 1) * rows.stride];
            let batch = [(row(0), 2.0), (row(3), 1.0), (row(5), 3.0), (row(8), 1.0)];
            let mut expected = vec![0.5; p * rows.stride];
            for k in 0..p {
                let a: Vec<f64> = batch.iter().map(|(r, w)| w * r[k]).collect();
                for l in k..p {
                    let b: Vec<f64> = batch.iter().map(|(r, _)| r[l]).collect();
                    expected[k * rows.stride + l] +=
                        a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3];
                }
            }
            for adder in [four_rows_adder(), add_four_rows as FourRowsAdder] {
                let (mut sums, mut products) = (vec![0.0; p], vec![0.5; p * rows.stride]);
                adder(&batch, &mut sums, &mut products);
                for k in 0..p {
                    for l in k..p {
                        let (got, want) =
                            (products[k * rows.stride + l], expected[k * rows.stride + l]);
                        assert_eq!(got.to_bits(), want.to_bits(), "p {p}, ({k}, {l})");
                    }
                }
            }
        }
    }

    #[test]
    fn sixteen_items_resampled_are_the_data_with_rows_repeated() {
        // 23 rows of 16 items (five batches of four and a tail of three)
        let data = DMatrix::from_fn(23, 16, |r, c| ((r * 3 + c * c) % 10 + 1) as f64);
        let mut counts: Vec<u32> = (0..23).map(|r| (r * 7 % 5) as u32 % 3).collect();
        counts[0] += 4; // 23 draws in all, as a resample has
        let drawn: u32 = counts.iter().sum();
        assert_eq!(drawn, 23);
        let repeated: Vec<usize> = counts
            .iter()
            .enumerate()
            .flat_map(|(r, &c)| std::iter::repeat_n(r, c as usize))
            .collect();
        let repeated = DMatrix::from_fn(repeated.len(), 16, |r, c| data[(repeated[r], c)]);
        let got = AnswerRows::new(&data).resample_moments(&counts);
        let n = f64::from(drawn);
        let means: Vec<f64> = (0..16).map(|c| repeated.column(c).sum() / n).collect();
        for i in 0..16 {
            assert!((got.means[i] - means[i]).abs() < 1e-13);
            for j in 0..16 {
                let cov = (0..repeated.nrows())
                    .map(|r| (repeated[(r, i)] - means[i]) * (repeated[(r, j)] - means[j]))
                    .sum::<f64>()
                    / n;
                assert!((got.covariance[(i, j)] - cov).abs() < 1e-12, "({i}, {j})");
            }
        }
    }

    #[test]
    fn a_column_drawn_from_one_respondent_is_exactly_constant() {
        // whole answers, and answers a quarter off them (floats: 16/3 is
        // not one, so centring and repeating leave rounding noise)
        for offset in [0.0, 0.25] {
            let data =
                DMatrix::from_row_slice(3, 2, &[8.0, 1.0, 3.0, 2.0, 5.0, 4.0]).add_scalar(offset);
            let got = AnswerRows::new(&data).resample_moments(&[3, 0, 0]);
            assert_eq!(got.covariance, DMatrix::zeros(2, 2));
            assert!((got.means[0] - 8.0 - offset).abs() < 1e-14);
        }
    }

    #[test]
    fn whole_answers_summed_exactly_agree_with_the_centred_floats() {
        let data = DMatrix::from_fn(37, 16, |r, c| ((r * 13 + c * 7) % 10 + 1) as f64);
        let counts: Vec<u32> = (0..37).map(|r| (r * 5 % 3) as u32).collect();
        let whole = AnswerRows::new(&data);
        assert!(matches!(whole.form, Form::Whole(_)));
        let floats = CentredRows::new(&data);
        for (a, b) in [
            (whole.moments(), floats.weighted_moments(|_| 1)),
            (
                whole.resample_moments(&counts),
                floats.weighted_moments(|i| counts[i]),
            ),
        ] {
            assert_eq!(a.n, b.n);
            for (x, y) in a.means.iter().zip(&b.means) {
                assert!((x - y).abs() < 1e-13);
            }
            assert!((a.covariance - b.covariance).abs().max() < 1e-12);
        }
    }
}
