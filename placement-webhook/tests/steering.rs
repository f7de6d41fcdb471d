//! Steering end to end: the rebalancer (placement-operator) evicts pods from a hot node, the test plays
//! the ReplicaSet controller and creates their replacements through the fake API server, which calls the
//! webhook over TLS, and a small scheduler binds them. The replacements land on the nodes the plan chose;
//! without steering the same scheduler sends them straight back to the hot node.
//!
//! The cluster is the case steering exists for: the hot node is hot by *usage* (metrics.k8s.io) while its
//! pods request little, so by requests it looks the emptiest node, and a scheduler that prefers the least
//! allocated node (kube-scheduler's default NodeResourcesFit scoring) would undo the plan.

mod common;

use common::{certificates, register_webhook, start_webhook};
use placement_kube::live::{WatchOptions, spawn};
use placement_operator::context::{Context, Leadership};
use placement_operator::rebalancer::{Evictor, PassOutcome, Rebalancer};
use placement_operator::runtime::events::Events;
use placement_testkit::FakeApiServer;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const GI: u64 = 1 << 30;
const HOT: &str = "hot";

fn seed(fake: &FakeApiServer) {
    for crd in placement_kube::crd::all_crds() {
        fake.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})).unwrap();
    // Usage: hot at 90 %, the others at 10 %.
    for (name, used_tenths) in [(HOT, 9u64), ("cold-a", 1), ("cold-b", 1)] {
        fake.put(json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                           "conditions": [{"type": "Ready", "status": "True"}]}}))
            .unwrap();
        fake.put(json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics", "metadata": {"name": name},
                "timestamp": "2026-11-25T00:00:00Z", "window": "20s",
                "usage": {"cpu": format!("{}m", used_tenths * 400), "memory": (used_tenths * 16 * GI / 10).to_string()}}))
            .unwrap();
    }
    for (deployment, replicas) in [("web", 8), ("batch", 2)] {
        fake.put(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": deployment, "namespace": "shop", "uid": format!("{deployment}-uid")},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": deployment}},
                    "template": {"metadata": {"labels": {"app": deployment}}, "spec": {"containers": [{"name": "app", "image": "app"}]}}}}))
            .unwrap();
        fake.put(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("{deployment}-h1"), "namespace": "shop", "uid": format!("{deployment}-rs"),
                    "labels": {"app": deployment, "pod-template-hash": "h1"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment,
                        "uid": format!("{deployment}-uid"), "controller": true}]},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": deployment, "pod-template-hash": "h1"}}}}))
            .unwrap();
    }
    // Eight web pods on the hot node, each requesting 100m but using 400m.
    for i in 0..8 {
        put_pod(fake, &pod("web", Some(&format!("web-h1-{i}")), "100m"), Some(HOT));
        fake.put(json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
                "metadata": {"name": format!("web-h1-{i}"), "namespace": "shop"}, "timestamp": "2026-11-25T00:00:00Z", "window": "20s",
                "containers": [{"name": "app", "usage": {"cpu": "400m", "memory": (16 * GI / 10).to_string()}}]}))
            .unwrap();
    }
    // A batch pod on each cold node requests half of it (and uses little): by requests, hot looks emptiest.
    for (i, node) in ["cold-a", "cold-b"].iter().enumerate() {
        put_pod(fake, &pod("batch", Some(&format!("batch-h1-{i}")), "2"), Some(node));
    }
}

/// A pod of `deployment` as its ReplicaSet creates it (a generated name when `name` is `None`).
fn pod(deployment: &str, name: Option<&str>, cpu: &str) -> Value {
    let mut meta = json!({"namespace": "shop", "labels": {"app": deployment, "pod-template-hash": "h1"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deployment}-h1"),
            "uid": format!("{deployment}-rs"), "controller": true}]});
    match name {
        Some(n) => meta["name"] = json!(n),
        None => meta["generateName"] = json!(format!("{deployment}-h1-")),
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"containers": [{"name": "app", "image": "app", "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]}})
}

fn put_pod(fake: &FakeApiServer, pod: &Value, node: Option<&str>) {
    let mut pod = pod.clone();
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
        pod["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
    }
    fake.put(pod).unwrap();
}

/// Millicores of a CPU quantity as the test writes them (`100m`, `2`).
fn millicores(q: &str) -> i64 {
    q.strip_suffix('m').map(|m| m.parse().unwrap()).unwrap_or_else(|| q.parse::<i64>().unwrap() * 1000)
}

fn cpu_request(pod: &Value) -> i64 {
    pod.pointer("/spec/containers/0/resources/requests/cpu").and_then(Value::as_str).map(millicores).unwrap_or(0)
}

/// The node a scheduler scoring like kube-scheduler's defaults would bind `pod` to: NodeAffinity
/// (preferred terms, normalized to 0..100, weight 2) plus NodeResourcesFit least-allocated CPU (0..100,
/// weight 1), over the nodes its nodeSelector admits.
fn schedule(fake: &FakeApiServer, pod: &Value) -> String {
    let pods = fake.list("v1", "Pod", None);
    let nodes = fake.list("v1", "Node", None);
    let wanted = cpu_request(pod);
    let selector = pod.pointer("/spec/nodeSelector").and_then(Value::as_object).cloned().unwrap_or_default();
    let terms = pod
        .pointer("/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut candidates: Vec<(String, i64, i64)> = Vec::new();
    for node in &nodes {
        let name = node["metadata"]["name"].as_str().unwrap().to_string();
        let labels = node["metadata"]["labels"].as_object().cloned().unwrap_or_default();
        if selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            continue;
        }
        let affinity: i64 = terms
            .iter()
            .filter(|t| {
                t.pointer("/preference/matchExpressions").and_then(Value::as_array).into_iter().flatten().all(|e| {
                    let value = labels.get(e["key"].as_str().unwrap());
                    e["operator"] == "In" && e["values"].as_array().unwrap().iter().any(|v| Some(v) == value)
                })
            })
            .map(|t| t["weight"].as_i64().unwrap())
            .sum();
        let allocatable = millicores(node.pointer("/status/allocatable/cpu").and_then(Value::as_str).unwrap());
        let requested: i64 =
            pods.iter().filter(|p| p.pointer("/spec/nodeName") == Some(&json!(name))).map(cpu_request).sum();
        let least_allocated = (allocatable - requested - wanted).max(0) * 100 / allocatable;
        candidates.push((name, affinity, least_allocated));
    }
    let max_affinity = candidates.iter().map(|c| c.1).max().unwrap_or(0).max(1);
    candidates
        .into_iter()
        .max_by_key(|(name, affinity, least)| {
            (2 * affinity * 100 / max_affinity + least, std::cmp::Reverse(name.clone()))
        })
        .map(|(name, ..)| name)
        .unwrap()
}

/// Creates a replacement pod through the API (the webhook mutates it) and binds it where the scheduler says.
async fn replace_and_schedule(
    fake: &FakeApiServer,
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
) -> (String, String) {
    let created =
        pods.create(&Default::default(), &serde_json::from_value(pod("web", None, "100m")).unwrap()).await.unwrap();
    let created = serde_json::to_value(created).unwrap();
    let node = schedule(fake, &created);
    let decision = created
        .pointer("/metadata/annotations/placement.dev~1decision")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    put_pod(fake, &created, Some(&node));
    (node, decision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacements_of_evicted_pods_land_on_the_planned_nodes_not_back_on_the_hot_node() {
    let fake = FakeApiServer::start().await.unwrap();
    seed(&fake);
    fake.put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "RebalancePolicy", "metadata": {"name": "rb"},
        "spec": {"observationsToEnter": 1, "ewmaAlpha": 1.0, "dryRun": false, "nodeBackoff": "0s",
                 "maxEvictionsPerPlan": 2, "podSelector": {"matchLabels": {"app": "web"}}}}))
        .unwrap();
    let (certs, cert_pem) = certificates();
    let webhook = start_webhook(&fake, certs.path(), |_| {}).await;
    register_webhook(&fake, webhook.address.port(), &cert_pem);

    // One live rebalancer pass.
    let client = fake.client();
    let (index, _watchers) = spawn(client.clone(), WatchOptions::default());
    assert!(index.wait_ready(Duration::from_secs(10)).await);
    let ctx = Context {
        client: client.clone(),
        eviction_client: fake.client_without_retry(),
        index,
        events: Events::disabled(),
        leadership: Leadership::always(),
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let rebalancer = Rebalancer::new(ctx, Evictor::new(fake.client_without_retry()), &mut registry);
    let report = match rebalancer.pass("rb", true).await {
        Ok(PassOutcome::Done(r)) => r,
        other => panic!("the pass did not complete: {other:?}"),
    };
    let planned: Vec<String> = report.plan.evictions.iter().map(|e| e.to.clone()).collect();
    assert_eq!(planned.len(), 2, "{}", report.plan.stop);
    assert!(report.plan.evictions.iter().all(|e| e.from == HOT));

    // The webhook sees the steering entries in the policy's status.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while webhook.admission.decider().index().read().pod_count() != 8
        || fake
            .get("placement.dev/v1alpha1", "RebalancePolicy", "", "rb")
            .and_then(|p| p.pointer("/status/steering/1").cloned())
            .is_none()
    {
        assert!(tokio::time::Instant::now() < deadline, "the evictions or the steering entries never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The ReplicaSet replaces the two evicted pods: each goes where the plan said.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, "shop");
    let mut landed = BTreeMap::<String, u32>::new();
    for _ in 0..2 {
        let (node, decision) = replace_and_schedule(&fake, &pods).await;
        assert!(decision.starts_with("RebalancePolicy rb: steered to node "), "{decision}");
        *landed.entry(node).or_default() += 1;
    }
    let mut want = BTreeMap::<String, u32>::new();
    for node in &planned {
        *want.entry(node.clone()).or_default() += 1;
    }
    assert_eq!(landed, want, "replacements land where the plan moved their pods");

    // A third pod finds no entry left: the same scheduler puts it on the hot node, which by requests
    // is the emptiest — what every replacement would have done without steering.
    let (node, decision) = replace_and_schedule(&fake, &pods).await;
    assert_eq!(decision, "", "no steering entry left");
    assert_eq!(node, HOT, "without steering the scheduler undoes the plan");
    webhook.shutdown().await;
}
