//! The utilization rebalancer (`docs/semantics.md#4-rebalancer`): the Rebalancer Operator, done right.
//!
//! * [`observe`] smooths node scores with an EWMA and runs the K/M hysteresis state machine: a node is
//!   hot only after `K` consecutive hot observations, and stays hot until `M` consecutive cool ones.
//! * [`plan`] greedily picks the eviction (a pod on a hot node, to a feasible node) that lowers the
//!   population standard deviation of node scores the most, until sigma is low enough, no move helps
//!   enough, or a budget runs out. Every eviction names its reason and target; every candidate it did
//!   not take names the filter or budget that stopped it.
//!
//! All state that must survive a restart — EWMA values, hysteresis counters, eviction history — is in
//! [`RebalanceState`], which goes in and comes out.

mod budget;
mod filters;
mod observe;
mod planner;
mod policy;
mod score;

pub use filters::{SkipReason, never_evict};
pub use observe::{EvictionRecord, NodeState, RebalanceState, observe};
pub use planner::{NodeScore, Plan, PlanInput, PlannedEviction, SkippedCandidate, StopReason, plan};
pub use policy::{NodeClass, RebalancePolicy, UtilizationSource, WorkloadSlo};
pub use score::{node_score, sigma};

/// A rebalance policy field is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    /// The field at fault, as written in the resource (`coldThreshold`).
    pub field: &'static str,
    pub message: String,
}
