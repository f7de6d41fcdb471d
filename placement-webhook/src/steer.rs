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

#[cfg(test)]
mod tests {
    use super::*;
    use placement_core::model::WorkloadKind;
    use serde_json::json;

    fn index() -> LiveIndex {
        let mut index = LiveIndex::new();
        for (name, ready, cordoned) in
            [("a", true, false), ("b", true, false), ("down", false, false), ("cordoned", true, true)]
        {
            let node = json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": format!("host-{name}")}},
                "spec": {"unschedulable": cordoned},
                "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                           "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
            index.apply_node(&serde_json::from_value(node).unwrap());
        }
        index
    }

    fn policy(entries: &[(&str, &str, i64)]) -> Arc<RebalancePolicy> {
        let now = jiff::Timestamp::now();
        let steering: Vec<_> = entries
            .iter()
            .map(|(workload, node, expires_in)| {
                json!({"workload": {"kind": "Deployment", "namespace": "shop", "name": workload}, "node": node,
                    "from": "hot", "expires": (now + jiff::SignedDuration::from_secs(*expires_in)).to_string()})
            })
            .collect();
        Arc::new(
            serde_json::from_value(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "RebalancePolicy",
                "metadata": {"name": "rb"}, "spec": {}, "status": {"steering": steering}}))
            .unwrap(),
        )
    }

    #[test]
    fn each_live_entry_steers_one_pod_to_a_usable_node() {
        let web = WorkloadRef::new(WorkloadKind::Deployment, "shop", "web");
        let index = index();
        let policies = [policy(&[
            ("web", "b", 60),
            ("web", "a", 30),
            ("web", "gone", 10),
            ("web", "down", 10),
            ("web", "cordoned", 10),
            ("web", "a", -1),
            ("api", "a", 10),
        ])];
        let steering = Steering::default();
        let chosen = |dry_run| steering.choose(&policies, &web, &index, dry_run).map(|s| (s.node, s.hostname));
        assert_eq!(chosen(true), Some(("a".into(), "host-a".into())), "the first to expire; a dry run uses nothing");
        assert_eq!(chosen(false), Some(("a".into(), "host-a".into())));
        assert_eq!(chosen(false), Some(("b".into(), "host-b".into())), "each entry steers one pod");
        assert_eq!(chosen(false), None, "gone, not Ready, cordoned, expired and other workloads' entries never steer");
    }
}
