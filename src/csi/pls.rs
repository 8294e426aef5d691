//! PLS path modelling (Lohmöller's algorithm, as R's plspm and Python's
//! plspm implement it) for reflective (mode A) blocks.
//!
//! Each latent variable (LV) is a weighted sum of its block's indicators.
//! The algorithm alternates an outer estimate of the LVs (indicators times
//! weights, standardised), an inner estimate (each LV from its neighbours
//! in the path model, weighted by the scheme) and new mode A weights (the
//! covariances of the indicators with the inner estimate), until the
//! weights stop moving. Then the LV scores give the path coefficients by
//! ordinary least squares, and R² per endogenous LV.
//!
//! Every step is a function of the indicators' covariances
//! ([`Moments`]): the LV scores' correlations are W'SW scaled, mode A's new
//! weights S W E, loadings and path coefficients follow from the same
//! products. So the data are read once and each iteration costs
//! O(indicators²), whatever the number of respondents. The steps are
//! plspm's, with its population deviations and its stopping rule, so the
//! reported iterate is the one plspm reports.

use nalgebra::{DMatrix, DVector};

use super::moments::Moments;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Predecessors weighted by the regression of the LV on them, followers
    /// by their correlation with it (the default, and the spec's).
    #[default]
    Path,
    /// Neighbours weighted by the sign of their correlation.
    Centroid,
    /// Neighbours weighted by their correlation.
    Factorial,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub scheme: Scheme,
    /// Indicators scaled to unit variance as well as centred.
    pub scaled: bool,
    /// Stop when the sum of squared changes of the absolute outer weights
    /// falls below this.
    pub tolerance: f64,
    pub max_iterations: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            scheme: Scheme::Path,
            scaled: false,
            tolerance: 1e-6,
            max_iterations: 100,
        }
    }
}

/// The model: each LV's indicator columns, and the paths `(from, to)`
/// between LVs (indices into `blocks`).
#[derive(Debug, Clone, PartialEq)]
pub struct PathModel {
    pub blocks: Vec<Vec<usize>>,
    pub paths: Vec<(usize, usize)>,
}

impl PathModel {
    fn lvs(&self) -> usize {
        self.blocks.len()
    }

    fn predecessors(&self, lv: usize) -> Vec<usize> {
        let mut p: Vec<usize> = self
            .paths
            .iter()
            .filter(|(_, to)| *to == lv)
            .map(|(from, _)| *from)
            .collect();
        p.sort_unstable();
        p
    }

    fn followers(&self, lv: usize) -> Vec<usize> {
        let mut f: Vec<usize> = self
            .paths
            .iter()
            .filter(|(from, _)| *from == lv)
            .map(|(_, to)| *to)
            .collect();
        f.sort_unstable();
        f
    }

    fn adjacent(&self, a: usize, b: usize) -> bool {
        self.paths
            .iter()
            .any(|&(f, t)| (f, t) == (a, b) || (f, t) == (b, a))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// Outer weight per indicator column (on the centred, or scaled, data),
    /// normalised so that every LV score has unit population variance.
    pub weights: Vec<f64>,
    /// Correlation of each indicator with its LV; None for an indicator
    /// with no variance (every respondent gave the same answer), whose
    /// correlation is undefined.
    pub loadings: Vec<Option<f64>>,
    /// `(from, to, coefficient)` for every path, in the model's order.
    pub path_coefficients: Vec<(usize, usize, f64)>,
    /// R² per LV; None for an LV without predecessors.
    pub r_squared: Vec<Option<f64>>,
    /// Iterations the weights took (1 for fixed weights).
    pub iterations: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlsError {
    #[error("needs at least 3 respondents, got {0}")]
    TooFewRows(usize),
    #[error("indicator column {0} has no variance")]
    ConstantIndicator(usize),
    #[error("latent variable {0} has no variance (its indicators are constant)")]
    ConstantBlock(usize),
    #[error(
        "did not converge in {iterations} iterations (last change of the weights {change:.3e}, tolerance {tolerance:.1e})"
    )]
    NotConverged {
        iterations: usize,
        change: f64,
        tolerance: f64,
    },
    #[error("the regression onto latent variable {0} is singular (collinear predictors)")]
    Singular(usize),
}

/// The covariance matrix the algorithm works on: of the centred indicators,
/// or of the standardised ones (their correlations) when `scaled`.
fn working_covariance(moments: &Moments, scaled: bool) -> Result<DMatrix<f64>, PlsError> {
    if moments.n < 3 {
        return Err(PlsError::TooFewRows(moments.n));
    }
    if !scaled {
        return Ok(moments.covariance.clone());
    }
    if let Some(c) = (0..moments.means.len()).find(|&c| moments.covariance[(c, c)] <= 0.0) {
        return Err(PlsError::ConstantIndicator(c));
    }
    Ok(moments.correlation())
}

/// Population standard deviation of each LV score X w_j.
fn lv_deviations(s: &DMatrix<f64>, w: &DMatrix<f64>) -> Result<Vec<f64>, PlsError> {
    (0..w.ncols())
        .map(|j| {
            let column = w.column(j);
            let sd = column.dot(&(s * column)).sqrt();
            // Also catches NaN.
            if sd.is_nan() || sd <= 0.0 {
                Err(PlsError::ConstantBlock(j))
            } else {
                Ok(sd)
            }
        })
        .collect()
}

/// Divides each LV's weights by the population deviation of its score.
fn normalize(s: &DMatrix<f64>, w: &mut DMatrix<f64>) -> Result<(), PlsError> {
    for (j, sd) in lv_deviations(s, w)?.into_iter().enumerate() {
        w.column_mut(j).scale_mut(1.0 / sd);
    }
    Ok(())
}

/// Least squares of LV `y` on the LVs `xs` (standardised scores, no
/// intercept) from their correlations `r`: the normal equations by
/// Cholesky; None when the predictors are collinear.
fn regress(r: &DMatrix<f64>, y: usize, xs: &[usize]) -> Option<DVector<f64>> {
    let gram = r.select_rows(xs).select_columns(xs);
    let target = DVector::from_iterator(xs.len(), xs.iter().map(|&x| r[(x, y)]));
    let cholesky = gram.cholesky()?;
    // a predictor whose R² on the others is 1 to 1e-16
    if cholesky.l_dirty().diagonal().iter().any(|d| *d < 1e-8) {
        return None;
    }
    Some(cholesky.solve(&target))
}

fn inner_weights(
    model: &PathModel,
    scheme: Scheme,
    r: &DMatrix<f64>,
) -> Result<DMatrix<f64>, PlsError> {
    let lvs = model.lvs();
    let mut e = DMatrix::zeros(lvs, lvs);
    match scheme {
        Scheme::Centroid | Scheme::Factorial => {
            for k in 0..lvs {
                for i in 0..lvs {
                    if i != k && model.adjacent(i, k) {
                        e[(i, k)] = if scheme == Scheme::Centroid {
                            r[(i, k)].signum()
                        } else {
                            r[(i, k)]
                        };
                    }
                }
            }
        }
        Scheme::Path => {
            for k in 0..lvs {
                let predecessors = model.predecessors(k);
                if !predecessors.is_empty() {
                    let beta = regress(r, k, &predecessors).ok_or(PlsError::Singular(k))?;
                    for (p, b) in predecessors.iter().zip(beta.iter()) {
                        e[(*p, k)] = *b;
                    }
                }
                for f in model.followers(k) {
                    e[(f, k)] = r[(k, f)];
                }
            }
        }
    }
    Ok(e)
}

/// Each indicator's weight (its only non-zero entry of W).
fn weight_vector(model: &PathModel, w: &DMatrix<f64>) -> Vec<f64> {
    let mut out = vec![0.0; w.nrows()];
    for (j, block) in model.blocks.iter().enumerate() {
        for &c in block {
            out[c] = w[(c, j)];
        }
    }
    out
}

/// The block-diagonal weight matrix of one weight per indicator.
fn weight_matrix(model: &PathModel, weights: &[f64]) -> DMatrix<f64> {
    let mut w = DMatrix::zeros(weights.len(), model.lvs());
    for (j, block) in model.blocks.iter().enumerate() {
        for &c in block {
            w[(c, j)] = weights[c];
        }
    }
    w
}

/// Estimates outer weights by PLS, then the inner model, on the rows of
/// `data` (one per respondent, one column per indicator).
pub fn estimate(
    data: &DMatrix<f64>,
    model: &PathModel,
    settings: &Settings,
) -> Result<Fit, PlsError> {
    estimate_moments(&Moments::of(data), model, settings, None)
}

/// [`estimate`] from the indicators' moments. `start` holds initial outer
/// weights (e.g. the sample's, for a bootstrap resample); plspm starts
/// from 1 for every indicator.
pub fn estimate_moments(
    moments: &Moments,
    model: &PathModel,
    settings: &Settings,
    start: Option<&[f64]>,
) -> Result<Fit, PlsError> {
    let s = working_covariance(moments, settings.scaled)?;
    let ones = vec![1.0; moments.means.len()];
    let mut w = weight_matrix(model, start.unwrap_or(&ones));
    normalize(&s, &mut w)?;
    let mut previous = weight_vector(model, &w);
    let mut iterations = 0;
    loop {
        iterations += 1;
        // The outer estimate Y = X W standardised; its correlations, and
        // the indicators' covariances with it.
        let sd = lv_deviations(&s, &w)?;
        let mut y_weights = w.clone();
        for (j, sd) in sd.iter().enumerate() {
            y_weights.column_mut(j).scale_mut(1.0 / sd);
        }
        let indicator_lv = &s * &y_weights;
        let r = y_weights.transpose() * &indicator_lv;
        // Mode A: covariances of the block's indicators with the inner
        // estimate Z = Y E.
        let inner = indicator_lv * inner_weights(model, settings.scheme, &r)?;
        for (j, block) in model.blocks.iter().enumerate() {
            for &c in block {
                w[(c, j)] = inner[(c, j)];
            }
        }
        let current = weight_vector(model, &w);
        let change: f64 = previous
            .iter()
            .zip(&current)
            .map(|(a, b)| (a.abs() - b.abs()).powi(2))
            .sum();
        if change < settings.tolerance {
            break;
        }
        if iterations >= settings.max_iterations {
            return Err(PlsError::NotConverged {
                iterations,
                change,
                tolerance: settings.tolerance,
            });
        }
        previous = current;
    }
    normalize(&s, &mut w)?;
    inner_model(&s, model, w, iterations)
}

/// The inner model for given outer weights (one per indicator column, on
/// the centred answers): composite scores' loadings, paths and R².
pub fn with_fixed_weights(
    moments: &Moments,
    model: &PathModel,
    weights: &[f64],
) -> Result<Fit, PlsError> {
    let s = working_covariance(moments, false)?;
    let mut w = weight_matrix(model, weights);
    normalize(&s, &mut w)?;
    let mut fit = inner_model(&s, model, w, 1)?;
    // Report the weights as configured, not normalised.
    fit.weights = weights.to_vec();
    Ok(fit)
}

/// Loadings, path coefficients and R² for normalised weights `w` (every
/// LV score with unit variance).
fn inner_model(
    s: &DMatrix<f64>,
    model: &PathModel,
    w: DMatrix<f64>,
    iterations: usize,
) -> Result<Fit, PlsError> {
    let indicator_lv = s * &w;
    let r = w.transpose() * &indicator_lv;
    let mut loadings = vec![None; s.nrows()];
    for (j, block) in model.blocks.iter().enumerate() {
        for &c in block {
            loadings[c] = (s[(c, c)] > 0.0).then(|| indicator_lv[(c, j)] / s[(c, c)].sqrt());
        }
    }
    let mut coefficients = std::collections::HashMap::new();
    let mut r_squared = vec![None; model.lvs()];
    for (k, r2) in r_squared.iter_mut().enumerate() {
        let predecessors = model.predecessors(k);
        if predecessors.is_empty() {
            continue;
        }
        let beta = regress(&r, k, &predecessors).ok_or(PlsError::Singular(k))?;
        // for standardised scores, R² = beta . (the correlations with y)
        *r2 = Some(
            predecessors
                .iter()
                .zip(beta.iter())
                .map(|(p, b)| b * r[(*p, k)])
                .sum(),
        );
        for (p, b) in predecessors.iter().zip(beta.iter()) {
            coefficients.insert((*p, k), *b);
        }
    }
    let path_coefficients = model
        .paths
        .iter()
        .map(|&(from, to)| (from, to, coefficients[&(from, to)]))
        .collect();
    Ok(Fit {
        weights: weight_vector(model, &w),
        loadings,
        path_coefficients,
        r_squared,
        iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two LVs with one indicator each, x -> y: weights are 1 / sd (the
    /// score is the standardised indicator), loadings 1, and the path is
    /// the correlation of x and y.
    #[test]
    fn single_indicator_blocks_give_the_correlation() {
        let data = DMatrix::from_row_slice(4, 2, &[1.0, 2.0, 2.0, 1.0, 3.0, 4.0, 4.0, 5.0]);
        let model = PathModel {
            blocks: vec![vec![0], vec![1]],
            paths: vec![(0, 1)],
        };
        let fit = estimate(&data, &model, &Settings::default()).unwrap();
        // x: 1 2 3 4, mean 2.5, population variance 1.25.
        assert!((fit.weights[0] - 1.0 / 1.25f64.sqrt()).abs() < 1e-12);
        assert!((fit.loadings[0].unwrap() - 1.0).abs() < 1e-12);
        // y: 2 1 4 5; cov(x, y) = (-1.5*-1 + -0.5*-2 + 0.5*1 + 1.5*2) / 4 = 1.5,
        // var y = (1 + 4 + 1 + 4) / 4 = 2.5 -> r = 1.5 / sqrt(1.25 * 2.5).
        let r = 1.5 / (1.25f64 * 2.5).sqrt();
        assert!((fit.path_coefficients[0].2 - r).abs() < 1e-12);
        assert!((fit.r_squared[1].unwrap() - r * r).abs() < 1e-12);
        assert_eq!(fit.r_squared[0], None);
    }

    #[test]
    fn too_few_rows_and_constant_blocks_are_errors() {
        let model = PathModel {
            blocks: vec![vec![0], vec![1]],
            paths: vec![(0, 1)],
        };
        let two = DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            estimate(&two, &model, &Settings::default()),
            Err(PlsError::TooFewRows(2))
        );
        let constant = DMatrix::from_row_slice(3, 2, &[1.0, 2.0, 1.0, 4.0, 1.0, 5.0]);
        assert_eq!(
            estimate(&constant, &model, &Settings::default()),
            Err(PlsError::ConstantBlock(0))
        );
    }

    #[test]
    fn an_iteration_cap_too_low_is_reported() {
        let data = DMatrix::from_row_slice(
            5,
            4,
            &[
                1.0, 2.0, 2.0, 1.0, 2.0, 1.0, 3.0, 3.0, 3.0, 4.0, 1.0, 2.0, 4.0, 3.0, 5.0, 4.0,
                5.0, 5.0, 4.0, 5.0,
            ],
        );
        let model = PathModel {
            blocks: vec![vec![0, 1], vec![2, 3]],
            paths: vec![(0, 1)],
        };
        let settings = Settings {
            max_iterations: 1,
            tolerance: 1e-300,
            ..Settings::default()
        };
        assert!(matches!(
            estimate(&data, &model, &settings),
            Err(PlsError::NotConverged { iterations: 1, .. })
        ));
    }

    #[test]
    fn scaled_is_unscaled_on_standardised_indicators() {
        let data = DMatrix::from_row_slice(
            6,
            4,
            &[
                1.0, 20.0, 3.0, 40.0, 2.0, 10.0, 2.0, 35.0, 4.0, 50.0, 5.0, 80.0, 3.0, 30.0, 4.0,
                60.0, 5.0, 60.0, 4.0, 90.0, 2.0, 40.0, 1.0, 20.0,
            ],
        );
        let model = PathModel {
            blocks: vec![vec![0, 1], vec![2, 3]],
            paths: vec![(0, 1)],
        };
        let scaled = Settings {
            scaled: true,
            ..Settings::default()
        };
        let a = estimate(&data, &model, &scaled).unwrap();
        // each column minus its mean, over its population deviation
        let moments = Moments::of(&data);
        let standardised = DMatrix::from_fn(6, 4, |r, c| {
            (data[(r, c)] - moments.means[c]) / moments.sd(c)
        });
        let b = estimate(&standardised, &model, &Settings::default()).unwrap();
        for (x, y) in a
            .weights
            .iter()
            .zip(&b.weights)
            .chain(a.loadings.iter().flatten().zip(b.loadings.iter().flatten()))
        {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
        assert!((a.path_coefficients[0].2 - b.path_coefficients[0].2).abs() < 1e-12);
    }

    /// With two LVs the inner estimate of each is the other times r
    /// (factorial) or times sign(r) (centroid, and path: r both ways):
    /// proportional, so all three schemes reach the same normalised weights.
    #[test]
    fn two_lv_models_give_the_same_weights_under_every_scheme() {
        let data = DMatrix::from_row_slice(
            6,
            4,
            &[
                1.0, 2.0, 3.0, 4.0, 2.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 8.0, 3.0, 3.0, 4.0, 6.0,
                5.0, 6.0, 4.0, 9.0, 2.0, 4.0, 1.0, 2.0,
            ],
        );
        let model = PathModel {
            blocks: vec![vec![0, 1], vec![2, 3]],
            paths: vec![(0, 1)],
        };
        let fit = |scheme| {
            let settings = Settings {
                scheme,
                tolerance: 1e-14,
                ..Settings::default()
            };
            estimate(&data, &model, &settings).unwrap()
        };
        let (path, centroid, factorial) = (
            fit(Scheme::Path),
            fit(Scheme::Centroid),
            fit(Scheme::Factorial),
        );
        for c in 0..4 {
            assert!((path.weights[c] - centroid.weights[c]).abs() < 1e-6);
            assert!((factorial.weights[c] - centroid.weights[c]).abs() < 1e-6);
        }
    }
}
