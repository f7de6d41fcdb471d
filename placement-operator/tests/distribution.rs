//! PodDistribution upkeep end to end: the controller runs with the real kube client, watchers and
//! kube-runtime `Controller` against the fake API server, and the tests read what it wrote there.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use placement_core::apportion::Apportionment;
use placement_kube::crd::PodDistribution;
use placement_kube::live::{self, WatchOptions, Watchers};
use placement_operator::context::{Context, Leadership};
use placement_operator::distribution::{self, UpkeepConfig};
use placement_operator::runtime::events::Events;
use placement_testkit::{FakeApiServer, Fault, Verb};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const NS: &str = "shop";
const COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Polls `done` every 25 ms until it holds or `limit` passes; returns whether it held.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

struct World {
    fake: FakeApiServer,
    deployment_uid: String,
    _watchers: Option<Watchers>,
    leader: Option<watch::Sender<bool>>,
    registry: Registry,
    controller: Option<JoinHandle<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(c) = &self.controller {
            c.abort();
        }
    }
}

/// Nodes `od-1`, `od-2` (capacity=on-demand), `spot-1` (capacity=spot), `bare-1` (no capacity label),
/// Deployment `shop/web` and its ReplicaSet `web-h1` (revision 1).
async fn world() -> World {
    let fake = FakeApiServer::start().await.unwrap();
    for crd in placement_kube::crd::all_crds() {
        fake.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})).unwrap();
    for (name, capacity) in
        [("od-1", Some("on-demand")), ("od-2", Some("on-demand")), ("spot-1", Some("spot")), ("bare-1", None)]
    {
        let labels = match capacity {
            Some(c) => json!({"capacity": c}),
            None => json!({}),
        };
        fake.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"}, "conditions": [{"type": "Ready", "status": "True"}]}}))
            .unwrap();
    }
    let d = fake
        .put(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
            "spec": {"replicas": 10, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "app"}]}}}}))
        .unwrap();
    let deployment_uid = d["metadata"]["uid"].as_str().unwrap().to_string();
    let w =
        World { fake, deployment_uid, _watchers: None, leader: None, registry: Registry::default(), controller: None };
    w.replicaset("h1", 1);
    w
}

fn test_config() -> UpkeepConfig {
    UpkeepConfig {
        requeue: Duration::from_millis(300),
        retry: Duration::from_millis(200),
        debounce: Duration::from_millis(20),
        ..UpkeepConfig::default()
    }
}

impl World {
    fn replicaset(&self, hash: &str, revision: u32) {
        self.fake
            .put(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("web-{hash}"), "namespace": NS,
                    "labels": {"app": "web", "pod-template-hash": hash},
                    "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                        "uid": self.deployment_uid, "controller": true}]},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web", "pod-template-hash": hash}}}}))
            .unwrap();
    }

    /// A running, ready pod of revision `hash` on `node`.
    fn pod(&self, name: &str, hash: &str, node: &str) {
        self.fake
            .put(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": NS, "labels": {"app": "web", "pod-template-hash": hash},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("web-{hash}"),
                        "uid": format!("rs-{hash}"), "controller": true}]},
                "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app"}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}))
            .unwrap();
    }

    fn distribution(&self, extra: Value) {
        let mut spec = json!({"targetRef": {"kind": "Deployment", "name": "web"},
            "groups": [
                {"name": "on-demand", "nodeSelector": {"matchLabels": {"capacity": "on-demand"}}, "percent": 80},
                {"name": "spot", "nodeSelector": {"matchLabels": {"capacity": "spot"}}, "percent": 20}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        self.fake
            .put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "PodDistribution",
                "metadata": {"name": "web", "namespace": NS}, "spec": spec}))
            .unwrap();
    }

    /// Starts the live index and the controller; `leader: false` starts it as a standby.
    async fn start(&mut self, leader: bool, config: UpkeepConfig) {
        let client = self.fake.client();
        let (index, watchers) = live::spawn(client.clone(), WatchOptions::default());
        assert!(index.wait_ready(Duration::from_secs(10)).await, "the live index did not sync");
        self._watchers = Some(watchers);
        let leadership = if leader {
            Leadership::always()
        } else {
            let (tx, l) = Leadership::channel();
            self.leader = Some(tx);
            l
        };
        let events = Events::new(client.clone(), "placement-operator", Some("test".into()));
        let eviction_client = self.fake.client_without_retry();
        let ctx = Context { client, eviction_client, index, events, leadership };
        let fut = distribution::controller_with(ctx, &mut self.registry, config);
        self.controller = Some(tokio::spawn(fut));
    }

    fn object(&self) -> Value {
        self.fake.get("placement.dev/v1alpha1", "PodDistribution", NS, "web").unwrap()
    }

    fn status(&self) -> Value {
        self.object().get("status").cloned().unwrap_or(Value::Null)
    }

    /// `(pods, reserved, target)` per group name, from the status.
    fn groups(&self) -> BTreeMap<String, (u64, u64, u64)> {
        self.status()["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                let n = |k: &str| g[k].as_u64().unwrap_or(0);
                (g["name"].as_str().unwrap().to_string(), (n("pods"), n("reserved"), n("target")))
            })
            .collect()
    }

    fn condition(&self, type_: &str) -> Value {
        self.status()["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == type_)
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn pods(&self) -> Vec<Value> {
        self.fake.list("v1", "Pod", Some(NS))
    }

    /// Pod name -> deletion cost, for pods that have one.
    fn costs(&self) -> BTreeMap<String, i64> {
        self.pods()
            .iter()
            .filter_map(|p| {
                let cost = p["metadata"]["annotations"][COST].as_str()?.parse().ok()?;
                Some((p["metadata"]["name"].as_str()?.to_string(), cost))
            })
            .collect()
    }

    fn event_reasons(&self) -> Vec<String> {
        self.fake
            .list("events.k8s.io/v1", "Event", Some(NS))
            .iter()
            .filter_map(|e| e["reason"].as_str().map(str::to_string))
            .collect()
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }
}

fn group(expected: &[(&str, (u64, u64, u64))]) -> BTreeMap<String, (u64, u64, u64)> {
    expected.iter().map(|(n, v)| (n.to_string(), *v)).collect()
}

#[tokio::test]
async fn status_counts_targets_and_drift_for_an_80_20_distribution() {
    let mut w = world().await;
    // 5 on on-demand, 5 on spot, and one on a node in no group.
    for i in 0..5 {
        w.pod(&format!("web-h1-od{i}"), "h1", if i % 2 == 0 { "od-1" } else { "od-2" });
        w.pod(&format!("web-h1-sp{i}"), "h1", "spot-1");
    }
    w.pod("web-h1-bare", "h1", "bare-1");
    // A pod of another workload on spot, and a finished one of this workload: neither counts.
    w.fake
        .put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-1", "namespace": NS, "labels": {"app": "web"}},
            "spec": {"nodeName": "spot-1", "containers": [{"name": "c", "image": "c"}]}, "status": {"phase": "Running"}}))
        .unwrap();
    w.pod("web-h1-done", "h1", "spot-1");
    let mut done = w.fake.get("v1", "Pod", NS, "web-h1-done").unwrap();
    done["status"]["phase"] = json!("Succeeded");
    w.fake.put(done).unwrap();
    w.distribution(json!({}));
    // No periodic requeue within the test: every update below comes from the pod watch.
    w.start(true, UpkeepConfig { requeue: Duration::from_secs(3_600), ..test_config() }).await;

    // target(10) of 80/20 is (8, 2): on-demand is 3 below, spot 3 above.
    let want = group(&[("on-demand", (5, 0, 8)), ("spot", (5, 0, 2))]);
    assert!(wait_until(Duration::from_secs(10), || w.groups() == want).await, "status: {}", w.status());
    let status = w.status();
    assert_eq!(status["observedGeneration"], w.object()["metadata"]["generation"]);
    assert_eq!(status["revision"], "h1");
    assert_eq!(w.condition("Ready")["status"], "True");
    let on = w.condition("OnTarget");
    assert_eq!((on["status"].as_str(), on["reason"].as_str()), (Some("False"), Some("OffTarget")));
    let message = on["message"].as_str().unwrap();
    assert!(message.contains("on-demand: 5 pods, target 8 (-3)"), "{message}");
    assert!(message.contains("spot: 5 pods, target 2 (+3)"), "{message}");
    assert!(message.contains("1 pod is in no group"), "{message}");
    let drift: Vec<i64> = status["groups"].as_array().unwrap().iter().map(|g| g["drift"].as_i64().unwrap()).collect();
    assert_eq!(drift, vec![-3, 3], "drift is a field of each group");
    assert!(wait_until(Duration::from_secs(5), || w.event_reasons().contains(&"OffTarget".to_string())).await);
    assert!(w.metrics().contains("placement_operator_distribution_groups_off_target 2"), "{}", w.metrics());

    // Three more on-demand pods: 8/2 of 10 after the stray and two spot pods go.
    for i in 5..8 {
        w.pod(&format!("web-h1-od{i}"), "h1", "od-2");
    }
    for name in ["web-h1-sp3", "web-h1-sp4", "web-h1-bare"] {
        w.fake.delete("v1", "Pod", NS, name).unwrap();
    }
    // target(11) = (9, 2).
    let want = group(&[("on-demand", (8, 0, 9)), ("spot", (3, 0, 2))]);
    assert!(wait_until(Duration::from_secs(10), || w.groups() == want).await, "status: {}", w.status());
    w.fake.delete("v1", "Pod", NS, "web-h1-sp2").unwrap();
    let want = group(&[("on-demand", (8, 0, 8)), ("spot", (2, 0, 2))]);
    assert!(wait_until(Duration::from_secs(10), || w.groups() == want).await, "status: {}", w.status());
    assert!(wait_until(Duration::from_secs(5), || w.condition("OnTarget")["status"] == "True").await);
    assert!(wait_until(Duration::from_secs(5), || w.event_reasons().contains(&"OnTarget".to_string())).await);
    assert_eq!(
        w.event_reasons().iter().filter(|r| *r == "OffTarget").count(),
        1,
        "one Event per transition, not per reconcile: {:?}",
        w.event_reasons()
    );
    assert!(w.metrics().contains("placement_operator_distribution_groups_off_target 0"), "{}", w.metrics());
}

#[tokio::test]
async fn counts_only_the_newest_revision_during_a_rollout() {
    let mut w = world().await;
    w.replicaset("h2", 2);
    // Old revision: 3 + 3. New revision: 3 on-demand, 1 spot = target(4).
    for i in 0..3 {
        w.pod(&format!("web-h1-od{i}"), "h1", "od-1");
        w.pod(&format!("web-h1-sp{i}"), "h1", "spot-1");
        w.pod(&format!("web-h2-od{i}"), "h2", "od-2");
    }
    w.pod("web-h2-sp0", "h2", "spot-1");
    w.distribution(json!({}));
    w.start(true, test_config()).await;
    let want = group(&[("on-demand", (3, 0, 3)), ("spot", (1, 0, 1))]);
    assert!(wait_until(Duration::from_secs(10), || w.groups() == want).await, "status: {}", w.status());
    assert_eq!(w.status()["revision"], "h2");
    assert_eq!(w.condition("OnTarget")["status"], "True", "{}", w.status());
    // Deletion costs go on the new revision's pods only (the old ReplicaSet is scaled away whole).
    assert!(wait_until(Duration::from_secs(10), || w.costs().len() == 4).await, "{:?}", w.costs());
    assert!(w.costs().keys().all(|k| k.starts_with("web-h2-")), "{:?}", w.costs());

    // A new revision appears: its pods are counted from zero.
    w.replicaset("h3", 3);
    w.pod("web-h3-sp0", "h3", "spot-1");
    let want = group(&[("on-demand", (0, 0, 1)), ("spot", (1, 0, 0))]);
    assert!(wait_until(Duration::from_secs(10), || w.groups() == want).await, "status: {}", w.status());
    assert_eq!(w.status()["revision"], "h3");

    // With revisionScoped off every revision counts: 6 + 5 = 11 pods, target(11) = (9, 2).
    w.distribution(json!({"revisionScoped": false}));
    let want = group(&[("on-demand", (6, 0, 9)), ("spot", (5, 0, 2))]);
    assert!(wait_until(Duration::from_secs(10), || w.groups() == want).await, "status: {}", w.status());
    assert_eq!(w.status()["observedGeneration"], 2);
}

/// Waits until every pod of revision h1 has a cost and the costs are 0..n, then returns them.
async fn settled_costs(w: &World, n: usize) -> BTreeMap<String, i64> {
    let ok = wait_until(Duration::from_secs(15), || {
        let c = w.costs();
        let mut values: Vec<i64> = c.values().copied().collect();
        values.sort();
        c.len() == n && values == (0..n as i64).collect::<Vec<_>>()
    })
    .await;
    assert!(ok, "costs did not settle on 0..{n}: {:?}", w.costs());
    w.costs()
}

fn group_of(name: &str) -> &'static str {
    if name.contains("-sp") { "spot" } else { "on-demand" }
}

#[tokio::test]
async fn deletion_costs_send_over_target_groups_first_and_scale_down_ends_on_target() {
    let mut w = world().await;
    // on-demand 6, spot 4: target(10) = (8, 2), spot is 2 above.
    for i in 0..6 {
        w.pod(&format!("web-h1-od{i}"), "h1", "od-1");
    }
    for i in 0..4 {
        w.pod(&format!("web-h1-sp{i}"), "h1", "spot-1");
    }
    w.distribution(json!({}));
    // A small patch bound: the controller must come back for the rest at once.
    w.start(true, UpkeepConfig { max_cost_patches: 3, ..test_config() }).await;
    let costs = settled_costs(&w, 10).await;
    let mut by_cost: Vec<(&String, &i64)> = costs.iter().collect();
    by_cost.sort_by_key(|(_, c)| **c);
    assert_eq!(group_of(by_cost[0].0), "spot", "{by_cost:?}");
    assert_eq!(group_of(by_cost[1].0), "spot", "{by_cost:?}");
    // Ten pods, ten patches at least (a reconcile that ran before every pod was in the cache may have
    // costed some twice). The counter moves when the API server's answer is back, which can be after
    // the store shows the last patch: wait for it.
    let patched = |w: &World| -> u64 {
        w.metrics()
            .lines()
            .find_map(|l| {
                l.strip_prefix("placement_operator_distribution_deletion_cost_patches_total{outcome=\"patched\"} ")
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let counted = wait_until(Duration::from_secs(5), || patched(&w) >= 10).await;
    assert!(counted, "{} patches\n{}", patched(&w), w.metrics());

    // Settled costs are not patched again.
    let versions = |w: &World| -> Vec<String> {
        w.pods().iter().map(|p| p["metadata"]["resourceVersion"].as_str().unwrap().to_string()).collect()
    };
    let before = versions(&w);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(versions(&w), before, "pods were patched although their costs were right");

    // Scale down as the ReplicaSet controller does (cheapest first) in steps; each step ends on target.
    let ap = Apportionment::new(vec![("on-demand".into(), 80), ("spot".into(), 20)], None).unwrap();
    let pods: Api<Pod> = Api::namespaced(w.fake.client(), NS);
    let mut left = 10usize;
    for step in [2usize, 3, 1] {
        let costs = settled_costs(&w, left).await;
        let mut by_cost: Vec<(String, i64)> = costs.into_iter().collect();
        by_cost.sort_by_key(|(_, c)| *c);
        for (name, _) in by_cost.iter().take(step) {
            pods.delete(name, &DeleteParams::default()).await.unwrap();
        }
        left -= step;
        let mut held = [0u32; 2];
        for p in w.pods() {
            held[usize::from(group_of(p["metadata"]["name"].as_str().unwrap()) == "spot")] += 1;
        }
        assert_eq!(held.to_vec(), ap.target(left as u32), "after scaling down to {left}");
        let t = ap.target(left as u32);
        let want = group(&[
            ("on-demand", (u64::from(t[0]), 0, u64::from(t[0]))),
            ("spot", (u64::from(t[1]), 0, u64::from(t[1]))),
        ]);
        assert!(wait_until(Duration::from_secs(10), || w.groups() == want).await, "status: {}", w.status());
    }
}

/// A reservation entry as the webhook writes it.
fn reservation(id: &str, group: &str, expires: jiff::Timestamp) -> Value {
    json!({"id": id, "workload": {"kind": "Deployment", "namespace": NS, "name": "web"}, "revision": "h1",
        "group": group, "expires": expires.to_string()})
}

#[tokio::test]
async fn strict_mode_expires_stale_reservations_and_keeps_the_webhooks_fields() {
    let mut w = world().await;
    for i in 0..4 {
        w.pod(&format!("web-h1-od{i}"), "h1", "od-1");
    }
    w.distribution(json!({"strict": true}));
    let now = jiff::Timestamp::now();
    let later = now + jiff::SignedDuration::from_mins(10);
    let past = now - jiff::SignedDuration::from_mins(1);
    let mut d = w.object();
    d["status"] = json!({
    "reservations": [
        reservation("expired", "spot", past),
        reservation("live", "spot", later),
        reservation("seen-long-ago", "on-demand", later),
        reservation("seen-just-now", "on-demand", later),
    ],
    "confirmed": [
        {"id": "seen-long-ago", "until": past.to_string()},
        {"id": "seen-just-now", "until": later.to_string()},
    ]});
    w.fake.put(d).unwrap();
    w.start(true, test_config()).await;

    let ids = |w: &World, field: &str| -> Vec<String> {
        w.status()[field].as_array().into_iter().flatten().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    };
    assert!(
        wait_until(Duration::from_secs(10), || ids(&w, "reservations") == ["live", "seen-just-now"]).await,
        "status: {}",
        w.status()
    );
    assert_eq!(ids(&w, "confirmed"), ["seen-just-now"]);
    // 4 pods on on-demand plus the live spot reservation: 5 in all, target(5) = (4, 1). The confirmed
    // reservation is not counted again.
    let want = group(&[("on-demand", (4, 0, 4)), ("spot", (0, 1, 1))]);
    assert!(wait_until(Duration::from_secs(10), || w.groups() == want).await, "status: {}", w.status());
    assert!(w.metrics().contains("placement_operator_distribution_reservations_expired_total 2"), "{}", w.metrics());

    // A webhook replica adds a reservation the way it does (replace_status with the object read);
    // then a pod changes and the operator writes its fields again: the webhook's entries survive.
    let api: Api<PodDistribution> = Api::namespaced(w.fake.client(), NS);
    let mut current = api.get_status("web").await.unwrap();
    let status = current.status.as_mut().unwrap();
    status.reservations.push(serde_json::from_value(reservation("new", "on-demand", later)).unwrap());
    api.replace_status("web", &PostParams::default(), &current).await.unwrap();
    w.pod("web-h1-od4", "h1", "od-2");
    // 5 pods and 2 live reservations: target(7) = (6, 1).
    let want = group(&[("on-demand", (5, 1, 6)), ("spot", (0, 1, 1))]);
    assert!(wait_until(Duration::from_secs(10), || w.groups() == want).await, "status: {}", w.status());
    assert_eq!(ids(&w, "reservations"), ["live", "seen-just-now", "new"]);
    assert_eq!(ids(&w, "confirmed"), ["seen-just-now"]);
}

#[tokio::test]
async fn a_standby_writes_nothing_until_it_leads() {
    let mut w = world().await;
    for i in 0..3 {
        w.pod(&format!("web-h1-sp{i}"), "h1", "spot-1");
    }
    w.distribution(json!({"strict": true}));
    let mut d = w.object();
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(1);
    d["status"] = json!({"reservations": [reservation("expired", "spot", past)], "confirmed": []});
    w.fake.put(d).unwrap();
    let version = w.object()["metadata"]["resourceVersion"].clone();
    // No periodic requeue within the test: leading must trigger the reconcile by itself.
    w.start(false, UpkeepConfig { requeue: Duration::from_secs(3_600), ..test_config() }).await;
    // Several requeue periods as a standby.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    w.pod("web-h1-sp3", "h1", "spot-1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.object()["metadata"]["resourceVersion"], version, "a standby wrote the distribution");
    assert!(w.costs().is_empty(), "a standby patched pods: {:?}", w.costs());
    assert!(w.event_reasons().is_empty(), "a standby published Events: {:?}", w.event_reasons());

    w.leader.as_ref().unwrap().send(true).unwrap();
    // target(4) = (3, 1).
    let want = group(&[("on-demand", (0, 0, 3)), ("spot", (4, 0, 1))]);
    assert!(wait_until(Duration::from_secs(5), || w.groups() == want).await, "status: {}", w.status());
    assert!(w.status()["reservations"].as_array().unwrap().is_empty(), "{}", w.status());
    assert!(wait_until(Duration::from_secs(5), || w.costs().len() == 4).await);
}

#[tokio::test]
async fn an_invalid_spec_is_ready_false_naming_the_field() {
    let mut w = world().await;
    w.pod("web-h1-sp0", "h1", "spot-1");
    // The fake does not run the CRD's CEL rules, so the controller's own validation is what shows.
    w.distribution(json!({"groups": [
        {"name": "a", "nodeSelector": {"matchLabels": {"capacity": "on-demand"}}, "weight": 1},
        {"name": "a", "nodeSelector": {"matchLabels": {"capacity": "spot"}}, "weight": 1}]}));
    w.start(true, test_config()).await;
    assert!(wait_until(Duration::from_secs(10), || w.condition("Ready")["status"] == "False").await, "{}", w.status());
    let ready = w.condition("Ready");
    assert_eq!(ready["reason"], "InvalidSpec");
    let message = ready["message"].as_str().unwrap();
    assert!(message.starts_with("spec.groups[1].name:"), "{message}");
    assert_eq!(w.status()["observedGeneration"], 1);
    assert!(wait_until(Duration::from_secs(5), || w.event_reasons().contains(&"InvalidSpec".to_string())).await);
    assert!(w.costs().is_empty(), "pods of an invalid distribution were patched");

    // Fixed: Ready again, for the new generation.
    w.distribution(json!({}));
    assert!(wait_until(Duration::from_secs(10), || w.condition("Ready")["status"] == "True").await, "{}", w.status());
    assert_eq!(w.status()["observedGeneration"], 2);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        w.event_reasons().iter().filter(|r| *r == "InvalidSpec").count(),
        1,
        "one InvalidSpec Event, not one per reconcile"
    );
}

#[tokio::test]
async fn conflicts_on_status_writes_are_retried() {
    let mut w = world().await;
    w.pod("web-h1-od0", "h1", "od-1");
    w.distribution(json!({"strict": true}));
    let mut d = w.object();
    let now = jiff::Timestamp::now();
    d["status"] = json!({"reservations": [
        reservation("expired", "spot", now - jiff::SignedDuration::from_mins(1)),
        reservation("live", "spot", now + jiff::SignedDuration::from_mins(10))], "confirmed": []});
    w.fake.put(d).unwrap();
    // Two 409s on the ledger write (replace_status), then one on the server-side apply.
    w.fake.faults().inject(Fault::conflict().on(Verb::Update).resource("poddistributions/status").times(2));
    w.fake.faults().inject(Fault::conflict().on(Verb::Patch).resource("poddistributions/status").times(1));
    w.start(true, test_config()).await;
    // One pod and one live reservation: target(2) of 80/20 is (2, 0).
    let want = group(&[("on-demand", (1, 0, 2)), ("spot", (0, 1, 0))]);
    assert!(wait_until(Duration::from_secs(10), || w.groups() == want).await, "status: {}", w.status());
    let ids: Vec<String> =
        w.status()["reservations"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["live"]);
    assert_eq!(w.fake.faults().hits(), 3, "every injected conflict was met");
    // The ledger conflicts were absorbed inside one reconcile; the apply conflict failed one reconcile.
    assert!(
        w.metrics().contains("placement_operator_distribution_reconcile_errors_total{reason=\"conflict\"} 1"),
        "{}",
        w.metrics()
    );
    assert!(w.event_reasons().contains(&"ReconcileFailed".to_string()), "{:?}", w.event_reasons());
}

#[tokio::test]
async fn a_relabelled_node_moves_its_pods_on_the_next_periodic_reconcile() {
    let mut w = world().await;
    for i in 0..4 {
        w.pod(&format!("web-h1-od{i}"), "h1", "od-1");
    }
    w.pod("web-h1-x0", "h1", "bare-1");
    w.distribution(json!({}));
    w.start(true, test_config()).await;
    // target(4) = (3, 1): the pod in no group does not count.
    let want = group(&[("on-demand", (4, 0, 3)), ("spot", (0, 0, 1))]);
    assert!(wait_until(Duration::from_secs(10), || w.groups() == want).await, "status: {}", w.status());
    assert!(w.condition("OnTarget")["message"].as_str().unwrap().contains("1 pod is in no group"));
    // No pod changes: only the node's labels do (watched by the live index, found by the requeue).
    let mut node = w.fake.get("v1", "Node", "", "bare-1").unwrap();
    node["metadata"]["labels"] = json!({"capacity": "spot"});
    w.fake.put(node).unwrap();
    // target(5) = (4, 1).
    let want = group(&[("on-demand", (4, 0, 4)), ("spot", (1, 0, 1))]);
    assert!(wait_until(Duration::from_secs(10), || w.groups() == want).await, "status: {}", w.status());
    assert_eq!(w.condition("OnTarget")["status"], "True");
}

#[tokio::test]
async fn of_two_distributions_of_one_workload_only_the_older_applies() {
    let mut w = world().await;
    for i in 0..2 {
        w.pod(&format!("web-h1-od{i}"), "h1", "od-1");
        w.pod(&format!("web-h1-sp{i}"), "h1", "spot-1");
    }
    w.distribution(json!({}));
    // Created a second later: creation times have a resolution of one second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    w.fake
        .put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "PodDistribution",
            "metadata": {"name": "web-too", "namespace": NS},
            "spec": {"targetRef": {"kind": "Deployment", "name": "web"},
                "groups": [
                    {"name": "spot", "nodeSelector": {"matchLabels": {"capacity": "spot"}}, "weight": 4},
                    {"name": "on-demand", "nodeSelector": {"matchLabels": {"capacity": "on-demand"}}, "weight": 1}]}}))
        .unwrap();
    w.start(true, test_config()).await;
    let second = |w: &World| w.fake.get("placement.dev/v1alpha1", "PodDistribution", NS, "web-too").unwrap();
    let ready = |w: &World| {
        second(w)["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready").cloned()
    };
    assert!(
        wait_until(Duration::from_secs(10), || ready(&w).is_some_and(|c| c["status"] == "False")).await,
        "{}",
        second(&w)
    );
    let c = ready(&w).unwrap();
    assert_eq!(c["reason"], "TargetConflict");
    assert!(c["message"].as_str().unwrap().contains("PodDistribution shop/web is older"), "{c}");
    assert_eq!(w.condition("Ready")["status"], "True");
    // The costs are the older one's: of 2 + 2 pods, target(4) = (3, 1) puts spot above target (the
    // younger one would put on-demand there). They stay put: no patching back and forth.
    let costs = settled_costs(&w, 4).await;
    let cheapest = costs.iter().min_by_key(|(_, c)| **c).unwrap().0.clone();
    assert_eq!(group_of(&cheapest), "spot", "{costs:?}");
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(w.costs(), costs);
    }
}
