//! What one rebalance pass looks at, gathered the same way for the controller and for `plan`: the
//! cluster snapshot with usage attached, the WorkloadSLOs and NodeClasses in core form, and notes on
//! anything that could not be taken into account.
//!
//! Decisions made here, and why:
//!
//! * **Usage is polled** from metrics.k8s.io at each pass (metrics-server serves lists, not watches),
//!   and replaces whatever usage the snapshot had: a node or pod missing from the metrics list has no
//!   usage, so (with `source: metrics`) the node is not a target and the pod counts at its requests.
//!   With `source: requests` the metrics API is not called at all.
//! * **WorkloadSLO `targetRef`** is resolved to the workload's pod selector (a Deployment's or
//!   StatefulSet's `spec.selector`); an SLO whose workload does not exist covers nothing (its pods are
//!   orphans being deleted) and says so in the notes.
//! * **An invalid WorkloadSLO** cannot say which pods it protects, so its whole namespace is left out of
//!   scope for the pass (conservative: no eviction is better than one the SLO forbade).
//! * **WorkloadSLO `minAvailable`** becomes a PodDisruptionBudget-like budget for the planner
//!   (`disruptionsAllowed = ready covered pods - minAvailable`), so it is counted with the evictions
//!   planned earlier in the same pass, exactly like a real PDB.
//! * **NodeClasses** are matched in name order, as their spec documents; an invalid one is skipped with
//!   a note.
//! * **PersistentVolumeClaims and PersistentVolumes are listed at each pass**, and only when a pod of
//!   the snapshot uses a claim: whether a claim is node-local is needed for the few pods on hot nodes,
//!   once per interval, so a watch (and the memory of every claim and volume of the cluster, all the
//!   time) would cost more than it saves. `list` is the only verb needed. A list that fails leaves every
//!   claim unresolved, which the core treats as local (never evicted), with a note: not knowing where
//!   data lives is not a reason to risk it.
//! * **The eviction history is cluster-wide.** The live evictions recorded by every *other*
//!   RebalancePolicy (listed at each pass, from the API server, not a cache) count towards this policy's
//!   cluster rate, namespace budget, WorkloadSLO budgets and backoffs, as the policy fields promise. Each
//!   policy still records only its own evictions in its own status, so the history survives restarts
//!   and failovers exactly like the state it sits next to. Other policies' dry-run records never count:
//!   they never happened.

use crate::error::{Error, Result};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, ListParams};
use placement_core::model::{Pdb, Snapshot, WorkloadKind, WorkloadRef};
use placement_core::rebalance::EvictionRecord;
use placement_core::rebalance::{NodeClass, WorkloadSlo};
use placement_core::resources::Resources;
use placement_core::selector::LabelSelector;
use placement_kube::convert::volumes::{ClaimLocality, has_claims};
use placement_kube::convert::{NodeMetrics, PodMetrics, node_usage, pod_usage};
use placement_kube::crd::RebalancePolicy;
use placement_kube::crd::conditions::REASON_INVALID_SPEC;
use placement_kube::crd::{NodeClass as NodeClassCr, WorkloadSLO};
use std::collections::{BTreeMap, BTreeSet};

/// Most notes kept for one pass.
pub const NOTE_LIMIT: usize = 20;

/// Everything a pass plans over.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub snapshot: Snapshot,
    pub slos: Vec<WorkloadSlo>,
    pub classes: Vec<NodeClass>,
    /// Namespaces left out of scope for this pass (an invalid WorkloadSLO lives there).
    pub excluded_namespaces: BTreeSet<String>,
    /// WorkloadSLOs (namespace, name) not in effect: the condition reason and message for their status.
    pub slo_problems: BTreeMap<(String, String), (&'static str, String)>,
    /// NodeClasses not in effect: name to the error.
    pub class_problems: BTreeMap<String, String>,
    /// What could not be taken into account, in words.
    pub notes: Vec<String>,
    /// The live evictions of every other RebalancePolicy ([`others_history`]): counted by this pass's
    /// cluster-wide budgets and backoffs, never written into its status.
    pub cluster_history: Vec<EvictionRecord>,
}

impl Inputs {
    pub fn note(&mut self, note: impl Into<String>) {
        if self.notes.len() < NOTE_LIMIT {
            self.notes.push(note.into());
        }
    }
}

/// Replaces the usage of every node and pod in `snapshot` with the metrics lists (none when absent).
/// Malformed metrics are noted and ignored.
pub fn attach_usage(inputs: &mut Inputs, nodes: &[NodeMetrics], pods: &[PodMetrics]) {
    let mut notes = Vec::new();
    let mut node_map: BTreeMap<String, Resources> = BTreeMap::new();
    for m in nodes {
        match node_usage(m) {
            Ok(u) => {
                node_map.insert(m.metadata.name.clone().unwrap_or_default(), u);
            }
            Err(e) => notes.push(format!("ignored metrics: {e}")),
        }
    }
    let mut pod_map: BTreeMap<(String, String), Resources> = BTreeMap::new();
    for m in pods {
        match pod_usage(m) {
            Ok(u) => {
                let key =
                    (m.metadata.namespace.clone().unwrap_or_default(), m.metadata.name.clone().unwrap_or_default());
                pod_map.insert(key, u);
            }
            Err(e) => notes.push(format!("ignored metrics: {e}")),
        }
    }
    for n in &mut inputs.snapshot.nodes {
        n.usage = node_map.get(&n.name).copied();
    }
    for p in &mut inputs.snapshot.pods {
        p.usage = pod_map.get(&(p.namespace.clone(), p.name.clone())).copied();
    }
    let without = inputs.snapshot.nodes.iter().filter(|n| n.usage.is_none()).count();
    if without > 0 {
        notes.push(format!("{without} node(s) have no metrics and are neither scored nor targets"));
    }
    for n in notes {
        inputs.note(n);
    }
}

/// Lists NodeMetrics and PodMetrics from metrics.k8s.io.
pub async fn fetch_metrics(client: &kube::Client) -> Result<(Vec<NodeMetrics>, Vec<PodMetrics>)> {
    let hint = "is metrics-server installed? (spec.source: requests plans from requests instead)";
    let nodes = Api::<NodeMetrics>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::Metrics(format!("listing node metrics: {e}; {hint}")))?;
    let pods = Api::<PodMetrics>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::Metrics(format!("listing pod metrics: {e}; {hint}")))?;
    Ok((nodes.items, pods.items))
}

/// The workloads whose pod selectors the SLOs' `targetRef`s need.
pub fn slo_targets(slos: &[WorkloadSLO]) -> BTreeSet<WorkloadRef> {
    slos.iter()
        .filter_map(|s| {
            let ns = s.metadata.namespace.as_deref().unwrap_or_default();
            s.spec.target(ns).ok().flatten()
        })
        .collect()
}

/// Looks up the pod selector of each workload (Deployment or StatefulSet `spec.selector`); a workload
/// that does not exist is absent from the map.
pub async fn fetch_selectors(
    client: &kube::Client,
    targets: &BTreeSet<WorkloadRef>,
) -> Result<BTreeMap<WorkloadRef, LabelSelector>> {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    let mut out = BTreeMap::new();
    for w in targets {
        let selector = match w.kind {
            WorkloadKind::Deployment => Api::<Deployment>::namespaced(client.clone(), &w.namespace)
                .get_opt(&w.name)
                .await
                .map_err(|e| Error::kube(format!("reading Deployment {}/{}", w.namespace, w.name), e))?
                .and_then(|d| d.spec.map(|s| s.selector)),
            WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), &w.namespace)
                .get_opt(&w.name)
                .await
                .map_err(|e| Error::kube(format!("reading StatefulSet {}/{}", w.namespace, w.name), e))?
                .and_then(|d| d.spec.map(|s| s.selector)),
            _ => None,
        };
        if let Some(s) = selector
            && let Ok(core) = placement_kube::crd::label_selector_to_core("spec.selector", &s)
        {
            out.insert(w.clone(), core);
        }
    }
    Ok(out)
}

/// Converts the SLOs (with the selectors of their targets) and adds their `minAvailable` budgets.
pub fn add_slos(inputs: &mut Inputs, slos: &[WorkloadSLO], selectors: &BTreeMap<WorkloadRef, LabelSelector>) {
    let mut sorted: Vec<&WorkloadSLO> = slos.iter().collect();
    sorted.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
    for slo in sorted {
        let ns = slo.metadata.namespace.clone().unwrap_or_default();
        let name = slo.metadata.name.clone().unwrap_or_default();
        let target = match slo.spec.target(&ns) {
            Ok(t) => t,
            Err(e) => {
                invalid_slo(inputs, &ns, &name, &e.to_string());
                continue;
            }
        };
        let target_selector = match &target {
            Some(w) => match selectors.get(w) {
                Some(s) => Some(s),
                None => {
                    let message = format!("{} {} not found, so the SLO covers no pod", w.kind, w.name);
                    inputs.note(format!("WorkloadSLO {ns}/{name}: {message}"));
                    inputs.slo_problems.insert((ns.clone(), name.clone()), ("TargetNotFound", message));
                    continue;
                }
            },
            None => None,
        };
        let core = match slo.spec.to_core_with_target(&ns, &name, target_selector) {
            Ok(c) => c,
            Err(e) => {
                invalid_slo(inputs, &ns, &name, &e.to_string());
                continue;
            }
        };
        if let Ok(Some(min)) = slo.spec.min_available() {
            let covered: Vec<_> = inputs.snapshot.pods.iter().filter(|p| p.counts() && core.covers(p)).collect();
            let replicas =
                target.as_ref().and_then(|w| inputs.snapshot.workload(w)).map_or(covered.len() as u32, |w| w.replicas);
            let ready = covered.iter().filter(|p| p.ready).count() as u32;
            let required = min.resolve(replicas);
            inputs.snapshot.pdbs.push(Pdb {
                namespace: ns.clone(),
                name: format!("(WorkloadSLO {name} minAvailable {required})"),
                selector: core.selector.clone(),
                disruptions_allowed: ready.saturating_sub(required),
            });
        }
        inputs.slos.push(core);
    }
}

fn invalid_slo(inputs: &mut Inputs, ns: &str, name: &str, error: &str) {
    inputs.note(format!("WorkloadSLO {ns}/{name} is invalid ({error}): namespace {ns} is left out of this pass"));
    inputs.excluded_namespaces.insert(ns.to_string());
    let message = format!("{error}; namespace {ns} is left out of every rebalance pass until this is fixed");
    inputs.slo_problems.insert((ns.to_string(), name.to_string()), (REASON_INVALID_SPEC, message));
}

/// Converts the NodeClasses, in name order.
pub fn add_classes(inputs: &mut Inputs, classes: &[NodeClassCr]) {
    let mut sorted: Vec<&NodeClassCr> = classes.iter().collect();
    sorted.sort_by_key(|c| c.metadata.name.clone());
    for c in sorted {
        let name = c.metadata.name.clone().unwrap_or_default();
        match c.spec.to_core(&name) {
            Ok(core) => inputs.classes.push(core),
            Err(e) => {
                inputs.note(format!("NodeClass {name} is invalid and ignored: {e}"));
                inputs.class_problems.insert(name, e.to_string());
            }
        }
    }
}

/// The claims and volumes the snapshot's pods need resolved: `Ok(None)` when no pod uses a claim (then
/// nothing is listed).
pub async fn fetch_claims(client: &kube::Client, snapshot: &Snapshot) -> Result<Option<ClaimLocality>> {
    if !snapshot.pods.iter().any(has_claims) {
        return Ok(None);
    }
    let claims = Api::<PersistentVolumeClaim>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("listing PersistentVolumeClaims", e))?;
    let volumes = Api::<PersistentVolume>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("listing PersistentVolumes", e))?;
    Ok(Some(ClaimLocality::new(&claims.items, &volumes.items)))
}

/// Fills in which pods' claims are node-local; with `Err` (the lists failed) every claim stays
/// unresolved, and a note says why.
pub fn resolve_claims(inputs: &mut Inputs, locality: std::result::Result<Option<ClaimLocality>, String>) {
    match locality {
        Ok(None) => {}
        Ok(Some(locality)) => inputs.snapshot.pods.iter_mut().for_each(|p| locality.resolve(p)),
        Err(e) => inputs.note(format!("pods with PersistentVolumeClaims are not evicted this pass: {e}")),
    }
}

/// The live evictions recorded by every RebalancePolicy but `own`: they count for this policy's
/// cluster-wide budgets and backoffs.
pub fn others_history(policies: &[RebalancePolicy], own: &str) -> Vec<EvictionRecord> {
    policies
        .iter()
        .filter(|p| p.metadata.name.as_deref() != Some(own))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            let mut live = s.state.clone();
            live.history.retain(|e| !e.dry_run);
            live.to_core().history
        })
        .collect()
}

/// Lists the RebalancePolicies (for their eviction histories).
pub async fn fetch_policies(client: &kube::Client) -> Result<Vec<RebalancePolicy>> {
    Api::<RebalancePolicy>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| Error::kube("listing RebalancePolicies for the cluster-wide eviction history", e))
}

/// Lists the WorkloadSLOs and NodeClasses of the cluster.
pub async fn fetch_guard_rails(client: &kube::Client) -> Result<(Vec<WorkloadSLO>, Vec<NodeClassCr>)> {
    let slos = Api::<WorkloadSLO>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("listing WorkloadSLOs", e))?;
    let classes = Api::<NodeClassCr>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("listing NodeClasses", e))?;
    Ok((slos.items, classes.items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use placement_core::model::{NodeBuilder, PodBuilder};

    fn slo(yaml: &str) -> WorkloadSLO {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn min_available_becomes_a_budget_and_invalid_slos_exclude_their_namespace() {
        let pods = (0..3)
            .map(|i| {
                PodBuilder::new("shop", format!("web-{i}")).deployment("web").label("app", "web").on_node("n").build()
            })
            .collect();
        let mut inputs = Inputs {
            snapshot: Snapshot::new(vec![NodeBuilder::new("n").build()], pods, vec![], vec![]),
            ..Inputs::default()
        };
        let slos = vec![
            slo(
                "apiVersion: placement.dev/v1alpha1\nkind: WorkloadSLO\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  minAvailable: 2\n",
            ),
            slo(
                "apiVersion: placement.dev/v1alpha1\nkind: WorkloadSLO\nmetadata: {name: bad, namespace: other}\nspec:\n  selector: {matchLabels: {app: web}}\n  minAvailable: \"x\"\n",
            ),
            slo(
                "apiVersion: placement.dev/v1alpha1\nkind: WorkloadSLO\nmetadata: {name: gone, namespace: shop}\nspec:\n  targetRef: {kind: Deployment, name: gone}\n",
            ),
        ];
        add_slos(&mut inputs, &slos, &BTreeMap::new());
        assert_eq!(inputs.slos.len(), 1);
        assert_eq!(inputs.snapshot.pdbs.len(), 1);
        assert_eq!(inputs.snapshot.pdbs[0].disruptions_allowed, 1, "3 ready, 2 must stay");
        assert!(inputs.excluded_namespaces.contains("other"));
        assert!(inputs.notes.iter().any(|n| n.contains("Deployment gone not found")), "{:?}", inputs.notes);
    }
}
