use super::*;
use proptest::prelude::*;

const ZONE: &str = "topology.kubernetes.io/zone";
const DECISION: &str = "placement.dev/decision";
const PREFERRED: &str = "preferredDuringSchedulingIgnoredDuringExecution";
const REQUIRED: &str = "requiredDuringSchedulingIgnoredDuringExecution";

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-"}, "spec": spec})
}

fn containers() -> Value {
    json!([{"name": "app", "image": "nginx"}])
}

fn bare_pod() -> Value {
    pod(json!({"containers": containers()}))
}

fn pod_with(key: &str, value: Value) -> Value {
    let mut pod = bare_pod();
    pod["spec"][key] = value;
    pod
}

fn zone(value: &str) -> Placement {
    Placement {
        node_selector: BTreeMap::from([(ZONE.to_owned(), value.to_owned())]),
        annotations: BTreeMap::from([(DECISION.to_owned(), format!("zone={value}"))]),
        ..Placement::default()
    }
}

fn preferred(weight: i32, key: &str, values: &[&str]) -> Placement {
    Placement {
        preferred_terms: vec![PreferredTerm {
            weight,
            match_expressions: vec![Requirement::is_in(key, values.iter().copied())],
        }],
        ..Placement::default()
    }
}

fn required(key: &str, values: &[&str]) -> Placement {
    Placement { required_term_exprs: vec![Requirement::is_in(key, values.iter().copied())], ..Placement::default() }
}

fn term_json(weight: i32, key: &str, values: &[&str]) -> Value {
    json!({"weight": weight, "preference": {"matchExpressions": [{"key": key, "operator": "In", "values": values}]}})
}

fn expr(key: &str, operator: &str, values: &[&str]) -> Value {
    json!({"key": key, "operator": operator, "values": values})
}

fn affinity(node_affinity: Value) -> Value {
    pod_with("affinity", json!({ "nodeAffinity": node_affinity }))
}

fn required_terms(terms: Value) -> Value {
    affinity(json!({ REQUIRED: {"nodeSelectorTerms": terms} }))
}

/// `after` keeps everything of `before`: objects keep their members (a `null` may be filled in), arrays
/// keep their elements in place.
fn preserved(before: &Value, after: &Value) -> bool {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            a.iter().all(|(k, v)| v.is_null() || b.get(k).is_some_and(|w| preserved(v, w)))
        }
        (Value::Array(a), Value::Array(b)) => b.len() >= a.len() && a.iter().zip(b).all(|(v, w)| preserved(v, w)),
        (a, b) => a == b,
    }
}

fn normal_terms(list: &Value) -> Vec<(i64, Vec<NormalRequirement>)> {
    list.as_array().into_iter().flatten().filter_map(normalize_preferred).collect()
}

/// Applies the plan to `pod` and checks everything that must hold of any successful plan; returns the
/// patched pod.
fn apply_and_check(name: &str, pod: &Value, placement: &Placement, plan: &PatchPlan) -> Value {
    let ops = serde_json::to_value(&plan.patch).expect("patch serializes");
    assert!(ops.as_array().into_iter().flatten().all(|op| op["op"] == "add"), "{name}: only adds: {ops}");

    let mut patched = pod.clone();
    if let Err(e) = json_patch::patch(&mut patched, &plan.patch) {
        panic!("{name}: patch {ops} does not apply to {pod}: {e}");
    }
    assert!(preserved(pod, &patched), "{name}: {ops} lost something of {pod}: {patched}");

    for (key, value) in &placement.node_selector {
        assert_eq!(patched["spec"]["nodeSelector"].get(key), Some(&json!(value)), "{name}: {patched}");
    }
    for (key, value) in &placement.annotations {
        let kept = plan.notes.iter().any(|n| n.contains(key.as_str()));
        assert!(kept || patched["metadata"]["annotations"].get(key) == Some(&json!(value)), "{name}: {patched}");
    }
    let node_affinity = &patched["spec"]["affinity"]["nodeAffinity"];
    let present = normal_terms(&node_affinity[PREFERRED]);
    for term in &placement.preferred_terms {
        let mut expressions: Vec<NormalRequirement> =
            term.match_expressions.iter().map(normalize_requirement).collect();
        expressions.sort();
        assert!(present.contains(&(i64::from(term.weight), expressions)), "{name}: {patched}");
    }
    if !placement.required_term_exprs.is_empty() {
        let terms = node_affinity[REQUIRED]["nodeSelectorTerms"].as_array().cloned().unwrap_or_default();
        assert!(!terms.is_empty(), "{name}: {patched}");
        for term in &terms {
            let have: Vec<_> =
                term["matchExpressions"].as_array().into_iter().flatten().filter_map(normalize_expression).collect();
            for requirement in &placement.required_term_exprs {
                assert!(have.contains(&normalize_requirement(requirement)), "{name}: {term}");
            }
        }
    }

    // Reinvocation on the patched pod adds nothing.
    let again = plan_patch_json(&patched, placement).unwrap_or_else(|c| panic!("{name}: replan conflicts: {c}"));
    assert!(again.is_empty(), "{name}: second pass adds {}", serde_json::to_value(&again.patch).unwrap_or_default());
    // And the typed path agrees, when the result reads as a pod.
    if let Ok(typed) = serde_json::from_value::<Pod>(patched.clone()) {
        let typed_plan = plan_patch(&typed, placement).unwrap_or_else(|c| panic!("{name}: typed replan: {c}"));
        assert!(typed_plan.is_empty(), "{name}: typed second pass adds {:?}", typed_plan.patch);
    }
    patched
}

enum Expect {
    Ops(Value),
    Conflict(&'static str, &'static str),
}

#[test]
fn table() {
    use Expect::*;
    let both_added = json!([
        {"op": "add", "path": "/metadata/annotations", "value": {DECISION: "zone=a"}},
        {"op": "add", "path": "/spec/nodeSelector", "value": {ZONE: "a"}},
    ]);
    let mut annotated_and_selected = pod_with("nodeSelector", json!({"kubernetes.io/os": "linux"}));
    annotated_and_selected["metadata"]["annotations"] = json!({"owner": "team-a"});
    let mut already = pod_with("nodeSelector", json!({ZONE: "a", "kubernetes.io/os": "linux"}));
    already["metadata"]["annotations"] = json!({DECISION: "zone=a"});
    let mut other_decision = bare_pod();
    other_decision["metadata"]["annotations"] = json!({DECISION: "zone=z"});
    let mut annotations_null = bare_pod();
    annotations_null["metadata"]["annotations"] = Value::Null;
    let mut labelled = bare_pod();
    labelled["metadata"] = json!({"name": "web-0", "labels": {"app": "web"}});
    let fixture = crate::review::parse_review(include_bytes!("../../testdata/pod_create_review.json"))
        .expect("fixture")
        .object
        .expect("object")
        .raw()
        .clone();
    let escaping = Placement {
        node_selector: BTreeMap::from([("a/b".to_owned(), "1".to_owned()), ("a~b".to_owned(), "2".to_owned())]),
        annotations: BTreeMap::from([("x~y/z".to_owned(), "v".to_owned())]),
        ..Placement::default()
    };
    let term_a = term_json(50, ZONE, &["a"]);
    let both = Placement { required_term_exprs: required(ZONE, &["a"]).required_term_exprs, ..zone("a") };

    let cases: Vec<(&str, Value, Placement, Expect)> = vec![
        (
            "bare pod: no labels, name, nodeSelector, affinity, annotations",
            bare_pod(),
            zone("a"),
            Ops(both_added.clone()),
        ),
        ("labels and a name", labelled, zone("a"), Ops(both_added.clone())),
        (
            "no metadata and no spec at all",
            json!({"apiVersion": "v1", "kind": "Pod"}),
            zone("a"),
            Ops(json!([
                {"op": "add", "path": "/metadata", "value": {"annotations": {DECISION: "zone=a"}}},
                {"op": "add", "path": "/spec", "value": {"nodeSelector": {ZONE: "a"}}},
            ])),
        ),
        (
            "null metadata, spec and nodeSelector",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": null, "spec": null}),
            zone("a"),
            Ops(json!([
                {"op": "add", "path": "/metadata", "value": {"annotations": {DECISION: "zone=a"}}},
                {"op": "add", "path": "/spec", "value": {"nodeSelector": {ZONE: "a"}}},
            ])),
        ),
        ("nodeSelector null", pod_with("nodeSelector", Value::Null), zone("a"), Ops(both_added.clone())),
        ("annotations null", annotations_null, zone("a"), Ops(both_added)),
        (
            "existing nodeSelector and annotations are kept: one key each is added",
            annotated_and_selected,
            zone("a"),
            Ops(json!([
                {"op": "add", "path": "/metadata/annotations/placement.dev~1decision", "value": "zone=a"},
                {"op": "add", "path": "/spec/nodeSelector/topology.kubernetes.io~1zone", "value": "a"},
            ])),
        ),
        (
            "empty nodeSelector object",
            pod_with("nodeSelector", json!({})),
            Placement { annotations: BTreeMap::new(), ..zone("a") },
            Ops(json!([{"op": "add", "path": "/spec/nodeSelector/topology.kubernetes.io~1zone", "value": "a"}])),
        ),
        ("same key, same value: nothing", already, zone("a"), Ops(json!([]))),
        (
            "same key, other value: conflict",
            pod_with("nodeSelector", json!({ZONE: "b"})),
            zone("a"),
            Conflict("node_selector", "pod pins topology.kubernetes.io/zone=b but placement chose a"),
        ),
        (
            "keys needing escaping",
            pod_with("nodeSelector", json!({"os": "linux"})),
            escaping.clone(),
            Ops(json!([
                {"op": "add", "path": "/metadata/annotations", "value": {"x~y/z": "v"}},
                {"op": "add", "path": "/spec/nodeSelector/a~1b", "value": "1"},
                {"op": "add", "path": "/spec/nodeSelector/a~0b", "value": "2"},
            ])),
        ),
        (
            "keys needing escaping, nothing there yet",
            bare_pod(),
            escaping,
            Ops(json!([
                {"op": "add", "path": "/metadata/annotations", "value": {"x~y/z": "v"}},
                {"op": "add", "path": "/spec/nodeSelector", "value": {"a/b": "1", "a~b": "2"}},
            ])),
        ),
        (
            "another decision annotation is kept, the selector still added",
            other_decision,
            zone("a"),
            Ops(json!([{"op": "add", "path": "/spec/nodeSelector", "value": {ZONE: "a"}}])),
        ),
        (
            "preferred: no affinity",
            bare_pod(),
            preferred(50, ZONE, &["a"]),
            Ops(json!([{"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": {PREFERRED: [term_a]}}}])),
        ),
        (
            "preferred: affinity null",
            pod_with("affinity", Value::Null),
            preferred(50, ZONE, &["a"]),
            Ops(json!([{"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": {PREFERRED: [term_a]}}}])),
        ),
        (
            "preferred: empty affinity",
            pod_with("affinity", json!({})),
            preferred(50, ZONE, &["a"]),
            Ops(json!([{"op": "add", "path": "/spec/affinity/nodeAffinity", "value": {PREFERRED: [term_a]}}])),
        ),
        (
            "preferred: pod anti-affinity kept",
            pod_with(
                "affinity",
                json!({"podAntiAffinity": {PREFERRED: [{"weight": 1, "podAffinityTerm": {"topologyKey": ZONE}}]}}),
            ),
            preferred(50, ZONE, &["a"]),
            Ops(json!([{"op": "add", "path": "/spec/affinity/nodeAffinity", "value": {PREFERRED: [term_a]}}])),
        ),
        (
            "preferred: empty node affinity",
            affinity(json!({})),
            preferred(50, ZONE, &["a"]),
            Ops(
                json!([{"op": "add", "path": "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution", "value": [term_a]}]),
            ),
        ),
        (
            "preferred: only required affinity there",
            required_terms(json!([{"matchExpressions": [expr("disk", "In", &["ssd"])]}])),
            preferred(50, ZONE, &["a"]),
            Ops(
                json!([{"op": "add", "path": "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution", "value": [term_a]}]),
            ),
        ),
        (
            "preferred: empty list",
            affinity(json!({ PREFERRED: [] })),
            preferred(50, ZONE, &["a"]),
            Ops(
                json!([{"op": "add", "path": "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution/-", "value": term_a}]),
            ),
        ),
        (
            "preferred: another term kept, ours appended",
            affinity(json!({ PREFERRED: [term_json(10, "disk", &["ssd"])] })),
            preferred(50, ZONE, &["a"]),
            Ops(
                json!([{"op": "add", "path": "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution/-", "value": term_a}]),
            ),
        ),
        (
            "preferred: same term already there (values in another order)",
            affinity(json!({ PREFERRED: [term_json(50, ZONE, &["b", "a"])] })),
            preferred(50, ZONE, &["a", "b"]),
            Ops(json!([])),
        ),
        (
            "preferred: weight out of range",
            bare_pod(),
            preferred(0, ZONE, &["a"]),
            Conflict("invalid_placement", "weight 0"),
        ),
        (
            "required affinity excludes the zone",
            required_terms(json!([{"matchExpressions": [expr(ZONE, "In", &["b", "c"])]}])),
            zone("a"),
            Conflict("required_affinity", "admits no node with topology.kubernetes.io/zone=a"),
        ),
        (
            "required affinity: NotIn the zone",
            required_terms(json!([{"matchExpressions": [expr(ZONE, "NotIn", &["a"])]}])),
            zone("a"),
            Conflict("required_affinity", "zone=a"),
        ),
        (
            "required affinity: DoesNotExist",
            required_terms(json!([{"matchExpressions": [{"key": ZONE, "operator": "DoesNotExist"}]}])),
            zone("a"),
            Conflict("required_affinity", "zone=a"),
        ),
        (
            "required affinity: Gt on a non-number",
            required_terms(json!([{"matchExpressions": [expr(ZONE, "Gt", &["3"])]}])),
            zone("a"),
            Conflict("required_affinity", "zone=a"),
        ),
        (
            "required affinity: terms are ORed",
            required_terms(json!([
                {"matchExpressions": [expr(ZONE, "In", &["b"])]},
                {"matchExpressions": [expr(ZONE, "In", &["a"])]},
            ])),
            zone("a"),
            Ops(json!([
                {"op": "add", "path": "/metadata/annotations", "value": {DECISION: "zone=a"}},
                {"op": "add", "path": "/spec/nodeSelector", "value": {ZONE: "a"}},
            ])),
        ),
        (
            "required affinity: Exists and other keys",
            required_terms(json!([{"matchExpressions": [
                {"key": ZONE, "operator": "Exists"},
                expr("disk", "In", &["ssd"]),
            ]}])),
            Placement { annotations: BTreeMap::new(), ..zone("a") },
            Ops(json!([{"op": "add", "path": "/spec/nodeSelector", "value": {ZONE: "a"}}])),
        ),
        (
            "required exprs: no affinity",
            bare_pod(),
            required(ZONE, &["a"]),
            Ops(
                json!([{"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [
                    {"matchExpressions": [expr(ZONE, "In", &["a"])]},
                ]}}}}]),
            ),
        ),
        (
            "required exprs: into every term, creating matchExpressions where missing",
            required_terms(json!([
                {"matchExpressions": [expr("disk", "In", &["ssd"])]},
                {"matchFields": [expr("metadata.name", "In", &["n1"])]},
            ])),
            required(ZONE, &["a"]),
            Ops(json!([
                {"op": "add", "path": "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/-", "value": expr(ZONE, "In", &["a"])},
                {"op": "add", "path": "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/1/matchExpressions", "value": [expr(ZONE, "In", &["a"])]},
            ])),
        ),
        (
            "required exprs: a term that has it already is skipped",
            required_terms(json!([
                {"matchExpressions": [expr(ZONE, "In", &["a"])]},
                {"matchExpressions": null},
            ])),
            required(ZONE, &["a"]),
            Ops(json!([
                {"op": "add", "path": "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/1/matchExpressions", "value": [expr(ZONE, "In", &["a"])]},
            ])),
        ),
        (
            "required exprs: empty term list",
            required_terms(json!([])),
            required(ZONE, &["a"]),
            Ops(
                json!([{"op": "add", "path": "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/-", "value": {"matchExpressions": [expr(ZONE, "In", &["a"])]}}]),
            ),
        ),
        (
            "required exprs: null term list (k8s-openapi would read it as empty)",
            required_terms(Value::Null),
            required(ZONE, &["a"]),
            Ops(
                json!([{"op": "add", "path": "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms", "value": [{"matchExpressions": [expr(ZONE, "In", &["a"])]}]}]),
            ),
        ),
        (
            "required exprs: empty node selector",
            affinity(json!({ REQUIRED: {} })),
            required(ZONE, &["a"]),
            Ops(
                json!([{"op": "add", "path": "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms", "value": [{"matchExpressions": [expr(ZONE, "In", &["a"])]}]}]),
            ),
        ),
        (
            "required exprs and the selector together",
            bare_pod(),
            both,
            Ops(json!([
                {"op": "add", "path": "/metadata/annotations", "value": {DECISION: "zone=a"}},
                {"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [
                    {"matchExpressions": [expr(ZONE, "In", &["a"])]},
                ]}}}},
                {"op": "add", "path": "/spec/nodeSelector", "value": {ZONE: "a"}},
            ])),
        ),
        (
            "required exprs against the pod's own nodeSelector",
            pod_with("nodeSelector", json!({ZONE: "c"})),
            required(ZONE, &["a", "b"]),
            Conflict("node_selector", "pod pins topology.kubernetes.io/zone=c but placement chose one of (a, b)"),
        ),
        (
            "placement contradicts itself",
            bare_pod(),
            Placement { required_term_exprs: required(ZONE, &["b"]).required_term_exprs, ..zone("a") },
            Conflict("invalid_placement", "no value of topology.kubernetes.io/zone"),
        ),
        ("empty In values", bare_pod(), required(ZONE, &[]), Conflict("invalid_placement", "has no values")),
        (
            "nodeSelector not an object",
            pod_with("nodeSelector", json!("zone=a")),
            zone("a"),
            Conflict("unpatchable", "cannot add under /spec/nodeSelector: it is a string"),
        ),
        ("object an array", json!([1]), zone("a"), Conflict("unpatchable", "it is an array")),
        (
            "the API server's fixture pod",
            fixture,
            Placement { preferred_terms: preferred(20, "node-type", &["spot"]).preferred_terms, ..zone("eu-west-1a") },
            Ops(json!([
                {"op": "add", "path": "/metadata/annotations/placement.dev~1decision", "value": "zone=eu-west-1a"},
                {"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": {PREFERRED: [term_json(20, "node-type", &["spot"])]}}},
                {"op": "add", "path": "/spec/nodeSelector/topology.kubernetes.io~1zone", "value": "eu-west-1a"},
            ])),
        ),
        ("an empty placement adds nothing", bare_pod(), Placement::default(), Ops(json!([]))),
    ];

    for (name, pod, placement, expect) in cases {
        let result = plan_patch_json(&pod, &placement);
        match (expect, result) {
            (Ops(ops), Ok(plan)) => {
                assert_eq!(serde_json::to_value(&plan.patch).expect("serializes"), ops, "{name}");
                apply_and_check(name, &pod, &placement, &plan);
                if let Ok(typed) = serde_json::from_value::<Pod>(pod.clone()) {
                    // The typed path plans against k8s-openapi's serialization; it must apply there.
                    let as_serialized = serde_json::to_value(&typed).expect("serializes");
                    let plan = plan_patch(&typed, &placement).unwrap_or_else(|c| panic!("{name}: typed: {c}"));
                    apply_and_check(name, &as_serialized, &placement, &plan);
                }
            }
            (Conflict(label, needle), Err(conflict)) => {
                assert_eq!(conflict.metric_label(), label, "{name}: {conflict}");
                assert!(conflict.to_string().contains(needle), "{name}: {conflict:?} lacks {needle:?}");
            }
            (Ops(ops), Err(conflict)) => panic!("{name}: wanted {ops}, got conflict {conflict}"),
            (Conflict(label, _), Ok(plan)) => panic!("{name}: wanted {label}, got {:?}", plan.patch),
        }
    }
}

#[test]
fn kept_annotation_is_noted() {
    let mut pod = bare_pod();
    pod["metadata"]["annotations"] = json!({DECISION: "zone=z"});
    let plan = plan_patch_json(&pod, &zone("a")).expect("plans");
    assert_eq!(plan.notes.len(), 1);
    assert!(plan.notes[0].contains("placement.dev/decision is already \"zone=z\""), "{:?}", plan.notes);
}

#[test]
fn duplicate_terms_in_the_placement_are_added_once() {
    let mut placement = preferred(50, ZONE, &["a"]);
    placement.preferred_terms.push(placement.preferred_terms[0].clone());
    placement.required_term_exprs = vec![Requirement::is_in(ZONE, ["a"]), Requirement::is_in(ZONE, ["a"])];
    let plan = plan_patch_json(&bare_pod(), &placement).expect("plans");
    let patched = apply_and_check("duplicates", &bare_pod(), &placement, &plan);
    let node_affinity = &patched["spec"]["affinity"]["nodeAffinity"];
    assert_eq!(node_affinity[PREFERRED].as_array().map(Vec::len), Some(1));
    assert_eq!(node_affinity[REQUIRED]["nodeSelectorTerms"][0]["matchExpressions"].as_array().map(Vec::len), Some(1));
}

// ---- property test ----

const KEYS: &[&str] = &["zone", ZONE, "a/b", "a~b", "~1", "/", "", "node-type", "x.io/y~z"];
const VALUES: &[&str] = &["a", "b", "c"];

/// Mostly two keys, so that pods and placements often meet on the same key.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(&["zone", "a/b"][..]), 1 => prop::sample::select(KEYS)]
        .prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(VALUES).prop_map(str::to_owned)
}

fn string_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(key(), value(), 0..4)
}

/// A JSON object member: absent, null, or generated.
fn maybe(inner: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![1 => Just(None), 1 => Just(Some(Value::Null)), 4 => inner.prop_map(Some)]
}

fn object(members: Vec<(&'static str, Option<Value>)>) -> Value {
    Value::Object(members.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))).collect())
}

fn expression() -> impl Strategy<Value = Value> {
    (
        key(),
        prop::sample::select(&["In", "NotIn", "Exists", "DoesNotExist", "Gt"][..]),
        prop::collection::vec(value(), 0..3),
    )
        .prop_map(|(key, operator, values)| json!({"key": key, "operator": operator, "values": values}))
}

fn expressions() -> impl Strategy<Value = Value> {
    prop::collection::vec(expression(), 0..3).prop_map(Value::Array)
}

fn selector_term() -> impl Strategy<Value = Value> {
    maybe(expressions()).prop_map(|e| object(vec![("matchExpressions", e)]))
}

fn preferred_term_json() -> impl Strategy<Value = Value> {
    (1..=100i32, selector_term()).prop_map(|(weight, preference)| json!({"weight": weight, "preference": preference}))
}

fn node_affinity() -> impl Strategy<Value = Value> {
    let required = maybe(prop::collection::vec(selector_term(), 0..3).prop_map(Value::Array))
        .prop_map(|terms| object(vec![("nodeSelectorTerms", terms)]));
    (maybe(prop::collection::vec(preferred_term_json(), 0..3).prop_map(Value::Array)), maybe(required))
        .prop_map(|(preferred, required)| object(vec![(PREFERRED, preferred), (REQUIRED, required)]))
}

fn pod_json() -> impl Strategy<Value = Value> {
    let to_json = |m: BTreeMap<String, String>| json!(m);
    let metadata = (maybe(string_map().prop_map(to_json)), maybe(string_map().prop_map(to_json)))
        .prop_map(|(labels, annotations)| object(vec![("labels", labels), ("annotations", annotations)]));
    let affinity = maybe(node_affinity()).prop_map(|n| object(vec![("nodeAffinity", n)]));
    let spec = (maybe(string_map().prop_map(to_json)), maybe(affinity)).prop_map(|(selector, affinity)| {
        object(vec![("containers", Some(containers())), ("nodeSelector", selector), ("affinity", affinity)])
    });
    (maybe(metadata), maybe(spec)).prop_map(|(metadata, spec)| {
        object(vec![
            ("apiVersion", Some(json!("v1"))),
            ("kind", Some(json!("Pod"))),
            ("metadata", metadata),
            ("spec", spec),
        ])
    })
}

fn requirement() -> impl Strategy<Value = Requirement> {
    (key(), prop::collection::vec(value(), 1..3)).prop_map(|(k, v)| Requirement::is_in(k, v))
}

fn placement() -> impl Strategy<Value = Placement> {
    let term = (1..=100i32, prop::collection::vec(requirement(), 0..3))
        .prop_map(|(weight, match_expressions)| PreferredTerm { weight, match_expressions });
    (string_map(), prop::collection::vec(term, 0..3), prop::collection::vec(requirement(), 0..2), string_map())
        .prop_map(|(node_selector, preferred_terms, required_term_exprs, annotations)| Placement {
            node_selector,
            preferred_terms,
            required_term_exprs,
            annotations,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn plans_apply_cleanly_and_keep_everything(pod in pod_json(), placement in placement()) {
        match plan_patch_json(&pod, &placement) {
            Ok(plan) => {
                apply_and_check("proptest", &pod, &placement, &plan);
            }
            Err(Conflict::NodeSelector { .. }) => {
                let selector = &pod["spec"]["nodeSelector"];
                let pinned = KEYS.iter().any(|k| selector.get(*k).is_some_and(|v| !v.is_null()));
                prop_assert!(pinned, "node selector conflict without a pinned key: {pod}");
            }
            Err(Conflict::RequiredAffinity { .. }) => {
                let terms = &pod["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"];
                prop_assert!(terms.as_array().is_some_and(|t| !t.is_empty()));
            }
            Err(Conflict::InvalidPlacement { .. }) => {
                // Empty keys or a self-contradicting placement; the generator makes both.
                prop_assert!(
                    placement.node_selector.contains_key("")
                        || placement.required_term_exprs.iter().any(|r| r.key.is_empty())
                        || placement.preferred_terms.iter().flat_map(|t| &t.match_expressions).any(|r| r.key.is_empty())
                        || !placement.required_term_exprs.is_empty()
                );
            }
            Err(conflict @ Conflict::Unpatchable { .. }) => {
                prop_assert!(false, "well-typed pod reported unpatchable: {conflict}: {pod}");
            }
        }
    }
}
