use super::*;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::json;

const POD_CREATE: &str = include_str!("../../testdata/pod_create_review.json");

/// A valid review around `request`, as bytes.
fn review_with(request: Value) -> Vec<u8> {
    json!({"apiVersion": API_VERSION, "kind": KIND, "request": request}).to_string().into_bytes()
}

/// A minimal valid pod CREATE request, to be broken field by field.
fn pod_request() -> Value {
    json!({
        "uid": "u-1",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "default",
        "operation": "CREATE",
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {"containers": [{"name": "c"}]}},
    })
}

/// `value` with `new` set at `pointer` (inserted when the member is absent; no escaping in these tests).
fn with(mut value: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer below the root");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(key.to_owned(), new);
        }
        Some(Value::Array(items)) => {
            let index: usize = key.parse().expect("an index");
            items[index] = new;
        }
        _ => panic!("test pointer {pointer} has no parent"),
    }
    value
}

fn without(mut value: Value, parent: &str, key: &str) -> Value {
    if let Some(Value::Object(map)) = value.pointer_mut(parent) {
        map.remove(key);
    }
    value
}

fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut body = "[".repeat(depth);
    body.push_str(&"]".repeat(depth));
    body.into_bytes()
}

fn nest(mut inner: Value, depth: usize) -> Value {
    for _ in 0..depth {
        inner = json!({ "a": inner });
    }
    inner
}

#[test]
fn malformed_bodies_give_clear_errors() {
    let deep_object = nest(json!(1), 100);
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("empty body", b"".to_vec(), "not_json", "line 1, column 0"),
        ("whitespace", b"   \n ".to_vec(), "not_json", "EOF"),
        ("truncated", br#"{"apiVersion": "admission.k8s.io/v1", "kind""#.to_vec(), "not_json", "line 1"),
        ("garbage on line 2", b"{\n  nope }".to_vec(), "not_json", "line 2, column 3"),
        ("trailing data", br#"{"a":1} x"#.to_vec(), "not_json", "trailing"),
        ("invalid utf-8", b"{\"a\":\"\xff\"}".to_vec(), "not_json", "line 1"),
        ("null", b"null".to_vec(), "not_an_object", "JSON null"),
        ("array", b"[1,2]".to_vec(), "not_an_object", "an array"),
        ("string", b"\"AdmissionReview\"".to_vec(), "not_an_object", "a string"),
        ("number", b"42".to_vec(), "not_an_object", "a number"),
        ("too deep", nested_arrays(100_000), "not_json", "recursion limit"),
        ("empty object", b"{}".to_vec(), "wrong_api_version", "missing"),
        (
            "v1beta1",
            json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": KIND, "request": pod_request()})
                .to_string()
                .into_bytes(),
            "wrong_api_version",
            "admission.k8s.io/v1beta1",
        ),
        (
            "apiVersion not a string",
            json!({"apiVersion": 1, "kind": KIND}).to_string().into_bytes(),
            "wrong_api_version",
            "is 1",
        ),
        (
            "wrong kind",
            json!({"apiVersion": API_VERSION, "kind": "ConversionReview"}).to_string().into_bytes(),
            "wrong_kind",
            "ConversionReview",
        ),
        (
            "missing kind",
            json!({"apiVersion": API_VERSION, "request": pod_request()}).to_string().into_bytes(),
            "wrong_kind",
            "missing",
        ),
        (
            "missing request",
            json!({"apiVersion": API_VERSION, "kind": KIND}).to_string().into_bytes(),
            "missing_request",
            "missing",
        ),
        ("request null", review_with(Value::Null), "missing_request", "null"),
        ("request array", review_with(json!([pod_request()])), "missing_request", "[{"),
        ("response instead of request", review_with(json!("x")), "missing_request", "\"x\""),
        ("missing uid", review_with(without(pod_request(), "", "uid")), "missing_uid", "uid"),
        ("empty uid", review_with(with(pod_request(), "/uid", json!(""))), "missing_uid", "uid"),
        ("null uid", review_with(with(pod_request(), "/uid", Value::Null)), "missing_uid", "uid"),
        ("numeric uid", review_with(with(pod_request(), "/uid", json!(7))), "invalid_uid", "a number"),
        ("object uid", review_with(with(pod_request(), "/uid", json!({"a": 1}))), "invalid_uid", "an object"),
        ("missing kind field", review_with(without(pod_request(), "", "kind")), "invalid_request", "`kind`"),
        ("kind a string", review_with(with(pod_request(), "/kind", json!("Pod"))), "invalid_request", "request.kind"),
        (
            "kind.version a number",
            review_with(with(pod_request(), "/kind/version", json!(1))),
            "invalid_request",
            "request.kind.version",
        ),
        ("missing resource", review_with(without(pod_request(), "", "resource")), "invalid_request", "`resource`"),
        (
            "unknown operation",
            review_with(with(pod_request(), "/operation", json!("PATCH"))),
            "invalid_request",
            "request.operation",
        ),
        (
            "dryRun a string",
            review_with(with(pod_request(), "/dryRun", json!("yes"))),
            "invalid_request",
            "request.dryRun",
        ),
        ("name a number", review_with(with(pod_request(), "/name", json!(3))), "invalid_request", "request.name"),
        ("missing object", review_with(without(pod_request(), "", "object")), "missing_object", "CREATE"),
        ("null object", review_with(with(pod_request(), "/object", Value::Null)), "missing_object", "CREATE"),
        ("object a number", review_with(with(pod_request(), "/object", json!(5))), "object_not_pod", "request.object:"),
        (
            "containers a number",
            review_with(with(pod_request(), "/object/spec/containers", json!(5))),
            "object_not_pod",
            "request.object.spec.containers",
        ),
        (
            "container name a bool",
            review_with(with(pod_request(), "/object/spec/containers/0/name", json!(true))),
            "object_not_pod",
            "request.object.spec.containers[0].name",
        ),
        (
            "nodeSelector value a number",
            review_with(with(pod_request(), "/object/spec/nodeSelector", json!({"zone": 1}))),
            "object_not_pod",
            "request.object.spec.nodeSelector.zone",
        ),
        (
            "labels an array",
            review_with(with(pod_request(), "/object/metadata", json!({"labels": ["a"]}))),
            "object_not_pod",
            "request.object.metadata.labels",
        ),
        (
            "object kind Service",
            review_with(with(pod_request(), "/object/kind", json!("Service"))),
            "object_not_pod",
            "Service",
        ),
        (
            "too deep inside the object",
            review_with(with(pod_request(), "/object/spec/affinity", nest(deep_object.clone(), 100))),
            "not_json",
            "recursion limit",
        ),
    ];

    let mut failures = Vec::new();
    for (name, body, label, needle) in cases {
        match parse_review(&body) {
            Ok(request) => failures.push(format!("{name}: parsed unexpectedly: {request:?}")),
            Err(error) => {
                let text = error.to_string();
                if error.metric_label() != label || !text.contains(needle) {
                    failures.push(format!(
                        "{name}: got [{}] {text:?}, want [{label}] containing {needle:?}",
                        error.metric_label()
                    ));
                }
                if text.chars().count() > 400 {
                    failures.push(format!("{name}: message not bounded ({} chars)", text.chars().count()));
                }
                // Whatever went wrong, the answer is a well-formed review that admits the pod, unmutated,
                // with a warning naming the error.
                let response: Value = serde_json::from_slice(&Response::for_invalid(&body, &error).to_review_json())
                    .expect("response is JSON");
                assert_eq!(response["apiVersion"], API_VERSION, "{name}");
                assert_eq!(response["kind"], KIND, "{name}");
                assert_eq!(response["response"]["allowed"], true, "{name}");
                assert_eq!(response["response"].get("status"), None, "{name}");
                assert_eq!(response["response"].get("patch"), None, "{name}");
                let warning = response["response"]["warnings"][0].as_str().unwrap_or_default();
                assert!(warning.starts_with("placement: malformed AdmissionReview: "), "{name}: {warning}");
                let head: String = text.chars().take(30).collect();
                assert!(warning.contains(&head), "{name}: {warning}");
                assert!(warning.chars().count() <= MAX_WARNING_CHARS, "{name}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn deep_unknown_fields_and_huge_values_are_accepted() {
    // Unknown fields are ignored by k8s-openapi, however deep (within serde_json's limit of 128).
    let deep = review_with(with(pod_request(), "/object/spec/affinity", nest(json!(1), 100)));
    let request = parse_review(&deep).expect("deep but within the limit");
    assert!(request.pod().is_some_and(|p| p.spec.as_ref().is_some_and(|s| s.affinity.is_some())));

    let huge = "x".repeat(4 << 20);
    let body = review_with(with(pod_request(), "/object/metadata", json!({"annotations": {"big": huge}})));
    let request = parse_review(&body).expect("a big annotation is not an error here");
    let annotations = request.pod().and_then(|p| p.metadata.annotations.as_ref()).expect("annotations");
    assert_eq!(annotations.get("big").map(String::len), Some(4 << 20));
}

#[test]
fn uid_is_recovered_from_partially_valid_bodies() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (review_with(with(pod_request(), "/object/spec/containers", json!(5))), "u-1"),
        (review_with(without(pod_request(), "", "object")), "u-1"),
        (review_with(with(pod_request(), "/operation", json!("PATCH"))), "u-1"),
        (json!({"apiVersion": "admission.k8s.io/v1beta1", "request": {"uid": "old"}}).to_string().into_bytes(), "old"),
        (review_with(with(pod_request(), "/uid", json!(7))), ""),
        (b"{".to_vec(), ""),
        (b"[]".to_vec(), ""),
    ];
    for (body, uid) in cases {
        let error = parse_review(&body).expect_err("invalid");
        let response = Response::for_invalid(&body, &error);
        assert_eq!(response.uid(), uid, "{error}");
        let value: Value = serde_json::from_slice(&response.to_review_json()).expect("json");
        assert_eq!(value["response"]["uid"], uid);
        assert_eq!(value["response"]["allowed"], true);
        let warning = value["response"]["warnings"][0].as_str().expect("a warning");
        assert!(warning.contains(&error.to_string()), "{warning}");
        let then = if uid.is_empty() { "applies the webhook's failurePolicy" } else { ADMITTED_UNMUTATED };
        assert!(warning.ends_with(then), "{warning}");
    }
}

#[test]
fn messages_quoting_the_input_are_bounded() {
    let long = "PATCH".repeat(100_000);
    let key = "k".repeat(100_000);
    let cases = [
        review_with(with(pod_request(), "/operation", json!(long))),
        review_with(with(pod_request(), "/object/spec/nodeSelector", json!({key.clone(): 1}))),
        review_with(with(pod_request(), "/object/spec/containers/0/ports", json!([{"containerPort": long}]))),
        review_with(with(pod_request(), "/kind", json!({"group": "", "version": "v1", "kind": 1, key: 2}))),
    ];
    for body in cases {
        let error = parse_review(&body).expect_err("invalid");
        let text = error.to_string();
        assert!(text.chars().count() <= 400, "{} chars: {}", text.chars().count(), bounded(&text, 200));
        let warning = Response::for_invalid(&body, &error).warnings()[0].clone();
        assert!(warning.ends_with(ADMITTED_UNMUTATED), "{warning}");
        assert!(warning.chars().count() <= MAX_WARNING_CHARS);
    }
}

#[test]
fn a_warning_is_cut_before_what_happens_to_the_pod() {
    let short = warning("x", ADMITTED_UNMUTATED);
    assert_eq!(short, "placement: x; the pod is admitted unmutated");
    let long = warning(&"y".repeat(1000), ADMITTED_UNMUTATED);
    assert_eq!(long.chars().count(), MAX_WARNING_CHARS);
    assert!(long.ends_with("…; the pod is admitted unmutated"), "{long}");
}

#[test]
fn real_pod_create_review_parses() {
    let request = parse_review(POD_CREATE.as_bytes()).expect("fixture parses");
    assert_eq!(request.uid, "0df28fbd-5f5f-11e8-bc74-36e6bb280816");
    assert_eq!(request.kind, GroupVersionKind::gvk("", "v1", "Pod"));
    assert_eq!(request.resource.resource, "pods");
    assert_eq!(request.resource.version, "v1");
    assert_eq!(request.sub_resource, None);
    assert_eq!(request.namespace.as_deref(), Some("shop"));
    assert_eq!(request.name, "", "generateName: no name yet");
    assert_eq!(request.operation, Operation::Create);
    assert!(!request.dry_run);
    assert!(request.is_pod());
    assert_eq!(request.old_object, None);
    assert_eq!(request.options.as_ref().and_then(|o| o["kind"].as_str()), Some("CreateOptions"));

    let pod = request.pod().expect("a typed pod");
    assert_eq!(pod.metadata.name, None);
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("checkout-7c5ddbdf54-"));
    let labels = pod.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels.get("pod-template-hash").map(String::as_str), Some("7c5ddbdf54"));
    let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("ReplicaSet", Some(true)));
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.containers[0].name, "checkout");
    assert_eq!(spec.node_selector.as_ref().and_then(|s| s.get("kubernetes.io/os")).map(String::as_str), Some("linux"));

    let cpu = spec.containers[0].resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("cpu"));
    assert_eq!(cpu.map(|q| q.0.as_str()), Some("250m"));
    // What the patch is planned against: the parts of the pod the planner reads.
    let raw = request.object.as_ref().expect("object").raw();
    assert_eq!(raw["spec"]["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(raw["spec"]["containers"], Value::Null);
    // Read through a JSON value, it is the object as sent.
    let checked = parse_review_checked(POD_CREATE.as_bytes()).expect("parses");
    let raw = checked.object.as_ref().expect("object").raw();
    assert_eq!(raw["metadata"]["creationTimestamp"], Value::Null);
    assert_eq!(raw["spec"]["containers"][0]["resources"]["requests"]["cpu"], "250m");
}

#[test]
fn other_kinds_and_operations() {
    // A DELETE has no object but an old one.
    let mut delete = without(pod_request(), "", "object");
    delete["operation"] = json!("DELETE");
    delete["oldObject"] = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    delete["name"] = json!("p");
    delete["dryRun"] = json!(true);
    let request = parse_review(&review_with(delete)).expect("delete parses");
    assert_eq!(request.operation, Operation::Delete);
    assert_eq!(request.object, None);
    assert_eq!(request.name, "p");
    assert!(request.dry_run);
    assert_eq!(request.old_object.as_ref().map(|o| &o["metadata"]["name"]), Some(&json!("p")));

    // A Deployment stays raw, whatever it contains.
    let mut deployment = pod_request();
    deployment["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    deployment["resource"] = json!({"group": "apps", "version": "v1", "resource": "deployments"});
    deployment["object"] = json!({"spec": {"replicas": "not a number"}});
    let request = parse_review(&review_with(deployment)).expect("deployment parses");
    assert!(!request.is_pod());
    assert_eq!(request.pod(), None);
    assert!(matches!(&request.object, Some(Object::Other(raw)) if raw["spec"]["replicas"] == "not a number"));

    // A subresource and an empty namespace.
    let mut sub = pod_request();
    sub["subResource"] = json!("ephemeralcontainers");
    sub["operation"] = json!("UPDATE");
    sub["namespace"] = json!("");
    let request = parse_review(&review_with(sub)).expect("subresource parses");
    assert_eq!(request.sub_resource.as_deref(), Some("ephemeralcontainers"));
    assert_eq!(request.namespace, None);
}

fn add(path: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path: PointerBuf::from_tokens(path.iter().copied()), value })
}

#[test]
fn response_carries_uid_gvk_and_a_base64_string_patch() {
    let ops = Patch(vec![
        add(&["spec", "nodeSelector", "topology.kubernetes.io/zone"], json!("eu-west-1a")),
        add(&["metadata", "annotations", "placement.dev/decision"], json!("zone eu-west-1a: least loaded")),
    ]);
    let body = Response::allow("abc-123")
        .with_patch(&ops)
        .with_warnings(vec!["first".into()])
        .with_audit_annotations([("decision".to_owned(), "eu-west-1a".to_owned())])
        .to_review_json();
    let review: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let response = &review["response"];
    assert_eq!(response["uid"], "abc-123");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    assert_eq!(response["warnings"], json!(["first"]));
    assert_eq!(response["auditAnnotations"], json!({"decision": "eu-west-1a"}));
    assert!(response.get("status").is_none());

    let encoded = response["patch"].as_str().expect("patch is a string, not an array of numbers");
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64");
    let decoded: Value = serde_json::from_slice(&decoded).expect("patch is JSON");
    assert_eq!(
        decoded,
        json!([
            {"op": "add", "path": "/spec/nodeSelector/topology.kubernetes.io~1zone", "value": "eu-west-1a"},
            {"op": "add", "path": "/metadata/annotations/placement.dev~1decision", "value": "zone eu-west-1a: least loaded"},
        ])
    );
    let back: Patch = serde_json::from_value(decoded).expect("decodes as a JSON Patch");
    assert_eq!(back, ops);
}

#[test]
fn an_empty_patch_sends_no_patch_fields_and_nothing_is_ever_denied() {
    let allowed: Value =
        serde_json::from_slice(&Response::allow("u").with_patch(&Patch(vec![])).to_review_json()).expect("json");
    assert_eq!(allowed, json!({"apiVersion": API_VERSION, "kind": KIND, "response": {"uid": "u", "allowed": true}}));

    // The worst body there is: not JSON, no uid. Still `allowed: true` (the uid is empty, so the API
    // server applies its failurePolicy), and no status that could read as a rejection.
    let error = parse_review(b"\xff").expect_err("not JSON");
    let answer: Value = serde_json::from_slice(&Response::for_invalid(b"\xff", &error).to_review_json()).unwrap();
    assert_eq!(answer["response"]["uid"], "");
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"].get("status"), None);
}

#[test]
fn warnings_are_bounded() {
    let long = "é".repeat(1000);
    let mut warnings = vec![long, "line\nbreak".to_owned(), "  ".to_owned()];
    warnings.extend((0..50).map(|i| format!("warning {i}")));
    let response = Response::allow("u").with_warnings(warnings).with_warnings(vec!["late".into()]);
    let sent = response.warnings();
    assert_eq!(sent.len(), MAX_WARNINGS);
    assert_eq!(sent[0].chars().count(), MAX_WARNING_CHARS);
    assert!(sent[0].ends_with('…'));
    assert_eq!(sent[1], "line break");
    assert_eq!(sent[2], "warning 0", "blank warnings are dropped");
    assert!(!sent.iter().any(|w| w == "late"));
    assert!(sent.iter().all(|w| w.chars().count() <= MAX_WARNING_CHARS));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap, deterministic sweep over mutations of the fixture (the fuzz target goes further).
    let base = POD_CREATE.as_bytes();
    let placement = crate::patch::Placement {
        node_selector: BTreeMap::from([("topology.kubernetes.io/zone".to_owned(), "a".to_owned())]),
        required_term_exprs: vec![crate::patch::Requirement::is_in("topology.kubernetes.io/zone", ["a", "b"])],
        annotations: BTreeMap::from([("placement.dev/decision".to_owned(), "a".to_owned())]),
        ..crate::patch::Placement::default()
    };
    let mut parsed_pods = 0;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut body = base.to_vec();
        let at = (state as usize) % body.len();
        match state % 3 {
            0 => body[at] = (state >> 32) as u8,
            1 => body.truncate(at),
            _ => {
                body.remove(at);
            }
        }
        match parse_review(&body) {
            Err(error) => {
                let _ = Response::for_invalid(&body, &error).to_review_json();
            }
            Ok(request) => {
                // What parses is planned against the object as sent; the plan applies and re-plans empty.
                let Some(Object::Pod { raw, .. }) = &request.object else { continue };
                parsed_pods += 1;
                let Ok(plan) = crate::patch::plan_patch_json(raw, &placement) else { continue };
                let mut patched = raw.clone();
                json_patch::patch(&mut patched, &plan.patch).expect("the plan applies");
                assert!(crate::patch::plan_patch_json(&patched, &placement).is_ok_and(|p| p.is_empty()));
            }
        }
    }
    assert!(parsed_pods > 100, "the sweep should reach the planner often ({parsed_pods})");
}

/// Placements the equivalence test plans: a selector, an annotation, required and preferred terms.
fn placements() -> Vec<crate::patch::Placement> {
    use crate::patch::{Placement, PreferredTerm, Requirement};
    let zone = "topology.kubernetes.io/zone";
    vec![
        Placement {
            node_selector: BTreeMap::from([(zone.to_owned(), "a".to_owned())]),
            annotations: BTreeMap::from([("placement.dev/decision".to_owned(), "a".to_owned())]),
            ..Placement::default()
        },
        Placement {
            preferred_terms: vec![PreferredTerm {
                weight: 100,
                match_expressions: vec![Requirement::is_in(zone, ["b"])],
            }],
            required_term_exprs: vec![Requirement::is_in(zone, ["a", "b"])],
            ..Placement::default()
        },
    ]
}

/// Variants of the real pod CREATE that the typed path must read as the checked one does, or leave to it.
fn variants() -> Vec<Vec<u8>> {
    let base: Value = serde_json::from_str(POD_CREATE).unwrap();
    let object = "/request/object";
    let affinity_terms = json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "c"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "preference": {"matchExpressions": []}}]}});
    let mut out: Vec<Value> = vec![
        base.clone(),
        with(base.clone(), &format!("{object}/metadata/annotations"), json!({"a": "b", "placement.dev/decision": "x"})),
        with(base.clone(), &format!("{object}/metadata/annotations"), Value::Null),
        with(base.clone(), &format!("{object}/spec/nodeSelector"), Value::Null),
        with(base.clone(), &format!("{object}/spec/nodeSelector"), json!({"topology.kubernetes.io/zone": "z"})),
        with(base.clone(), &format!("{object}/spec/affinity"), affinity_terms),
        with(base.clone(), &format!("{object}/spec/affinity"), json!({"nodeAffinity": null, "podAffinity": {}})),
        with(base.clone(), &format!("{object}/spec/affinity"), json!({"future": {"x": 1}})),
        without(base.clone(), object, "metadata"),
        without(base.clone(), object, "spec"),
        with(base.clone(), &format!("{object}/metadata"), json!({})),
        with(base.clone(), "/request/kind/kind", json!("Deployment")),
        with(base.clone(), "/request/object", Value::Null),
        with(base.clone(), "/request/uid", json!("")),
        with(base.clone(), "/request/operation", json!("DELETE")),
        with(base.clone(), "/request/dryRun", json!(true)),
        with(base.clone(), "/request/subResource", json!("")),
        with(base.clone(), "/apiVersion", json!("admission.k8s.io/v1beta1")),
    ];
    out.push(with(base, "/request/options", Value::Null));
    let mut bodies: Vec<Vec<u8>> = out.iter().map(|v| v.to_string().into_bytes()).collect();
    // An escaped apiVersion and a duplicate uid: JSON a typed reader refuses and a value reader takes.
    bodies.push(POD_CREATE.replacen("\"admission.k8s.io/v1\"", "\"admission.k8s.io\\/v1\"", 1).into_bytes());
    bodies.push(POD_CREATE.replacen("\"request\": {", "\"request\": {\"uid\": \"first\",", 1).into_bytes());
    bodies
}

/// The typed path reads what the checked path reads: every field of the request and the pod, and every
/// plan against its patch view is the plan against the object as sent, which it applies to.
#[test]
fn the_typed_path_reads_what_the_checked_path_reads() {
    let mut bodies = variants();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let base = POD_CREATE.as_bytes();
    for _ in 0..3000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut body = base.to_vec();
        let at = (state as usize) % body.len();
        body[at] = match state % 4 {
            0 => b' ',
            1 => b'0' + (state >> 40) as u8 % 10,
            2 => b'a' + (state >> 40) as u8 % 26,
            _ => (state >> 32) as u8,
        };
        bodies.push(body);
    }
    let (mut typed, mut checked_only, mut skipped_bad_json) = (0, 0, 0);
    for body in &bodies {
        let checked = parse_review_checked(body);
        let Some(fast) = parse_pod_review(body) else {
            checked_only += 1;
            continue;
        };
        typed += 1;
        let checked = match checked {
            Ok(checked) => checked,
            // A field nobody reads is skipped, not validated: an invalid escape or byte there is no error,
            // nor is a broken `managedFields`.
            Err(ReviewError::NotJson { .. }) => {
                skipped_bad_json += 1;
                continue;
            }
            Err(ReviewError::ObjectNotPod { path, .. })
                if path.starts_with("request.object.metadata.managedFields") =>
            {
                skipped_bad_json += 1;
                continue;
            }
            Err(e) => panic!("the typed path took a body the checked one refuses: {e}"),
        };
        let (Some(Object::Pod { pod: fast_pod, raw: view }), Some(Object::Pod { pod: checked_pod, raw })) =
            (&fast.object, &checked.object)
        else {
            panic!("both read a pod");
        };
        assert_eq!(fast_pod.metadata.managed_fields, None, "managedFields are not read");
        let mut checked_pod = checked_pod.clone();
        checked_pod.metadata.managed_fields = None;
        assert_eq!(**fast_pod, *checked_pod);
        let strip = |r: &Request| Request { object: None, ..r.clone() };
        assert_eq!(strip(&fast), strip(&checked));
        for placement in placements() {
            let from_view = crate::patch::plan_patch_json(view, &placement);
            assert_eq!(from_view, crate::patch::plan_patch_json(raw, &placement), "{}", String::from_utf8_lossy(body));
            if let Ok(plan) = from_view {
                let mut patched = raw.clone();
                json_patch::patch(&mut patched, &plan.patch).expect("the plan applies to the object as sent");
            }
        }
    }
    assert!(typed > 500 && checked_only > 500, "both paths are reached: typed {typed}, checked only {checked_only}");
    assert!(skipped_bad_json < typed / 10, "{skipped_bad_json} of {typed}");
    // The variants the typed path must leave to the checked one.
    let left: Vec<bool> = variants().iter().map(|b| parse_pod_review(b).is_none()).collect();
    assert_eq!(
        left,
        [
            false, false, false, false, false, false, false, false, true, true, true, true, true, true, false, false,
            false, true, false, true, true
        ]
    );
}

/// The answer written straight is the answer as a JSON value, for every shape of response.
#[test]
fn the_written_answer_is_the_answer_value() {
    let patch = Patch(vec![add(&["metadata", "annotations"], json!({"a": "b"}))]);
    let responses = [
        Response::allow("u-1"),
        Response::allow("u-2").with_patch(&patch),
        Response::allow("u-4").with_audit_annotations([("placement.dev/k".to_owned(), "v".to_owned())]),
        Response::allow("u-3\"\u{1}é").with_warnings(vec!["w \"1\"".into(), "w2".into()]).with_patch(&patch),
    ];
    for response in responses {
        let written: Value = serde_json::from_slice(&response.to_review_json()).expect("JSON");
        assert_eq!(written, response.to_review_value());
    }
}
