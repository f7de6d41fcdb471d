//! A pod's workload, controller and revision, by owner chain (`docs/semantics.md#counting`), never by an
//! `app` label.
//!
//! Only the owner reference with `controller: true` counts; other owner references (garbage-collection
//! links) are ignored. The chains:
//!
//! | pod's controller | workload | controller kind | revision label |
//! |---|---|---|---|
//! | `apps` ReplicaSet owned by a Deployment | `Deployment` | `ReplicaSet` | `pod-template-hash` |
//! | `apps` ReplicaSet without controller | `ReplicaSet` | `ReplicaSet` | `pod-template-hash` |
//! | `apps` StatefulSet | `StatefulSet` | `StatefulSet` | `controller-revision-hash` |
//! | `apps` DaemonSet | `DaemonSet` | `DaemonSet` | `controller-revision-hash` |
//! | `batch` Job (a CronJob's Job too) | `Job` | `Job` | none |
//! | `v1` Node (a static pod's mirror) | none | `Node` | none |
//! | anything else | `Other(kind)` | `Other(kind)` | either hash label |
//! | no controller (bare pod) | none | `None` | none |
//!
//! **The ReplicaSet step** needs the ReplicaSet's own controller, which the pod does not carry: callers
//! answer it through [`OwnerLookup`], usually from an informer cache ([`ReplicaSetOwners`]). The API
//! server calls the admission webhook for a new ReplicaSet's pods before any cache can have seen that
//! ReplicaSet, so when the lookup does not know it, the Deployment is **derived from the names**: the
//! Deployment controller names its ReplicaSets `<deployment>-<pod-template-hash>` and labels their pods
//! `pod-template-hash=<hash>`, so when the pod has that label and the ReplicaSet name ends with
//! `-<hash>`, the Deployment is the name with that suffix removed. Without the label (or when the name
//! does not end with it), the ReplicaSet itself is the workload.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use placement_core::model::{ControllerKind, WorkloadKind, WorkloadRef};
use std::collections::BTreeMap;

/// Label the Deployment controller puts on its ReplicaSets' pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Label the StatefulSet and DaemonSet controllers put on their pods.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";

/// Answers the one step of the owner chain a pod does not carry: who owns a ReplicaSet.
pub trait OwnerLookup {
    /// The workload ReplicaSet `namespace/rs_name` belongs to: its controller (normally a Deployment),
    /// or the ReplicaSet itself when it has no controller. `None` when the ReplicaSet is not known (yet);
    /// the pod conversion then falls back to the `pod-template-hash` naming rule.
    fn replicaset_owner(&self, namespace: &str, rs_name: &str) -> Option<WorkloadRef>;
}

/// Knows no ReplicaSet: every ReplicaSet pod is resolved by the naming rule.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoOwners;

impl OwnerLookup for NoOwners {
    fn replicaset_owner(&self, _: &str, _: &str) -> Option<WorkloadRef> {
        None
    }
}

impl<F> OwnerLookup for F
where
    F: Fn(&str, &str) -> Option<WorkloadRef>,
{
    fn replicaset_owner(&self, namespace: &str, rs_name: &str) -> Option<WorkloadRef> {
        self(namespace, rs_name)
    }
}

/// The workload controlling a ReplicaSet (normally its Deployment), from the owner reference with
/// `controller: true`; `None` for a ReplicaSet without controller (or without namespace).
pub fn replicaset_owner(rs: &ReplicaSet) -> Option<WorkloadRef> {
    let namespace = rs.metadata.namespace.as_deref().filter(|ns| !ns.is_empty())?;
    let owner = controller_ref(&rs.metadata)?;
    Some(WorkloadRef::new(workload_kind(owner), namespace, owner.name.clone()))
}

/// ReplicaSet → workload, built from ReplicaSet objects (a list, or watch events one at a time).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaSetOwners {
    by_key: BTreeMap<(String, String), WorkloadRef>,
}

impl ReplicaSetOwners {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records (or replaces) one ReplicaSet. ReplicaSets without name or namespace are ignored.
    pub fn insert(&mut self, rs: &ReplicaSet) {
        let (Some(ns), Some(name)) = (rs.metadata.namespace.as_deref(), rs.metadata.name.as_deref()) else {
            return;
        };
        let owner = replicaset_owner(rs).unwrap_or_else(|| WorkloadRef::new(WorkloadKind::ReplicaSet, ns, name));
        self.by_key.insert((ns.to_string(), name.to_string()), owner);
    }

    /// Forgets a deleted ReplicaSet.
    pub fn remove(&mut self, namespace: &str, name: &str) {
        self.by_key.remove(&(namespace.to_string(), name.to_string()));
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Namespace and name of every recorded ReplicaSet.
    pub fn keys(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.by_key.keys().cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

impl<'a> FromIterator<&'a ReplicaSet> for ReplicaSetOwners {
    fn from_iter<I: IntoIterator<Item = &'a ReplicaSet>>(iter: I) -> Self {
        let mut owners = ReplicaSetOwners::new();
        for rs in iter {
            owners.insert(rs);
        }
        owners
    }
}

impl OwnerLookup for ReplicaSetOwners {
    fn replicaset_owner(&self, namespace: &str, rs_name: &str) -> Option<WorkloadRef> {
        self.by_key.get(&(namespace.to_string(), rs_name.to_string())).cloned()
    }
}

/// What a pod's owner chain says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    pub workload: Option<WorkloadRef>,
    pub controller: ControllerKind,
    pub revision: Option<String>,
}

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|o| o.controller == Some(true))
}

/// API group of an `apiVersion` (`apps/v1` → `apps`, `v1` → ``).
fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The kind of workload an owner reference names.
pub(crate) fn workload_kind(owner: &OwnerReference) -> WorkloadKind {
    match (group(&owner.api_version), owner.kind.as_str()) {
        ("apps", "Deployment") => WorkloadKind::Deployment,
        ("apps", "StatefulSet") => WorkloadKind::StatefulSet,
        ("apps", "ReplicaSet") => WorkloadKind::ReplicaSet,
        ("apps", "DaemonSet") => WorkloadKind::DaemonSet,
        ("batch", "Job") => WorkloadKind::Job,
        (_, kind) => WorkloadKind::Other(kind.to_string()),
    }
}

/// Deployment name derived from a ReplicaSet name and the pod's `pod-template-hash`.
fn deployment_from_hash<'a>(rs_name: &'a str, hash: Option<&str>) -> Option<&'a str> {
    let hash = hash.filter(|h| !h.is_empty())?;
    let prefix = rs_name.strip_suffix(hash)?.strip_suffix('-')?;
    (!prefix.is_empty()).then_some(prefix)
}

/// Resolves a pod's workload, controller kind and revision from its metadata (see the module docs).
pub fn ownership(meta: &ObjectMeta, namespace: &str, owners: &impl OwnerLookup) -> Ownership {
    let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).cloned();
    let Some(owner) = controller_ref(meta) else {
        return Ownership { workload: None, controller: ControllerKind::None, revision: None };
    };
    let name = owner.name.as_str();
    match workload_kind(owner) {
        WorkloadKind::ReplicaSet => {
            let hash = label(POD_TEMPLATE_HASH);
            let workload = owners.replicaset_owner(namespace, name).unwrap_or_else(|| {
                match deployment_from_hash(name, hash.as_deref()) {
                    Some(deployment) => WorkloadRef::deployment(namespace, deployment),
                    None => WorkloadRef::new(WorkloadKind::ReplicaSet, namespace, name),
                }
            });
            Ownership { workload: Some(workload), controller: ControllerKind::ReplicaSet, revision: hash }
        }
        WorkloadKind::StatefulSet => Ownership {
            workload: Some(WorkloadRef::new(WorkloadKind::StatefulSet, namespace, name)),
            controller: ControllerKind::StatefulSet,
            revision: label(CONTROLLER_REVISION_HASH),
        },
        WorkloadKind::DaemonSet => Ownership {
            workload: Some(WorkloadRef::new(WorkloadKind::DaemonSet, namespace, name)),
            controller: ControllerKind::DaemonSet,
            revision: label(CONTROLLER_REVISION_HASH),
        },
        WorkloadKind::Job => Ownership {
            workload: Some(WorkloadRef::new(WorkloadKind::Job, namespace, name)),
            controller: ControllerKind::Job,
            revision: None,
        },
        WorkloadKind::Other(kind) if kind == "Node" && group(&owner.api_version).is_empty() => {
            Ownership { workload: None, controller: ControllerKind::Node, revision: None }
        }
        // A Deployment never owns pods directly; treat it like any other unknown controller.
        WorkloadKind::Deployment => other(namespace, "Deployment", name, &label),
        WorkloadKind::Other(kind) => other(namespace, &kind, name, &label),
    }
}

fn other(namespace: &str, kind: &str, name: &str, label: &impl Fn(&str) -> Option<String>) -> Ownership {
    Ownership {
        workload: Some(WorkloadRef::new(WorkloadKind::Other(kind.to_string()), namespace, name)),
        controller: ControllerKind::Other(kind.to_string()),
        revision: label(POD_TEMPLATE_HASH).or_else(|| label(CONTROLLER_REVISION_HASH)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_fallback_table() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("web-7d4b9c8f5d", Some("7d4b9c8f5d"), Some("web")),
            ("my-api-v2-5f6b", Some("5f6b"), Some("my-api-v2")),
            ("web-7d4b9c8f5d", Some("other"), None),
            ("web7d4b", Some("7d4b"), None),
            ("-abc", Some("abc"), None),
            ("web-abc", Some(""), None),
            ("web-abc", None, None),
        ];
        for (rs, hash, want) in cases {
            assert_eq!(deployment_from_hash(rs, *hash), *want, "{rs} {hash:?}");
        }
    }

    #[test]
    fn group_of_api_version() {
        assert_eq!(group("apps/v1"), "apps");
        assert_eq!(group("v1"), "");
        assert_eq!(group("argoproj.io/v1alpha1"), "argoproj.io");
    }
}
