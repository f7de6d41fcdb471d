//! The four PATCH content types: JSON Patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge
//! patch, and server-side apply.
//!
//! Strategic merge patch is what `kubectl apply` and `kubectl patch` send for built-in types. The real
//! server reads the list merge keys from the Go types; here a table of the list fields that matter in
//! practice (containers by `name`, ports by `containerPort`/`port`, conditions by `type`, ...) stands in
//! for them, and the directives kubectl emits (`$patch`, `$setElementOrder/…`, `$deleteFromPrimitiveList/…`,
//! `$retainKeys`) are honoured. Other lists are replaced, as in a merge patch.
//!
//! Server-side apply is treated as a merge of the applied configuration onto the live object (created if
//! missing); field ownership (`managedFields`) is not tracked, so apply never reports a field conflict.

use super::status::ApiError;
use serde_json::{Map, Value};

/// The patch flavour, from the request's `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(PatchKind::Apply),
            _ => None,
        }
    }
}

/// Applies `body` of kind `kind` to `target` in place.
pub fn apply(kind: PatchKind, target: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    match kind {
        PatchKind::Json => {
            let ops: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON Patch: {e}")))?;
            json_patch::patch(target, &ops).map_err(|e| ApiError::invalid("", "", format!("JSON Patch failed: {e}")))
        }
        PatchKind::Merge | PatchKind::Apply => {
            let patch = parse_object(kind, body)?;
            json_patch::merge(target, &patch);
            Ok(())
        }
        PatchKind::Strategic => {
            let patch = parse_object(kind, body)?;
            strategic_merge(target, &patch, "");
            Ok(())
        }
    }
}

/// Parses a merge-style patch body; apply patches may be YAML.
pub fn parse_object(kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = if kind == PatchKind::Apply {
        serde_yaml_ng::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid apply patch: {e}")))?
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("a merge patch must be a JSON object"));
    }
    Ok(v)
}

/// The merge key of a list field, by field name (and, for `ports`, by what the items hold).
fn merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "imagePullSecrets" => "name",
        // Mutating and validating webhook configurations.
        "webhooks" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if sample.and_then(|s| s.get("containerPort")).is_some() {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Primitive lists merged as sets rather than replaced.
fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

fn strategic_merge(target: &mut Value, patch: &Value, _field: &str) {
    let Some(pobj) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    match pobj.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut clean = pobj.clone();
            clean.remove("$patch");
            *target = Value::Object(clean);
            return;
        }
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let tobj = target.as_object_mut().expect("made an object above");
    if let Some(keep) = pobj.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        tobj.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, pval) in pobj {
        if key.starts_with('$') {
            if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/")
                && let (Some(Value::Array(list)), Some(remove)) = (tobj.get_mut(field), pval.as_array())
            {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        match pval {
            Value::Null => {
                tobj.remove(key);
            }
            Value::Object(_) => {
                let slot = tobj.entry(key.clone()).or_insert(Value::Null);
                strategic_merge(slot, pval, key);
                if slot.is_null() {
                    tobj.remove(key);
                }
            }
            Value::Array(items) => {
                let existing = tobj.get_mut(key).and_then(Value::as_array_mut);
                match (existing, merge_key(key, items.first())) {
                    (Some(list), Some(mk)) => merge_list_by_key(list, items, mk),
                    (Some(list), None) if is_set_list(key) => {
                        for v in items {
                            if !list.contains(v) {
                                list.push(v.clone());
                            }
                        }
                    }
                    _ => {
                        let cleaned: Vec<Value> = items
                            .iter()
                            .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                            .cloned()
                            .collect();
                        tobj.insert(key.clone(), Value::Array(cleaned));
                    }
                }
            }
            other => {
                tobj.insert(key.clone(), other.clone());
            }
        }
    }
}

fn merge_list_by_key(list: &mut Vec<Value>, items: &[Value], mk: &str) {
    for item in items {
        let key = item.get(mk);
        let pos = key.and_then(|k| list.iter().position(|e| e.get(mk) == Some(k)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                list.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut list[i], item, ""),
            (None, false) => {
                let mut v = Value::Null;
                strategic_merge(&mut v, item, "");
                list.push(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(target: Value, patch: Value) -> Value {
        let mut t = target;
        apply(PatchKind::Strategic, &mut t, patch.to_string().as_bytes()).unwrap();
        t
    }

    #[test]
    fn webhooks_merge_by_name() {
        // What `kubectl apply` sends when only the caBundle changed.
        let config = json!({"webhooks": [{"name": "pods.placement.dev", "rules": [{"operations": ["CREATE"]}],
            "clientConfig": {"caBundle": "old", "service": {"name": "w"}}}]});
        let got =
            smp(config, json!({"webhooks": [{"name": "pods.placement.dev", "clientConfig": {"caBundle": "new"}}]}));
        assert_eq!(
            got,
            json!({"webhooks": [{"name": "pods.placement.dev", "rules": [{"operations": ["CREATE"]}],
                "clientConfig": {"caBundle": "new", "service": {"name": "w"}}}]})
        );
    }

    #[test]
    fn strategic_merge_merges_containers_by_name_and_keeps_others() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}});
        let got = smp(pod, json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}));
        assert_eq!(
            got,
            json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]}})
        );
    }

    #[test]
    fn strategic_merge_directives() {
        let obj = json!({"metadata": {"finalizers": ["x", "y"], "labels": {"a": "1", "b": "2"}},
                         "spec": {"containers": [{"name": "a"}, {"name": "b"}], "tolerations": [{"key": "k"}]}});
        let got = smp(
            obj,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"], "finalizers": ["z"], "labels": {"a": null}},
                   "spec": {"$setElementOrder/containers": [{"name": "b"}],
                            "containers": [{"name": "a", "$patch": "delete"}],
                            "tolerations": [{"key": "t"}]}}),
        );
        assert_eq!(
            got,
            json!({"metadata": {"finalizers": ["y", "z"], "labels": {"b": "2"}},
                   "spec": {"containers": [{"name": "b"}], "tolerations": [{"key": "t"}]}})
        );
        let got = smp(json!({"spec": {"a": 1, "b": 2}}), json!({"spec": {"$patch": "replace", "c": 3}}));
        assert_eq!(got, json!({"spec": {"c": 3}}));
    }

    #[test]
    fn json_and_merge_patches() {
        let mut v = json!({"a": {"b": 1}});
        apply(PatchKind::Json, &mut v, br#"[{"op":"add","path":"/a/c","value":2}]"#).unwrap();
        apply(PatchKind::Merge, &mut v, br#"{"a":{"b":null}}"#).unwrap();
        assert_eq!(v, json!({"a": {"c": 2}}));
        let err = apply(PatchKind::Json, &mut v, br#"[{"op":"replace","path":"/missing","value":2}]"#).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(apply(PatchKind::Merge, &mut v, b"[1]").unwrap_err().code, 400);
        apply(PatchKind::Apply, &mut v, b"a:\n  d: 4\n").unwrap();
        assert_eq!(v, json!({"a": {"c": 2, "d": 4}}));
    }
}
