//! Customer satisfaction index (spec 4.7): the `[csi]` model and the PLS
//! path modelling estimator of its weights.

pub mod pls;
