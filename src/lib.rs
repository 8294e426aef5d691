//! cskpi: customer-success KPIs on Apache DataFusion.
//!
//! Data flows one way: job file ([`config`]) -> session ([`session`]) ->
//! inputs ([`catalog`]) -> clean views and rejects ([`validate`]) -> KPI views
//! ([`kpi`], SQL in `sql/`, UDFs in [`udf`]) -> published tables ([`output`]).
//! [`run`] drives it; [`datagen`] makes synthetic inputs; [`cli`] is the command line.

pub mod bench;
pub mod bucketed;
pub mod calendar;
pub mod catalog;
pub mod cli;
pub mod compact;
pub mod config;
pub mod csi;
pub mod datagen;
pub mod error;
pub mod feedback;
pub mod inputs;
pub mod kpi;
pub mod output;
pub mod repeated_hashes;
pub mod run;
pub mod session;
pub mod shell;
pub mod sql;
pub mod udf;
pub mod validate;
pub mod views;
pub mod whole_group_plan;

pub use error::Error;
