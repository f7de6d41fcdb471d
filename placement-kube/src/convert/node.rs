//! A Node into the core node: labels, taints, allocatable CPU/memory/pods, readiness and cordon.
//!
//! * `allocatable` missing entirely or per resource: CPU and memory 0 (nothing fits), pods 110 (the
//!   kubelet default `maxPods`);
//! * `ready` is the `Ready` condition with status `True`; a node without it (no status yet, or status
//!   `Unknown` after the kubelet stopped reporting) is not ready;
//! * `spec.unschedulable` (kubectl cordon) sets `unschedulable` and, when the node lifecycle controller
//!   has not added it yet, the `node.kubernetes.io/unschedulable:NoSchedule` taint it would add, so the
//!   node looks the same just after a cordon as a moment later;
//! * `requested` and `pod_count` stay 0: the snapshot or index computes them from the pods.

use super::error::{ConvertError, Obj, required_name};
use super::quantities;
use super::taints::{UNSCHEDULABLE_TAINT, taint};
use crate::quantity;
use k8s_openapi::api::core::v1 as core_v1;
use placement_core::model::Node;
use placement_core::resources::Resources;
use placement_core::taints::{Effect, Taint};

/// `maxPods` when `allocatable.pods` is missing.
pub const DEFAULT_MAX_PODS: u32 = 110;

/// Converts a Node. Errors name the node and the field (`status.allocatable.memory`).
pub fn node(n: &core_v1::Node) -> Result<Node, ConvertError> {
    let name = required_name("Node", &n.metadata)?;
    let obj = Obj::cluster("Node", &name);
    let spec = n.spec.as_ref();
    let status = n.status.as_ref();

    let mut taints = spec
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| taint(&obj, &format!("spec.taints[{i}]"), t))
        .collect::<Result<Vec<Taint>, _>>()?;
    let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
    if unschedulable && !taints.iter().any(|t| t.key == UNSCHEDULABLE_TAINT && t.effect == Effect::NoSchedule) {
        taints.push(Taint::new(UNSCHEDULABLE_TAINT, "", Effect::NoSchedule));
    }

    let allocatable = status.and_then(|s| s.allocatable.as_ref());
    let resources = quantities::resources(&obj, "status.allocatable", allocatable)?;
    let max_pods = match allocatable.and_then(|a| a.get("pods")) {
        None => DEFAULT_MAX_PODS,
        Some(q) => {
            let field = "status.allocatable.pods";
            let n = quantity::count(&q.0).map_err(|e| obj.err(field, e))?;
            u32::try_from(n).map_err(|_| obj.err(field, format!("quantity {:?}: too large", q.0)))?
        }
    };

    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");

    Ok(Node {
        name,
        labels: n.metadata.labels.clone().unwrap_or_default(),
        taints,
        allocatable: resources,
        max_pods,
        requested: Resources::ZERO,
        pod_count: 0,
        usage: None,
        ready,
        unschedulable,
    })
}
