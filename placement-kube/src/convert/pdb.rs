//! A policy/v1 PodDisruptionBudget into the core PDB: its selector and `status.disruptionsAllowed`.
//!
//! * A missing status (the disruption controller has not seen the PDB yet) allows 0 disruptions: the
//!   safe reading, and what the eviction API itself would answer.
//! * In policy/v1 a PDB **without** `spec.selector` selects no pods, while an empty selector (`{}`)
//!   selects every pod of the namespace. The core's empty selector means "everything", so a PDB
//!   without selector converts to `None`: it protects nothing and takes part in no decision.
//! * `Gt`/`Lt` are not label-selector operators; like any malformed expression they are an error
//!   naming `spec.selector.matchExpressions[i]`.

use super::error::{ConvertError, Obj, required_name, required_namespace};
use super::selector::label_selector;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use placement_core::model::Pdb;

/// Converts a PodDisruptionBudget; `Ok(None)` when it has no selector (it selects no pods).
pub fn pdb(p: &PodDisruptionBudget) -> Result<Option<Pdb>, ConvertError> {
    let name = required_name("PodDisruptionBudget", &p.metadata)?;
    let namespace = required_namespace("PodDisruptionBudget", &name, &p.metadata)?;
    let obj = Obj::namespaced("PodDisruptionBudget", &namespace, &name);
    let Some(selector) = p.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Ok(None);
    };
    let selector = label_selector(&obj, "spec.selector", selector)?;
    let disruptions_allowed = p.status.as_ref().map(|s| u32::try_from(s.disruptions_allowed).unwrap_or(0)).unwrap_or(0);
    Ok(Some(Pdb { namespace, name, selector, disruptions_allowed }))
}
