//! The webhook's AdmissionReview handler on arbitrary bodies, in a small world where every rule can
//! apply: it must answer every body (never panic), and every answer must be an AdmissionReview that
//! allows the pod (the webhook fails open: `allowed` is always true), echoes `request.uid` when the
//! body has a readable one (and is empty otherwise), carries bounded warnings, and patches only with a
//! JSON Patch that applies to the object as sent. The admission metrics must count exactly one request,
//! with the outcome the answer shows.
//!
//! The world (rebuilt for each input, so that a run does not depend on the ones before): three nodes;
//! in namespace `shop` a Deployment `web` with a `placement.dev/strategy` annotation, a Deployment `api`
//! targeted by a PodDistribution, a Deployment `strict-api` targeted by a strict PodDistribution, two
//! single-replica Deployments `single` and `single-strict` that the ZoneBalancers `singletons` and
//! `strict-singletons` (mode webhook) select, and a Deployment `moved` that a RebalancePolicy's
//! `status.steering` steers to node `b`; each Deployment has a ReplicaSet `<name>-h1`. Each body goes
//! through `Admission::review` (local decisions, strict rules decided locally) and through
//! `Admission::review_async` with strict mode on, its kube client answered in process (no network):
//! it serves the strict resources' status and takes their writes.
#![no_main]

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use placement_kube::crd::{PodDistribution, RebalancePolicy, ZoneBalancer};
use placement_kube::live::{LiveIndex, SharedIndex};
use placement_webhook::admission::Admission;
use placement_webhook::decide::{Decider, StaticRules};
use placement_webhook::metrics::AdmissionMetrics;
use placement_webhook::review::{MAX_WARNING_CHARS, MAX_WARNINGS};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const STRATEGY: &str = "base=1,weight=1,nodeSelector=capacity:on-demand;weight=3,nodeSelector=capacity:spot";

/// The cluster's objects, parsed once.
struct Objects {
    nodes: Vec<k8s_openapi::api::core::v1::Node>,
    deployments: Vec<k8s_openapi::api::apps::v1::Deployment>,
    replicasets: Vec<k8s_openapi::api::apps::v1::ReplicaSet>,
    distributions: Vec<Arc<PodDistribution>>,
    zone_balancers: Vec<Arc<ZoneBalancer>>,
    policies: Vec<Arc<RebalancePolicy>>,
    /// The strict resources as the API server stores them, by their status path.
    strict_status: HashMap<String, Value>,
}

fn objects() -> &'static Objects {
    static OBJECTS: OnceLock<Objects> = OnceLock::new();
    OBJECTS.get_or_init(|| {
        let nodes = [("a", "on-demand", "z1"), ("b", "spot", "z2"), ("c", "spot", "z3")]
            .into_iter()
            .map(|(name, capacity, zone)| {
                serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"capacity": capacity, "topology.kubernetes.io/zone": zone,
                        "kubernetes.io/hostname": format!("host-{name}")}},
                    "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                               "conditions": [{"type": "Ready", "status": "True"}]}}))
                .expect("a node")
            })
            .collect();
        let deployment = |name: &str, replicas: u32, annotations: Value| {
            serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}}}}))
            .expect("a deployment")
        };
        let names = ["web", "api", "strict-api", "single", "single-strict", "moved"];
        let deployments = names
            .iter()
            .map(|name| match *name {
                "web" => deployment(name, 8, json!({"placement.dev/strategy": STRATEGY})),
                "single" | "single-strict" => deployment(name, 1, json!({})),
                _ => deployment(name, 6, json!({})),
            })
            .collect();
        let replicasets = names
            .iter()
            .map(|name| {
                serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": format!("{name}-h1"), "namespace": "shop",
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": "d", "controller": true}]}}))
                .expect("a replicaset")
            })
            .collect();
        let distribution = |name: &str, strict: bool| -> Value {
            json!({"apiVersion": "placement.dev/v1alpha1", "kind": "PodDistribution",
                "metadata": {"name": name, "namespace": "shop", "uid": format!("pd-{name}"), "generation": 1, "resourceVersion": "1"},
                "spec": {"targetRef": {"kind": "Deployment", "name": name}, "strict": strict, "groups": [
                    {"name": "od", "nodeSelector": {"matchLabels": {"capacity": "on-demand"}}, "weight": 1},
                    {"name": "spot", "nodeSelector": {"matchLabels": {"capacity": "spot"}}, "weight": 2}]}})
        };
        let balancer = |name: &str, label: &str, strict: bool| -> Value {
            json!({"apiVersion": "placement.dev/v1alpha1", "kind": "ZoneBalancer",
                "metadata": {"name": name, "namespace": "shop", "resourceVersion": "1"},
                "spec": {"selector": {"matchLabels": {"zone-balance": label}}, "topologyKey": "topology.kubernetes.io/zone",
                         "mode": "webhook", "affinity": "required", "strict": strict}})
        };
        let pds = [distribution("api", false), distribution("strict-api", true)];
        let zbs = [balancer("singletons", "true", false), balancer("strict-singletons", "strict", true)];
        let strict_status = HashMap::from([
            ("/apis/placement.dev/v1alpha1/namespaces/shop/poddistributions/strict-api/status".to_owned(), pds[1].clone()),
            ("/apis/placement.dev/v1alpha1/namespaces/shop/zonebalancers/strict-singletons/status".to_owned(), zbs[1].clone()),
        ]);
        let policy = json!({"apiVersion": "placement.dev/v1alpha1", "kind": "RebalancePolicy", "metadata": {"name": "rb"},
            "spec": {}, "status": {"steering": [
                {"workload": {"kind": "Deployment", "namespace": "shop", "name": "moved"}, "node": "b", "from": "a",
                 "expires": "2099-01-01T00:00:00Z"},
                {"workload": {"kind": "Deployment", "namespace": "shop", "name": "web"}, "node": "c", "from": "a",
                 "expires": "2099-01-01T00:00:00Z"}]}});
        Objects {
            nodes,
            deployments,
            replicasets,
            distributions: pds.into_iter().map(|v| Arc::new(serde_json::from_value(v).expect("a PodDistribution"))).collect(),
            zone_balancers: zbs.into_iter().map(|v| Arc::new(serde_json::from_value(v).expect("a ZoneBalancer"))).collect(),
            policies: vec![Arc::new(serde_json::from_value(policy).expect("a RebalancePolicy"))],
            strict_status,
        }
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime"))
}

/// A kube client answered in process: GET and PUT on the strict resources' status, 404 for the rest.
fn client(store: Arc<Mutex<HashMap<String, Value>>>) -> kube::Client {
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let store = store.clone();
        async move {
            let (parts, body) = request.into_parts();
            let path = parts.uri.path().to_owned();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            let found = match (parts.method.as_str(), store.get(&path)) {
                ("GET", Some(object)) => Some(object.clone()),
                ("PUT", Some(object)) => {
                    let version: u64 =
                        object["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).unwrap_or(1);
                    let mut written: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    written["metadata"]["resourceVersion"] = json!((version + 1).to_string());
                    store.insert(path, written.clone());
                    Some(written)
                }
                _ => None,
            };
            let (status, body) = match found {
                Some(object) => (200, object),
                None => (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                    "message": "not found", "code": 404}),
                ),
            };
            let response = http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("a response");
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    // The client's buffer spawns its worker on the runtime it is created in.
    let _runtime = runtime().enter();
    kube::Client::new(service, "default")
}

/// A fresh admission handler over the world, with strict mode when `strict`.
fn admission(strict: bool) -> (Admission, Registry) {
    let o = objects();
    let mut index = LiveIndex::new();
    o.nodes.iter().for_each(|n| index.apply_node(n));
    o.deployments.iter().for_each(|d| index.apply_deployment(d));
    o.replicasets.iter().for_each(|r| index.apply_replicaset(r));
    let rules = StaticRules {
        distributions: o.distributions.clone(),
        zone_balancers: o.zone_balancers.clone(),
        rebalance_policies: o.policies.clone(),
    };
    let decider = Decider::new(SharedIndex::from_index(index), Arc::new(rules), Duration::from_secs(30));
    let mut registry = Registry::default();
    let metrics = AdmissionMetrics::register(&mut registry);
    let admission = Admission::new(Arc::new(decider), metrics, Duration::from_secs(2));
    let admission =
        if strict { admission.with_client(client(Arc::new(Mutex::new(o.strict_status.clone())))) } else { admission };
    (admission, registry)
}

/// The one sample of `family` with a non-zero value, and its labels; panics if there are several.
fn only_sample(text: &str, family: &str) -> Option<String> {
    let hits: Vec<&str> = text.lines().filter(|l| l.starts_with(family) && !l.ends_with(" 0")).collect();
    assert!(hits.len() <= 1, "more than one {family} sample: {hits:?}");
    let line = hits.first()?;
    assert!(line.ends_with(" 1"), "{line}");
    Some(line.to_string())
}

fn check(body: &[u8], answer: &[u8], registry: &Registry, how: &str) {
    let answer: Value = serde_json::from_slice(answer).expect("the answer is JSON");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{how}: {answer}");
    assert_eq!(answer["kind"], "AdmissionReview", "{how}: {answer}");
    let response = &answer["response"];
    assert_eq!(response["allowed"], true, "{how}: the webhook fails open: {response}");
    assert_eq!(response.get("status"), None, "{how}: {response}");

    let sent: Option<Value> = serde_json::from_slice(body).ok();
    let uid = sent.as_ref().and_then(|v| v["request"]["uid"].as_str()).filter(|uid| !uid.is_empty());
    assert_eq!(response["uid"].as_str(), Some(uid.unwrap_or("")), "{how}: the uid is echoed");

    let warnings = response.get("warnings").and_then(Value::as_array).cloned().unwrap_or_default();
    assert!(warnings.len() <= MAX_WARNINGS, "{how}: {} warnings", warnings.len());
    for w in &warnings {
        let w = w.as_str().expect("a warning is a string");
        assert!(!w.is_empty() && w.chars().count() <= MAX_WARNING_CHARS, "{how}: warning {w:?}");
    }

    let patched = match response.get("patch") {
        None => {
            assert_eq!(response.get("patchType"), None, "{how}");
            false
        }
        Some(patch) => {
            assert_eq!(response["patchType"], "JSONPatch", "{how}");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(patch.as_str().expect("patch is a string"))
                .expect("patch is base64");
            let ops: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch is a JSON Patch");
            let mut object = sent.as_ref().expect("a patch answers JSON")["request"]["object"].clone();
            json_patch::patch(&mut object, &ops).unwrap_or_else(|e| panic!("{how}: the patch does not apply: {e}"));
            true
        }
    };

    // Exactly one admission, counted as what the answer shows.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("metrics encode");
    let sample = only_sample(&text, "placement_webhook_admissions_total{").expect("the admission is counted");
    let outcome = sample.split("outcome=\"").nth(1).and_then(|s| s.split('"').next()).expect("an outcome label");
    let fail_open = only_sample(&text, "placement_webhook_fail_open_total{");
    match outcome {
        "placed" => assert!(patched, "{how}: placed without a patch: {response}"),
        "unchanged" => assert!(!patched, "{how}: {response}"),
        "conflict" | "ignored" => assert!(!patched && !warnings.is_empty(), "{how}: {outcome}: {response}"),
        "fail_open" | "malformed" | "no_uid" => {
            assert!(!patched && !warnings.is_empty(), "{how}: {outcome}: {response}")
        }
        other => panic!("{how}: unknown outcome {other}"),
    }
    if std::env::var_os("ADMISSION_HANDLER_TRACE").is_some() {
        // Which path a body reached: `ADMISSION_HANDLER_TRACE=1 cargo fuzz run … corpus/admission_handler -- -runs=0`.
        let rule = sample.split("rule=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
        let strict =
            text.lines().filter(|l| l.starts_with("placement_webhook_strict_writes_total{")).collect::<Vec<_>>();
        eprintln!("{how}: rule={rule} outcome={outcome} uid={uid:?} strict_writes={strict:?} warnings={warnings:?}");
    }
    assert_eq!(outcome == "no_uid", uid.is_none(), "{how}: {sample}");
    assert_eq!(
        fail_open.is_some(),
        matches!(outcome, "fail_open" | "malformed" | "no_uid"),
        "{how}: {sample}, {fail_open:?}"
    );
}

fuzz_target!(|body: &[u8]| {
    let (local, registry) = admission(false);
    check(body, &local.review(body), &registry, "review");
    let (strict, registry) = admission(true);
    let answer = runtime().block_on(strict.review_async(body));
    check(body, &answer, &registry, "review_async, strict");
});
