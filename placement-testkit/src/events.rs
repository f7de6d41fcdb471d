//! One Event store behind two APIs, as on the real server: `events.k8s.io/v1` Events (what kube-runtime's
//! recorder writes) and core `v1` Events (what `kubectl describe` reads) are the same objects.
//!
//! Events are stored in core form; requests through `events.k8s.io/v1` are converted on the way in and
//! out. The two forms differ only in field names.

use bytes::Bytes;
use serde_json::{Map, Value, json};

/// `(events.k8s.io/v1 name, core v1 name)` of the renamed fields.
const RENAMED: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// How objects of a request are shown to the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum View {
    /// As stored.
    #[default]
    Stored,
    /// A core Event shown as an `events.k8s.io/v1` Event.
    EventsV1,
}

fn rename(v: &Value, from_v1: bool, api_version: &str) -> Value {
    let Some(obj) = v.as_object() else { return v.clone() };
    let mut out = Map::with_capacity(obj.len());
    for (k, val) in obj {
        let renamed = RENAMED.iter().find_map(|(v1, core)| {
            let (from, to) = if from_v1 { (v1, core) } else { (core, v1) };
            (k == from).then_some(*to)
        });
        out.insert(renamed.unwrap_or(k).to_string(), val.clone());
    }
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event in core form.
pub fn to_core(v1: &Value) -> Value {
    rename(v1, true, "v1")
}

/// A core Event in `events.k8s.io/v1` form.
pub fn to_events_v1(core: &Value) -> Value {
    rename(core, false, "events.k8s.io/v1")
}

/// A field selector path of an `events.k8s.io/v1` request, in core form (`regarding.name` →
/// `involvedObject.name`).
pub fn core_field_path(path: &str) -> String {
    let (first, rest) = path.split_once('.').map_or((path, None), |(a, b)| (a, Some(b)));
    let first = RENAMED.iter().find(|(v1, _)| *v1 == first).map_or(first, |(_, core)| core);
    match rest {
        Some(r) => format!("{first}.{r}"),
        None => first.to_string(),
    }
}

impl View {
    pub fn value(self, stored: Value) -> Value {
        match self {
            View::Stored => stored,
            View::EventsV1 => to_events_v1(&stored),
        }
    }

    pub fn bytes(self, stored: &Bytes) -> Bytes {
        match self {
            View::Stored => stored.clone(),
            View::EventsV1 => match serde_json::from_slice::<Value>(stored) {
                Ok(v) => Bytes::from(serde_json::to_vec(&to_events_v1(&v)).expect("JSON")),
                Err(_) => stored.clone(),
            },
        }
    }

    /// A request body in stored form.
    pub fn incoming(self, body: Value) -> Value {
        match self {
            View::Stored => body,
            View::EventsV1 => to_core(&body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_round_trip() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "moved", "reason": "Rebalanced",
            "reportingController": "placement.dev/operator", "deprecatedCount": 2});
        let core = to_core(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "moved");
        assert_eq!(core["reportingComponent"], "placement.dev/operator");
        assert_eq!(core["count"], 2);
        assert_eq!(core["reason"], "Rebalanced");
        assert_eq!(to_events_v1(&core), v1);
    }
}
