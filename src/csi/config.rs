//! The job file's `[csi]` section as it is written (spec 6): parsed with
//! serde like the rest of the job file, checked into a [`super::CsiModel`]
//! when the job file is read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pls::Scheme;

/// `[csi]`: the satisfaction index model (spec 4.7), checked by
/// [`CsiModel::new`] when the job file is read.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CsiConfig {
    /// [min, max] of a csi answer.
    #[serde(default = "default_csi_scale")]
    pub scale: [f64; 2],
    #[serde(default = "default_index_factor")]
    pub index_factor: String,
    #[serde(default)]
    pub weights: CsiWeights,
    #[serde(default = "default_min_respondents")]
    pub min_respondents: u64,
    /// Bootstrap resamples for standard errors and intervals; 0 = off.
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// Seed of the bootstrap's generator.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// factor -> its items.
    #[serde(default)]
    pub factors: BTreeMap<String, Vec<String>>,
    /// factor -> the factors that drive it.
    #[serde(default)]
    pub paths: BTreeMap<String, Vec<String>>,
    /// cskpi extension: the PLS inner weighting scheme (default "path").
    #[serde(default)]
    pub scheme: Scheme,
    /// cskpi extension: scale items to unit variance too (default false).
    #[serde(default)]
    pub scaled: bool,
    /// cskpi extension: PLS stopping tolerance (default 1e-6).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// cskpi extension: PLS iteration cap (default 100).
    #[serde(default = "default_max_iterations")]
    pub max_iterations: usize,
}

/// `csi.weights`: "pls", or a table item -> weight.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum CsiWeights {
    Method(String),
    Items(BTreeMap<String, f64>),
}

impl Default for CsiWeights {
    fn default() -> Self {
        Self::Method("pls".into())
    }
}

pub(crate) fn default_csi_scale() -> [f64; 2] {
    [1.0, 10.0]
}
fn default_index_factor() -> String {
    "satisfaction".into()
}
fn default_min_respondents() -> u64 {
    30
}
fn default_bootstrap() -> usize {
    200
}
fn default_seed() -> u64 {
    1
}
fn default_tolerance() -> f64 {
    1e-6
}
fn default_max_iterations() -> usize {
    100
}
