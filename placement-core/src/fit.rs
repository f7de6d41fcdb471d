//! Can this pod run on this node? The checks the scheduler's filters make that matter for placement:
//! node Ready and schedulable, taints tolerated (wildcards too), nodeSelector and required node affinity
//! matched, free allocatable (allocatable minus the requests of bound pods) enough, pod slots left.
//!
//! The answer is a value: `Ok(())` or the first [`Unfit`] reason, printable for decisions and plans.

use crate::model::{Node, Pod};
use crate::resources::Resources;
use serde::Serialize;
use std::fmt;

/// Why a pod does not fit a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum Unfit {
    NotReady,
    Unschedulable,
    Taint { taint: String },
    NodeSelector { key: String },
    Affinity,
    Cpu { need_millis: u64, free_millis: u64 },
    Memory { need_bytes: u64, free_bytes: u64 },
    TooManyPods { max: u32 },
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::NotReady => f.write_str("node not Ready"),
            Unfit::Unschedulable => f.write_str("node unschedulable"),
            Unfit::Taint { taint } => write!(f, "untolerated taint {taint}"),
            Unfit::NodeSelector { key } => write!(f, "nodeSelector {key} not matched"),
            Unfit::Affinity => f.write_str("required node affinity not matched"),
            Unfit::Cpu { need_millis, free_millis } => write!(f, "cpu: needs {need_millis}m, {free_millis}m free"),
            Unfit::Memory { need_bytes, free_bytes } => {
                write!(f, "memory: needs {}Mi, {}Mi free", need_bytes >> 20, free_bytes >> 20)
            }
            Unfit::TooManyPods { max } => write!(f, "node already runs its maximum of {max} pods"),
        }
    }
}

/// The scheduling constraints (everything but resources): readiness, taints, selector, affinity.
pub fn check_constraints(node: &Node, pod: &Pod) -> Result<(), Unfit> {
    if !node.ready {
        return Err(Unfit::NotReady);
    }
    if node.unschedulable {
        return Err(Unfit::Unschedulable);
    }
    if let Some(t) = crate::taints::untolerated(&node.taints, &pod.tolerations) {
        return Err(Unfit::Taint { taint: t.to_string() });
    }
    if let Some((k, _)) = pod.node_selector.iter().find(|(k, v)| node.labels.get(*k) != Some(v)) {
        return Err(Unfit::NodeSelector { key: k.clone() });
    }
    if let Some(a) = &pod.required_affinity
        && !a.matches(&node.name, &node.labels)
    {
        return Err(Unfit::Affinity);
    }
    Ok(())
}

/// Could a node not made yet run the pod, as far as placement knows that node: it tolerates the node's
/// `taints` (`NoSchedule`, `NoExecute`), and its nodeSelector and required node affinity agree with the
/// node's `labels` where they name a known key ([`crate::selector::NodeAffinity::could_match`]). Room is
/// not checked: the autoscaler sizes the node for the pods that wait.
pub fn check_new_node(labels: &crate::Labels, taints: &[crate::taints::Taint], pod: &Pod) -> Result<(), Unfit> {
    if let Some(t) = crate::taints::untolerated(taints, &pod.tolerations) {
        return Err(Unfit::Taint { taint: t.to_string() });
    }
    if let Some((k, _)) = pod.node_selector.iter().find(|(k, v)| labels.get(*k).is_some_and(|have| have != *v)) {
        return Err(Unfit::NodeSelector { key: k.clone() });
    }
    if let Some(a) = &pod.required_affinity
        && !a.could_match(labels)
    {
        return Err(Unfit::Affinity);
    }
    Ok(())
}

/// Is there room for `requests` on top of `used` (requests already on the node) and `pods` pods?
pub fn check_room(node: &Node, used: Resources, pods: u32, requests: Resources) -> Result<(), Unfit> {
    if pods >= node.max_pods {
        return Err(Unfit::TooManyPods { max: node.max_pods });
    }
    let free = node.allocatable.saturating_sub(used);
    if requests.cpu_millis > free.cpu_millis {
        return Err(Unfit::Cpu { need_millis: requests.cpu_millis, free_millis: free.cpu_millis });
    }
    if requests.memory_bytes > free.memory_bytes {
        return Err(Unfit::Memory { need_bytes: requests.memory_bytes, free_bytes: free.memory_bytes });
    }
    Ok(())
}

/// Full check of a new pod against a node as it is now.
pub fn check(node: &Node, pod: &Pod) -> Result<(), Unfit> {
    check_constraints(node, pod)?;
    check_room(node, node.requested, node.pod_count, pod.requests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeBuilder, PodBuilder};
    use crate::selector::{NodeAffinity, NodeSelectorTerm, Operator, Requirement};
    use crate::taints::{Effect, Taint, Toleration};

    #[test]
    fn fit_table() {
        let node = || NodeBuilder::new("n1").zone("a").allocatable(1000, 1 << 30).requested(500, 512 << 20);
        let pod = || PodBuilder::new("ns", "p").deployment("w").pending().requests(100, 64 << 20);
        let zone_b = NodeAffinity {
            terms: vec![NodeSelectorTerm {
                match_expressions: vec![Requirement::new(crate::ZONE_LABEL, Operator::In, &["b"])],
                match_fields: vec![],
            }],
        };
        let spot = Taint::new("spot", "true", Effect::NoSchedule);
        let cases: Vec<(&str, Node, Pod, Result<(), Unfit>)> = vec![
            ("fits", node().build(), pod().build(), Ok(())),
            ("not ready", node().not_ready().build(), pod().build(), Err(Unfit::NotReady)),
            ("cordoned", node().unschedulable().build(), pod().build(), Err(Unfit::Unschedulable)),
            (
                "taint",
                node().taint(spot.clone()).build(),
                pod().build(),
                Err(Unfit::Taint { taint: "spot=true:NoSchedule".into() }),
            ),
            (
                "tolerated",
                node().taint(spot.clone()).build(),
                pod().toleration(Toleration::exists("", None)).build(),
                Ok(()),
            ),
            (
                "selector",
                node().build(),
                pod().node_selector("type", "spot").build(),
                Err(Unfit::NodeSelector { key: "type".into() }),
            ),
            ("affinity", node().build(), pod().affinity(zone_b).build(), Err(Unfit::Affinity)),
            (
                "cpu",
                node().build(),
                pod().requests(600, 0).build(),
                Err(Unfit::Cpu { need_millis: 600, free_millis: 500 }),
            ),
            ("cpu exact", node().build(), pod().requests(500, 0).build(), Ok(())),
            (
                "memory",
                node().build(),
                pod().requests(0, 1 << 30).build(),
                Err(Unfit::Memory { need_bytes: 1 << 30, free_bytes: 512 << 20 }),
            ),
            ("pods", node().max_pods(0).build(), pod().build(), Err(Unfit::TooManyPods { max: 0 })),
        ];
        for (name, n, p, want) in cases {
            assert_eq!(check(&n, &p), want, "{name}");
        }
    }

    use crate::model::{Node, Pod};
}
