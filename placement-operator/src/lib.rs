//! # placement-operator
//!
//! The operator's controllers (zone balancing in operator mode, PodDistribution upkeep, the utilization
//! rebalancer), their runtime (leader election, probes, Events), and `simulate`, the project's main job
//! without a cluster: it runs a scenario through every placement-core decision and prints the result.
#![forbid(unsafe_code)]

pub mod context;
pub mod crdgen;
pub mod error;
pub mod plan;
pub mod rebalancer;
pub mod runtime;
pub mod simulate;

pub use context::{Context, Leadership};
pub use error::{Error, Result};
