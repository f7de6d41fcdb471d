//! Node groups (`docs/semantics.md#groups`): a set of nodes given by label requirements. A zone is the group
//! `topologyKey = value`. A bound pod belongs to the group of its node's labels; a pending pod to the
//! group its own nodeSelector/required affinity implies; a pod in no group does not count. Groups of one
//! strategy are ordered, and a node matching several belongs to the first.
//!
//! A group is **feasible** for a pod when at least one Ready, schedulable node in it tolerates the pod
//! and has room for it.

use crate::Labels;
use crate::fit;
use crate::model::{Node, Pod};
use crate::selector::LabelSelector;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A named set of nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeGroup {
    pub name: String,
    pub selector: LabelSelector,
}

impl NodeGroup {
    pub fn new(name: impl Into<String>, selector: LabelSelector) -> Self {
        NodeGroup { name: name.into(), selector }
    }

    /// The group `key = value` (a zone, for `topology.kubernetes.io/zone`).
    pub fn label(key: &str, value: &str) -> Self {
        NodeGroup { name: value.to_string(), selector: LabelSelector::from_pairs([(key, value)]) }
    }

    pub fn contains(&self, labels: &Labels) -> bool {
        self.selector.matches(labels)
    }
}

impl fmt::Display for NodeGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Index of the first group whose selector matches `labels`.
pub fn group_of_labels(groups: &[NodeGroup], labels: &Labels) -> Option<usize> {
    groups.iter().position(|g| g.contains(labels))
}

/// The group of a pod: by its bound node's labels (`node_labels` looks a node up by name), or for a
/// pending pod by the labels its nodeSelector and required affinity imply.
pub fn group_of_pod<'a>(
    groups: &[NodeGroup],
    pod: &Pod,
    node_labels: impl Fn(&str) -> Option<&'a Labels>,
) -> Option<usize> {
    match &pod.node_name {
        Some(n) => node_labels(n).and_then(|l| group_of_labels(groups, l)),
        None => group_of_labels(groups, &pod.implied_node_labels()),
    }
}

/// Whether a group can take the pod, with the reason when it cannot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Feasibility {
    /// A node that fits, when there is one.
    pub node: Option<String>,
    /// Nodes in the group.
    pub nodes: usize,
    /// Why the first node in the group does not fit, when none does.
    pub why_not: Option<String>,
}

impl Feasibility {
    pub fn feasible(&self) -> bool {
        self.node.is_some()
    }

    /// Assume a group is feasible without looking at nodes (an autoscaled group with no node yet).
    pub fn assumed() -> Self {
        Feasibility { node: Some(String::new()), nodes: 0, why_not: None }
    }
}

impl fmt::Display for Feasibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.node, &self.why_not) {
            (Some(n), _) if n.is_empty() => f.write_str("assumed feasible"),
            (Some(n), _) => write!(f, "fits on {n}"),
            (None, _) if self.nodes == 0 => f.write_str("no node"),
            (None, Some(w)) => write!(f, "no node fits ({} nodes; e.g. {w})", self.nodes),
            (None, None) => write!(f, "no node fits ({} nodes)", self.nodes),
        }
    }
}

/// Feasibility of `group` for `pod` over `nodes`; stops at the first node that fits.
pub fn feasibility<'a>(nodes: impl IntoIterator<Item = &'a Node>, group: &NodeGroup, pod: &Pod) -> Feasibility {
    first_fit(nodes.into_iter().filter(|n| group.contains(&n.labels)), pod)
}

/// Feasibility over nodes already known to be in the group; stops at the first node that fits.
pub fn first_fit<'a>(nodes: impl IntoIterator<Item = &'a Node>, pod: &Pod) -> Feasibility {
    let mut out = Feasibility { node: None, nodes: 0, why_not: None };
    for node in nodes {
        out.nodes += 1;
        match fit::check(node, pod) {
            Ok(()) => {
                out.node = Some(node.name.clone());
                return out;
            }
            Err(e) if out.why_not.is_none() => out.why_not = Some(format!("{}: {e}", node.name)),
            Err(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeBuilder, PodBuilder};

    #[test]
    fn pod_group_by_node_or_own_selector() {
        let groups = vec![NodeGroup::label("type", "ondemand"), NodeGroup::label("type", "spot")];
        let nodes = [
            NodeBuilder::new("od").label("type", "ondemand").build(),
            NodeBuilder::new("sp").label("type", "spot").build(),
        ];
        let lookup = |n: &str| nodes.iter().find(|x| x.name == n).map(|x| &x.labels);
        let bound = PodBuilder::new("ns", "a").deployment("w").on_node("sp").build();
        assert_eq!(group_of_pod(&groups, &bound, lookup), Some(1));
        let pending = PodBuilder::new("ns", "b").deployment("w").pending().node_selector("type", "ondemand").build();
        assert_eq!(group_of_pod(&groups, &pending, lookup), Some(0));
        let free = PodBuilder::new("ns", "c").deployment("w").pending().build();
        assert_eq!(group_of_pod(&groups, &free, lookup), None, "a pod in no group");
        let unknown_node = PodBuilder::new("ns", "d").deployment("w").on_node("gone").build();
        assert_eq!(group_of_pod(&groups, &unknown_node, lookup), None);
    }

    #[test]
    fn first_matching_group_wins() {
        let groups = vec![NodeGroup::label("zone", "a"), NodeGroup::label("type", "spot")];
        let l: Labels = [("zone".to_string(), "a".to_string()), ("type".to_string(), "spot".to_string())].into();
        assert_eq!(group_of_labels(&groups, &l), Some(0));
    }

    #[test]
    fn feasibility_reports_first_fitting_node_or_why_not() {
        let g = NodeGroup::label("zone", "a");
        let pod = PodBuilder::new("ns", "p").deployment("w").pending().requests(500, 0).build();
        let full = NodeBuilder::new("full").label("zone", "a").allocatable(1000, 1 << 30).requested(900, 0).build();
        let roomy = NodeBuilder::new("roomy").label("zone", "a").allocatable(1000, 1 << 30).build();
        let other = NodeBuilder::new("other").label("zone", "b").build();
        let f = feasibility([&other, &full, &roomy], &g, &pod);
        assert_eq!(f.node.as_deref(), Some("roomy"));
        let f = feasibility([&other, &full], &g, &pod);
        assert!(!f.feasible());
        assert_eq!(f.to_string(), "no node fits (1 nodes; e.g. full: cpu: needs 500m, 100m free)");
        assert_eq!(feasibility([&other], &g, &pod).to_string(), "no node");
    }
}
