//! The `pods/eviction` subresource and the PodDisruptionBudget accounting behind it.
//!
//! As on the real server: `deleteOptions.preconditions.uid` that is not the pod's uid is `409 Conflict`
//! before any budget is touched (the pod of that name is another pod); a pod that is terminal, pending
//! or already terminating is evicted without a budget check; a pod covered by more than one PDB is an error (500); a pod whose PDB allows no
//! disruption gets `429 TooManyRequests` with a `DisruptionBudget` cause; otherwise the PDB's
//! `disruptionsAllowed` is decremented (and the pod recorded in `disruptedPods`) before the pod is
//! deleted. [`refresh_pdbs`] plays the disruption controller: it recomputes `currentHealthy`,
//! `desiredHealthy`, `expectedPods` and `disruptionsAllowed` from the pods when they change.

use super::resources::ResourceType;
use super::selectors::selector_object_matches;
use super::status::ApiError;
use super::store::State;
use serde_json::{Value, json};
use std::sync::Arc;

fn pdb_type(state: &State) -> Result<Arc<ResourceType>, ApiError> {
    state
        .registry
        .get("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("policy/v1 is not served"))
}

/// PDBs of `namespace` (as values) whose selector covers `labels`.
fn covering_pdbs(state: &State, pdb_t: &ResourceType, namespace: &str, pod: &Value) -> Vec<Value> {
    let labels = pod_labels(pod);
    state
        .objects(&pdb_t.key(), Some(namespace))
        .map(|o| o.value())
        .filter(|pdb| pdb.pointer("/spec/selector").is_some_and(|s| selector_object_matches(s, &labels)))
        .collect()
}

fn pod_labels(pod: &Value) -> std::collections::BTreeMap<String, String> {
    pod.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default()
}

/// Handles `POST .../pods/{name}/eviction`. Returns the deleted (or terminating) pod.
///
/// `deleteOptions` are read from the body as the real server does. (kube 5 sends them as
/// `delete_options`, which the real server ignores, and so does this one: with kube, pass `dryRun` as a
/// query parameter through `EvictParams::post_options`.)
pub fn evict(
    state: &mut State,
    pods: &ResourceType,
    namespace: &str,
    name: &str,
    eviction: &Value,
    query_dry_run: bool,
) -> Result<Value, ApiError> {
    if let Some(n) = eviction.pointer("/metadata/name").and_then(Value::as_str)
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object: {name} != {n}"
        )));
    }
    let pod = state.get(pods, namespace, name)?.value();
    let delete_options = eviction.get("deleteOptions").cloned().unwrap_or(Value::Null);
    let dry_run =
        query_dry_run || delete_options.get("dryRun").and_then(Value::as_array).is_some_and(|d| !d.is_empty());
    let preconditions = delete_options.get("preconditions");
    if let Some(uid) = preconditions.and_then(|p| p.get("uid")).and_then(Value::as_str)
        && pod.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
    {
        return Err(ApiError::conflict(
            &pods.group,
            &pods.plural,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("")
            ),
        ));
    }
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending");
    let ignores_budget =
        matches!(phase, "Succeeded" | "Failed" | "Pending") || pod.pointer("/metadata/deletionTimestamp").is_some();
    if !ignores_budget {
        let pdb_t = pdb_type(state)?;
        let pdbs = covering_pdbs(state, &pdb_t, namespace, &pod);
        if pdbs.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(mut pdb) = pdbs.into_iter().next() {
            let pdb_name = pdb.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            let allowed = pdb.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0);
            if allowed <= 0 {
                let desired = pdb.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0);
                let current = pdb.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0);
                return Err(ApiError::new(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                )
                .with_details(json!({"causes": [{
                    "reason": "DisruptionBudget",
                    "message": format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently"),
                }]})));
            }
            if !dry_run {
                pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
                pdb["status"]["disruptedPods"][name] = json!(jiff::Timestamp::now().to_string());
                if let Some(m) = pdb.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                state.update(&pdb_t, namespace, &pdb_name, pdb, true, false)?;
            }
        }
    }
    let deleted = state.delete(pods, namespace, name, preconditions, dry_run)?;
    Ok(deleted.value())
}

/// Recomputes the status of every PDB in `namespace` from its pods, writing only what changed.
pub fn refresh_pdbs(state: &mut State, namespace: &str) {
    let Ok(pdb_t) = pdb_type(state) else { return };
    let pdbs: Vec<Value> = state.objects(&pdb_t.key(), Some(namespace)).map(|o| o.value()).collect();
    if pdbs.is_empty() {
        return;
    }
    let Some(pods_t) = state.registry.get("", "v1", "pods") else { return };
    // Select by the stored labels first; only the selected pods are decoded.
    let pods: Vec<Arc<super::store::Stored>> = state.objects(&pods_t.key(), Some(namespace)).cloned().collect();
    for pdb in pdbs {
        let name = pdb.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let Some(selector) = pdb.pointer("/spec/selector") else { continue };
        let selected: Vec<Value> =
            pods.iter().filter(|p| selector_object_matches(selector, &p.labels)).map(|p| p.value()).collect();
        let matching: Vec<&Value> = selected.iter().filter(|p| !is_terminal(p)).collect();
        let expected = matching.len() as i64;
        let healthy = matching.iter().filter(|p| is_healthy(p)).count() as i64;
        let desired = desired_healthy(pdb.get("spec").unwrap_or(&Value::Null), expected);
        let allowed = (healthy - desired).max(0);
        let mut status = pdb.get("status").cloned().unwrap_or_else(|| json!({}));
        if !status.is_object() {
            status = json!({});
        }
        // Pods recorded as disrupted that are gone no longer matter.
        if let Some(d) = status.get_mut("disruptedPods").and_then(Value::as_object_mut) {
            d.retain(|pod, _| {
                matching.iter().any(|p| p.pointer("/metadata/name").and_then(Value::as_str) == Some(pod))
            });
        }
        let pending_disruptions = status.get("disruptedPods").and_then(Value::as_object).map_or(0, |d| d.len() as i64);
        status["currentHealthy"] = json!(healthy);
        status["desiredHealthy"] = json!(desired);
        status["expectedPods"] = json!(expected);
        status["disruptionsAllowed"] = json!((allowed - pending_disruptions).max(0));
        status["observedGeneration"] = pdb.pointer("/metadata/generation").cloned().unwrap_or(json!(1));
        if pdb.get("status") != Some(&status) {
            let mut next = pdb.clone();
            next["status"] = status;
            if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            let _ = state.update(&pdb_t, namespace, &name, next, true, false);
        }
    }
}

fn is_terminal(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

fn is_healthy(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_none()
        && pod.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Ready")
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
}

/// `desiredHealthy` from `minAvailable` or `maxUnavailable` (int or percent, percentages rounded up as
/// the disruption controller does).
fn desired_healthy(spec: &Value, expected: i64) -> i64 {
    let scaled = |v: &Value| -> i64 {
        match v {
            Value::Number(n) => n.as_i64().unwrap_or(0),
            Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
                Some(p) => (p * expected + 99) / 100,
                None => s.parse().unwrap_or(0),
            },
            _ => 0,
        }
    };
    if let Some(min) = spec.get("minAvailable") {
        scaled(min)
    } else if let Some(max) = spec.get("maxUnavailable") {
        (expected - scaled(max)).max(0)
    } else {
        // Neither: policy/v1 defaults to minAvailable 1.
        1.min(expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_healthy_table() {
        let cases = [
            (json!({"minAvailable": 2}), 5, 2),
            (json!({"minAvailable": "50%"}), 5, 3),
            (json!({"maxUnavailable": 1}), 5, 4),
            (json!({"maxUnavailable": "30%"}), 5, 3),
            (json!({"maxUnavailable": "0%"}), 5, 5),
            (json!({}), 5, 1),
        ];
        for (spec, expected, want) in cases {
            assert_eq!(desired_healthy(&spec, expected), want, "{spec}");
        }
    }
}
