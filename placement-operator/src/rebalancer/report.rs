//! What the rebalancer reports on the guard-rail resources it honours, so that `kubectl get wslo` and
//! `kubectl get nclass` show whether each one is in effect and what it guards:
//!
//! * **WorkloadSLO**: `pods` (covered pods that count), `evictionsLastHour` (live evictions of covered
//!   pods in the last hour, summed over the history of every RebalancePolicy, so several policies write
//!   the same value), and `Ready` — `False` with `InvalidSpec` (the namespace is then left out of every
//!   pass) or `TargetNotFound` (the SLO covers nothing).
//! * **NodeClass**: `nodes` (nodes matched by this class first, classes in name order) and `Ready`
//!   (`False` with `InvalidSpec` when ignored).
//!
//! Computed purely from a pass's inputs; written by the leader only, only when something changed, as a
//! merge patch of the status subresource. Best effort: a failed write never fails the pass.

use super::observe::Inputs;
use jiff::{SignedDuration, Timestamp};
use placement_kube::crd::conditions::{READY, REASON_INVALID_SPEC};
use placement_kube::crd::rebalance_policy::EvictionEntry;
use placement_kube::crd::{
    Condition, ConditionStatus, NodeClass, NodeClassStatus, WorkloadSLO, WorkloadSLOStatus, set_condition,
};
use std::collections::BTreeMap;

/// The WorkloadSLO statuses that differ from what the objects carry: `(namespace, name, status)`.
pub fn slo_statuses(
    slos: &[WorkloadSLO],
    inputs: &Inputs,
    history: &[EvictionEntry],
    now: Timestamp,
) -> Vec<(String, String, WorkloadSLOStatus)> {
    let hour_ago = now - SignedDuration::from_secs(3600);
    let mut out = Vec::new();
    for slo in slos {
        let ns = slo.metadata.namespace.clone().unwrap_or_default();
        let name = slo.metadata.name.clone().unwrap_or_default();
        let generation = slo.metadata.generation;
        let previous = slo.status.clone().unwrap_or_default();
        let mut next = previous.clone();
        next.observed_generation = generation;
        let condition =
            match inputs.slo_problems.get(&(ns.clone(), name.clone())) {
                Some((reason, message)) => {
                    next.pods = 0;
                    Condition::new("Ready", ConditionStatus::False, *reason, message.clone(), generation, now)
                }
                None => {
                    next.pods =
                        inputs.slos.iter().find(|s| s.namespace == ns && s.name == name).map_or(0, |core| {
                            inputs.snapshot.pods.iter().filter(|p| p.counts() && core.covers(p)).count()
                        }) as u32;
                    Condition::ready(format!("guarding {} pod(s)", next.pods), generation, now)
                }
            };
        next.evictions_last_hour = history
            .iter()
            .filter(|e| !e.dry_run && e.at.0 > hour_ago && e.namespace == ns && e.slo.as_deref() == Some(name.as_str()))
            .count() as u32;
        set_condition(&mut next.conditions, condition);
        if next != previous {
            out.push((ns, name, next));
        }
    }
    out
}

/// The NodeClass statuses that differ from what the objects carry: `(name, status)`.
pub fn class_statuses(classes: &[NodeClass], inputs: &Inputs, now: Timestamp) -> Vec<(String, NodeClassStatus)> {
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for node in &inputs.snapshot.nodes {
        if let Some(c) = inputs.classes.iter().find(|c| c.selector.matches(&node.labels)) {
            *counts.entry(c.name.as_str()).or_insert(0) += 1;
        }
    }
    let mut out = Vec::new();
    for class in classes {
        let name = class.metadata.name.clone().unwrap_or_default();
        let generation = class.metadata.generation;
        let previous = class.status.clone().unwrap_or_default();
        let mut next = previous.clone();
        next.observed_generation = generation;
        next.nodes = counts.get(name.as_str()).copied().unwrap_or(0);
        let condition = match inputs.class_problems.get(&name) {
            Some(e) => Condition::new(READY, ConditionStatus::False, REASON_INVALID_SPEC, e.clone(), generation, now),
            None => Condition::ready(format!("{} node(s) in the class", next.nodes), generation, now),
        };
        set_condition(&mut next.conditions, condition);
        if next != previous {
            out.push((name, next));
        }
    }
    out
}

/// Writes the changed statuses (merge patches of the status subresource); returns how many writes failed.
pub async fn write(
    client: &kube::Client,
    slos: Vec<(String, String, WorkloadSLOStatus)>,
    classes: Vec<(String, NodeClassStatus)>,
) -> usize {
    use kube::api::{Api, Patch, PatchParams};
    let mut failed = 0;
    for (ns, name, status) in slos {
        let api = Api::<WorkloadSLO>::namespaced(client.clone(), &ns);
        let patch = serde_json::json!({ "status": status });
        if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::warn!(slo = %format!("{ns}/{name}"), error = %e, "could not write the WorkloadSLO status");
            failed += 1;
        }
    }
    for (name, status) in classes {
        let api = Api::<NodeClass>::all(client.clone());
        let patch = serde_json::json!({ "status": status });
        if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::warn!(class = %name, error = %e, "could not write the NodeClass status");
            failed += 1;
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_slo_is_reported_and_an_unchanged_status_is_not_written_again() {
        let mut slo: WorkloadSLO = serde_yaml_ng::from_str(
            "apiVersion: placement.dev/v1alpha1\nkind: WorkloadSLO\nmetadata: {name: bad, namespace: shop, generation: 2}\nspec:\n  selector: {matchLabels: {app: web}}\n",
        )
        .unwrap();
        let mut inputs = Inputs::default();
        inputs.slo_problems.insert(("shop".into(), "bad".into()), ("InvalidSpec", "spec.minAvailable: bad".into()));
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let updates = slo_statuses(std::slice::from_ref(&slo), &inputs, &[], now);
        assert_eq!(updates.len(), 1);
        let status = &updates[0].2;
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.conditions[0].status, ConditionStatus::False);
        assert_eq!(status.conditions[0].reason, "InvalidSpec");
        slo.status = Some(status.clone());
        let later = now + SignedDuration::from_secs(60);
        assert!(slo_statuses(std::slice::from_ref(&slo), &inputs, &[], later).is_empty(), "nothing changed");
    }
}
