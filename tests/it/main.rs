//! Integration tests: one binary, one module per concern.

mod architecture;
mod bad_input;
mod cli;
#[cfg(feature = "distributed")]
mod cluster;
mod cohorts;
mod csi;
mod csi_reference;
mod delta;
mod faults;
mod feedback;
mod fixture;
mod generated;
mod health;
mod mrr;
mod publish;
mod report;
mod retention;
mod s3;
mod sbg_reference;
mod shell;
mod support;
mod surveys;
mod value;
