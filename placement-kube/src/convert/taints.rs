//! Taints and tolerations into their core forms. Effects and operators are closed sets in the API, so
//! an unknown one is an error naming the field rather than a guess. `tolerationSeconds` only bounds
//! how long a pod stays after a `NoExecute` taint appears; it never decides where a pod may start,
//! so it is dropped. A cordoned node (`spec.unschedulable`) also carries the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint, as the node lifecycle controller adds it; see
//! [`super::node()`].

use super::error::{ConvertError, Obj};
use k8s_openapi::api::core::v1 as core_v1;
use placement_core::taints::{Effect, Taint, Toleration, TolerationOperator};

/// Taint key the node lifecycle controller puts on cordoned nodes.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

fn effect(obj: &Obj, field: &str, s: &str) -> Result<Effect, ConvertError> {
    match s {
        "NoSchedule" => Ok(Effect::NoSchedule),
        "PreferNoSchedule" => Ok(Effect::PreferNoSchedule),
        "NoExecute" => Ok(Effect::NoExecute),
        other => Err(obj.err(field, format!("unknown taint effect {other:?}"))),
    }
}

/// A node's taint at `path` (`spec.taints[i]`).
pub(crate) fn taint(obj: &Obj, path: &str, t: &core_v1::Taint) -> Result<Taint, ConvertError> {
    Ok(Taint {
        key: t.key.clone(),
        value: t.value.clone().unwrap_or_default(),
        effect: effect(obj, &format!("{path}.effect"), &t.effect)?,
    })
}

/// A pod's toleration at `path` (`spec.tolerations[i]`). A missing operator is `Equal`; a missing or
/// empty effect tolerates every effect.
pub(crate) fn toleration(obj: &Obj, path: &str, t: &core_v1::Toleration) -> Result<Toleration, ConvertError> {
    let operator = match t.operator.as_deref() {
        None | Some("") | Some("Equal") => TolerationOperator::Equal,
        Some("Exists") => TolerationOperator::Exists,
        Some(other) => return Err(obj.err(format!("{path}.operator"), format!("unknown operator {other:?}"))),
    };
    let effect = match t.effect.as_deref() {
        None | Some("") => None,
        Some(e) => Some(effect(obj, &format!("{path}.effect"), e)?),
    };
    Ok(Toleration {
        key: t.key.clone().unwrap_or_default(),
        operator,
        value: t.value.clone().unwrap_or_default(),
        effect,
    })
}
