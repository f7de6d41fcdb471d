//! Steering: the replacement of a pod the rebalancer evicted should go where the plan moved it, not back
//! to the hot node it left.
//!
//! When the rebalancer evicts a pod it records `{workload, node, from, expires}` in its
//! `RebalancePolicy`'s `status.steering` (a short window, two minutes by default). When a pod of that
//! workload is created inside the window, the webhook adds a *preferred* node-affinity term for the
//! planned node (`kubernetes.io/hostname`), so the scheduler picks it when it fits and anything else when
//! it does not. Each entry steers one pod on this replica: a ReplicaSet that replaces three evicted pods
//! gets three entries and each replacement one of them. Entries for nodes that are gone, not Ready or
//! cordoned are skipped.

use placement_core::model::WorkloadRef;
use placement_kube::crd::RebalancePolicy;
use placement_kube::live::LiveIndex;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The node label the preferred term selects on.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Weight of the steering term: below the distribution and zone terms (100), so that a rule's group
/// preference wins over a node preference when both are preferred.
pub const STEERING_WEIGHT: i32 = 50;

/// Where a replacement pod is steered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteerTo {
    /// The planned node's name.
    pub node: String,
    /// The value of its `kubernetes.io/hostname` label (the node name when it has none).
    pub hostname: String,
    /// The policy that planned the move (`RebalancePolicy default`).
    pub source: String,
    /// In words, for the decision annotation.
    pub reason: String,
}

/// The steering entries already used by this replica, until they expire.
#[derive(Default)]
pub struct Steering {
    used: Mutex<HashMap<String, jiff::Timestamp>>,
}

impl Steering {
    /// The planned node for a new pod of `workload`, if a policy steers one: the entry that expires
    /// first among those not used yet. Marks it used unless `dry_run`.
    pub fn choose(
        &self,
        policies: &[Arc<RebalancePolicy>],
        workload: &WorkloadRef,
        index: &LiveIndex,
        dry_run: bool,
    ) -> Option<SteerTo> {
        let now = jiff::Timestamp::now();
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.retain(|_, expires| *expires > now);
        let mut best: Option<(jiff::Timestamp, String, SteerTo)> = None;
        for policy in policies {
            let Some(status) = &policy.status else { continue };
            let name = policy.metadata.name.as_deref().unwrap_or_default();
            for entry in &status.steering {
                if entry.expires.0 <= now || entry.workload.to_core() != *workload {
                    continue;
                }
                let key = format!("{name}/{}/{}/{}", entry.node, entry.from, entry.expires.0);
                if used.contains_key(&key) {
                    continue;
                }
                let Some(node) = index.node(&entry.node) else { continue };
                if !node.ready || node.unschedulable {
                    continue;
                }
                if best.as_ref().is_some_and(|(expires, _, _)| *expires <= entry.expires.0) {
                    continue;
                }
                let hostname = node.labels.get(HOSTNAME_LABEL).cloned().unwrap_or_else(|| node.name.clone());
                let reason = format!(
                    "steered to node {} (the rebalancer moved a pod of this workload there from {})",
                    entry.node, entry.from
                );
                let source = format!("RebalancePolicy {name}");
                best = Some((entry.expires.0, key, SteerTo { node: entry.node.clone(), hostname, source, reason }));
            }
        }
        let (expires, key, steer) = best?;
        if !dry_run {
            used.insert(key, expires);
        }
        Some(steer)
    }
}
