//! # placement-operator
//!
//! Controllers and executors (arriving with their own issue) and `simulate`, the project's main job
//! without a cluster: it runs a scenario through every placement-core decision and prints the result.
#![forbid(unsafe_code)]

pub mod crdgen;
pub mod simulate;
