//! Customer satisfaction index (spec 4.7): the `[csi]` model, checked, and
//! the PLS path modelling estimator of its weights ([`pls`]).

pub mod bootstrap;
mod config;
mod exact;
pub mod moments;
pub mod pls;
pub mod quality;

use std::collections::{BTreeMap, BTreeSet};

pub(crate) use config::default_csi_scale;
pub use config::{CsiConfig, CsiWeights};

/// Column names of the respondent table that an item code cannot take.
const RESERVED: &[&str] = &["response_id", "customer_id", "segment", "complete"];

/// Failures of a run's CSI step.
#[derive(Debug, thiserror::Error)]
pub enum CsiError {
    #[error(
        "csi: configured item(s) {missing} never answered in the csi survey since {since} \
         (items answered: {seen}); check [csi.factors]"
    )]
    ItemsNotAnswered {
        missing: String,
        seen: String,
        since: chrono::NaiveDate,
    },
    #[error("csi: segment {segment:?} ({respondents} respondents): {source}")]
    Estimation {
        segment: String,
        respondents: usize,
        source: pls::PlsError,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("no factors: add [csi.factors] with factor = [items]")]
    NoFactors,
    #[error("factor {0:?} has no items")]
    FactorWithoutItems(String),
    #[error("item code {item:?} is empty or reserved")]
    BadItemCode { item: String },
    #[error("item {item:?} is listed under both {first:?} and {second:?}")]
    ItemInTwoFactors {
        item: String,
        first: String,
        second: String,
    },
    #[error("csi.paths names {name:?}, which is not a factor (factors: {known})")]
    UnknownFactorInPaths { name: String, known: String },
    #[error("csi.paths has a cycle: {0}")]
    Cycle(String),
    #[error("index_factor {name:?} is not a factor (factors: {known})")]
    UnknownIndexFactor { name: String, known: String },
    #[error("weights = {0:?}: expected \"pls\" or a table item -> weight")]
    UnknownWeightsMethod(String),
    #[error("weights names unknown item code {0:?} (not in any factor)")]
    UnknownItemInWeights(String),
    #[error("weights has no weight for item {0:?}")]
    MissingWeight(String),
    #[error("the weights of factor {0:?} must be finite and sum to more than 0")]
    BadFactorWeights(String),
    #[error(
        "factor {0:?} has no path to or from another factor; PLS estimates every factor from its neighbours"
    )]
    Unconnected(String),
    #[error("scale must be [min, max] with min < max, got [{0}, {1}]")]
    BadScale(f64, f64),
    #[error("{0}")]
    BadSetting(String),
}

/// A checked `[csi]` model. Factors are in name order; items are grouped
/// by factor in that order, each factor's items as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct CsiModel {
    pub factors: Vec<String>,
    pub items: Vec<String>,
    /// Item indices of each factor.
    pub blocks: Vec<Vec<usize>>,
    /// (driver, driven) factor indices, sorted.
    pub paths: Vec<(usize, usize)>,
    pub index_factor: usize,
    /// Configured item weights, in item order; None for PLS.
    pub fixed_weights: Option<Vec<f64>>,
    pub settings: pls::Settings,
    pub scale: (f64, f64),
    pub min_respondents: u64,
    /// Bootstrap resamples (0 = none) and their seed.
    pub bootstrap: usize,
    pub seed: u64,
}

impl CsiModel {
    pub fn new(config: &CsiConfig) -> Result<Self, ModelError> {
        let [min, max] = config.scale;
        if !(min.is_finite() && max.is_finite() && min < max) {
            return Err(ModelError::BadScale(min, max));
        }
        if config.factors.is_empty() {
            return Err(ModelError::NoFactors);
        }
        let factors: Vec<String> = config.factors.keys().cloned().collect();
        let known = factors.join(", ");
        let index_of = |name: &str| factors.iter().position(|f| f == name);

        let mut items = Vec::new();
        let mut blocks = Vec::new();
        let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
        for (factor, factor_items) in &config.factors {
            if factor_items.is_empty() {
                return Err(ModelError::FactorWithoutItems(factor.clone()));
            }
            let mut block = Vec::new();
            for item in factor_items {
                if item.trim().is_empty() || RESERVED.contains(&item.as_str()) {
                    return Err(ModelError::BadItemCode { item: item.clone() });
                }
                if let Some(first) = owner.insert(item, factor) {
                    return Err(ModelError::ItemInTwoFactors {
                        item: item.clone(),
                        first: first.into(),
                        second: factor.clone(),
                    });
                }
                block.push(items.len());
                items.push(item.clone());
            }
            blocks.push(block);
        }

        let mut paths = BTreeSet::new();
        for (driven, drivers) in &config.paths {
            let to = index_of(driven).ok_or_else(|| ModelError::UnknownFactorInPaths {
                name: driven.clone(),
                known: known.clone(),
            })?;
            for driver in drivers {
                let from = index_of(driver).ok_or_else(|| ModelError::UnknownFactorInPaths {
                    name: driver.clone(),
                    known: known.clone(),
                })?;
                paths.insert((from, to));
            }
        }
        let paths: Vec<(usize, usize)> = paths.into_iter().collect();
        if let Some(cycle) = find_cycle(factors.len(), &paths) {
            let names: Vec<&str> = cycle.iter().map(|&i| factors[i].as_str()).collect();
            return Err(ModelError::Cycle(names.join(" -> ")));
        }
        let index_factor =
            index_of(&config.index_factor).ok_or_else(|| ModelError::UnknownIndexFactor {
                name: config.index_factor.clone(),
                known: known.clone(),
            })?;

        let fixed_weights = match &config.weights {
            CsiWeights::Method(m) if m == "pls" => None,
            CsiWeights::Method(m) => return Err(ModelError::UnknownWeightsMethod(m.clone())),
            CsiWeights::Items(weights) => {
                if let Some(unknown) = weights.keys().find(|k| !owner.contains_key(k.as_str())) {
                    return Err(ModelError::UnknownItemInWeights(unknown.clone()));
                }
                let values = items
                    .iter()
                    .map(|item| {
                        weights
                            .get(item)
                            .copied()
                            .ok_or_else(|| ModelError::MissingWeight(item.clone()))
                    })
                    .collect::<Result<Vec<f64>, _>>()?;
                for (factor, block) in factors.iter().zip(&blocks) {
                    let sum: f64 = block.iter().map(|&i| values[i]).sum();
                    if !(sum.is_finite() && sum > 0.0)
                        || block.iter().any(|&i| !values[i].is_finite())
                    {
                        return Err(ModelError::BadFactorWeights(factor.clone()));
                    }
                }
                Some(values)
            }
        };
        if fixed_weights.is_none() {
            for (j, factor) in factors.iter().enumerate() {
                if !paths.iter().any(|&(f, t)| f == j || t == j) {
                    return Err(ModelError::Unconnected(factor.clone()));
                }
            }
        }
        if config.min_respondents < 3 {
            return Err(ModelError::BadSetting(format!(
                "min_respondents must be at least 3, got {}",
                config.min_respondents
            )));
        }
        if config.tolerance.is_nan() || config.tolerance <= 0.0 || config.max_iterations == 0 {
            return Err(ModelError::BadSetting(
                "tolerance must be > 0 and max_iterations >= 1".into(),
            ));
        }
        Ok(Self {
            factors,
            items,
            blocks,
            paths,
            index_factor,
            fixed_weights,
            settings: pls::Settings {
                scheme: config.scheme,
                scaled: config.scaled,
                tolerance: config.tolerance,
                max_iterations: config.max_iterations,
            },
            scale: (min, max),
            min_respondents: config.min_respondents,
            bootstrap: config.bootstrap,
            seed: config.seed,
        })
    }

    pub fn path_model(&self) -> pls::PathModel {
        pls::PathModel {
            blocks: self.blocks.clone(),
            paths: self.paths.clone(),
        }
    }
}

/// A cycle among the directed edges, as a closed walk of node indices.
fn find_cycle(nodes: usize, edges: &[(usize, usize)]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        OnStack,
        Done,
    }
    fn visit(
        node: usize,
        edges: &[(usize, usize)],
        state: &mut [State],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[node] = State::OnStack;
        stack.push(node);
        for &(_, next) in edges.iter().filter(|(from, _)| *from == node) {
            match state[next] {
                State::OnStack => {
                    let start = stack.iter().position(|&n| n == next).expect("on the stack");
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                State::New => {
                    if let Some(cycle) = visit(next, edges, state, stack) {
                        return Some(cycle);
                    }
                }
                State::Done => {}
            }
        }
        stack.pop();
        state[node] = State::Done;
        None
    }
    let mut state = vec![State::New; nodes];
    for node in 0..nodes {
        if state[node] == State::New
            && let Some(cycle) = visit(node, edges, &mut state, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<CsiModel, ModelError> {
        // `extra` goes first: top-level keys, or tables other than these two.
        let text = format!(
            "{extra}\n[factors]\nexpectations = ['e1', 'e2']\nquality = ['q1']\nsatisfaction = ['s1', 's2']\n\
             [paths]\nquality = ['expectations']\nsatisfaction = ['expectations', 'quality']\n"
        );
        let config: CsiConfig = toml::from_str(&text).unwrap();
        CsiModel::new(&config)
    }

    fn config_text(text: &str) -> Result<CsiModel, ModelError> {
        CsiModel::new(&toml::from_str::<CsiConfig>(text).unwrap())
    }

    #[test]
    fn a_valid_model_is_indexed_by_factor_name() {
        let m = config("").unwrap();
        assert_eq!(m.factors, ["expectations", "quality", "satisfaction"]);
        assert_eq!(m.items, ["e1", "e2", "q1", "s1", "s2"]);
        assert_eq!(m.blocks, vec![vec![0, 1], vec![2], vec![3, 4]]);
        assert_eq!(m.paths, vec![(0, 1), (0, 2), (1, 2)]);
        assert_eq!(m.index_factor, 2);
        assert_eq!(m.fixed_weights, None);
    }

    #[test]
    fn model_errors_are_named() {
        assert_eq!(
            config_text("[factors]\nsatisfaction = []\n"),
            Err(ModelError::FactorWithoutItems("satisfaction".into()))
        );
        assert_eq!(
            config_text("index_factor = 'x'\n"),
            Err(ModelError::NoFactors)
        );
        assert!(matches!(
            config("[weights]\ne1 = 1.0\nzz9 = 2.0\n"),
            Err(ModelError::UnknownItemInWeights(item)) if item == "zz9"
        ));
        assert_eq!(
            config("[weights]\ne1 = 1.0\n"),
            Err(ModelError::MissingWeight("e2".into()))
        );
        let cycle = config_text(
            "[factors]\na = ['a1']\nb = ['b1']\nc = ['c1']\n[paths]\nb = ['a', 'c']\nc = ['b']\n",
        );
        assert_eq!(cycle, Err(ModelError::Cycle("b -> c -> b".into())));
        assert_eq!(
            config_text("[factors]\na = ['a1']\n[paths]\na = ['a']\n"),
            Err(ModelError::Cycle("a -> a".into()))
        );
        assert!(matches!(
            config_text("index_factor = 'loyalty'\n[factors]\nsatisfaction = ['s1']\n"),
            Err(ModelError::UnknownIndexFactor { name, .. }) if name == "loyalty"
        ));
        assert!(matches!(
            config_text("[factors]\nquality = ['q1']\n[paths]\nvalue = ['quality']\n"),
            Err(ModelError::UnknownFactorInPaths { name, .. }) if name == "value"
        ));
        assert!(matches!(
            config_text("[factors]\na = ['x1']\nsatisfaction = ['x1']\n"),
            Err(ModelError::ItemInTwoFactors { .. })
        ));
        assert_eq!(
            config_text("[factors]\nsatisfaction = ['s1']\nloyalty = ['l1']\n"),
            Err(ModelError::Unconnected("loyalty".into()))
        );
        assert_eq!(
            config("weights = 'mean'\n"),
            Err(ModelError::UnknownWeightsMethod("mean".into()))
        );
    }

    #[test]
    fn explicit_weights_skip_pls_and_may_leave_factors_unconnected() {
        let m =
            config_text("[factors]\nsatisfaction = ['s1', 's2']\n[weights]\ns1 = 2.0\ns2 = 1.0\n")
                .unwrap();
        assert_eq!(m.fixed_weights, Some(vec![2.0, 1.0]));
        assert!(m.paths.is_empty());
    }
}
