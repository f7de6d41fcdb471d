//! Every log line of an admission carries its uid: the `admission` span is opened as the review
//! arrives and filled in as the request is read (uid, namespace, pod, workload), locally and in strict
//! mode's rounds, which run as their own tasks. The log lines are captured with the fmt layer the binary
//! uses, at debug level (`placement_testkit::logs`).

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use placement_core::ledger::RESERVATION_ID_MAX;
use placement_kube::crd::PodDistribution;
use placement_kube::live::{LiveIndex, SharedIndex};
use placement_testkit::FakeApiServer;
use placement_testkit::logs::CapturedLogs;
use placement_webhook::admission::{Admission, SPAN_FIELD_MAX};
use placement_webhook::decide::{Decider, StaticRules};
use placement_webhook::metrics::AdmissionMetrics;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const STRATEGY: &str = "base=1,weight=1,nodeSelector=capacity:on-demand;weight=3,nodeSelector=capacity:spot";

fn objects(strategy: &str) -> Vec<Value> {
    let node = |name: &str, capacity: &str| {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"capacity": capacity}},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                       "conditions": [{"type": "Ready", "status": "True"}]}})
    };
    vec![
        node("od-a", "on-demand"),
        node("spot-b", "spot"),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "annotations": {"placement.dev/strategy": strategy}},
            "spec": {"replicas": 8, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-h1", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d", "controller": true}]}}),
    ]
}

fn index(objects: &[Value]) -> SharedIndex {
    let mut index = LiveIndex::new();
    for o in objects {
        match o["kind"].as_str().unwrap() {
            "Node" => index.apply_node(&serde_json::from_value(o.clone()).unwrap()),
            "Deployment" => index.apply_deployment(&serde_json::from_value(o.clone()).unwrap()),
            "ReplicaSet" => index.apply_replicaset(&serde_json::from_value(o.clone()).unwrap()),
            _ => {}
        }
    }
    SharedIndex::from_index(index)
}

/// A pod of `web` as its ReplicaSet creates it; `selector` is the nodeSelector its owner wrote.
fn pod(selector: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-h1-", "namespace": "shop", "labels": {"app": "web", "pod-template-hash": "h1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-h1", "uid": "rs", "controller": true}]},
        "spec": {"nodeSelector": selector, "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "app", "image": "app", "resources": {"requests": {"cpu": "100m"}}}]}})
}

fn review(uid: &str, pod: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "shop", "operation": "CREATE", "object": pod}}))
    .unwrap()
}

fn admission(index: SharedIndex, rules: StaticRules) -> Admission {
    let decider = Arc::new(Decider::new(index, Arc::new(rules), Duration::from_secs(60)));
    Admission::new(decider, AdmissionMetrics::register(&mut Registry::default()), Duration::from_secs(5))
}

/// Every line carries the `admission` span with this uid; there is at least one line.
fn assert_all_carry(lines: &[String], uid: &str) {
    assert!(!lines.is_empty(), "no log line at all for {uid}");
    for line in lines {
        assert!(
            line.contains("admission{") && line.contains(&format!("uid={uid} ")),
            "a line without uid {uid}: {line}"
        );
    }
}

#[test]
fn every_line_of_a_local_admission_carries_its_uid_and_what_is_known() {
    let captured = CapturedLogs::new();
    let admission = admission(index(&objects(STRATEGY)), StaticRules::default());
    tracing::subscriber::with_default(captured.subscriber(), || {
        // Placed: the decision's line names the workload the decider resolved.
        admission.review(&review("uid-placed", pod(json!({}))));
        let lines = captured.take();
        assert_all_carry(&lines, "uid-placed");
        let decided = lines.iter().find(|l| l.contains("decided")).expect("a line from the decider");
        assert!(decided.contains("namespace=shop") && decided.contains("pod=web-h1-"), "{decided}");
        assert!(decided.contains("workload=Deployment/shop/web"), "{decided}");
        assert!(lines.iter().any(|l| l.contains("placed") && l.contains("outcome=\"placed\"")), "{lines:#?}");

        // A pod whose own nodeSelector no group can satisfy: left alone, and why, under its uid.
        admission.review(&review("uid-pinned", pod(json!({"capacity": "somewhere-else"}))));
        let lines = captured.take();
        assert_all_carry(&lines, "uid-pinned");
        assert!(lines.iter().any(|l| l.contains("left unmutated") && l.contains("no other group")), "{lines:#?}");

        // A malformed review still logs inside the span (no uid to give it).
        admission.review(br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#);
        let lines = captured.take();
        assert!(!lines.is_empty());
        for line in &lines {
            assert!(line.contains("admission{") && line.contains("outcome=\"malformed\""), "{line}");
        }
    });
}

#[test]
fn an_invalid_rule_fails_open_under_the_uid() {
    let captured = CapturedLogs::new();
    let admission = admission(index(&objects("weight=1,nodeSelector=capacity")), StaticRules::default());
    tracing::subscriber::with_default(captured.subscriber(), || {
        admission.review(&review("uid-bad-rule", pod(json!({}))));
    });
    let lines = captured.take();
    assert_all_carry(&lines, "uid-bad-rule");
    assert!(
        lines.iter().any(|l| l.contains("admitted unmutated") && l.contains("outcome=\"fail-open\"")),
        "{lines:#?}"
    );
}

#[test]
fn a_huge_uid_is_cut_in_every_line() {
    let captured = CapturedLogs::new();
    let admission = admission(index(&objects(STRATEGY)), StaticRules::default());
    let uid = "u".repeat(100_000);
    tracing::subscriber::with_default(captured.subscriber(), || {
        admission.review(&review(&uid, pod(json!({}))));
    });
    let lines = captured.take();
    assert!(!lines.is_empty());
    let cut = format!("uid={}… ", "u".repeat(RESERVATION_ID_MAX - 1));
    for line in &lines {
        assert!(line.contains(&cut), "the uid is not cut to {RESERVATION_ID_MAX} characters: {:.300}", line);
        assert!(line.len() < 4 * SPAN_FIELD_MAX + 1_000, "a line of {} bytes", line.len());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn strict_rounds_log_under_the_round_and_each_decision_under_its_uid() {
    let fake = FakeApiServer::start().await.unwrap();
    for crd in placement_kube::crd::all_crds() {
        fake.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    let stored = fake
        .put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "PodDistribution",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "strict": true,
                "groups": [{"name": "on-demand", "nodeSelector": {"matchLabels": {"capacity": "on-demand"}}, "weight": 1, "base": 1},
                           {"name": "spot", "nodeSelector": {"matchLabels": {"capacity": "spot"}}, "weight": 3}]}}))
        .unwrap();
    let distribution: PodDistribution = serde_json::from_value(stored).unwrap();
    let mut cluster = objects(STRATEGY);
    cluster[2]["metadata"]["annotations"] = json!({});
    let rules = StaticRules { distributions: vec![Arc::new(distribution)], ..StaticRules::default() };
    let admission = admission(index(&cluster), rules).with_client(fake.client());

    let captured = CapturedLogs::new();
    let _default = tracing::subscriber::set_default(captured.subscriber());
    let uids = ["strict-0", "strict-1", "strict-2"];
    let bodies: Vec<Vec<u8>> = uids.iter().map(|uid| review(uid, pod(json!({})))).collect();
    let answers = futures::future::join_all(bodies.iter().map(|body| admission.review_async(body))).await;
    drop(_default);
    for answer in &answers {
        let answer: Value = serde_json::from_slice(answer).unwrap();
        assert!(answer["response"]["patch"].is_string(), "strict mode placed the pod: {answer}");
    }
    let lines = captured.take();
    for uid in uids {
        let decided: Vec<_> =
            lines.iter().filter(|l| l.contains("decided") && l.contains(&format!("uid={uid} "))).collect();
        assert_eq!(decided.len(), 1, "one decision line for {uid}: {lines:#?}");
        assert!(decided[0].contains("strict_round{ledger="), "decided inside a round: {}", decided[0]);
        assert!(decided[0].contains("workload=Deployment/shop/web"), "{}", decided[0]);
    }
    let pods: Api<Pod> = Api::namespaced(fake.client(), "shop");
    assert!(pods.list(&Default::default()).await.unwrap().items.is_empty(), "reviews create nothing");
}
