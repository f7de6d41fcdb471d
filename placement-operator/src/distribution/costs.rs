//! `controller.kubernetes.io/pod-deletion-cost` on a Deployment's pods, so that a scale-down keeps the
//! distribution's ratio: the pods of groups above their target are the cheapest to delete.
//!
//! The ReplicaSet controller, when it has to remove pods, sorts its pods and deletes from the front:
//! unscheduled before scheduled, pending before running, not ready before ready, **then lower
//! `pod-deletion-cost` before higher** (then pods packed on busier nodes, then newer before older). So
//! among healthy running pods the cost decides. The order comes from the core
//! ([`placement_core::apportion::Apportionment::deletion_costs`]): repeatedly take one pod from the
//! group furthest above its target for one pod fewer; its rank is its cost (0 = deleted first; pods
//! in no group are cheapest of all). Within a group the pod that goes first is the newest, not-ready
//! first, as the ReplicaSet controller itself would choose.
//!
//! Only pods whose cost changes are patched (a JSON merge patch on `metadata.annotations`, which
//! leaves every other annotation alone), cheapest first, at most a bounded number per reconcile; the
//! rest follow on the next reconcile, which comes at once when the bound was hit. StatefulSets ignore
//! the annotation (they always remove the highest ordinal), so StatefulSet pods are not patched.

use super::metrics::{DistributionMetrics, PatchOutcome};
use super::observe::{DELETION_COST, ObservedPod};
use crate::error::{Error, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use placement_core::apportion::Apportionment;
use serde_json::json;

/// One pod whose cost must change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CostChange {
    pub pod: String,
    pub cost: i32,
    pub previous: Option<String>,
    pub reason: String,
}

/// Every pod's cost, and the pods whose annotation differs, cheapest first.
pub fn plan(apportionment: &Apportionment, pods: &[ObservedPod]) -> Vec<CostChange> {
    // The core removes the *last* pod of a group first: order each group oldest ready first, so that
    // the newest and not-ready pods come last.
    let mut ordered: Vec<&ObservedPod> = pods.iter().collect();
    ordered.sort_by(|a, b| (!a.ready, a.created, &a.name).cmp(&(!b.ready, b.created, &b.name)));
    let keyed: Vec<(&str, Option<usize>)> = ordered.iter().map(|p| (p.name.as_str(), p.group)).collect();
    let current: std::collections::HashMap<&str, Option<&str>> =
        pods.iter().map(|p| (p.name.as_str(), p.deletion_cost.as_deref())).collect();
    apportionment
        .deletion_costs(&keyed)
        .into_iter()
        .filter_map(|c| {
            let previous = current.get(c.pod).copied().flatten();
            let same = previous.and_then(|v| v.trim().parse::<i32>().ok()) == Some(c.cost);
            let previous = previous.map(str::to_string);
            (!same).then(|| CostChange { pod: c.pod.to_string(), cost: c.cost, previous, reason: c.reason })
        })
        .collect()
}

/// What [`apply`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub patched: usize,
    /// Changes left for the next reconcile (the bound was reached).
    pub deferred: usize,
}

/// Patches the first `limit` of `changes`; a pod gone meanwhile is skipped. Returns the first error
/// after trying every patch in the bound.
pub async fn apply(
    api: &Api<Pod>,
    changes: &[CostChange],
    limit: usize,
    metrics: &DistributionMetrics,
) -> Result<Applied> {
    let mut applied = Applied { patched: 0, deferred: changes.len().saturating_sub(limit) };
    let mut first_error = None;
    for c in changes.iter().take(limit) {
        let patch = json!({"metadata": {"annotations": {DELETION_COST: c.cost.to_string()}}});
        match api.patch(&c.pod, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                metrics.deletion_cost_patch(PatchOutcome::Patched);
                applied.patched += 1;
                tracing::debug!(pod = %c.pod, cost = c.cost, reason = %c.reason, "pod-deletion-cost set");
            }
            Err(kube::Error::Api(s)) if s.code == 404 => metrics.deletion_cost_patch(PatchOutcome::Gone),
            Err(e) => {
                metrics.deletion_cost_patch(PatchOutcome::Failed);
                first_error.get_or_insert(Error::kube(format!("setting pod-deletion-cost on pod {}", c.pod), e));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(applied),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, group: Option<usize>, age: i64, cost: Option<&str>) -> ObservedPod {
        ObservedPod {
            name: name.into(),
            group,
            ready: true,
            created: Some(jiff::Timestamp::from_second(1_000_000 - age).unwrap()),
            deletion_cost: cost.map(str::to_string),
        }
    }

    #[test]
    fn over_target_group_is_cheapest_newest_first_and_unchanged_costs_are_skipped() {
        let ap = Apportionment::new(vec![("on-demand".into(), 80), ("spot".into(), 20)], None).unwrap();
        // 10 pods: on-demand 6 (target 8), spot 4 (target 2).
        let mut pods: Vec<ObservedPod> = (0..6).map(|i| pod(&format!("od-{i}"), Some(0), 100 - i, None)).collect();
        pods.extend((0..4).map(|i| pod(&format!("sp-{i}"), Some(1), 100 - i, None)));
        let changes = plan(&ap, &pods);
        assert_eq!(changes.len(), 10, "no pod had a cost");
        let order: Vec<&str> = changes.iter().map(|c| c.pod.as_str()).collect();
        // Spot is 2 above target: its two newest pods go first.
        assert_eq!(&order[..2], ["sp-3", "sp-2"]);
        assert_eq!(changes.iter().map(|c| c.cost).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
        assert!(changes[0].reason.contains("spot"), "{}", changes[0].reason);
        // With the costs in place nothing changes; one pod with a stale value is the only change.
        let with: Vec<ObservedPod> = pods
            .iter()
            .map(|p| {
                let c = changes.iter().find(|c| c.pod == p.name).unwrap().cost.to_string();
                ObservedPod { deletion_cost: Some(c), ..p.clone() }
            })
            .collect();
        assert!(plan(&ap, &with).is_empty());
        let mut stale = with.clone();
        stale[0].deletion_cost = Some("999".into());
        assert_eq!(plan(&ap, &stale).len(), 1);
    }

    #[test]
    fn not_ready_pods_go_before_ready_ones_of_their_group() {
        let ap = Apportionment::new(vec![("a".into(), 1)], None).unwrap();
        let mut pods = vec![pod("new", Some(0), 1, None), pod("old", Some(0), 50, None)];
        pods[1].ready = false;
        let order: Vec<String> = plan(&ap, &pods).into_iter().map(|c| c.pod).collect();
        assert_eq!(order, ["old", "new"]);
    }
}
