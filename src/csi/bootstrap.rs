//! Bootstrap standard errors and percentile intervals (spec v2 4.7): the
//! complete respondents are drawn with replacement, each resample is
//! estimated like the sample, and the spread of the resamples' estimates
//! describes their uncertainty.
//!
//! Draws are numbered 0, 1, 2, ...; draw d of a group is made by its own
//! generator: ChaCha8 (rand_chacha) keyed by the seed and d (two
//! little-endian u64, the rest of the 32-byte key zero) on the stream
//! FNV-1a-64(group name), each of the n picks `random_range(0..n)` as u32.
//! The resamples are the first `resamples` draws whose estimation succeeds,
//! in draw order; a failed draw is counted and the next one taken, and after
//! twice `resamples` failures the bootstrap gives up. Draws are estimated in
//! parallel, and because every draw has its own generator and results are
//! taken in draw order, the numbers do not depend on the thread count or on
//! which thread finished first.

use std::sync::atomic::{AtomicUsize, Ordering};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::moments::{AnswerRows, Moments};

/// How many resamples, from which seed, on how many threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub resamples: usize,
    pub seed: u64,
    pub threads: usize,
}

/// The spread of one statistic over the resamples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Standard deviation of the resamples' values (n - 1 denominator);
    /// None for a single resample.
    pub std_error: Option<f64>,
    /// 2.5% and 97.5% percentiles, linear interpolation between order
    /// statistics (R's default, type 7).
    pub ci_low: f64,
    pub ci_high: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Per statistic; None when some resample's value is not finite, and
    /// for every statistic when the bootstrap gave up.
    pub spreads: Vec<Option<Spread>>,
    /// Resamples whose estimation succeeded (and were used).
    pub resamples: usize,
    /// Draws whose estimation failed before the last resample was taken.
    pub failures: usize,
    /// True after twice `resamples` failures.
    pub gave_up: bool,
}

/// Bootstraps `statistic` (`statistics` values per estimate, e.g. the path
/// coefficients and the index) over the respondents of `rows`; `group`
/// names the group (segment) and picks its stream.
pub fn run<F, E>(
    rows: &AnswerRows,
    group: &str,
    plan: &Plan,
    statistics: usize,
    statistic: F,
) -> Outcome
where
    F: Fn(&Moments) -> Result<Vec<f64>, E> + Sync,
{
    let wanted = plan.resamples;
    let mut values: Vec<Vec<f64>> = Vec::with_capacity(wanted);
    let mut failures = 0;
    let mut next_draw = 0;
    let stream = fnv1a(group);
    'draws: while values.len() < wanted {
        // at least this many more draws are needed; a batch's surplus
        // after the last resample is discarded
        let batch = wanted - values.len();
        let results = estimate_draws(rows, plan, stream, next_draw..next_draw + batch, &statistic);
        next_draw += batch;
        for result in results {
            match result {
                Some(v) => values.push(v),
                None => failures += 1,
            }
            if values.len() == wanted {
                break 'draws;
            }
            if failures >= 2 * wanted {
                tracing::warn!(
                    group,
                    failures,
                    resamples = values.len(),
                    "csi bootstrap: too many resamples failed to estimate, intervals left empty"
                );
                return Outcome {
                    spreads: vec![None; statistics],
                    resamples: values.len(),
                    failures,
                    gave_up: true,
                };
            }
        }
    }
    Outcome {
        spreads: (0..statistics)
            .map(|s| spread(values.iter().map(|v| v[s]).collect()))
            .collect(),
        resamples: values.len(),
        failures,
        gave_up: false,
    }
}

/// The statistic of each draw in `draws` (None where it failed), in draw
/// order, computed on up to `plan.threads` threads.
fn estimate_draws<F, E>(
    rows: &AnswerRows,
    plan: &Plan,
    stream: u64,
    draws: std::ops::Range<usize>,
    statistic: &F,
) -> Vec<Option<Vec<f64>>>
where
    F: Fn(&Moments) -> Result<Vec<f64>, E> + Sync,
{
    let start = draws.start;
    let next = AtomicUsize::new(draws.start);
    let threads = plan.threads.clamp(1, draws.len().max(1));
    let mut results: Vec<Option<Vec<f64>>> = vec![None; draws.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let next = &next;
                let end = draws.end;
                scope.spawn(move || {
                    let mut counts = vec![0u32; rows.respondents()];
                    let mut done = Vec::new();
                    loop {
                        let draw = next.fetch_add(1, Ordering::Relaxed);
                        if draw >= end {
                            return done;
                        }
                        resample_counts(plan.seed, stream, draw as u64, &mut counts);
                        let moments = rows.resample_moments(&counts);
                        done.push((draw, statistic(&moments).ok()));
                    }
                })
            })
            .collect();
        for worker in workers {
            for (draw, value) in worker.join().expect("a bootstrap worker panicked") {
                results[draw - start] = value;
            }
        }
    });
    results
}

/// How often each respondent occurs in draw `draw`: n picks with
/// replacement from the documented generator (module docs).
pub fn resample_counts(seed: u64, stream: u64, draw: u64, counts: &mut [u32]) {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&draw.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(stream);
    counts.fill(0);
    let n = u32::try_from(counts.len()).expect("fewer than 2^32 respondents");
    for _ in 0..n {
        counts[rng.random_range(0..n) as usize] += 1;
    }
}

/// FNV-1a, 64 bits: a stable, documented hash of a group name.
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn spread(mut values: Vec<f64>) -> Option<Spread> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std_error = (values.len() > 1)
        .then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    values.sort_by(f64::total_cmp);
    Some(Spread {
        std_error,
        ci_low: percentile(&values, 0.025),
        ci_high: percentile(&values, 0.975),
    })
}

/// R's type 7 quantile of sorted values: h = (n - 1) p, then linear
/// interpolation between the order statistics around h.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let below = h.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (h - below as f64) * (sorted[above] - sorted[below])
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    #[test]
    fn percentiles_interpolate_between_order_statistics() {
        // 1 2 3 4: h = 3 * 0.025 = 0.075 -> 1.075; h = 3 * 0.975 = 2.925 -> 3.925
        let s = spread(vec![4.0, 1.0, 3.0, 2.0]).unwrap();
        assert!((s.ci_low - 1.075).abs() < 1e-12);
        assert!((s.ci_high - 3.925).abs() < 1e-12);
        // mean 2.5, squares 2.25 + 0.25 + 0.25 + 2.25 = 5, / 3
        assert!((s.std_error.unwrap() - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        let one = spread(vec![7.0]).unwrap();
        assert_eq!((one.std_error, one.ci_low, one.ci_high), (None, 7.0, 7.0));
        assert_eq!(spread(vec![1.0, f64::NAN]), None);
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_draw_depends_on_seed_stream_and_draw_number_only() {
        let draw = |seed, stream, d| {
            let mut counts = vec![0; 50];
            resample_counts(seed, stream, d, &mut counts);
            counts
        };
        let a = draw(1, 7, 3);
        assert_eq!(a.iter().sum::<u32>(), 50);
        assert_eq!(a, draw(1, 7, 3));
        assert_ne!(a, draw(2, 7, 3));
        assert_ne!(a, draw(1, 8, 3));
        assert_ne!(a, draw(1, 7, 4));
    }

    /// 40 respondents, 2 columns.
    fn data() -> DMatrix<f64> {
        DMatrix::from_fn(40, 2, |r, c| ((r * 7 + c * 3) % 11) as f64)
    }

    /// Column 0's mean in draw d, from the data and the generator directly.
    fn draw_mean(data: &DMatrix<f64>, seed: u64, group: &str, d: u64) -> f64 {
        let mut counts = vec![0; data.nrows()];
        resample_counts(seed, fnv1a(group), d, &mut counts);
        let sum: f64 = (0..data.nrows())
            .map(|r| f64::from(counts[r]) * data[(r, 0)])
            .sum();
        sum / data.nrows() as f64
    }

    /// The resample mean of column 0, failing when it is above 5 (about
    /// half the draws).
    fn mean_at_most_5(m: &Moments) -> Result<Vec<f64>, ()> {
        if m.means[0] > 5.0 {
            Err(())
        } else {
            Ok(vec![m.means[0]])
        }
    }

    #[test]
    fn failed_draws_are_counted_and_the_next_draws_taken_whatever_the_threads() {
        let data = data();
        let rows = AnswerRows::new(&data);
        let plan = |threads| Plan {
            resamples: 25,
            seed: 5,
            threads,
        };
        // the first 25 draws with a mean <= 5, and the failures before the last
        let (mut kept, mut failures) = (vec![], 0);
        for d in 0.. {
            let mean = draw_mean(&data, 5, "smb", d);
            if mean > 5.0 {
                failures += 1;
            } else {
                kept.push(mean);
                if kept.len() == 25 {
                    break;
                }
            }
        }
        assert!(failures > 0, "the fixture should make some draws fail");
        let outcome = run(&rows, "smb", &plan(1), 1, mean_at_most_5);
        assert_eq!((outcome.resamples, outcome.failures), (25, failures));
        assert!(!outcome.gave_up);
        let want = spread(kept).unwrap();
        let got = outcome.spreads[0].unwrap();
        assert!((got.std_error.unwrap() - want.std_error.unwrap()).abs() < 1e-12);
        assert!((got.ci_low - want.ci_low).abs() < 1e-12);
        assert!((got.ci_high - want.ci_high).abs() < 1e-12);
        for threads in [2, 3, 8] {
            assert_eq!(
                run(&rows, "smb", &plan(threads), 1, mean_at_most_5),
                outcome
            );
        }
        assert_ne!(run(&rows, "all", &plan(1), 1, mean_at_most_5), outcome);
    }

    #[test]
    fn twice_as_many_failures_as_resamples_gives_up() {
        let rows = AnswerRows::new(&data());
        let plan = Plan {
            resamples: 10,
            seed: 1,
            threads: 2,
        };
        let outcome = run(&rows, "all", &plan, 3, |_| Err::<Vec<f64>, ()>(()));
        assert_eq!(
            outcome,
            Outcome {
                spreads: vec![None; 3],
                resamples: 0,
                failures: 20,
                gave_up: true,
            }
        );
    }
}
