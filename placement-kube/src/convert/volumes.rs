//! Which of a pod's PersistentVolumeClaims hold node-local data: a fact the pod alone does not carry
//! (its volumes name claims; the claim names a PersistentVolume; the volume says where it lives).
//!
//! * A PersistentVolume is **node-local** when it is a `local` volume, a `hostPath` volume, or its
//!   required node affinity pins it to a single `kubernetes.io/hostname` in every term (what local
//!   static provisioners and TopoLVM-style CSI drivers write). Zonal volumes (node affinity on a zone)
//!   are not node-local: a pod can follow them within the zone.
//! * A claim is resolved through its `spec.volumeName`; a claim that is missing, unbound, or bound to a
//!   volume that is missing stays **unresolved** (`local: None`), and the core treats it as local: not
//!   knowing is not a reason to risk the data.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use placement_core::model::{LocalVolume, Pod};
use std::collections::HashMap;

/// The label a node's hostname is under.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Is `pv` tied to one node?
pub fn is_node_local(pv: &PersistentVolume) -> bool {
    let Some(spec) = pv.spec.as_ref() else { return false };
    if spec.local.is_some() || spec.host_path.is_some() {
        return true;
    }
    let terms = spec
        .node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or_default();
    !terms.is_empty()
        && terms.iter().all(|t| {
            t.match_expressions.iter().flatten().any(|e| {
                e.key == HOSTNAME_LABEL && e.operator == "In" && e.values.as_ref().is_some_and(|v| v.len() == 1)
            })
        })
}

/// Claims, by namespace and name, and whether each is bound to a node-local volume.
#[derive(Clone, Debug, Default)]
pub struct ClaimLocality {
    claims: HashMap<(String, String), bool>,
}

impl ClaimLocality {
    /// From the claims and volumes listed (only bound claims whose volume is listed are known).
    pub fn new(claims: &[PersistentVolumeClaim], volumes: &[PersistentVolume]) -> Self {
        let local: HashMap<&str, bool> =
            volumes.iter().filter_map(|pv| Some((pv.metadata.name.as_deref()?, is_node_local(pv)))).collect();
        let claims = claims
            .iter()
            .filter_map(|c| {
                let volume = c.spec.as_ref()?.volume_name.as_deref().filter(|v| !v.is_empty())?;
                let key = (c.metadata.namespace.clone()?, c.metadata.name.clone()?);
                Some((key, *local.get(volume)?))
            })
            .collect();
        ClaimLocality { claims }
    }

    /// Fills in `local` for each of the pod's claims (left `None` when unknown).
    pub fn resolve(&self, pod: &mut Pod) {
        for v in &mut pod.volumes {
            if let LocalVolume::PersistentClaim { claim, local } = v {
                *local = self.claims.get(&(pod.namespace.clone(), claim.clone())).copied();
            }
        }
    }
}

/// Does the pod use any PersistentVolumeClaim?
pub fn has_claims(pod: &Pod) -> bool {
    pod.volumes.iter().any(|v| matches!(v, LocalVolume::PersistentClaim { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, spec: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    }

    fn pinned(values: &[&str]) -> serde_json::Value {
        json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": values}]}
        ]}}})
    }

    #[test]
    fn node_local_volumes() {
        let zonal = json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}
        ]}}});
        let cases = [
            ("local", json!({"local": {"path": "/mnt/disks/ssd1"}}), true),
            ("hostPath", json!({"hostPath": {"path": "/data"}}), true),
            ("csi pinned to one host", pinned(&["node-1"]), true),
            ("pinned to two hosts", pinned(&["node-1", "node-2"]), false),
            ("zonal", zonal, false),
            ("network csi", json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}}), false),
        ];
        for (row, spec, want) in cases {
            assert_eq!(is_node_local(&pv("v", spec)), want, "{row}");
        }
    }

    #[test]
    fn claims_resolve_through_their_volume() {
        let claim = |name: &str, volume: Option<&str>| -> PersistentVolumeClaim {
            serde_json::from_value(json!({"metadata": {"namespace": "db", "name": name},
                "spec": {"volumeName": volume}}))
            .unwrap()
        };
        let locality = ClaimLocality::new(
            &[claim("on-local", Some("pv-local")), claim("on-ebs", Some("pv-ebs")), claim("unbound", None)],
            &[
                pv("pv-local", json!({"local": {"path": "/mnt"}})),
                pv("pv-ebs", json!({"csi": {"driver": "x", "volumeHandle": "h"}})),
            ],
        );
        let mut pod = placement_core::model::PodBuilder::new("db", "p").build();
        for c in ["on-local", "on-ebs", "unbound", "missing"] {
            pod.volumes.push(LocalVolume::PersistentClaim { claim: c.into(), local: None });
        }
        locality.resolve(&mut pod);
        let got: Vec<Option<bool>> = pod
            .volumes
            .iter()
            .map(|v| match v {
                LocalVolume::PersistentClaim { local, .. } => *local,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(got, vec![Some(true), Some(false), None, None]);
    }
}
