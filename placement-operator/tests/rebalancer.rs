//! The rebalancer controller end to end: the real kube client, watchers and eviction subresource
//! against the fake API server (with its PDB accounting, 429s and fault injection).
//!
//! The cluster: node `hot` at 90 % (metrics.k8s.io), nodes `cold-a` and `cold-b` at 10 %, and eight
//! pods of eight Deployments on `hot`, each worth 10 % of a node. Policies observe once to call a node
//! hot (`observationsToEnter: 1`, `ewmaAlpha: 1`), so a single pass plans.

use placement_core::model::{NodeBuilder, PodBuilder};
use placement_kube::live::{SharedIndex, WatchOptions, Watchers, spawn};
use placement_operator::context::{Context, Leadership};
use placement_operator::rebalancer::{Evictor, Options, Outcome, PassOutcome, PassReport, Rebalancer};
use placement_operator::runtime::events::Events;
use placement_testkit::objects::{node_object, pod_object};
use placement_testkit::{FakeApiServer, Fault, Verb};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const GI: u64 = 1 << 30;
const POLICY: &str = "rb";

fn seed(server: &FakeApiServer) {
    for crd in placement_kube::crd::all_crds() {
        server.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})).unwrap();
    for (name, used) in [("hot", 9u64), ("cold-a", 1), ("cold-b", 1)] {
        server.put(node_object(&NodeBuilder::new(name).allocatable(4000, 16 * GI).build())).unwrap();
        server
            .put(json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics", "metadata": {"name": name},
                "timestamp": "2026-11-25T00:00:00Z", "window": "20s",
                "usage": {"cpu": format!("{}m", used * 400), "memory": (used * 16 * GI / 10).to_string()}}))
            .unwrap();
    }
    for i in 0..8 {
        add_pod(server, &format!("web{i}-0"), &format!("web{i}"), &[]);
    }
}

fn add_pod(server: &FakeApiServer, name: &str, deployment: &str, labels: &[(&str, &str)]) {
    let mut b = PodBuilder::new("shop", name)
        .deployment(deployment)
        .revision("h1")
        .label("app", deployment)
        .on_node("hot")
        .requests(400, GI);
    for (k, v) in labels {
        b = b.label(*k, *v);
    }
    server.put(pod_object(&b.build())).unwrap();
    server
        .put(json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
            "metadata": {"name": name, "namespace": "shop"}, "timestamp": "2026-11-25T00:00:00Z", "window": "20s",
            "containers": [{"name": "app", "usage": {"cpu": "400m", "memory": (16 * GI / 10).to_string()}}]}))
        .unwrap();
}

fn put_policy(server: &FakeApiServer, spec: Value) {
    server
        .put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "RebalancePolicy", "metadata": {"name": POLICY},
            "spec": spec}))
        .unwrap();
}

/// A live spec: one observation makes a node hot; the given overrides on top.
fn live_spec(overrides: Value) -> Value {
    let mut spec = json!({"observationsToEnter": 1, "ewmaAlpha": 1.0, "dryRun": false, "nodeBackoff": "0s"});
    for (k, v) in overrides.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

/// One operator instance: its own watchers, index and client.
struct Instance {
    rebalancer: Rebalancer,
    registry: Registry,
    index: SharedIndex,
    _watchers: Watchers,
}

async fn instance(server: &FakeApiServer, leadership: Leadership) -> Instance {
    let client = server.client();
    let (index, watchers): (SharedIndex, Watchers) = spawn(client.clone(), WatchOptions::default());
    assert!(index.wait_ready(Duration::from_secs(10)).await, "index synced");
    let ctx = Context {
        client: client.clone(),
        eviction_client: server.client_without_retry(),
        index: index.clone(),
        events: Events::new(client, "placement-rebalancer", Some("test".into())),
        leadership,
    };
    let mut registry = Registry::default();
    let rebalancer = Rebalancer::new(ctx, Evictor::new(server.client_without_retry()), &mut registry);
    Instance { rebalancer, registry, index, _watchers: watchers }
}

fn pods_left(server: &FakeApiServer) -> BTreeSet<String> {
    server
        .list("v1", "Pod", Some("shop"))
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect()
}

fn status(server: &FakeApiServer) -> Value {
    server.get("placement.dev/v1alpha1", "RebalancePolicy", "", POLICY).unwrap()["status"].clone()
}

async fn done(i: &Instance) -> PassReport {
    match i.rebalancer.pass(POLICY, true).await {
        Ok(PassOutcome::Done(r)) => *r,
        other => panic!("pass did not complete: {other:?}"),
    }
}

fn metrics_text(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

fn blocked_labels(r: &PassReport) -> BTreeSet<&'static str> {
    r.plan.skipped.iter().map(|s| s.reason.metric_label()).collect()
}

/// `status.disruptionsAllowed` of PDB `shop/db`, as the fake's disruption controller computed it.
fn pdb_allowed(server: &FakeApiServer) -> i64 {
    server.get("policy/v1", "PodDisruptionBudget", "shop", "db").unwrap()["status"]["disruptionsAllowed"]
        .as_i64()
        .unwrap_or(-1)
}

#[tokio::test]
async fn a_hot_node_is_relieved_within_the_cluster_budget() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    put_policy(&server, live_spec(json!({"maxEvictionsPerMinute": 2})));
    let a = instance(&server, Leadership::always()).await;
    // Only the eviction subresource may remove a pod: a DELETE of a pod would fail.
    server.faults().inject(Fault::error(403).on(Verb::Delete).resource("pods"));

    let r = done(&a).await;
    assert_eq!(r.plan.evictions.len(), 2, "the cluster budget allows two: {}", r.plan.stop);
    assert!(r.plan.evictions.iter().all(|e| e.from == "hot" && e.to.starts_with("cold-")));
    assert!(r.outcomes.iter().all(|(_, o)| *o == Outcome::Evicted), "{:?}", r.outcomes);
    assert_eq!(pods_left(&server).len(), 6, "two pods went through the eviction API");
    assert!(r.plan.sigma_after < r.plan.sigma_before);

    let s = status(&server);
    assert_eq!(s["lastPlan"]["evictionsDone"], 2);
    assert_eq!(s["lastPlan"]["hotNodes"], json!(["hot"]));
    assert_eq!(s["lastPlan"]["coldNodes"], json!(["cold-a", "cold-b"]));
    assert_eq!(s["state"]["history"].as_array().unwrap().len(), 2);
    let steering = s["steering"].as_array().unwrap();
    assert_eq!(steering.len(), 2);
    assert!(steering.iter().all(|e| e["node"].as_str().unwrap().starts_with("cold-") && e["from"] == "hot"));
    assert_eq!(s["conditions"][0]["status"], "True");

    // The next pass, at once: the 60-second window is spent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = done(&a).await;
    assert!(r.plan.evictions.is_empty());
    assert!(
        blocked_labels(&r).contains("cluster_rate") || r.plan.stop.to_string().contains("cluster budget"),
        "{}",
        r.plan.stop
    );
    assert_eq!(pods_left(&server).len(), 6);

    let text = metrics_text(&a.registry);
    for line in [
        r#"placement_rebalancer_evictions_total{policy="rb",mode="live",outcome="evicted"} 2"#,
        r#"placement_rebalancer_hot_nodes{policy="rb"} 1"#,
        r#"placement_rebalancer_cold_nodes{policy="rb"} 2"#,
        r#"placement_rebalancer_budget_remaining{policy="rb",budget="cluster_per_minute"} 0"#,
        r#"placement_rebalancer_node_score{policy="rb",node="hot"}"#,
        r#"placement_rebalancer_sigma{policy="rb",when="before"}"#,
        "placement_rebalancer_reconcile_duration_seconds_count",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    let events = server.list("events.k8s.io/v1", "Event", Some("shop"));
    assert_eq!(events.iter().filter(|e| e["reason"] == "Evicted").count(), 2, "{events:?}");
}

#[tokio::test]
async fn budgets_and_backoff_hold_across_a_restart() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    put_policy(&server, live_spec(json!({"maxEvictionsPerMinute": 2, "workloadBackoff": "10m"})));
    let first = {
        let a = instance(&server, Leadership::always()).await;
        let r = done(&a).await;
        assert_eq!(r.outcomes.len(), 2);
        r.plan.evictions.iter().map(|e| e.workload.clone().unwrap().name).collect::<BTreeSet<_>>()
        // `a` (its watchers, index and metrics) is dropped here: the operator restarts.
    };
    // The evicted pods come back (their ReplicaSets recreate them, same workloads, new names).
    for w in &first {
        add_pod(&server, &format!("{w}-1"), w, &[]);
    }

    let b = instance(&server, Leadership::always()).await;
    let r = done(&b).await;
    assert!(r.outcomes.is_empty(), "the minute's budget was spent before the restart: {:?}", r.outcomes);
    assert!(
        blocked_labels(&r).contains("cluster_rate") || r.plan.stop.to_string().contains("cluster budget"),
        "{}",
        r.plan.stop
    );

    // A minute passes (the history is aged in status, as the clock would): the cluster budget is back,
    // but the two workloads evicted before the restart are still in their 10-minute backoff.
    let mut policy = server.get("placement.dev/v1alpha1", "RebalancePolicy", "", POLICY).unwrap();
    let aged = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 90).unwrap().to_string();
    for e in policy["status"]["state"]["history"].as_array_mut().unwrap() {
        e["at"] = json!(aged);
    }
    server.put(policy).unwrap();
    let r = done(&b).await;
    assert_eq!(r.outcomes.len(), 2, "{}", r.plan.stop);
    let second: BTreeSet<String> = r.plan.evictions.iter().map(|e| e.workload.clone().unwrap().name).collect();
    assert!(first.is_disjoint(&second), "no workload evicted twice inside its backoff: {first:?} {second:?}");
    for w in &first {
        let pod = format!("{w}-1");
        assert!(pods_left(&server).contains(&pod), "{pod} is protected by its workload's backoff");
        assert!(
            r.plan.skipped.iter().any(|s| s.pod.name == pod && s.reason.metric_label() == "workload_backoff"),
            "{pod} reported in backoff: {:?}",
            r.plan.skipped
        );
    }
}

#[tokio::test]
async fn a_disruption_budget_blocks_and_a_429_is_retried_later() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    // Two more pods of one workload, guarded by a PDB that allows no disruption.
    add_pod(&server, "db-0", "db", &[("tier", "db")]);
    add_pod(&server, "db-1", "db", &[("tier", "db")]);
    server
        .put(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"tier": "db"}}}}))
        .unwrap();
    put_policy(&server, live_spec(json!({"maxEvictionsPerMinute": 1, "podSelector": {"matchLabels": {"tier": "db"}}})));
    // Wait for the fake's disruption controller to publish the PDB's status.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.get("policy/v1", "PodDisruptionBudget", "shop", "db").unwrap()["status"]["expectedPods"] != 2 {
        assert!(Instant::now() < deadline, "PDB status computed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a = instance(&server, Leadership::always()).await;
    let r = done(&a).await;
    assert!(r.outcomes.is_empty(), "{:?}", r.outcomes);
    let blocked: Vec<_> = r.plan.skipped.iter().filter(|s| s.reason.metric_label() == "pdb").collect();
    assert_eq!(blocked.len(), 2, "{:?}", r.plan.skipped);
    assert!(blocked[0].why.contains("PodDisruptionBudget shop/db allows no more disruptions"));
    assert!(pods_left(&server).contains("db-0") && pods_left(&server).contains("db-1"));

    // The budget allows one now, but the API server still refuses once (429): not evicted, reported
    // blocked, its reservation released; the next pass evicts it.
    server
        .put(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"tier": "db"}}}}))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pdb_allowed(&server) != 1 {
        assert!(Instant::now() < deadline, "PDB status recomputed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.faults().inject(Fault::error(429).on(Verb::Evict).times(1));
    let r = done(&a).await;
    assert_eq!(r.outcomes.len(), 1);
    assert!(matches!(r.outcomes[0].1, Outcome::Refused(_)), "{:?}", r.outcomes);
    assert_eq!(pods_left(&server).iter().filter(|p| p.starts_with("db-")).count(), 2, "nothing evicted on 429");
    let s = status(&server);
    assert_eq!(s["lastPlan"]["evictionsDone"], 0);
    assert_eq!(s["lastPlan"]["blocked"][0]["reason"], "eviction_refused");
    assert!(s["state"]["history"].as_array().unwrap().is_empty(), "the refused eviction gives its budget back");
    assert!(
        metrics_text(&a.registry)
            .contains(r#"placement_rebalancer_blocked_total{policy="rb",mode="live",budget="eviction_refused"} 1"#)
    );

    let r = done(&a).await;
    assert_eq!(r.outcomes.len(), 1, "{}", r.plan.stop);
    assert_eq!(r.outcomes[0].1, Outcome::Evicted);
    assert_eq!(pods_left(&server).iter().filter(|p| p.starts_with("db-")).count(), 1);
}

#[tokio::test]
async fn dry_run_evicts_nothing_and_reports_the_same_plan() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    put_policy(&server, live_spec(json!({"maxEvictionsPerMinute": 3, "dryRun": true})));
    let a = instance(&server, Leadership::always()).await;
    let before = pods_left(&server);
    let dry = done(&a).await;
    assert!(dry.plan.dry_run);
    assert_eq!(dry.plan.evictions.len(), 3);
    assert!(dry.outcomes.is_empty());
    assert_eq!(pods_left(&server), before, "dry-run evicts nothing");
    let s = status(&server);
    assert_eq!(s["lastPlan"]["dryRun"], true);
    assert_eq!(s["lastPlan"]["evictionsPlanned"], 3);
    assert_eq!(s["lastPlan"]["evictionsDone"], 0);
    let history = s["state"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "dry-run records what it would have evicted");
    assert!(history.iter().all(|e| e["dryRun"] == true));
    assert!(s.get("steering").is_none(), "dry-run steers nothing");
    let text = metrics_text(&a.registry);
    assert!(text.contains(r#"placement_rebalancer_dry_run_evictions_total{policy="rb"} 3"#), "{text}");
    assert!(
        text.contains(r#"placement_rebalancer_evictions_total{policy="rb",mode="dry_run",outcome="would_evict"} 3"#)
    );
    assert!(!text.contains(r#"mode="live""#));
    let events = server.list("events.k8s.io/v1", "Event", Some("shop"));
    assert_eq!(events.iter().filter(|e| e["reason"] == "DryRunEvict").count(), 3, "{events:?}");
    assert_eq!(events.iter().filter(|e| e["reason"] == "Evicted").count(), 0);

    // The same policy, live: the dry-run history does not count, and it evicts exactly what the dry
    // run reported.
    put_policy(&server, live_spec(json!({"maxEvictionsPerMinute": 3})));
    let live = done(&a).await;
    let planned = |r: &PassReport| r.plan.evictions.iter().map(|e| (e.pod.clone(), e.to.clone())).collect::<Vec<_>>();
    assert_eq!(planned(&live), planned(&dry));
    assert_eq!(before.len() - pods_left(&server).len(), 3);
}

#[tokio::test]
async fn faults_never_cause_an_eviction_outside_the_policy() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    put_policy(&server, live_spec(json!({"maxEvictionsPerMinute": 3, "workloadBackoff": "10m"})));
    let a = instance(&server, Leadership::always()).await;
    let before = pods_left(&server);

    // A conflict on the reservation write: the pass fails and evicts nothing.
    server.faults().inject(Fault::conflict().on(Verb::Update).resource("rebalancepolicies").times(1));
    let e = a.rebalancer.pass(POLICY, true).await.unwrap_err();
    assert_eq!(e.metric_label(), "conflict", "{e}");
    assert_eq!(pods_left(&server), before);
    assert!(
        metrics_text(&a.registry)
            .contains(r#"placement_rebalancer_reconcile_errors_total{policy="rb",error="conflict"} 1"#)
    );

    // The status read fails: nothing evicted either.
    server.faults().inject(Fault::error(500).on(Verb::Get).resource("rebalancepolicies").times(1));
    assert!(a.rebalancer.pass(POLICY, true).await.is_err());
    assert_eq!(pods_left(&server), before);

    // A 500 on one eviction: its outcome is unknown, so it stays counted.
    server.faults().inject(Fault::error(500).on(Verb::Evict).times(1));
    let r = done(&a).await;
    assert_eq!(r.outcomes.len(), 3);
    assert!(matches!(r.outcomes[0].1, Outcome::Unknown(_)), "{:?}", r.outcomes);
    assert_eq!(before.len() - pods_left(&server).len(), 2);
    assert_eq!(status(&server)["state"]["history"].as_array().unwrap().len(), 3, "the unknown one is kept");

    // Dropped watches and a compaction (the index relists), and more conflicts on the settle write:
    // whatever happens, no pass evicts beyond the minute's budget or repeats a workload.
    server.drop_watches();
    server.compact();
    for round in 0..4 {
        if round % 2 == 0 {
            server.faults().inject(Fault::conflict().on(Verb::Update).resource("rebalancepolicies").times(1));
        }
        let _ = a.rebalancer.pass(POLICY, true).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(before.len() - pods_left(&server).len(), 2, "the budget of 3 per minute was spent by the first pass");
    let history = status(&server)["state"]["history"].as_array().unwrap().clone();
    let workloads: BTreeSet<String> =
        history.iter().map(|e| e["workload"]["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(workloads.len(), history.len(), "no workload twice: {history:?}");
}

#[tokio::test]
async fn the_controller_loop_waits_for_leadership_and_keeps_to_the_budget() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    put_policy(&server, live_spec(json!({"maxEvictionsPerMinute": 2})));
    let (lead, leadership) = Leadership::channel();
    let a = instance(&server, leadership).await;
    let options = Options { tick: Duration::from_millis(50), interval_override: Some(Duration::from_millis(200)) };
    let task = tokio::spawn(a.rebalancer.clone().with_options(options).run());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(pods_left(&server).len(), 8, "a standby evicts nothing");
    assert!(status(&server).is_null(), "a standby writes nothing");
    lead.send(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pods_left(&server).len() > 6 {
        assert!(Instant::now() < deadline, "the leader relieves the hot node");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Several more intervals: still within the per-minute budget.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(pods_left(&server).len(), 6);
    let s = status(&server);
    assert!(s["state"]["lastObserved"].is_string());
    task.abort();
}

#[tokio::test]
async fn two_instances_that_both_believe_they_lead_never_double_spend_a_budget() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    put_policy(&server, live_spec(json!({"maxEvictionsPerMinute": 2})));
    let a = instance(&server, Leadership::always()).await;
    let b = instance(&server, Leadership::always()).await;
    // Both read the same status; one is held up (its WorkloadSLO list is slow) while the other plans,
    // reserves and evicts. The late one then plans other pods from a fresher index, with the budget it
    // read before: the resourceVersion precondition on its reservation gives 409, and it evicts nothing.
    server.faults().inject(Fault::delay(Duration::from_millis(700)).on(Verb::List).resource("workloadslos").times(1));
    let (ra, rb) = tokio::join!(a.rebalancer.pass(POLICY, true), b.rebalancer.pass(POLICY, true));
    let errors: Vec<_> = [&ra, &rb].into_iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(errors.len(), 1, "{ra:?} {rb:?}");
    assert_eq!(errors[0].metric_label(), "conflict", "{}", errors[0]);
    assert_eq!(pods_left(&server).len(), 6, "two evictions in the minute, not four");
    assert_eq!(status(&server)["state"]["history"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_failed_pass_is_visible_in_status_and_evicts_nothing() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    put_policy(&server, live_spec(json!({})));
    let a = instance(&server, Leadership::always()).await;
    // metrics.k8s.io is down (503; the index is synced, so the only list of `nodes` now is the metrics
    // one). The metrics are read without the client's own retries: the pass fails at once.
    server.faults().inject(Fault::error(503).on(Verb::List).resource("nodes"));
    let e = a.rebalancer.pass(POLICY, true).await.unwrap_err();
    assert_eq!(e.metric_label(), "metrics", "{e}");
    server.faults().clear();
    assert_eq!(pods_left(&server).len(), 8);
    let s = status(&server);
    let ready = &s["conditions"][0];
    assert_eq!(
        (ready["type"].as_str(), ready["status"].as_str(), ready["reason"].as_str()),
        (Some("Ready"), Some("False"), Some("PassFailed"))
    );
    assert!(ready["message"].as_str().unwrap().contains("is metrics-server installed?"), "{ready}");
    assert!(
        metrics_text(&a.registry)
            .contains(r#"placement_rebalancer_reconcile_errors_total{policy="rb",error="metrics"} 1"#)
    );

    // An invalid spec: Ready=False naming the field, nothing evicted.
    put_policy(&server, live_spec(json!({"coldThreshold": 0.9})));
    let e = a.rebalancer.pass(POLICY, true).await.unwrap_err();
    assert_eq!(e.metric_label(), "spec");
    let ready = status(&server)["conditions"][0].clone();
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(ready["message"].as_str().unwrap().contains("spec.coldThreshold"), "{ready}");

    // Fixed: the next pass succeeds and says so.
    put_policy(&server, live_spec(json!({})));
    done(&a).await;
    assert_eq!(status(&server)["conditions"][0]["status"], "True");
}

#[tokio::test]
async fn workload_slos_and_node_classes_are_honoured() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    // web1: no eviction an hour (by selector). web2: keep one available (by targetRef, resolved through
    // the Deployment's selector). web3: its SLO names a Deployment that does not exist (covers nothing).
    server
        .put(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web2", "namespace": "shop"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web2"}},
                "template": {"metadata": {"labels": {"app": "web2"}}, "spec": {"containers": []}}}}))
        .unwrap();
    for (name, spec) in [
        ("web1", json!({"selector": {"matchLabels": {"app": "web1"}}, "maxEvictionsPerHour": 0})),
        (
            "web2",
            json!({"targetRef": {"kind": "Deployment", "name": "web2"}, "maxEvictionsPerHour": 5, "minAvailable": 1}),
        ),
        ("web3", json!({"targetRef": {"kind": "Deployment", "name": "absent"}, "maxEvictionsPerHour": 0})),
        ("web4", json!({"selector": {"matchLabels": {"app": "web4"}}, "maxEvictionsPerHour": 1})),
    ] {
        server
            .put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "WorkloadSLO",
                "metadata": {"name": name, "namespace": "shop"}, "spec": spec}))
            .unwrap();
    }
    // cold-a is never a target.
    server
        .put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "NodeClass", "metadata": {"name": "no-target"},
            "spec": {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "cold-a"}}, "weight": 0}}))
        .unwrap();
    let mut node = server.get("v1", "Node", "", "cold-a").unwrap();
    node["metadata"]["labels"]["kubernetes.io/hostname"] = json!("cold-a");
    server.put(node).unwrap();
    put_policy(&server, live_spec(json!({"maxEvictionsPerMinute": 20, "targetSigma": 0.0})));
    let a = instance(&server, Leadership::always()).await;
    let r = done(&a).await;

    let reason_of =
        |pod: &str| r.plan.skipped.iter().find(|s| s.pod.name == pod).map(|s| (s.reason.metric_label(), s.why.clone()));
    assert_eq!(reason_of("web1-0").map(|r| r.0), Some("slo_budget"), "{:?}", r.plan.skipped);
    let (label, why) = reason_of("web2-0").expect("web2-0 blocked");
    assert_eq!(label, "pdb");
    assert!(why.contains("WorkloadSLO web2 minAvailable 1"), "{why}");
    assert!(r.plan.evictions.iter().any(|e| e.pod.name == "web3-0"), "an SLO without its workload covers nothing");
    assert!(r.notes.iter().any(|n| n.contains("WorkloadSLO shop/web3: Deployment absent not found")), "{:?}", r.notes);
    assert!(!r.plan.evictions.is_empty());
    assert!(r.plan.evictions.iter().all(|e| e.to == "cold-b"), "NodeClass weight 0: {:?}", r.plan.evictions);
    let left = pods_left(&server);
    assert!(left.contains("web1-0") && left.contains("web2-0"));
    let s = status(&server);
    assert_eq!(s["lastPlan"]["notes"][0].as_str().map(|n| n.contains("absent not found")), Some(true), "{s}");
    let history = s["state"]["history"].as_array().unwrap();
    let slo_of = |pod: &str| history.iter().find(|e| e["pod"] == pod).map(|e| e["slo"].clone());
    assert_eq!(slo_of("web4-0"), Some(json!("web4")), "the record names its SLO, for the per-hour budget");
    assert_eq!(slo_of("web3-0"), Some(Value::Null));

    // A second web4 pod: its SLO's hour is spent.
    add_pod(&server, "web4-1", "web4", &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = done(&a).await;
    assert!(
        r.plan.skipped.iter().any(|s| s.pod.name == "web4-1" && s.reason.metric_label() == "slo_budget"),
        "{:?}",
        r.plan.skipped
    );

    // Their statuses say what they guard and whether they are in effect.
    let slo = |name: &str| server.get("placement.dev/v1alpha1", "WorkloadSLO", "shop", name).unwrap()["status"].clone();
    assert_eq!(
        (slo("web1")["pods"].as_u64(), slo("web1")["conditions"][0]["status"].as_str()),
        (Some(1), Some("True"))
    );
    assert_eq!(slo("web4")["evictionsLastHour"], 1);
    assert_eq!(slo("web4")["pods"], 1, "web4-1");
    assert_eq!(slo("web3")["conditions"][0]["reason"], "TargetNotFound");
    let class = server.get("placement.dev/v1alpha1", "NodeClass", "", "no-target").unwrap()["status"].clone();
    assert_eq!((class["nodes"].as_u64(), class["conditions"][0]["status"].as_str()), (Some(1), Some("True")));
}

#[tokio::test]
async fn after_a_leader_failover_the_new_leader_keeps_to_the_spent_budget() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    put_policy(&server, live_spec(json!({"maxEvictionsPerMinute": 2})));
    let (lead_a, leadership_a) = Leadership::channel();
    let (lead_b, leadership_b) = Leadership::channel();
    let a = instance(&server, leadership_a).await;
    let b = instance(&server, leadership_b).await;
    let options = Options { tick: Duration::from_millis(50), interval_override: Some(Duration::from_millis(200)) };
    let task_a = tokio::spawn(a.rebalancer.clone().with_options(options.clone()).run());
    let task_b = tokio::spawn(b.rebalancer.clone().with_options(options).run());
    lead_a.send(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pods_left(&server).len() > 6 {
        assert!(Instant::now() < deadline, "the first leader relieves the hot node");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The lease moves to B.
    lead_a.send(false).unwrap();
    lead_b.send(true).unwrap();
    let last_plan_at = |s: &Value| s["lastPlan"]["at"].as_str().map(String::from);
    let before = last_plan_at(&status(&server));
    let deadline = Instant::now() + Duration::from_secs(10);
    while last_plan_at(&status(&server)) == before
        || !metrics_text(&b.registry).contains("reconcile_duration_seconds_count")
    {
        assert!(Instant::now() < deadline, "the new leader plans");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(pods_left(&server).len(), 6, "the new leader keeps to the minute's budget the old one spent");
    let s = status(&server);
    assert_eq!(s["lastPlan"]["evictionsDone"], 0);
    assert!(s["lastPlan"]["stopReason"].as_str().unwrap().contains("cluster budget"), "{s}");
    task_a.abort();
    task_b.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn a_pass_runs_in_a_span_naming_its_policy() {
    let logs = placement_testkit::logs::CapturedLogs::new();
    let _default = tracing::subscriber::set_default(logs.subscriber_with_new_spans());
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    put_policy(&server, live_spec(json!({"maxEvictionsPerMinute": 1})));
    let a = instance(&server, Leadership::always()).await;
    // The policy's status cannot be written: the pass fails and says so in a warning of its own.
    server.faults().inject(Fault::error(500).on(Verb::Update).resource("rebalancepolicies"));
    assert!(a.rebalancer.pass(POLICY, true).await.is_err());
    let lines = logs.take();
    assert!(
        lines.iter().any(|l| l.contains("rebalance_pass{policy=rb force=true}") && l.ends_with("new")),
        "no rebalance_pass span: {lines:#?}"
    );
    let warnings: Vec<_> = lines.iter().filter(|l| l.contains("WARN") && l.contains("placement_operator")).collect();
    assert!(!warnings.is_empty(), "the failed status write was logged: {lines:#?}");
    for line in warnings {
        assert!(line.contains("rebalance_pass{policy=rb force=true}"), "a line of the pass outside its span: {line}");
    }
}

fn put_named_policy(server: &FakeApiServer, name: &str, spec: Value) {
    server
        .put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "RebalancePolicy", "metadata": {"name": name},
            "spec": spec}))
        .unwrap();
}

fn status_of(server: &FakeApiServer, name: &str) -> Value {
    server.get("placement.dev/v1alpha1", "RebalancePolicy", "", name).unwrap()["status"].clone()
}

fn blocked_in_status(s: &Value) -> BTreeSet<String> {
    s["lastPlan"]["blocked"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["reason"].as_str().map(String::from))
        .collect()
}

fn live_history(s: &Value) -> usize {
    s["state"]["history"].as_array().into_iter().flatten().filter(|e| e["dryRun"] != true).count()
}

/// Issue 16 item 3: two live RebalancePolicies over the same pods, each allowing 2 evictions a minute,
/// run by the real controller loop. `maxEvictionsPerMinute` is cluster-wide, so together they evict 2,
/// not 4: whichever passes second counts the first one's evictions (from its status) and is blocked by
/// `cluster_rate`. A new instance (a restart or a failover) reads the same statuses and evicts nothing
/// more.
#[tokio::test]
async fn two_overlapping_policies_share_one_cluster_wide_budget() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    for name in ["rb-a", "rb-b"] {
        put_named_policy(&server, name, live_spec(json!({"maxEvictionsPerMinute": 2})));
    }
    let a = instance(&server, Leadership::always()).await;
    let options = Options { tick: Duration::from_millis(50), interval_override: Some(Duration::from_millis(200)) };
    let task = tokio::spawn(a.rebalancer.clone().with_options(options).run());
    // Until each policy has planned at least once after the budget was spent.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !["rb-a", "rb-b"].iter().all(|p| blocked_in_status(&status_of(&server, p)).contains("cluster_rate")) {
        assert!(
            Instant::now() < deadline,
            "both policies never reported the cluster budget: {:?} {:?}",
            status_of(&server, "rb-a")["lastPlan"],
            status_of(&server, "rb-b")["lastPlan"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    assert_eq!(pods_left(&server).len(), 6, "two evictions in the minute for the whole cluster, not two per policy");
    let (ha, hb) = (live_history(&status_of(&server, "rb-a")), live_history(&status_of(&server, "rb-b")));
    assert_eq!(ha + hb, 2, "each eviction is recorded once, by the policy that made it ({ha} + {hb})");

    // A new instance, as after a restart or a failover: the histories are in the statuses.
    let fresh = instance(&server, Leadership::always()).await;
    for name in ["rb-a", "rb-b"] {
        let r = match fresh.rebalancer.pass(name, true).await {
            Ok(PassOutcome::Done(r)) => *r,
            other => panic!("pass did not complete: {other:?}"),
        };
        assert!(r.plan.evictions.is_empty(), "{name}: {:?}", r.plan.evictions);
        assert!(r.plan.stop.to_string().contains("cluster budget"), "{name}: {}", r.plan.stop);
    }
    assert_eq!(pods_left(&server).len(), 6);
}

/// The namespace budget and the node backoff count every policy's evictions too: after `rb-a` evicted
/// two pods of `shop` from `hot`, a policy allowing two per namespace per hour and a policy with a
/// 5-minute node backoff (neither has evicted anything itself) are both blocked.
#[tokio::test]
async fn the_namespace_budget_and_backoff_count_every_policys_evictions() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    put_named_policy(&server, "rb-a", live_spec(json!({"maxEvictionsPerMinute": 2})));
    put_named_policy(&server, "rb-ns", live_spec(json!({"maxEvictionsPerNamespacePerHour": 2})));
    put_named_policy(&server, "rb-node", live_spec(json!({"nodeBackoff": "5m"})));
    let a = instance(&server, Leadership::always()).await;
    let pass = |name: &'static str| {
        let r = a.rebalancer.clone();
        async move {
            match r.pass(name, true).await {
                Ok(PassOutcome::Done(r)) => *r,
                other => panic!("{name}: pass did not complete: {other:?}"),
            }
        }
    };
    assert_eq!(pass("rb-a").await.plan.evictions.len(), 2);
    assert_eq!(pods_left(&server).len(), 6);
    let ns = pass("rb-ns").await;
    assert!(ns.plan.evictions.is_empty(), "{:?}", ns.plan.evictions);
    assert!(blocked_labels(&ns).contains("namespace_budget"), "{:?}", blocked_labels(&ns));
    let node = pass("rb-node").await;
    assert!(node.plan.evictions.is_empty(), "{:?}", node.plan.evictions);
    // The two evicted workloads are in workload backoff too (while the index still shows their pods).
    assert!(blocked_labels(&node).contains("node_backoff"), "{:?}", node.plan.skipped);
    assert!(
        blocked_labels(&node).is_subset(&BTreeSet::from(["node_backoff", "workload_backoff"])),
        "{:?}",
        node.plan.skipped
    );
    assert_eq!(pods_left(&server).len(), 6);
    assert_eq!(live_history(&status_of(&server, "rb-ns")) + live_history(&status_of(&server, "rb-node")), 0);
}

/// Issue 16 item 2: evictions carry the pod's uid as a precondition. The plan picks StatefulSet pod
/// `db-0` (its WorkloadSLO allows StatefulSet evictions); while the eviction is on its way (held up by
/// the fake API server), `db-0` is deleted and recreated under the same name. The API server refuses
/// the eviction with 409 (the uid is not the planned pod's), the new `db-0` is not evicted, no
/// disruption budget is spent, and the reservation is released as `pod_gone`.
#[tokio::test]
async fn a_statefulset_pod_recreated_between_plan_and_evict_is_not_evicted() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    let db = || {
        pod_object(
            &PodBuilder::new("shop", "db-0")
                .statefulset("db")
                .revision("r1")
                .label("app", "db")
                .on_node("hot")
                .requests(400, GI)
                .build(),
        )
    };
    server.put(db()).unwrap();
    server
        .put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "WorkloadSLO",
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "db"}}, "allowStatefulSet": true, "maxEvictionsPerHour": 5}}))
        .unwrap();
    put_policy(&server, live_spec(json!({"podSelector": {"matchLabels": {"app": "db"}}})));
    let a = instance(&server, Leadership::always()).await;
    let old_uid = server.get("v1", "Pod", "shop", "db-0").unwrap()["metadata"]["uid"].as_str().unwrap().to_string();
    // Wait until the index has the pod (with its uid).
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.index.read().pod("shop", "db-0").is_none_or(|p| p.uid.as_deref() != Some(old_uid.as_str())) {
        assert!(Instant::now() < deadline, "the index never saw db-0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.faults().inject(Fault::delay(Duration::from_millis(800)).on(Verb::Evict).times(1));
    let pass = tokio::spawn({
        let r = a.rebalancer.clone();
        async move { r.pass(POLICY, true).await }
    });
    // The reservation is written before the eviction: once db-0 is in the history, the eviction is
    // (or is about to be) held up. Replace the pod then.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status(&server)["state"]["history"].as_array().into_iter().flatten().any(|e| e["pod"] == "db-0") {
        assert!(Instant::now() < deadline, "db-0 was never planned: {}", status(&server));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.delete("v1", "Pod", "shop", "db-0").unwrap();
    server.put(db()).unwrap();
    let new_uid = server.get("v1", "Pod", "shop", "db-0").unwrap()["metadata"]["uid"].as_str().unwrap().to_string();
    assert_ne!(old_uid, new_uid);

    let r = match pass.await.unwrap() {
        Ok(PassOutcome::Done(r)) => *r,
        other => panic!("pass did not complete: {other:?}"),
    };
    assert_eq!(r.plan.evictions.len(), 1, "{:?}", r.plan.evictions);
    assert_eq!(r.plan.evictions[0].uid.as_deref(), Some(old_uid.as_str()));
    assert_eq!(r.outcomes, vec![(r.plan.evictions[0].pod.clone(), Outcome::Gone)]);
    let now = server.get("v1", "Pod", "shop", "db-0").expect("the recreated db-0 is still there");
    assert_eq!(now["metadata"]["uid"].as_str(), Some(new_uid.as_str()));
    let s = status(&server);
    assert!(blocked_in_status(&s).contains("pod_gone"), "{}", s["lastPlan"]);
    assert_eq!(live_history(&s), 0, "the reservation is released");
}
