//! Integration tests: one binary, one module per concern.

mod bad_input;
mod csi;
mod csi_reference;
mod feedback;
mod fixture;
mod generated;
mod health;
mod mrr;
mod publish;
mod retention;
mod s3;
mod support;
mod value;
