//! JSON Patch operations (RFC 6902) built from path segments rather than strings, for the guarded writes
//! of the zone balancer and the HTTPRoute actuator.
//!
//! Segments are escaped into the pointer (RFC 6901: a label key such as `topology.kubernetes.io/zone`
//! holds a `/`), and an operation built here is well formed by its type, so no write has to decide what
//! to do with a patch that failed to build.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation, TestOperation};
use serde_json::Value;

/// The pointer to `segments`, each escaped.
pub fn pointer(segments: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(segments.iter().copied())
}

pub fn add(segments: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path: pointer(segments), value })
}

pub fn replace(segments: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation { path: pointer(segments), value })
}

pub fn test(segments: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Test(TestOperation { path: pointer(segments), value })
}

/// The first operation of every guarded write: the object is still at `resource_version`, so the
/// patch applies to what was read or not at all (a 422 the writer answers by reading again).
pub fn unchanged_since(resource_version: &str) -> PatchOperation {
    test(&["metadata", "resourceVersion"], Value::String(resource_version.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn segments_are_escaped_and_operations_serialize_as_rfc_6902() {
        let patch = json_patch::Patch(vec![
            unchanged_since("42"),
            add(&["spec", "nodeSelector", "topology.kubernetes.io/zone"], json!("a")),
            replace(&["spec", "rules", "0", "backendRefs", "1", "weight"], json!(7)),
            test(&["metadata", "annotations", "a~b"], json!("x")),
        ]);
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                {"op": "add", "path": "/spec/nodeSelector/topology.kubernetes.io~1zone", "value": "a"},
                {"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 7},
                {"op": "test", "path": "/metadata/annotations/a~0b", "value": "x"},
            ])
        );
    }
}
