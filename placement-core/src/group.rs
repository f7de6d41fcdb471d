//! Node groups (`docs/semantics.md#groups`): a set of nodes given by label requirements. A zone is the group
//! `topologyKey = value`. A bound pod belongs to the group of its node's labels; a pending pod to the
//! group its own nodeSelector/required affinity implies; a pod in no group does not count. Groups of one
//! strategy are ordered, and a node matching several belongs to the first.
//!
//! A group is **feasible** for a pod when at least one Ready, schedulable node in it tolerates the pod
//! and has room for it. An **autoscaled** group (its nodes are made on demand by Karpenter or the
//! Cluster Autoscaler) is also feasible when no node of it fits now but a new node of it could run the
//! pod ([`NewNode`], [`crate::fit::check_new_node`]): the pod is pinned there, and the autoscaler makes
//! the node for it.

use crate::Labels;
use crate::fit;
use crate::model::{Node, Pod};
use crate::selector::{LabelSelector, Operator};
use crate::taints::Taint;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A named set of nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeGroup {
    pub name: String,
    pub selector: LabelSelector,
    /// Set when the group's nodes are made on demand: what a new one will look like.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaled: Option<NewNode>,
}

/// A node an autoscaler would make for a group, as far as placement can know it before it exists.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NewNode {
    /// The labels the group's selector requires: its `matchLabels`, and its `In` expressions with one
    /// value.
    pub labels: Labels,
    /// The taints the group declares its nodes carry.
    #[serde(default)]
    pub taints: Vec<Taint>,
}

impl NodeGroup {
    pub fn new(name: impl Into<String>, selector: LabelSelector) -> Self {
        NodeGroup { name: name.into(), selector, autoscaled: None }
    }

    /// The group `key = value` (a zone, for `topology.kubernetes.io/zone`).
    pub fn label(key: &str, value: &str) -> Self {
        NodeGroup::new(value, LabelSelector::from_pairs([(key, value)]))
    }

    /// The same group, autoscaled: its new nodes carry the labels its selector requires and `taints`.
    pub fn autoscaled(mut self, taints: Vec<Taint>) -> Self {
        let mut labels = self.selector.match_labels.clone();
        for r in &self.selector.match_expressions {
            if r.operator == Operator::In && r.values.len() == 1 {
                labels.insert(r.key.clone(), r.values[0].clone());
            }
        }
        self.autoscaled = Some(NewNode { labels, taints });
        self
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
    /// No node fits now, but the group is autoscaled and a new node of it could run the pod.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_node: bool,
}

impl Feasibility {
    /// Nothing known yet: no node seen.
    pub fn none() -> Self {
        Feasibility { node: None, nodes: 0, why_not: None, new_node: false }
    }

    pub fn feasible(&self) -> bool {
        self.node.is_some() || self.new_node
    }

    /// Assume a group is feasible without looking at nodes (an autoscaled group with no node yet).
    pub fn assumed() -> Self {
        Feasibility { node: Some(String::new()), nodes: 0, why_not: None, new_node: false }
    }
}

impl fmt::Display for Feasibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.node, &self.why_not) {
            (Some(n), _) if n.is_empty() => f.write_str("assumed feasible"),
            (Some(n), _) => write!(f, "fits on {n}"),
            (None, _) if self.new_node && self.nodes == 0 => {
                f.write_str("no node yet; autoscaled, and a new node could run the pod")
            }
            (None, Some(w)) if self.new_node => write!(
                f,
                "no node fits now ({} nodes; e.g. {w}); autoscaled, and a new node could run the pod",
                self.nodes
            ),
            (None, Some(w)) if self.nodes == 0 => write!(f, "no node; {w}"),
            (None, None) if self.nodes == 0 => f.write_str("no node"),
            (None, Some(w)) => write!(f, "no node fits ({} nodes; e.g. {w})", self.nodes),
            (None, None) => write!(f, "no node fits ({} nodes)", self.nodes),
        }
    }
}

/// Feasibility of `group` for `pod` over `nodes`; stops at the first node that fits.
pub fn feasibility<'a>(nodes: impl IntoIterator<Item = &'a Node>, group: &NodeGroup, pod: &Pod) -> Feasibility {
    or_new_node(first_fit(nodes.into_iter().filter(|n| group.contains(&n.labels)), pod), group, pod)
}

/// `found` (a [`first_fit`] over the group's nodes), or, when no node fits and the group is
/// autoscaled, feasible by a new node if one could run the pod; if none could, why is added.
pub fn or_new_node(mut found: Feasibility, group: &NodeGroup, pod: &Pod) -> Feasibility {
    let Some(new) = &group.autoscaled else { return found };
    if found.node.is_some() {
        return found;
    }
    match fit::check_new_node(&new.labels, &new.taints, pod) {
        Ok(()) => found.new_node = true,
        Err(e) => {
            let why = format!("a new node of the autoscaled group could not run it either: {e}");
            found.why_not = Some(match found.why_not {
                Some(w) => format!("{w}; {why}"),
                None => why,
            });
        }
    }
    found
}

/// Feasibility over nodes already known to be in the group; stops at the first node that fits.
pub fn first_fit<'a>(nodes: impl IntoIterator<Item = &'a Node>, pod: &Pod) -> Feasibility {
    let mut out = Feasibility::none();
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

    fn spot(autoscaled: bool) -> NodeGroup {
        let g = NodeGroup::new("spot", LabelSelector::from_pairs([("capacity", "spot")]));
        if autoscaled { g.autoscaled(vec![Taint::new("spot", "true", crate::taints::Effect::NoSchedule)]) } else { g }
    }

    fn tolerant() -> PodBuilder {
        PodBuilder::new("ns", "p")
            .deployment("w")
            .pending()
            .requests(500, 0)
            .toleration(crate::taints::Toleration::exists("spot", None))
    }

    fn term(key: &str, op: Operator, values: &[&str]) -> crate::selector::NodeSelectorTerm {
        crate::selector::NodeSelectorTerm {
            match_expressions: vec![crate::selector::Requirement::new(key, op, values)],
            match_fields: vec![],
        }
    }

    #[test]
    fn an_autoscaled_group_with_no_fitting_node_takes_a_pod_a_new_node_could_run() {
        let none: [&Node; 0] = [];
        // No node at all: feasible by a new node, and the reason says so.
        let f = feasibility(none, &spot(true), &tolerant().build());
        assert!(f.feasible() && f.new_node && f.node.is_none(), "{f:?}");
        assert_eq!(f.to_string(), "no node yet; autoscaled, and a new node could run the pod");
        // Not autoscaled: no node, not feasible (as before).
        assert!(!feasibility(none, &spot(false), &tolerant().build()).feasible());
        // A full node: no room now, but a new node could run it.
        let full = NodeBuilder::new("spot-1")
            .label("capacity", "spot")
            .taint(Taint::new("spot", "true", crate::taints::Effect::NoSchedule))
            .allocatable(1000, 1 << 30)
            .requested(900, 0)
            .build();
        let f = feasibility([&full], &spot(true), &tolerant().build());
        assert!(f.feasible() && f.new_node, "{f:?}");
        assert!(f.to_string().starts_with("no node fits now (1 nodes; e.g. spot-1: cpu"), "{f}");
        // A node that fits is used as before, with no new node.
        let roomy = NodeBuilder::new("spot-2")
            .label("capacity", "spot")
            .taint(Taint::new("spot", "true", crate::taints::Effect::NoSchedule))
            .allocatable(1000, 1 << 30)
            .build();
        let f = feasibility([&full, &roomy], &spot(true), &tolerant().build());
        assert_eq!((f.node.as_deref(), f.new_node), (Some("spot-2"), false));
    }

    #[test]
    fn a_new_node_must_agree_with_the_pods_own_constraints() {
        let none: [&Node; 0] = [];
        let check = |pod: Pod| feasibility(none, &spot(true), &pod);
        // The taint the group declares must be tolerated.
        let intolerant = PodBuilder::new("ns", "p").deployment("w").pending().build();
        let f = check(intolerant);
        assert!(!f.feasible(), "{f:?}");
        assert_eq!(
            f.why_not.as_deref(),
            Some("a new node of the autoscaled group could not run it either: untolerated taint spot=true:NoSchedule")
        );
        // A nodeSelector naming another value of the group's label.
        let f = check(tolerant().node_selector("capacity", "on-demand").build());
        assert!(!f.feasible());
        assert!(f.to_string().contains("nodeSelector capacity not matched"), "{f}");
        // A label the group does not name: the autoscaler decides, so it may.
        assert!(check(tolerant().node_selector("kubernetes.io/arch", "arm64").build()).feasible());
        // Required affinity: a term that holds where the labels are known, or names other keys.
        let affinity = |terms: Vec<crate::selector::NodeSelectorTerm>| {
            check(tolerant().affinity(crate::selector::NodeAffinity { terms }).build())
        };
        assert!(affinity(vec![term("capacity", Operator::In, &["spot", "on-demand"])]).feasible());
        assert!(!affinity(vec![term("capacity", Operator::NotIn, &["spot"])]).feasible());
        assert!(affinity(vec![term("zone", Operator::In, &["a"])]).feasible(), "an unknown key may hold");
        assert!(
            affinity(vec![term("capacity", Operator::DoesNotExist, &[]), term("zone", Operator::Exists, &[])])
                .feasible(),
            "one possible term is enough"
        );
        let by_name = crate::selector::NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![crate::selector::Requirement::new("metadata.name", Operator::In, &["spot-7"])],
        };
        assert!(!affinity(vec![by_name]).feasible(), "a new node's name is not known");
    }

    #[test]
    fn a_new_node_carries_the_labels_the_selector_requires() {
        let mut selector = LabelSelector::from_pairs([("capacity", "spot")]);
        selector.match_expressions.push(crate::selector::Requirement::new("zone", Operator::In, &["a"]));
        selector.match_expressions.push(crate::selector::Requirement::new("gpu", Operator::In, &["a100", "h100"]));
        let g = NodeGroup::new("spot-a", selector).autoscaled(vec![]);
        let labels = &g.autoscaled.as_ref().unwrap().labels;
        let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("capacity", "spot"), ("zone", "a")], "one-value In only");
    }
}
