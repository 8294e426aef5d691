//! cskpi: customer-success KPIs on Apache DataFusion.
//!
//! Data flows one way: job file ([`config`]) -> session ([`engine::session`])
//! -> inputs ([`catalog`]) -> clean views and rejects ([`validate`]) -> KPI
//! views ([`kpi`], SQL in `sql/`, UDFs in [`engine::udf`]) -> published
//! tables ([`output`]). [`run`] drives it; [`datagen`] makes synthetic
//! inputs; [`cli`] is the command line. docs/ARCHITECTURE.md draws it.

pub mod calendar;
pub mod catalog;
pub mod cli;
#[cfg(feature = "distributed")]
pub mod cluster;
pub mod config;
pub mod csi;
pub mod datagen;
pub mod engine;
pub mod error;
pub mod feedback;
pub mod files;
pub mod inputs;
pub mod kpi;
pub mod output;
pub mod report;
pub mod run;
pub mod sbg;
pub mod validate;
pub mod views;

pub use error::Error;
