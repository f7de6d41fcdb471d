//! The utilization rebalancer (DESIGN §3.4). TO BE WRITTEN.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid rebalance policy")]
pub struct PolicyError;
