//! No admission waits on another workload's work: while admissions of one workload are made slow (the
//! decider's test hook, which runs where a decision does its expensive work), another namespace's pods
//! are placed and `/healthz` answers, through the real server (real TLS, the fake API server calling the
//! webhook as a cluster would). More slow admissions than the runtime has workers: the slow part of a
//! decision steps off the worker that runs it (`block_in_place`), so the others keep serving connections
//! and probes. The same holds in strict mode,
//! where decisions are made by rounds (one per PodDistribution) rather than by the requests themselves.
//!
//! A pod whose review is larger than `INLINE_BODY_MAX` is read on the blocking pool, and its slow part
//! runs there too: the same holds for such pods.
//!
//! The bound asserted (1 s, against admissions held for 4 s) tells "did not wait" from "waited" on a
//! loaded machine; the latencies measured are printed (`--nocapture`).

mod common;

use common::{certificates, register_webhook_with_timeout, start_webhook};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use placement_core::model::WorkloadRef;
use placement_testkit::FakeApiServer;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STRATEGY: &str = "base=1,weight=1,nodeSelector=capacity:on-demand;weight=3,nodeSelector=capacity:spot";
const HELD: Duration = Duration::from_secs(4);

/// Namespaces whose admissions the hook holds.
const SLOW: [&str; 4] = ["slow-0", "slow-1", "slow-2", "slow-3"];

fn seed(fake: &FakeApiServer, strict: bool) {
    for crd in placement_kube::crd::all_crds() {
        fake.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    for (name, capacity) in [("od-a", "on-demand"), ("spot-b", "spot")] {
        fake.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"capacity": capacity}},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"}, "conditions": [{"type": "Ready", "status": "True"}]}}))
            .unwrap();
    }
    for ns in SLOW.into_iter().chain(["shop"]) {
        fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).unwrap();
        fake.put(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns,
                "annotations": {"placement.dev/strategy": STRATEGY}},
            "spec": {"replicas": 20, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}}))
            .unwrap();
        fake.put(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-h1", "namespace": ns,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d", "controller": true}]}}))
            .unwrap();
        if strict && ns != "shop" {
            fake.put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "PodDistribution",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "strict": true,
                    "groups": [{"name": "on-demand", "nodeSelector": {"matchLabels": {"capacity": "on-demand"}}, "weight": 1},
                               {"name": "spot", "nodeSelector": {"matchLabels": {"capacity": "spot"}}, "weight": 3}]}}))
                .unwrap();
        }
    }
}

/// A pod of `web`; with `padding` bytes of environment, for a review past `INLINE_BODY_MAX`.
fn pod(padding: usize) -> Pod {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-h1-", "labels": {"app": "web", "pod-template-hash": "h1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-h1", "uid": "rs", "controller": true}]},
        "spec": {"tolerations": [{"key": "spot", "operator": "Exists"}],
                 "containers": [{"name": "app", "image": "app", "resources": {"requests": {"cpu": "100m"}},
                     "env": [{"name": "PADDING", "value": "x".repeat(padding)}]}]}}))
    .unwrap()
}

fn decision(p: &Pod) -> Option<String> {
    p.metadata.annotations.as_ref()?.get("placement.dev/decision").cloned()
}

/// `GET /healthz` over plain HTTP/1.0; the status line.
async fn healthz(address: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.0\r\nhost: localhost\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_workload_holds_up_neither_another_namespace_nor_the_probes() {
    slow_workloads_hold_up_nothing_else(false, 0).await;
}

/// Four slow admissions whose reviews are past `INLINE_BODY_MAX`, so read and decided on the blocking pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_large_admissions_hold_up_neither_another_namespace_nor_the_probes() {
    slow_workloads_hold_up_nothing_else(false, placement_webhook::server::INLINE_BODY_MAX + 1).await;
}

/// Four strict-mode rounds held at once, each in its own namespace: more rounds than workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_strict_rounds_hold_up_neither_another_namespace_nor_the_probes() {
    slow_workloads_hold_up_nothing_else(true, 0).await;
}

async fn slow_workloads_hold_up_nothing_else(strict: bool, padding: usize) {
    let fake = FakeApiServer::start().await.unwrap();
    seed(&fake, strict);
    let (certs, cert_pem) = certificates();
    let webhook = start_webhook(&fake, certs.path(), |c| c.deadline = Duration::from_secs(8)).await;
    register_webhook_with_timeout(&fake, webhook.address.port(), &cert_pem, 10);
    let hook = Arc::new(|w: &WorkloadRef| {
        if w.namespace.starts_with("slow-") {
            std::thread::sleep(HELD);
        }
    });
    webhook.admission.decider().set_expensive_phase_hook(hook);

    // Four slow admissions in flight: more than the runtime's two workers.
    let started = Instant::now();
    let slow: Vec<_> = SLOW
        .into_iter()
        .map(|ns| {
            let pods: Api<Pod> = Api::namespaced(fake.client(), ns);
            tokio::spawn(async move { pods.create(&PostParams::default(), &pod(padding)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pods: Api<Pod> = Api::namespaced(fake.client(), "shop");
    let before = Instant::now();
    let placed = pods.create(&PostParams::default(), &pod(0)).await.unwrap();
    let admission_took = before.elapsed();
    let before = Instant::now();
    let status = healthz(webhook.probe_address).await;
    let probe_took = before.elapsed();
    println!(
        "while 4 admissions are held {HELD:?}: another namespace's admission {admission_took:?}, /healthz {probe_took:?}"
    );

    assert!(slow.iter().all(|h| !h.is_finished()), "the slow admissions are still held");
    assert!(decision(&placed).is_some_and(|d| d.contains("strategy annotation on Deployment/shop/web")), "{placed:?}");
    assert!(admission_took < Duration::from_secs(1), "another namespace's admission waited {admission_took:?}");
    assert!(status.contains(" 200"), "{status}");
    assert!(probe_took < Duration::from_secs(1), "/healthz waited {probe_took:?}");

    for h in slow {
        let created = h.await.unwrap().unwrap();
        let decided = decision(&created);
        assert!(decided.is_some(), "the slow admissions are placed in the end: {created:?}");
        if strict {
            assert!(decided.is_some_and(|d| d.contains("PodDistribution")), "placed by the strict PodDistribution");
        }
    }
    assert!(started.elapsed() >= HELD, "the hook held them");
    let placed_slow: usize = SLOW.iter().map(|ns| fake.list("v1", "Pod", Some(ns)).len()).sum();
    assert_eq!(placed_slow, 4);
}
