//! The `Table` form of a list or get, which `kubectl get` asks for (`Accept: ...;as=Table;g=meta.k8s.io`):
//! a name column, then a custom resource's `additionalPrinterColumns` evaluated on each object, then
//! the age. Built-in types get name and age.
//!
//! Printer columns use a small JSONPath subset, the one CRDs use in practice: `.a.b`, `[n]`, `[*]`, and
//! filters `[?(@.key=="value")]`.

use super::resources::ResourceType;
use serde_json::{Value, json};

/// Whether the client asked for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

/// Values at `path` in `v` (a JSONPath subset; see the module docs).
pub fn lookup<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![v];
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}').trim_start_matches('.');
    while !rest.is_empty() {
        let (step, tail) = next_step(rest);
        rest = tail.trim_start_matches('.');
        current = current.into_iter().flat_map(|c| apply_step(c, step)).collect();
    }
    current
}

fn next_step(path: &str) -> (&str, &str) {
    if path.starts_with('[') {
        let end = path.find(']').map_or(path.len(), |i| i + 1);
        return path.split_at(end);
    }
    let end = path.find(['.', '[']).unwrap_or(path.len());
    path.split_at(end)
}

fn apply_step<'a>(v: &'a Value, step: &str) -> Vec<&'a Value> {
    let Some(inner) = step.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return v.get(step).into_iter().collect();
    };
    let items = v.as_array().map(|a| a.iter().collect::<Vec<_>>()).unwrap_or_default();
    if inner == "*" {
        return items;
    }
    if let Ok(i) = inner.parse::<usize>() {
        return items.get(i).copied().into_iter().collect();
    }
    // [?(@.key=="value")]
    let Some(cond) = inner.strip_prefix("?(@.").and_then(|s| s.strip_suffix(')')) else { return Vec::new() };
    let Some((key, want)) = cond.split_once("==") else { return Vec::new() };
    let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
    items.into_iter().filter(|item| lookup(item, key.trim()).iter().any(|got| text(got) == want)).collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `3s`, `5m`, `2h`, `4d`: the age of a timestamp, as kubectl prints it.
fn age(timestamp: &str, now: jiff::Timestamp) -> String {
    let Ok(t) = timestamp.parse::<jiff::Timestamp>() else { return "<unknown>".into() };
    let secs = (now.as_second() - t.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

/// The printer columns of a type: `(name, type, jsonPath)`.
fn columns(t: &ResourceType) -> Vec<(String, String, String)> {
    t.printer_columns
        .iter()
        .filter_map(|c| {
            Some((
                c.get("name")?.as_str()?.to_string(),
                c.get("type").and_then(Value::as_str).unwrap_or("string").to_string(),
                c.get("jsonPath")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// A `meta.k8s.io/v1` Table of `objects`.
pub fn table(t: &ResourceType, objects: &[Value], resource_version: u64, continue_token: Option<&str>) -> Value {
    let now = jiff::Timestamp::now();
    let custom = columns(t);
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0}),
    ];
    let has_age = custom.iter().any(|(_, _, p)| p == ".metadata.creationTimestamp");
    for (name, ty, _) in &custom {
        defs.push(json!({"name": name, "type": ty, "format": "", "description": "", "priority": 0}));
    }
    if !has_age {
        defs.push(json!({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0}));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(json!(""))];
            for (_, ty, path) in &custom {
                let values: Vec<String> = lookup(o, path).into_iter().map(text).collect();
                let cell = if ty == "date" {
                    values.first().map(|v| age(v, now)).unwrap_or_default()
                } else {
                    values.join(",")
                };
                cells.push(json!(cell));
            }
            if !has_age {
                let created = o.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or("");
                cells.push(json!(age(created, now)));
            }
            let metadata = o.get("metadata").cloned().unwrap_or(json!({}));
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata}})
        })
        .collect();
    let mut meta = json!({"resourceVersion": resource_version.to_string()});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let o = json!({"spec": {"groups": [{"name": "a"}, {"name": "b"}], "mode": "webhook"},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let texts = |p: &str| lookup(&o, p).into_iter().map(text).collect::<Vec<_>>();
        assert_eq!(texts(".spec.mode"), ["webhook"]);
        assert_eq!(texts(".spec.groups[*].name"), ["a", "b"]);
        assert_eq!(texts(".spec.groups[1].name"), ["b"]);
        assert_eq!(texts(r#".status.conditions[?(@.type=="Ready")].status"#), ["True"]);
        assert!(texts(".spec.missing.deeper").is_empty());
    }

    #[test]
    fn wants_table_only_when_asked_first() {
        assert!(wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"));
        assert!(!wants_table("application/json"));
    }
}
