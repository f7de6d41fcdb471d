//! Reading one distribution's workload from the cluster: whether it exists, its newest revision, and
//! its counted pods with their groups and current `pod-deletion-cost`.
//!
//! The pods are listed from the API server with the workload's own label selector, once per
//! reconcile, rather than read from the operator's live index: the live index keeps counts and lean
//! pods without names per workload and without the deletion-cost annotation, and the upkeep needs both
//! for the same pods in the same instant (the counts in the status and the costs on the pods must
//! describe one state). The live index supplies what it is good at: node labels (so a pod's group is
//! the group of its node's *current* labels) and the ReplicaSet owners for the owner chain.
//!
//! The newest revision: for a Deployment, the `pod-template-hash` of its ReplicaSet with the highest
//! `deployment.kubernetes.io/revision`; for a StatefulSet, `status.updateRevision` (the value of its
//! pods' `controller-revision-hash`). Without one (a Deployment with no ReplicaSet yet) every revision
//! counts.

use crate::context::Context;
use crate::error::{Error, Result};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use placement_core::admission::DistributionRule;
use placement_core::group::group_of_pod;
use placement_core::model::{WorkloadKind, WorkloadRef};
use placement_kube::convert::{self, owners::POD_TEMPLATE_HASH};

/// The annotation the ReplicaSet controller reads to choose which pods to delete on scale-down.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
const DEPLOYMENT_REVISION: &str = "deployment.kubernetes.io/revision";

/// One counted pod of the workload (of the newest revision when revision-scoped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedPod {
    pub name: String,
    /// Index into the rule's groups; `None`: in no group.
    pub group: Option<usize>,
    pub ready: bool,
    pub created: Option<jiff::Timestamp>,
    /// The current `pod-deletion-cost` annotation, as written.
    pub deletion_cost: Option<String>,
}

/// The workload as one reconcile sees it.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// `false`: the target workload does not exist; nothing else is filled in.
    pub found: bool,
    /// The newest revision, when revision-scoped and known.
    pub revision: Option<String>,
    pub pods: Vec<ObservedPod>,
}

impl Observed {
    /// Pods per group, in group order.
    pub fn pods_per_group(&self, groups: usize) -> Vec<u32> {
        let mut out = vec![0; groups];
        for p in &self.pods {
            if let Some(g) = p.group.filter(|g| *g < groups) {
                out[g] += 1;
            }
        }
        out
    }

    pub fn in_no_group(&self) -> u32 {
        self.pods.iter().filter(|p| p.group.is_none()).count() as u32
    }
}

/// A label selector in the API's query syntax (`a=b,c in (d,e),!f`).
pub fn selector_query(s: &LabelSelector) -> String {
    let mut parts: Vec<String> = s.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// Reads `workload`'s newest revision and counted pods, grouped by `rule`.
pub async fn observe(ctx: &Context, workload: &WorkloadRef, rule: &DistributionRule) -> Result<Observed> {
    let ns = workload.namespace.as_str();
    let name = workload.name.as_str();
    let (selector, revision) = match workload.kind {
        WorkloadKind::Deployment => {
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
            let Some(d) = api.get_opt(name).await.map_err(|e| Error::kube(format!("reading {workload}"), e))? else {
                return Ok(Observed::default());
            };
            let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
            let revision = if rule.all_revisions { None } else { newest_replicaset_hash(ctx, &d, &selector).await? };
            (selector, revision)
        }
        WorkloadKind::StatefulSet => {
            let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
            let Some(s) = api.get_opt(name).await.map_err(|e| Error::kube(format!("reading {workload}"), e))? else {
                return Ok(Observed::default());
            };
            let selector = s.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
            let revision = if rule.all_revisions { None } else { s.status.and_then(|s| s.update_revision) };
            (selector, revision)
        }
        // The CRD admits only Deployments and StatefulSets.
        _ => return Ok(Observed::default()),
    };
    let query = selector_query(&selector);
    if query.is_empty() {
        // An empty selector would list the whole namespace; the API server rejects such workloads.
        return Ok(Observed { found: true, revision, pods: vec![] });
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&query))
        .await
        .map_err(|e| Error::kube(format!("listing the pods of {workload}"), e))?;
    let index = ctx.index.read();
    let mut observed = Vec::new();
    for p in &list.items {
        let pod = match convert::pod(p, index.owners()) {
            Ok(pod) => pod,
            Err(e) => {
                tracing::warn!(error = %e, "pod skipped: it cannot be read");
                continue;
            }
        };
        if !pod.counts() || pod.workload.as_ref() != Some(workload) {
            continue;
        }
        if revision.is_some() && pod.revision != revision {
            continue;
        }
        let group = group_of_pod(&rule.groups, &pod, |n| index.node(n).map(|n| &n.labels));
        observed.push(ObservedPod {
            group,
            ready: pod.ready,
            created: p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            deletion_cost: p.metadata.annotations.as_ref().and_then(|a| a.get(DELETION_COST)).cloned(),
            name: pod.name,
        });
    }
    observed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Observed { found: true, revision, pods: observed })
}

/// The `pod-template-hash` of the Deployment's newest ReplicaSet.
async fn newest_replicaset_hash(ctx: &Context, d: &Deployment, selector: &LabelSelector) -> Result<Option<String>> {
    let ns = d.metadata.namespace.as_deref().unwrap_or_default();
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let query = selector_query(selector);
    let params = if query.is_empty() { ListParams::default() } else { ListParams::default().labels(&query) };
    let list = api
        .list(&params)
        .await
        .map_err(|e| Error::kube(format!("listing the ReplicaSets of Deployment {ns}/{name}"), e))?;
    let owned = list.items.into_iter().filter(|rs| {
        convert::owners::controller_ref(&rs.metadata).is_some_and(|o| {
            o.kind == "Deployment" && o.name == name && d.metadata.uid.as_ref().is_none_or(|uid| *uid == o.uid)
        })
    });
    let revision_of = |rs: &ReplicaSet| {
        let number = rs.metadata.annotations.as_ref().and_then(|a| a.get(DEPLOYMENT_REVISION));
        (
            number.and_then(|n| n.parse::<u64>().ok()).unwrap_or(0),
            rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            rs.metadata.name.clone(),
        )
    };
    let newest = owned.max_by_key(revision_of);
    Ok(newest.and_then(|rs| rs.metadata.labels.and_then(|mut l| l.remove(POD_TEMPLATE_HASH))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selector_query_has_every_operator() {
        let s = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement { key: "x".into(), operator: "NotIn".into(), values: Some(vec!["c".into()]) },
                LabelSelectorRequirement { key: "y".into(), operator: "Exists".into(), values: None },
                LabelSelectorRequirement { key: "z".into(), operator: "DoesNotExist".into(), values: None },
            ]),
        };
        assert_eq!(selector_query(&s), "app=web,tier in (a,b),x notin (c),y,!z");
    }
}
