//! Deployments and StatefulSets into core workloads (replicas, absolute `maxUnavailable`, labels,
//! annotations). Who controls a ReplicaSet is an owner-chain question: [`super::owners`] answers it.
//!
//! `maxUnavailable` is resolved the way the controllers resolve it:
//!
//! * **Deployment**: `spec.strategy.rollingUpdate.maxUnavailable` (default `25%`) of `spec.replicas`
//!   (default 1), a percentage rounded **down**; `maxSurge` (default `25%`) rounded **up**; when both
//!   come out 0, `maxUnavailable` is 1 (the Deployment controller's fencepost rule). A `Recreate`
//!   Deployment gets the RollingUpdate defaults: its strategy says how rollouts replace pods, not how
//!   many may be disrupted at once, and the defaults are the conservative reading.
//! * **StatefulSet**: `spec.updateStrategy.rollingUpdate.maxUnavailable` (default 1), a percentage
//!   rounded down, at least 1 (as the StatefulSet controller does).
//!
//! An integer or percentage that Kubernetes would reject (negative, a string without `%`) is an error
//! naming the field. The core strategy annotation lives in the Deployment's annotations, kept whole.

use super::error::{ConvertError, Obj, required_name, required_namespace};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use placement_core::model::{Workload, WorkloadKind, WorkloadRef};

/// `value` (an integer, or a percentage of `total`) as an absolute number; percentages round up when
/// `round_up`, down otherwise.
fn scaled(obj: &Obj, field: &str, value: &IntOrString, total: u32, round_up: bool) -> Result<u32, ConvertError> {
    match value {
        IntOrString::Int(i) => u32::try_from(*i).map_err(|_| obj.err(field, format!("{i} is negative"))),
        IntOrString::String(s) => {
            let percent = s
                .strip_suffix('%')
                .and_then(|p| p.parse::<u32>().ok())
                .ok_or_else(|| obj.err(field, format!("{s:?} is neither an integer nor a percentage like \"25%\"")))?;
            let product = u64::from(total) * u64::from(percent);
            let n = if round_up { product.div_ceil(100) } else { product / 100 };
            u32::try_from(n).map_err(|_| obj.err(field, format!("{s:?} of {total} is too large")))
        }
    }
}

fn replicas(obj: &Obj, replicas: Option<i32>) -> Result<u32, ConvertError> {
    let r = replicas.unwrap_or(1);
    u32::try_from(r).map_err(|_| obj.err("spec.replicas", format!("{r} is negative")))
}

fn identity(kind: &'static str, meta: &ObjectMeta) -> Result<(String, String, Obj), ConvertError> {
    let name = required_name(kind, meta)?;
    let namespace = required_namespace(kind, &name, meta)?;
    let obj = Obj::namespaced(kind, &namespace, &name);
    Ok((namespace, name, obj))
}

/// Converts a Deployment.
pub fn deployment(d: &Deployment) -> Result<Workload, ConvertError> {
    let (namespace, name, obj) = identity("Deployment", &d.metadata)?;
    let spec = d.spec.as_ref();
    let replicas = replicas(&obj, spec.and_then(|s| s.replicas))?;
    let rolling = spec
        .and_then(|s| s.strategy.as_ref())
        .filter(|s| s.type_.as_deref() != Some("Recreate"))
        .and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge = rolling.and_then(|r| r.max_surge.as_ref()).unwrap_or(&default);
    let unavailable = rolling.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&default);
    let surge = scaled(&obj, "spec.strategy.rollingUpdate.maxSurge", surge, replicas, true)?;
    let mut max_unavailable = scaled(&obj, "spec.strategy.rollingUpdate.maxUnavailable", unavailable, replicas, false)?;
    if surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    Ok(Workload {
        workload: WorkloadRef::deployment(namespace, name),
        replicas,
        max_unavailable,
        labels: d.metadata.labels.clone().unwrap_or_default(),
        annotations: d.metadata.annotations.clone().unwrap_or_default(),
    })
}

/// Converts a StatefulSet.
pub fn statefulset(s: &StatefulSet) -> Result<Workload, ConvertError> {
    let (namespace, name, obj) = identity("StatefulSet", &s.metadata)?;
    let spec = s.spec.as_ref();
    let replicas = replicas(&obj, spec.and_then(|s| s.replicas))?;
    let max_unavailable = spec
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.as_ref())
        .map(|v| scaled(&obj, "spec.updateStrategy.rollingUpdate.maxUnavailable", v, replicas, false))
        .transpose()?
        .unwrap_or(1)
        .max(1);
    Ok(Workload {
        workload: WorkloadRef::new(WorkloadKind::StatefulSet, namespace, name),
        replicas,
        max_unavailable,
        labels: s.metadata.labels.clone().unwrap_or_default(),
        annotations: s.metadata.annotations.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_rounding_table() {
        let obj = Obj::namespaced("Deployment", "ns", "d");
        let s = |v: &str| IntOrString::String(v.into());
        let cases: &[(IntOrString, u32, bool, u32)] = &[
            (s("25%"), 10, false, 2),
            (s("25%"), 10, true, 3),
            (s("25%"), 3, false, 0),
            (s("25%"), 3, true, 1),
            (s("100%"), 7, false, 7),
            (s("0%"), 7, true, 0),
            (IntOrString::Int(4), 2, false, 4),
        ];
        for (v, total, up, want) in cases {
            assert_eq!(scaled(&obj, "f", v, *total, *up), Ok(*want), "{v:?} of {total} up={up}");
        }
        assert!(scaled(&obj, "f", &s("25"), 10, false).is_err());
        assert!(scaled(&obj, "f", &s("-5%"), 10, false).is_err());
        assert!(scaled(&obj, "f", &IntOrString::Int(-1), 10, false).is_err());
    }
}
