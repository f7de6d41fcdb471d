//! JSON Patch operations (RFC 6902) built from path segments rather than strings: the one place the
//! webhook (its add-only pod patches, the caBundle patch of `certs`) and the operator (the zone balancer's
//! workload patches, the HTTPRoute weight writes) make them.
//!
//! Segments are escaped into the JSON Pointer here (RFC 6901: `~` becomes `~0`, `/` becomes `~1`; a
//! label key such as `topology.kubernetes.io/zone` holds a `/`), never by string concatenation, and an
//! operation built here is well formed by its type, so no write has to decide what to do with a patch
//! that failed to build.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation, TestOperation};
use serde_json::Value;

/// The pointer to `segments`, each escaped (`a/b` is the one token `a~1b`, `a~b` is `a~0b`).
pub fn pointer<S: AsRef<str>>(segments: &[S]) -> PointerBuf {
    PointerBuf::from_tokens(segments.iter().map(AsRef::as_ref))
}

/// `add` of `value` at `segments` (an object member is created or set; `-` appends to an array).
pub fn add<S: AsRef<str>>(segments: &[S], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path: pointer(segments), value })
}

/// `replace` of what is at `segments` (fails, and with it the whole patch, when nothing is there).
pub fn replace<S: AsRef<str>>(segments: &[S], value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation { path: pointer(segments), value })
}

/// `test` that `segments` holds `value` (the whole patch fails otherwise).
pub fn test<S: AsRef<str>>(segments: &[S], value: Value) -> PatchOperation {
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

    #[test]
    fn escaping_is_per_segment_and_in_the_rfc_6901_order() {
        // `~` is escaped before `/`: "~1" in a key must come out as "~01", not as an escaped slash.
        assert_eq!(pointer(&["a~1b"]).as_str(), "/a~01b");
        assert_eq!(pointer(&["~/"]).as_str(), "/~0~1");
        assert_eq!(pointer(&["a/b/c"]).as_str(), "/a~1b~1c");
        // Owned segments work too, and the empty path is the whole document.
        assert_eq!(pointer(&[String::from("x"), String::new()]).as_str(), "/x/");
        assert_eq!(pointer::<&str>(&[]).as_str(), "");
    }

    #[test]
    fn escaped_pointers_address_the_member_they_name() {
        let mut doc = json!({"metadata": {"annotations": {"placement.dev/decision": "old", "a~b": 1}}});
        let patch = json_patch::Patch(vec![
            test(&["metadata", "annotations", "a~b"], json!(1)),
            replace(&["metadata", "annotations", "placement.dev/decision"], json!("new")),
            add(&["metadata", "annotations", "x/~y"], json!(true)),
        ]);
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"annotations": {"placement.dev/decision": "new", "a~b": 1, "x/~y": true}}})
        );
        // A test that does not hold fails the patch (what guards a write).
        let stale = json_patch::Patch(vec![unchanged_since("1")]);
        assert!(json_patch::patch(&mut doc, &stale).is_err());
    }
}
