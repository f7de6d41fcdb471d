//! A Pod into the core pod: identity, owner chain (see [`super::owners`]), scheduling constraints,
//! effective requests (module `requests`: requests default to limits, sidecars, pod-level resources, overhead), lifecycle and node-local volumes.
//!
//! * **Name.** A pod created through `generateName` reaches an admission webhook before the API server
//!   has picked its name; such a pod converts with an empty `name` (errors show it as
//!   `namespace/<generateName>*`). A pod without namespace is an error: the API server fills it in
//!   before admission.
//! * **Constraints.** `nodeSelector`; `requiredDuringSchedulingIgnoredDuringExecution` node affinity
//!   with every term and operator (`Gt`/`Lt` too) and `matchFields` kept (module `selector`);
//!   tolerations (see [`super::taints`]). Preferred affinity, pod (anti-)affinity and topology spread
//!   are not placement inputs.
//! * **Lifecycle.** `phase` from `status.phase` (missing: `Pending`, unknown words: `Unknown`);
//!   `terminating` when `metadata.deletionTimestamp` is set; `ready` from the `Ready` condition;
//!   `unschedulable_since` from a `PodScheduled=False` condition with reason `Unschedulable` (its
//!   `lastTransitionTime`); `priority` from `spec.priority` (0 when unset, as for pods without a
//!   PriorityClass).
//! * **Volumes.** `emptyDir` (any medium: a memory-backed one loses its data on eviction too) with its
//!   `sizeLimit` in bytes, `hostPath`, and every PersistentVolumeClaim: `persistentVolumeClaim` by its
//!   `claimName`, a generic `ephemeral` volume by the claim Kubernetes names for it (`<pod>-<volume>`).
//!   Whether a claim is node-local is not in the pod: it stays unknown here and is filled in by
//!   [`super::volumes::ClaimLocality`] where the claims and volumes are read. Every other volume type
//!   (configMap, secret, projected, network volumes) is not node-local and is dropped.
//! * **uid** from `metadata.uid`, so that an eviction can name the pod's life, not only its name.
//! * **Annotations** are kept whole, so the core sees `kubernetes.io/config.mirror` (static pods) and
//!   `placement.dev/pinned`. `usage` stays `None`: metrics are attached by the snapshot builder.

use super::error::{ConvertError, Obj};
use super::owners::{OwnerLookup, ownership};
use super::quantities;
use super::requests;
use super::selector::node_affinity;
use super::taints::toleration;
use k8s_openapi::api::core::v1 as core_v1;
use placement_core::model::{LocalVolume, Pod, PodPhase};
use placement_core::resources::Resources;

fn phase(s: Option<&str>) -> PodPhase {
    match s {
        None | Some("") | Some("Pending") => PodPhase::Pending,
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        Some(_) => PodPhase::Unknown,
    }
}

fn volume(obj: &Obj, pod: &str, path: &str, v: &core_v1::Volume) -> Result<Option<LocalVolume>, ConvertError> {
    if let Some(e) = &v.empty_dir {
        let size_limit = e
            .size_limit
            .as_ref()
            .map(|q| quantities::bytes(obj, &format!("{path}.emptyDir.sizeLimit"), q))
            .transpose()?;
        return Ok(Some(LocalVolume::EmptyDir { size_limit, used: None }));
    }
    if v.host_path.is_some() {
        return Ok(Some(LocalVolume::HostPath));
    }
    if let Some(c) = &v.persistent_volume_claim {
        return Ok(Some(LocalVolume::PersistentClaim { claim: c.claim_name.clone(), local: None }));
    }
    if v.ephemeral.is_some() {
        return Ok(Some(LocalVolume::PersistentClaim { claim: format!("{pod}-{}", v.name), local: None }));
    }
    Ok(None)
}

/// Converts a Pod; `owners` answers who owns the pod's ReplicaSet (see [`OwnerLookup`]).
pub fn pod(p: &core_v1::Pod, owners: &impl OwnerLookup) -> Result<Pod, ConvertError> {
    let meta = &p.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let shown = match (name.is_empty(), meta.generate_name.as_deref()) {
        (false, _) => name.clone(),
        (true, Some(g)) if !g.is_empty() => format!("{g}*"),
        (true, _) => {
            let ns = meta.namespace.as_deref().unwrap_or_default();
            return Err(Obj::namespaced("Pod", ns, "<unnamed>").err("metadata.name", "missing"));
        }
    };
    let namespace = match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => ns.to_string(),
        _ => return Err(Obj::cluster("Pod", &shown).err("metadata.namespace", "missing")),
    };
    let obj = Obj::namespaced("Pod", &namespace, &shown);
    let owned = ownership(meta, &namespace, owners);

    let spec = p.spec.as_ref();
    let required_affinity = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
        .map(|s| node_affinity(&obj, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution", s))
        .transpose()?;
    let tolerations = spec
        .and_then(|s| s.tolerations.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| toleration(&obj, &format!("spec.tolerations[{i}]"), t))
        .collect::<Result<Vec<_>, _>>()?;
    let requests = spec.map(|s| requests::effective(&obj, s)).transpose()?.unwrap_or(Resources::ZERO);
    let volumes = spec
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, v)| volume(&obj, &name, &format!("spec.volumes[{i}]"), v))
        .filter_map(Result::transpose)
        .collect::<Result<Vec<_>, _>>()?;

    let status = p.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let unschedulable_since = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled")
        .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);

    Ok(Pod {
        namespace,
        uid: meta.uid.clone().filter(|u| !u.is_empty()),
        name,
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        workload: owned.workload,
        revision: owned.revision,
        controller: owned.controller,
        node_name: spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        node_selector: spec.and_then(|s| s.node_selector.clone()).unwrap_or_default(),
        required_affinity,
        tolerations,
        requests,
        usage: None,
        priority: spec.and_then(|s| s.priority).unwrap_or(0),
        phase: phase(status.and_then(|s| s.phase.as_deref())),
        terminating: meta.deletion_timestamp.is_some(),
        ready,
        volumes,
        unschedulable_since,
    })
}
