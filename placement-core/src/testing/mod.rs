//! The test and tuning harness (feature `testing`): the same tools this project uses to benchmark and
//! property-test its own decisions, exported for users who tune their own policies.
//!
//! * [`generator`]: a seeded, deterministic synthetic cluster ([`ClusterSpec`] -> [`generate`]) shaped
//!   like a real one (zones, on-demand and spot node groups, heavy-tailed workloads, hot and cold nodes,
//!   PDBs, pending pods), that never overcommits a node. Same seed, same snapshot: a benchmark or a
//!   failing case can always be reproduced.
//! * [`strategies`]: proptest strategies for nodes, pods, whole small clusters, labels, selectors,
//!   weights and per-group counts, whose values are internally consistent (requested totals match the
//!   bound pods) so that a property failure is a finding about the policy, not about the input.
//! * [`inspect`]: helpers over a [`Snapshot`](crate::model::Snapshot): its shape, consistency and
//!   overcommit checks, utilization, and a fresh pending pod of an existing workload for admission.

pub mod generator;
pub mod inspect;
pub mod strategies;

pub use generator::{ClusterSpec, INSTANCE_SHAPES, InstanceShape, NODE_TYPE_LABEL, generate, zone_name};
pub use inspect::{
    ClusterShape, cluster_shape, hot_nodes, inconsistencies, largest_workload, overcommitted_nodes, pending_pod_from,
    pick_pending_pod, single_replica_workloads, usage_fraction, usage_score, workload_pods,
};
pub use strategies::{
    ARB_ZONES, arb_cluster, arb_label_selector, arb_labels, arb_node, arb_pod_on, arb_rebalance_policy, arb_strategy,
    arb_weights, arb_workload_counts,
};
