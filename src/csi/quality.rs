//! How far an estimated PLS path model can be trusted (spec v2 4.7, the
//! diagnostics plspm reports): per block the average variance extracted,
//! Cronbach's alpha, Dillon-Goldstein's rho and the two largest eigenvalues
//! of its items' correlation matrix; for the model the goodness of fit; per
//! pair of latent variables the indirect and total effects through every
//! chain of paths.
//!
//! alpha, rho and the eigenvalues describe the items alone (plspm's
//! "unidimensionality" table): they come from the items' correlation
//! matrix, rho from the loadings on its first principal component. AVE and
//! GoF use the model's loadings.

use nalgebra::{DMatrix, SymmetricEigen};

use super::moments::Moments;
use super::pls::{Fit, PathModel};

/// The measurement quality of one block (factor). A measure is None where
/// it is undefined: every measure of the items' correlations when one of
/// the block's items has no variance (everybody gave the same answer, so
/// its correlations are 0 / 0), and the AVE when a loading is undefined for
/// the same reason. plspm reports NA there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQuality {
    /// Mean squared loading of the block's items on their factor.
    pub ave: Option<f64>,
    /// Standardised Cronbach's alpha: p / (p - 1) * (1 - p / the sum of
    /// the items' correlation matrix); 1 for a single item.
    pub cronbach_alpha: Option<f64>,
    /// (sum l)^2 / ((sum l)^2 + sum (1 - l^2)), l = the items' loadings on
    /// the first principal component of their correlation matrix.
    pub dg_rho: Option<f64>,
    pub eig_1st: Option<f64>,
    /// Also None for a single item.
    pub eig_2nd: Option<f64>,
}

/// The quality of each block of `model` from the moments of the indicators
/// the model was estimated on, with the fit's loadings.
pub fn block_quality(moments: &Moments, model: &PathModel, fit: &Fit) -> Vec<BlockQuality> {
    let correlation = moments.correlation();
    model
        .blocks
        .iter()
        .map(|block| {
            let items = block.len() as f64;
            let ave = block
                .iter()
                .map(|&c| fit.loadings[c].map(|l| l * l))
                .sum::<Option<f64>>()
                .map(|sum| sum / items);
            if block.iter().any(|&c| moments.covariance[(c, c)] <= 0.0) {
                return BlockQuality {
                    ave,
                    cronbach_alpha: None,
                    dg_rho: None,
                    eig_1st: None,
                    eig_2nd: None,
                };
            }
            let r = correlation.select_rows(block).select_columns(block);
            let cronbach_alpha = if block.len() > 1 {
                items / (items - 1.0) * (1.0 - items / r.sum())
            } else {
                1.0
            };
            let eigen = SymmetricEigen::new(r);
            let mut order: Vec<usize> = (0..block.len()).collect();
            order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
            let eig_1st = eigen.eigenvalues[order[0]];
            let first = eigen.eigenvectors.column(order[0]);
            // loadings on the first component: its eigenvector scaled by
            // the component's standard deviation; the sign is arbitrary and
            // rho takes the square of the sum, so it does not matter
            let loadings: Vec<f64> = first.iter().map(|v| v * eig_1st.sqrt()).collect();
            let sum = loadings.iter().sum::<f64>();
            let unique = loadings.iter().map(|l| 1.0 - l * l).sum::<f64>();
            BlockQuality {
                ave,
                cronbach_alpha: Some(cronbach_alpha),
                dg_rho: Some(sum * sum / (sum * sum + unique)),
                eig_1st: Some(eig_1st),
                eig_2nd: order.get(1).map(|&i| eigen.eigenvalues[i]),
            }
        })
        .collect()
}

/// GoF = sqrt(mean communality * mean R²): the communality (squared
/// loading) averaged over the items of blocks with more than one item, R²
/// over the endogenous factors. None without an endogenous factor or a
/// block of several items, or when a loading is undefined (an item with no
/// variance).
pub fn goodness_of_fit(model: &PathModel, fit: &Fit) -> Option<f64> {
    let communalities: Vec<f64> = model
        .blocks
        .iter()
        .filter(|block| block.len() > 1)
        .flat_map(|block| block.iter().map(|&c| fit.loadings[c].map(|l| l * l)))
        .collect::<Option<_>>()?;
    let r_squared: Vec<f64> = fit.r_squared.iter().flatten().copied().collect();
    if communalities.is_empty() || r_squared.is_empty() {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Some((mean(&communalities) * mean(&r_squared)).sqrt())
}

/// Effects between factors: `total[(to, from)]` sums the products of the
/// path coefficients along every chain from `from` to `to` (B + B² + ...,
/// B[(to, from)] = the direct path; the model has no cycles, so the powers
/// vanish after as many steps as it has factors); indirect = total - B.
#[derive(Debug, Clone, PartialEq)]
pub struct Effects {
    pub direct: DMatrix<f64>,
    pub indirect: DMatrix<f64>,
    pub total: DMatrix<f64>,
}

pub fn effects(model: &PathModel, fit: &Fit) -> Effects {
    let lvs = model.blocks.len();
    let mut direct = DMatrix::zeros(lvs, lvs);
    for &(from, to, coefficient) in &fit.path_coefficients {
        direct[(to, from)] = coefficient;
    }
    let mut total = DMatrix::zeros(lvs, lvs);
    let mut power = direct.clone();
    for _ in 0..lvs {
        total += &power;
        power = &direct * power;
    }
    Effects {
        indirect: &total - &direct,
        direct,
        total,
    }
}
