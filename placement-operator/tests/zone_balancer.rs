//! The ZoneBalancer controller (operator mode) end to end: the real kube client, kube-runtime
//! Controller and live-index watchers against the fake API server, which stores what the controller
//! writes. Every wait is bounded.

use placement_kube::live::{self, SharedIndex, WatchOptions, Watchers};
use placement_operator::runtime::events::Events;
use placement_operator::zone_balancer::{self, DECISION_ANNOTATION, Options};
use placement_operator::{Context, Leadership};
use placement_testkit::{FakeApiServer, Fault, Verb};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const ZONE: &str = "topology.kubernetes.io/zone";
const NS: &str = "shop";

struct Cluster {
    server: FakeApiServer,
    index: SharedIndex,
    _watchers: Watchers,
}

fn node(name: &str, zone: &str, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {ZONE: zone, "disk": "ssd"}},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

/// A cluster with one node per `(zone, ready)` and the namespaces `shop` and `other`.
async fn cluster(zones: &[(&str, bool)]) -> Cluster {
    let server = FakeApiServer::start().await.unwrap();
    for crd in placement_kube::crd::all_crds() {
        server.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    for ns in [NS, "other"] {
        server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).unwrap();
    }
    for (zone, ready) in zones {
        server.put(node(&format!("node-{zone}"), zone, *ready)).unwrap();
    }
    let (index, watchers) = live::spawn(server.client(), WatchOptions::default());
    assert!(index.wait_ready(Duration::from_secs(10)).await, "the live index did not sync");
    Cluster { server, index, _watchers: watchers }
}

fn options(min_move_interval: Duration) -> Options {
    Options {
        min_move_interval,
        resync: Duration::from_millis(200),
        error_backoff: Duration::from_millis(100),
        debounce: Duration::from_millis(20),
    }
}

/// Starts a controller instance; abort the handle to stop it.
fn start(c: &Cluster, leadership: Leadership, opts: Options) -> (JoinHandle<()>, Registry) {
    let client = c.server.client();
    let ctx = Context {
        client: client.clone(),
        eviction_client: c.server.client_without_retry(),
        index: c.index.clone(),
        events: Events::new(client, "placement-operator", Some("test-0".into())),
        leadership,
    };
    let mut registry = Registry::default();
    let fut = zone_balancer::controller_with(ctx, &mut registry, opts);
    (tokio::spawn(fut), registry)
}

fn balancer(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "placement.dev/v1alpha1", "kind": "ZoneBalancer", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn operator_spec() -> Value {
    json!({"selector": {"matchLabels": {"balance": "yes"}}, "mode": "operator"})
}

fn workload(kind: &str, ns: &str, name: &str, replicas: u32, template_spec: Value) -> Value {
    let mut spec = template_spec;
    spec["containers"] = json!([{"name": "app", "image": "registry.invalid/app:1",
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]);
    json!({"apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "namespace": ns, "labels": {"balance": "yes"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}})
}

fn deployment(ns: &str, name: &str) -> Value {
    workload("Deployment", ns, name, 1, json!({}))
}

fn get(c: &Cluster, kind: &str, ns: &str, name: &str) -> Value {
    c.server.get("apps/v1", kind, ns, name).unwrap_or_else(|| panic!("{kind} {ns}/{name} exists"))
}

fn pinned_zone(w: &Value) -> Option<String> {
    w.pointer(&format!("/spec/template/spec/nodeSelector/{}", ZONE.replace('/', "~1")))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn decision(w: &Value) -> Option<Value> {
    let text = w.pointer(&format!("/metadata/annotations/{}", DECISION_ANNOTATION.replace('/', "~1")))?.as_str()?;
    serde_json::from_str(text).ok()
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string()
}

fn deployments(c: &Cluster, ns: &str) -> Vec<Value> {
    c.server.list("apps/v1", "Deployment", Some(ns))
}

/// Workloads per pinned zone among `names`.
fn spread(c: &Cluster, ns: &str, names: &[&str]) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for d in deployments(c, ns) {
        if names.contains(&d["metadata"]["name"].as_str().unwrap_or_default()) {
            *out.entry(pinned_zone(&d).unwrap_or_else(|| "-".into())).or_default() += 1;
        }
    }
    out
}

fn zb_status(c: &Cluster, ns: &str, name: &str) -> Value {
    c.server.get("placement.dev/v1alpha1", "ZoneBalancer", ns, name).unwrap()["status"].clone()
}

fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == type_).cloned().unwrap_or(Value::Null)
}

fn events(c: &Cluster, ns: &str, reason: &str) -> Vec<Value> {
    c.server.list("events.k8s.io/v1", "Event", Some(ns)).into_iter().filter(|e| e["reason"] == reason).collect()
}

fn metrics_text(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

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

const LIMIT: Duration = Duration::from_secs(10);

fn abc() -> [(&'static str, bool); 3] {
    [("a", true), ("b", true), ("c", true)]
}

#[tokio::test]
async fn six_deployments_are_pinned_two_per_zone_once_with_reasons() {
    let c = cluster(&abc()).await;
    let (handle, registry) = start(&c, Leadership::always(), options(Duration::from_secs(3600)));
    c.server.put(balancer(NS, "spread", operator_spec())).unwrap();
    let names = ["w0", "w1", "w2", "w3", "w4", "w5"];
    for n in names {
        c.server.put(deployment(NS, n)).unwrap();
    }
    let want = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 2), ("c".to_string(), 2)]);
    assert!(wait_until(LIMIT, || spread(&c, NS, &names) == want).await, "spread: {:?}", spread(&c, NS, &names));

    for d in deployments(&c, NS) {
        let dec = decision(&d).expect("a decision annotation");
        assert_eq!(dec["balancer"], "spread");
        assert_eq!(dec["action"], "pin");
        assert_eq!(Some(dec["zone"].as_str().unwrap().to_string()), pinned_zone(&d));
        let reason = dec["reason"].as_str().unwrap();
        assert!(reason.starts_with(&format!("zone {}: fewest workloads (", dec["zone"].as_str().unwrap())), "{reason}");
    }
    let first = decision(&get(&c, "Deployment", NS, "w0")).unwrap();
    assert_eq!(first["reason"], "zone a: fewest workloads (0); b has 0, c has 0");

    // The status settles on the counts; the steady state writes nothing.
    assert!(
        wait_until(LIMIT, || {
            let s = zb_status(&c, NS, "spread");
            s["workloads"] == 6 && s["zones"].as_array().is_some_and(|z| z.iter().all(|z| z["workloads"] == 2))
        })
        .await,
        "status: {}",
        zb_status(&c, NS, "spread")
    );
    let status = zb_status(&c, NS, "spread");
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(condition(&status, "Balanced")["status"], "True");
    assert!(wait_until(LIMIT, || events(&c, NS, "ZonePinned").len() == 6).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before: BTreeMap<String, String> =
        deployments(&c, NS).iter().map(|d| (d["metadata"]["name"].as_str().unwrap().to_string(), rv(d))).collect();
    let zb_before = rv(&c.server.get("placement.dev/v1alpha1", "ZoneBalancer", NS, "spread").unwrap());

    // More reconciles: resyncs, and a trigger by an unrelated Deployment of the namespace.
    let mut unrelated = deployment(NS, "unrelated");
    unrelated["metadata"]["labels"] = json!({"balance": "no"});
    c.server.put(unrelated).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for d in deployments(&c, NS) {
        let name = d["metadata"]["name"].as_str().unwrap();
        if name == "unrelated" {
            assert_eq!(pinned_zone(&d), None, "not selected");
            assert_eq!(decision(&d), None);
            continue;
        }
        assert_eq!(rv(&d), before[name], "{name} was written again");
    }
    assert_eq!(
        rv(&c.server.get("placement.dev/v1alpha1", "ZoneBalancer", NS, "spread").unwrap()),
        zb_before,
        "a steady state writes no status"
    );
    assert_eq!(events(&c, NS, "ZonePinned").len(), 6);
    let text = metrics_text(&registry);
    assert!(text.contains("placement_zone_balancer_pins_total 6"), "{text}");
    assert!(text.contains("placement_zone_balancer_moves_total 0"), "{text}");
    assert!(text.contains("placement_zone_balancer_reconcile_duration_seconds_count"), "{text}");
    handle.abort();
}

#[tokio::test]
async fn user_pins_are_left_alone_and_counted_and_multi_replica_workloads_ignored() {
    let c = cluster(&abc()).await;
    // Two workloads the user pinned to a (a nodeSelector, a required affinity), one to an undeclared
    // zone without nodes, one with two replicas.
    c.server
        .put(workload("Deployment", NS, "user-sel", 1, json!({"nodeSelector": {ZONE: "a", "disk": "ssd"}})))
        .unwrap();
    c.server
        .put(workload(
            "Deployment",
            NS,
            "user-aff",
            1,
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["a"]}]}]}}}}),
        ))
        .unwrap();
    c.server.put(workload("Deployment", NS, "user-gone", 1, json!({"nodeSelector": {ZONE: "z"}}))).unwrap();
    c.server.put(workload("Deployment", NS, "twins", 2, json!({}))).unwrap();
    let untouched = ["user-sel", "user-aff", "user-gone", "twins"];
    let before: Vec<String> = untouched.iter().map(|n| rv(&get(&c, "Deployment", NS, n))).collect();

    let (handle, _registry) = start(&c, Leadership::always(), options(Duration::from_secs(3600)));
    c.server.put(balancer(NS, "spread", operator_spec())).unwrap();
    c.server.put(deployment(NS, "n1")).unwrap();
    c.server.put(workload("StatefulSet", NS, "db", 1, json!({"nodeSelector": {"disk": "ssd"}}))).unwrap();
    assert!(
        wait_until(LIMIT, || pinned_zone(&get(&c, "Deployment", NS, "n1")).is_some()
            && pinned_zone(&get(&c, "StatefulSet", NS, "db")).is_some())
        .await,
        "status: {}, events: {:?}",
        zb_status(&c, NS, "spread"),
        c.server.list("events.k8s.io/v1", "Event", Some(NS))
    );
    c.server.put(deployment(NS, "n2")).unwrap();
    assert!(wait_until(LIMIT, || pinned_zone(&get(&c, "Deployment", NS, "n2")).is_some()).await);

    // a holds the user's two: the new ones go to b and c, then the next to the one still at 1.
    let n1 = pinned_zone(&get(&c, "Deployment", NS, "n1")).unwrap();
    let db = get(&c, "StatefulSet", NS, "db");
    let db_zone = pinned_zone(&db).unwrap();
    let mut new_zones = vec![n1.clone(), db_zone.clone()];
    new_zones.sort();
    assert_eq!(new_zones, ["b", "c"], "never a, which the user pins hold");
    assert_eq!(pinned_zone(&get(&c, "Deployment", NS, "n2")).as_deref(), Some("b"), "b and c tie at 1; a has 2");
    assert_eq!(
        db.pointer("/spec/template/spec/nodeSelector/disk").and_then(Value::as_str),
        Some("ssd"),
        "user key kept"
    );

    for (n, before) in untouched.iter().zip(&before) {
        let d = get(&c, "Deployment", NS, n);
        assert_eq!(rv(&d), *before, "{n} must not be written");
        assert_eq!(decision(&d), None);
    }
    assert!(
        wait_until(LIMIT, || {
            let s = zb_status(&c, NS, "spread");
            condition(&s, "Balanced")["status"] == "False"
        })
        .await
    );
    let status = zb_status(&c, NS, "spread");
    let message = condition(&status, "Balanced")["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("Deployment/user-gone: pinned by its template to zone z, which has no Ready node"),
        "{message}"
    );
    assert_eq!(status["workloads"], 6, "two user pins, the pin to z, n1, n2, db; not the twins");
    let zone_workloads: BTreeMap<String, i64> = status["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| (z["zone"].as_str().unwrap().to_string(), z["workloads"].as_i64().unwrap()))
        .collect();
    assert_eq!(zone_workloads, BTreeMap::from([("a".into(), 2), ("b".into(), 2), ("c".into(), 1), ("z".into(), 1)]));
    assert!(
        wait_until(LIMIT, || events(&c, NS, "ZoneNotPlaced")
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|n| n.contains("user-gone"))))
        .await,
        "{:#?}",
        c.server.list("events.k8s.io/v1", "Event", Some(NS))
    );
    handle.abort();
}

#[tokio::test]
async fn a_zone_without_a_ready_node_is_chosen_only_when_declared_without_nodes() {
    let c = cluster(&[("a", true), ("b", true), ("c", false)]).await;
    let (handle, _registry) = start(&c, Leadership::always(), options(Duration::from_secs(3600)));
    c.server.put(balancer(NS, "spread", operator_spec())).unwrap();
    let names = ["w0", "w1", "w2", "w3"];
    for n in names {
        c.server.put(deployment(NS, n)).unwrap();
    }
    let want = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 2)]);
    assert!(wait_until(LIMIT, || spread(&c, NS, &names) == want).await, "{:?}", spread(&c, NS, &names));

    // Declaring c (its only node is not Ready) does not make it feasible; declaring d (no node at all,
    // autoscaled to zero) does.
    let mut spec = operator_spec();
    spec["zones"] = json!(["c", "d"]);
    c.server.put(balancer(NS, "spread", spec)).unwrap();
    c.server.put(deployment(NS, "w4")).unwrap();
    assert!(wait_until(LIMIT, || pinned_zone(&get(&c, "Deployment", NS, "w4")).is_some()).await);
    let w4 = get(&c, "Deployment", NS, "w4");
    assert_eq!(pinned_zone(&w4).as_deref(), Some("d"));
    let reason = decision(&w4).unwrap()["reason"].as_str().unwrap().to_string();
    assert_eq!(
        reason,
        "zone d: fewest workloads (0), no node yet (declared zone, assumed autoscaled); a has 2, b has 2, \
         c no node fits (1 nodes; e.g. no Ready, schedulable node)"
    );
    handle.abort();
}

#[tokio::test]
async fn rebalancing_moves_one_workload_at_a_time_and_the_interval_survives_a_restart() {
    let c = cluster(&[("a", true), ("b", true), ("c", false)]).await;
    let hour = Duration::from_secs(3600);
    let (handle, _registry) = start(&c, Leadership::always(), options(hour));
    let mut spec = operator_spec();
    spec["rebalanceThreshold"] = json!(2);
    c.server.put(balancer(NS, "spread", spec)).unwrap();
    let names = ["w0", "w1", "w2", "w3", "w4", "w5"];
    for n in names {
        c.server.put(deployment(NS, n)).unwrap();
    }
    let three_three = BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 3)]);
    assert!(wait_until(LIMIT, || spread(&c, NS, &names) == three_three).await, "{:?}", spread(&c, NS, &names));

    // Zone c gets a Ready node: 3/3/0 is 3 apart, so one workload moves, then the interval holds.
    c.server.put(node("node-c", "c", true)).unwrap();
    let after_one = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 3), ("c".to_string(), 1)]);
    assert!(wait_until(LIMIT, || spread(&c, NS, &names) == after_one).await, "{:?}", spread(&c, NS, &names));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(spread(&c, NS, &names), after_one, "b is 2 ahead of c, but the interval has not passed");
    let status = zb_status(&c, NS, "spread");
    let moves = status["lastMoves"].as_array().unwrap().clone();
    assert_eq!(moves.len(), 1);
    assert_eq!((moves[0]["from"].as_str(), moves[0]["to"].as_str()), (Some("a"), Some("c")));
    assert!(moves[0]["reason"].as_str().unwrap().contains("a difference of 3 reaches the threshold 2"));
    let moved_name = moves[0]["workload"].as_str().unwrap().trim_start_matches("Deployment/").to_string();
    let moved = get(&c, "Deployment", NS, &moved_name);
    assert_eq!(decision(&moved).unwrap()["action"], "move");
    assert_eq!(decision(&moved).unwrap()["from"], "a");
    assert_eq!(pinned_zone(&moved).as_deref(), Some("c"));
    assert!(
        wait_until(LIMIT, || events(&c, NS, "ZoneMoved").len() == 2).await,
        "one Event on the workload, one on the balancer"
    );

    // A restart with the same interval: the last move is read back from the status, nothing moves.
    handle.abort();
    let (handle, _registry) = start(&c, Leadership::always(), options(hour));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(spread(&c, NS, &names), after_one, "a restart must not move again inside the interval");
    assert_eq!(zb_status(&c, NS, "spread")["lastMoves"].as_array().unwrap().len(), 1);
    assert!(
        condition(&zb_status(&c, NS, "spread"), "Balanced")["message"]
            .as_str()
            .unwrap()
            .contains("a move is due, not before")
    );

    // Once the interval is over (here: none), the next move happens, and then the zones are balanced.
    handle.abort();
    let (handle, registry) = start(&c, Leadership::always(), options(Duration::ZERO));
    let even = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 2), ("c".to_string(), 2)]);
    assert!(wait_until(LIMIT, || spread(&c, NS, &names) == even).await, "{:?}", spread(&c, NS, &names));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(spread(&c, NS, &names), even);
    let moves = zb_status(&c, NS, "spread")["lastMoves"].as_array().unwrap().clone();
    assert_eq!(moves.len(), 2, "{moves:?}");
    assert_eq!((moves[0]["from"].as_str(), moves[0]["to"].as_str()), (Some("b"), Some("c")), "newest first");
    assert!(metrics_text(&registry).contains("placement_zone_balancer_moves_total 1"));
    handle.abort();
}

#[tokio::test]
async fn a_standby_writes_nothing_until_it_leads() {
    let c = cluster(&abc()).await;
    let (tx, leadership) = Leadership::channel();
    let (handle, _registry) = start(&c, leadership, options(Duration::from_secs(3600)));
    c.server.put(balancer(NS, "spread", operator_spec())).unwrap();
    for n in ["w0", "w1", "w2"] {
        c.server.put(deployment(NS, n)).unwrap();
    }
    let before: Vec<String> = deployments(&c, NS).iter().map(rv).collect();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(deployments(&c, NS).iter().map(rv).collect::<Vec<_>>(), before, "a standby patches nothing");
    assert_eq!(zb_status(&c, NS, "spread"), Value::Null, "a standby writes no status");
    assert!(c.server.list("events.k8s.io/v1", "Event", Some(NS)).is_empty(), "a standby publishes no Event");

    tx.send(true).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || spread(&c, NS, &["w0", "w1", "w2"]).len() == 3).await,
        "pinned once leading: {:?}",
        spread(&c, NS, &["w0", "w1", "w2"])
    );
    handle.abort();
    drop(tx);
}

#[tokio::test]
async fn webhook_mode_balancers_are_ignored() {
    let c = cluster(&abc()).await;
    let (handle, _registry) = start(&c, Leadership::always(), options(Duration::from_secs(3600)));
    c.server
        .put(balancer(NS, "hooked", json!({"selector": {"matchLabels": {"balance": "yes"}}, "mode": "webhook"})))
        .unwrap();
    c.server.put(deployment(NS, "w0")).unwrap();
    // The controller is alive: an operator-mode balancer elsewhere gets its workload pinned.
    c.server.put(balancer("other", "spread", operator_spec())).unwrap();
    c.server.put(deployment("other", "x0")).unwrap();
    assert!(wait_until(LIMIT, || pinned_zone(&get(&c, "Deployment", "other", "x0")).is_some()).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let w0 = get(&c, "Deployment", NS, "w0");
    assert_eq!(pinned_zone(&w0), None);
    assert_eq!(decision(&w0), None);
    assert_eq!(zb_status(&c, NS, "hooked"), Value::Null, "the webhook's balancer status is not ours");
    handle.abort();
}

#[tokio::test]
async fn an_invalid_spec_is_reported_on_the_field_and_a_fix_takes_effect() {
    let c = cluster(&abc()).await;
    let (handle, registry) = start(&c, Leadership::always(), options(Duration::from_secs(3600)));
    let mut spec = operator_spec();
    spec["topologyKey"] = json!("not a key!");
    c.server.put(balancer(NS, "spread", spec)).unwrap();
    c.server.put(deployment(NS, "w0")).unwrap();
    assert!(wait_until(LIMIT, || condition(&zb_status(&c, NS, "spread"), "Ready")["status"] == "False").await);
    let ready = condition(&zb_status(&c, NS, "spread"), "Ready");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(ready["message"].as_str().unwrap().contains("spec.topologyKey"), "{ready}");
    assert!(wait_until(LIMIT, || !events(&c, NS, "InvalidSpec").is_empty()).await);
    assert_eq!(pinned_zone(&get(&c, "Deployment", NS, "w0")), None);
    assert!(metrics_text(&registry).contains("placement_zone_balancer_reconcile_errors_total{error=\"spec\"}"));

    c.server.put(balancer(NS, "spread", operator_spec())).unwrap();
    assert!(wait_until(LIMIT, || pinned_zone(&get(&c, "Deployment", NS, "w0")).is_some()).await);
    assert!(wait_until(LIMIT, || condition(&zb_status(&c, NS, "spread"), "Ready")["status"] == "True").await);
    handle.abort();
}

#[tokio::test]
async fn a_conflicting_write_is_retried_and_pins_exactly_once() {
    let c = cluster(&abc()).await;
    c.server.faults().inject(Fault::conflict().on(Verb::Patch).resource("deployments").times(2));
    let (handle, registry) = start(&c, Leadership::always(), options(Duration::from_secs(3600)));
    c.server.put(balancer(NS, "spread", operator_spec())).unwrap();
    for n in ["w0", "w1", "w2"] {
        c.server.put(deployment(NS, n)).unwrap();
    }
    let want = BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 1), ("c".to_string(), 1)]);
    assert!(wait_until(LIMIT, || spread(&c, NS, &["w0", "w1", "w2"]) == want).await);
    assert_eq!(c.server.faults().hits(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events(&c, NS, "ZonePinned").len(), 3);
    let text = metrics_text(&registry);
    assert!(text.contains("placement_zone_balancer_pins_total 3"), "{text}");
    assert!(text.contains("placement_zone_balancer_reconcile_errors_total{error=\"conflict\"}"), "{text}");
    handle.abort();
}

#[tokio::test]
async fn pods_of_unpinned_workloads_count_where_they_run_and_preferred_pins_keep_user_terms() {
    let c = cluster(&abc()).await;
    // A workload the user constrains (not c) runs its pod in a: the index finds it by owner chain.
    c.server
        .put(workload(
            "Deployment",
            NS,
            "legacy",
            1,
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": ZONE, "operator": "NotIn", "values": ["c"]}]}]}}}}),
        ))
        .unwrap();
    c.server
        .put(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "legacy-h1", "namespace": NS,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "legacy", "uid": "d1", "controller": true}]},
            "spec": {"selector": {"matchLabels": {"app": "legacy"}}}}))
        .unwrap();
    c.server
        .put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "legacy-h1-x", "namespace": NS,
            "labels": {"app": "legacy", "pod-template-hash": "h1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "legacy-h1", "uid": "r1", "controller": true}]},
            "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "app"}]},
            "status": {"phase": "Running"}}))
        .unwrap();
    assert!(wait_until(LIMIT, || c.index.read().contains_pod(NS, "legacy-h1-x")).await, "the live index sees the pod");
    let (handle, _registry) = start(&c, Leadership::always(), options(Duration::from_secs(3600)));
    let mut spec = operator_spec();
    spec["affinity"] = json!("preferred");
    c.server.put(balancer(NS, "spread", spec)).unwrap();
    let user_term = json!({"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}});
    c.server
        .put(workload(
            "Deployment",
            NS,
            "n1",
            1,
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [user_term.clone()]}}}),
        ))
        .unwrap();
    let terms_of = |d: &Value| {
        d.pointer("/spec/template/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    assert!(wait_until(LIMIT, || terms_of(&get(&c, "Deployment", NS, "n1")).len() == 2).await);
    let n1 = get(&c, "Deployment", NS, "n1");
    let terms = terms_of(&n1);
    assert_eq!(terms[0], user_term, "the user's term is kept, first");
    assert_eq!(terms[1]["weight"], 100);
    assert_eq!(
        terms[1]["preference"]["matchExpressions"][0],
        json!({"key": ZONE, "operator": "In", "values": ["b"]}),
        "a holds legacy's running pod: b is the first empty zone"
    );
    assert_eq!(pinned_zone(&n1), None, "preferred mode adds no nodeSelector");
    assert_eq!(decision(&n1).unwrap()["reason"], "zone b: fewest workloads (0); a has 1, c has 0");
    let legacy = get(&c, "Deployment", NS, "legacy");
    assert_eq!(decision(&legacy), None, "a user constraint on the zone key is left alone");
    assert!(
        wait_until(LIMIT, || zb_status(&c, NS, "spread")["zones"]
            .as_array()
            .is_some_and(|z| z.iter().any(|z| z["zone"] == "a" && z["pods"] == 1 && z["workloads"] == 1)))
        .await,
        "{}",
        zb_status(&c, NS, "spread")
    );
    handle.abort();
}

#[tokio::test]
async fn no_move_happens_unless_it_was_recorded_in_the_status_first() {
    let c = cluster(&[("a", true), ("b", true), ("c", false)]).await;
    let (handle, _registry) = start(&c, Leadership::always(), options(Duration::ZERO));
    let mut spec = operator_spec();
    spec["rebalanceThreshold"] = json!(2);
    c.server.put(balancer(NS, "spread", spec)).unwrap();
    let names = ["w0", "w1", "w2", "w3"];
    for n in names {
        c.server.put(deployment(NS, n)).unwrap();
    }
    let two_two = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 2)]);
    assert!(wait_until(LIMIT, || spread(&c, NS, &names) == two_two).await, "{:?}", spread(&c, NS, &names));
    assert!(wait_until(LIMIT, || zb_status(&c, NS, "spread")["workloads"] == 4).await);

    // The status cannot be written: a move is due (c gets a node, 2/2/0), but none may happen.
    c.server.faults().inject(Fault::error(500).on(Verb::Patch).resource("zonebalancers/status"));
    c.server.put(node("node-c", "c", true)).unwrap();
    assert!(wait_until(LIMIT, || c.server.faults().hits() >= 2).await, "the controller tried to record the move");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(spread(&c, NS, &names), two_two, "a move not recorded must not be made");
    assert_eq!(events(&c, NS, "ReconcileFailed").len(), 1, "one Event for the lasting error");

    c.server.faults().clear();
    let moved = BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 2), ("c".to_string(), 1)]);
    assert!(wait_until(LIMIT, || spread(&c, NS, &names) == moved).await, "{:?}", spread(&c, NS, &names));
    assert_eq!(zb_status(&c, NS, "spread")["lastMoves"].as_array().map(Vec::len), Some(1));
    handle.abort();
}

#[tokio::test]
async fn the_interval_also_holds_when_the_status_history_is_lost() {
    let c = cluster(&[("a", true), ("b", true), ("c", false)]).await;
    let hour = Duration::from_secs(3600);
    let (handle, _registry) = start(&c, Leadership::always(), options(hour));
    let mut spec = operator_spec();
    spec["rebalanceThreshold"] = json!(2);
    c.server.put(balancer(NS, "spread", spec.clone())).unwrap();
    let names = ["w0", "w1", "w2", "w3", "w4", "w5"];
    for n in names {
        c.server.put(deployment(NS, n)).unwrap();
    }
    let three_three = BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 3)]);
    assert!(wait_until(LIMIT, || spread(&c, NS, &names) == three_three).await);
    c.server.put(node("node-c", "c", true)).unwrap();
    let after_one = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 3), ("c".to_string(), 1)]);
    assert!(wait_until(LIMIT, || spread(&c, NS, &names) == after_one).await);
    handle.abort();

    // Someone wipes the status (a restore from a backup without status, say): the moved workload's
    // decision annotation still dates the last move.
    let mut wiped = balancer(NS, "spread", spec);
    wiped["status"] = json!({"lastMoves": []});
    c.server.put(wiped).unwrap();
    assert_eq!(zb_status(&c, NS, "spread")["lastMoves"], json!([]));
    let (handle, _registry) = start(&c, Leadership::always(), options(hour));
    assert!(wait_until(LIMIT, || zb_status(&c, NS, "spread")["workloads"] == 6).await, "reconciled again");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(spread(&c, NS, &names), after_one, "no second move inside the interval");
    handle.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn every_line_of_a_reconcile_names_the_zone_balancer() {
    // The subscriber is this thread's: the controller, the watchers and the fake run on it too.
    let logs = placement_testkit::logs::CapturedLogs::new();
    let _default = tracing::subscriber::set_default(logs.subscriber());
    let c = cluster(&abc()).await;
    let (handle, _registry) = start(&c, Leadership::always(), options(Duration::from_secs(3600)));
    c.server.put(balancer(NS, "spread", operator_spec())).unwrap();
    c.server.put(deployment(NS, "w0")).unwrap();
    assert!(wait_until(LIMIT, || pinned_zone(&get(&c, "Deployment", NS, "w0")).is_some()).await, "w0 pinned");
    // The pin is logged after the write that the wait saw: wait for the Event that follows the line.
    assert!(wait_until(LIMIT, || !events(&c, NS, "ZonePinned").is_empty()).await, "the ZonePinned Event");
    handle.abort();
    let lines = logs.take();
    let from_reconcile: Vec<_> = lines.iter().filter(|l| l.contains("placement_operator::zone_balancer")).collect();
    assert!(from_reconcile.iter().any(|l| l.contains(" pinned ")), "the pin was logged: {lines:#?}");
    for line in from_reconcile {
        assert!(
            line.contains(r#"reconcile{kind="ZoneBalancer" object=shop/spread}"#),
            "a zone balancer line outside its reconcile span: {line}"
        );
    }
}
