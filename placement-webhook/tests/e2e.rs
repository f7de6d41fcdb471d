//! The webhook end to end: the fake API server calls it over real TLS on pod CREATE, exactly as a
//! cluster does, and the pods come out placed.

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use placement_core::apportion::{Apportionment, Base};
use placement_kube::testkit::FakeApiServer;
use placement_webhook::server::{self, ServerConfig};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const STRATEGY: &str = "base=1,weight=1,nodeSelector=capacity:on-demand;weight=3,nodeSelector=capacity:spot";

struct Setup {
    fake: FakeApiServer,
    webhook: server::RunningServer,
    _certs: tempfile::TempDir,
}

async fn setup() -> Setup {
    let fake = FakeApiServer::start().await.unwrap();
    for crd in placement_kube::crd::all_crds() {
        fake.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})).unwrap();
    for (name, capacity) in [("od-a", "on-demand"), ("od-b", "on-demand"), ("spot-c", "spot")] {
        fake.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"capacity": capacity}},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"}, "conditions": [{"type": "Ready", "status": "True"}]}}))
            .unwrap();
    }
    fake.put(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop",
            "annotations": {"placement.dev/strategy": STRATEGY}},
        "spec": {"replicas": 20, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}}))
        .unwrap();
    fake.put(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-h1", "namespace": "shop",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d", "controller": true}]}}))
        .unwrap();

    let certs = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = key.cert.pem();
    std::fs::write(certs.path().join("tls.crt"), &cert_pem).unwrap();
    std::fs::write(certs.path().join("tls.key"), key.signing_key.serialize_pem()).unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        probe_listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: certs.path().join("tls.crt"),
        tls_key: certs.path().join("tls.key"),
        ..ServerConfig::default()
    };
    let webhook = server::start(config, fake.client()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !webhook.readiness.is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook did not become ready: {:?}",
            webhook.readiness.missing()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ca = base64::engine::general_purpose::STANDARD.encode(cert_pem);
    fake.put(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "placement"},
        "webhooks": [{"name": "pods.placement.dev", "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
            "failurePolicy": "Ignore", "timeoutSeconds": 3, "reinvocationPolicy": "IfNeeded",
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "clientConfig": {"url": format!("https://localhost:{}/mutate", webhook.address.port()), "caBundle": ca}}]}))
        .unwrap();
    Setup { fake, webhook, _certs: certs }
}

fn pod() -> Pod {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-h1-", "labels": {"app": "web", "pod-template-hash": "h1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-h1", "uid": "rs", "controller": true}]},
        "spec": {"tolerations": [{"key": "spot", "operator": "Exists"}],
                 "containers": [{"name": "app", "image": "app", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}))
    .unwrap()
}

#[tokio::test]
async fn a_concurrent_burst_is_placed_exactly_on_target() {
    let s = setup().await;
    let pods: Api<Pod> = Api::namespaced(s.fake.client(), "shop");
    // Bursts of 1, 2, 4, 8 and 5, each created concurrently, as a ReplicaSet controller does.
    for burst in [1usize, 2, 4, 8, 5] {
        let creates = (0..burst).map(|_| {
            let pods = pods.clone();
            async move { pods.create(&PostParams::default(), &pod()).await }
        });
        for created in futures::future::join_all(creates).await {
            created.unwrap();
        }
    }
    let all: Vec<Value> = s.fake.list("v1", "Pod", Some("shop"));
    assert_eq!(all.len(), 20);
    let mut by_group: BTreeMap<String, u32> = BTreeMap::new();
    for p in &all {
        let group = p.pointer("/spec/nodeSelector/capacity").and_then(Value::as_str).unwrap_or("unplaced");
        *by_group.entry(group.to_string()).or_default() += 1;
        let decision = p.pointer("/metadata/annotations/placement.dev~1decision").and_then(Value::as_str).unwrap_or("");
        assert!(decision.starts_with("strategy annotation on Deployment/shop/web: "), "{decision}");
        assert!(p.pointer("/metadata/annotations/placement.dev~1reservation").is_some());
        // The user's own fields are kept.
        assert_eq!(p.pointer("/spec/tolerations/0/key").and_then(Value::as_str), Some("spot"));
    }
    let want = Apportionment::new(vec![("on-demand".into(), 1), ("spot".into(), 3)], Some(Base { group: 0, count: 1 }))
        .unwrap()
        .target(20);
    assert_eq!(by_group.get("on-demand").copied().unwrap_or(0), want[0], "{by_group:?}");
    assert_eq!(by_group.get("spot").copied().unwrap_or(0), want[1], "{by_group:?}");
    s.webhook.shutdown().await;
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_a_pinned_pod_is_kept() {
    let s = setup().await;
    let pods: Api<Pod> = Api::namespaced(s.fake.client(), "shop");
    let dry = pods.create(&PostParams { dry_run: true, ..Default::default() }, &pod()).await.unwrap();
    assert!(dry.spec.unwrap().node_selector.is_some(), "a dry run is answered with the placement");
    assert!(s.fake.list("v1", "Pod", Some("shop")).is_empty());
    assert_eq!(s.webhook.admission.decider().index().read().ledger().len(), 0, "and reserves nothing");

    let mut pinned = pod();
    pinned.spec.as_mut().unwrap().node_selector = Some([("capacity".to_string(), "gpu".to_string())].into());
    let created = pods.create(&PostParams::default(), &pinned).await.unwrap();
    assert_eq!(created.spec.unwrap().node_selector.unwrap()["capacity"], "gpu", "the user's pin is kept");
    assert!(!created.metadata.annotations.unwrap_or_default().contains_key("placement.dev/decision"));
    assert_eq!(s.webhook.admission.decider().index().read().ledger().len(), 0, "the conflict released its reservation");
    s.webhook.shutdown().await;
}

#[tokio::test]
async fn a_stopped_webhook_fails_open() {
    let s = setup().await;
    let pods: Api<Pod> = Api::namespaced(s.fake.client(), "shop");
    s.webhook.shutdown().await;
    let created = pods.create(&PostParams::default(), &pod()).await.unwrap();
    assert!(created.spec.unwrap().node_selector.is_none(), "failurePolicy Ignore: admitted unmutated");
}
