//! The webhook's decisions over a live index built from realistic objects: bursts land on target through
//! reservations, dry runs reserve nothing, rules take precedence in order, reinvocations are idempotent.

use k8s_openapi::api::core::v1::Pod;
use placement_core::apportion::{Apportionment, Base};
use placement_core::ledger::RESERVATION_ANNOTATION;
use placement_kube::crd::{PodDistribution, ZoneBalancer};
use placement_kube::live::{LiveIndex, SharedIndex};
use placement_testkit::uids::review_uid;
use placement_webhook::decide::{Candidate, DecideError, Decider, RuleKind, StaticRules};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const STRATEGY: &str = "base=1,weight=1,nodeSelector=capacity:on-demand;weight=3,nodeSelector=capacity:spot";

fn node(name: &str, zone: &str, capacity: &str) -> Value {
    let mut n = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {
            "topology.kubernetes.io/zone": zone, "capacity": capacity}},
        "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                   "conditions": [{"type": "Ready", "status": "True"}]}});
    if capacity == "spot" {
        n["spec"] = json!({"taints": [{"key": "spot", "value": "true", "effect": "NoSchedule"}]});
    }
    n
}

fn deployment(name: &str, replicas: u32, strategy: Option<&str>) -> Value {
    let annotations = strategy.map(|s| json!({"placement.dev/strategy": s})).unwrap_or(json!({}));
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}}}})
}

fn replicaset(deployment: &str, hash: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": format!("{deployment}-{hash}"), "namespace": "shop",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "uid": "d", "controller": true}]}})
}

/// A pod as the API server sends it to the webhook: generateName, no name, no node.
fn incoming(deployment: &str, hash: &str, labels: Value) -> Pod {
    let mut l = labels;
    l["pod-template-hash"] = json!(hash);
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": format!("{deployment}-{hash}-"), "namespace": "shop", "labels": l,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deployment}-{hash}"), "uid": "rs", "controller": true}]},
        "spec": {"tolerations": [{"key": "spot", "operator": "Exists"}],
                 "containers": [{"name": "app", "image": "app", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}))
    .unwrap()
}

fn index(objects: &[Value]) -> SharedIndex {
    let mut index = LiveIndex::new();
    for o in objects {
        match o["kind"].as_str().unwrap() {
            "Node" => index.apply_node(&serde_json::from_value(o.clone()).unwrap()),
            "Deployment" => index.apply_deployment(&serde_json::from_value(o.clone()).unwrap()),
            "ReplicaSet" => index.apply_replicaset(&serde_json::from_value(o.clone()).unwrap()),
            "Pod" => index.apply_pod(&serde_json::from_value(o.clone()).unwrap()),
            _ => {}
        }
    }
    SharedIndex::from_index(index)
}

fn cluster(strategy: Option<&str>) -> Vec<Value> {
    vec![
        node("od-a", "a", "on-demand"),
        node("od-b", "b", "on-demand"),
        node("spot-c", "c", "spot"),
        deployment("web", 20, strategy),
        replicaset("web", "h1"),
    ]
}

fn decide_n(decider: &Decider, prefix: &str, n: usize, dry_run: bool) -> BTreeMap<String, u32> {
    let mut placed = BTreeMap::new();
    for i in 0..n {
        let pod = incoming("web", "h1", json!({"app": "web"}));
        let uid = review_uid(prefix, i as u64);
        let d = decider.decide(&Candidate { pod: &pod, namespace: "shop", uid: &uid, dry_run }).unwrap();
        assert_eq!(d.rule, RuleKind::Strategy, "{d:?}");
        assert_eq!(d.reservation.is_some(), !dry_run);
        *placed.entry(d.required["capacity"].clone()).or_default() += 1;
    }
    placed
}

#[test]
fn a_burst_lands_exactly_on_target_through_reservations() {
    let decider =
        Decider::new(index(&cluster(Some(STRATEGY))), Arc::new(StaticRules::default()), Duration::from_secs(60));
    let placed = decide_n(&decider, "burst", 20, false);
    let want = Apportionment::new(vec![("a".into(), 1), ("b".into(), 3)], Some(Base { group: 0, count: 1 }))
        .unwrap()
        .target(20);
    assert_eq!(placed.get("on-demand").copied().unwrap_or(0), want[0], "{placed:?}");
    assert_eq!(placed.get("spot").copied().unwrap_or(0), want[1], "{placed:?}");
    assert_eq!(decider.index().read().ledger().len(), 20);
}

#[test]
fn dry_runs_reserve_nothing() {
    let decider =
        Decider::new(index(&cluster(Some(STRATEGY))), Arc::new(StaticRules::default()), Duration::from_secs(60));
    let placed = decide_n(&decider, "dry", 5, true);
    assert_eq!(placed, BTreeMap::from([("on-demand".to_string(), 5)]), "every dry run sees the same empty counts");
    assert_eq!(decider.index().read().ledger().len(), 0);
}

#[test]
fn pods_that_appear_replace_their_reservations() {
    let shared = index(&cluster(Some(STRATEGY)));
    let decider = Decider::new(shared.clone(), Arc::new(StaticRules::default()), Duration::from_secs(60));
    // Ten decisions, then their pods appear (bound to a node of the chosen group) carrying the ids.
    for i in 0..10 {
        let pod = incoming("web", "h1", json!({"app": "web"}));
        let uid = review_uid("uid", i as u64);
        let d = decider.decide(&Candidate { pod: &pod, namespace: "shop", uid: &uid, dry_run: false }).unwrap();
        let node = if d.required["capacity"] == "spot" { "spot-c" } else { "od-a" };
        let mut seen = serde_json::to_value(&pod).unwrap();
        seen["metadata"]["name"] = json!(format!("web-h1-{i}"));
        seen["metadata"]["annotations"] = json!({RESERVATION_ANNOTATION: uid});
        seen["spec"]["nodeName"] = json!(node);
        seen["status"] = json!({"phase": "Running"});
        shared.write().apply_pod(&serde_json::from_value(seen).unwrap());
    }
    assert_eq!(shared.read().ledger().len(), 0, "every reservation confirmed by its pod");
    // The next ten continue from the true counts.
    let placed = decide_n(&decider, "second", 10, false);
    let total_spot = placed.get("spot").copied().unwrap_or(0)
        + shared.read().snapshot().pods.iter().filter(|p| p.node_name.as_deref() == Some("spot-c")).count() as u32;
    let want = Apportionment::new(vec![("a".into(), 1), ("b".into(), 3)], Some(Base { group: 0, count: 1 }))
        .unwrap()
        .target(20);
    assert_eq!(
        total_spot,
        want[1],
        "placed {placed:?}, pods {:?}",
        shared
            .read()
            .snapshot()
            .pods
            .iter()
            .map(|p| (p.node_name.clone(), p.workload.clone(), p.revision.clone()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_pod_distribution_wins_over_the_annotation_and_preferred_enforcement_prefers() {
    let pd: PodDistribution = serde_yaml_ng::from_str(
        r#"
apiVersion: placement.dev/v1alpha1
kind: PodDistribution
metadata: {name: web, namespace: shop, uid: pd-1, generation: 1}
spec:
  targetRef: {kind: Deployment, name: web}
  enforcement: preferred
  groups:
  - name: spot
    nodeSelector: {matchLabels: {capacity: spot}}
    weight: 1
"#,
    )
    .unwrap();
    let rules = StaticRules { distributions: vec![Arc::new(pd)], zone_balancers: vec![], ..Default::default() };
    let decider = Decider::new(index(&cluster(Some(STRATEGY))), Arc::new(rules), Duration::from_secs(60));
    let pod = incoming("web", "h1", json!({"app": "web"}));
    let d = decider.decide(&Candidate { pod: &pod, namespace: "shop", uid: "u", dry_run: false }).unwrap();
    assert_eq!(d.rule, RuleKind::PodDistribution);
    assert_eq!(d.source, "PodDistribution shop/web");
    assert!(d.required.is_empty());
    assert_eq!(d.preferred.get("capacity").map(String::as_str), Some("spot"));
}

#[test]
fn of_two_pod_distributions_for_one_workload_the_oldest_applies() {
    let pd = |name: &str, created: &str, group: &str| -> Arc<PodDistribution> {
        Arc::new(
            serde_yaml_ng::from_str(&format!(
                r#"
apiVersion: placement.dev/v1alpha1
kind: PodDistribution
metadata: {{name: {name}, namespace: shop, uid: {name}, generation: 1, creationTimestamp: "{created}"}}
spec:
  targetRef: {{kind: Deployment, name: web}}
  groups:
  - name: {group}
    nodeSelector: {{matchLabels: {{capacity: {group}}}}}
    weight: 1
"#
            ))
            .unwrap(),
        )
    };
    let newer = pd("a-newer", "2026-02-01T00:00:00Z", "spot");
    let older = pd("z-older", "2026-01-01T00:00:00Z", "on-demand");
    for order in [vec![newer.clone(), older.clone()], vec![older.clone(), newer.clone()]] {
        let rules = StaticRules { distributions: order, zone_balancers: vec![], ..Default::default() };
        let decider = Decider::new(index(&cluster(None)), Arc::new(rules), Duration::from_secs(60));
        let pod = incoming("web", "h1", json!({"app": "web"}));
        let d = decider.decide(&Candidate { pod: &pod, namespace: "shop", uid: "u", dry_run: false }).unwrap();
        assert_eq!(d.source, "PodDistribution shop/z-older", "the operator's rule: oldest first");
        assert_eq!(d.required.get("capacity").map(String::as_str), Some("on-demand"));
    }
}

#[test]
fn zone_balancer_spreads_single_replica_workloads_and_skips_others() {
    let zb: ZoneBalancer = serde_yaml_ng::from_str(
        r#"
apiVersion: placement.dev/v1alpha1
kind: ZoneBalancer
metadata: {name: singletons, namespace: shop}
spec:
  selector: {matchLabels: {zone-balance: "true"}}
  topologyKey: topology.kubernetes.io/zone
  mode: webhook
  affinity: required
"#,
    )
    .unwrap();
    let mut objects = cluster(None);
    for name in ["s1", "s2", "s3", "s4"] {
        objects.push(deployment(name, 1, None));
        objects.push(replicaset(name, "h"));
    }
    objects.push(deployment("big", 5, None));
    objects.push(replicaset("big", "h"));
    let rules = StaticRules { distributions: vec![], zone_balancers: vec![Arc::new(zb)], ..Default::default() };
    let decider = Decider::new(index(&objects), Arc::new(rules), Duration::from_secs(60));
    let mut zones = Vec::new();
    for name in ["s1", "s2", "s3", "s4"] {
        let pod = incoming(name, "h", json!({"app": name, "zone-balance": "true"}));
        let d = decider
            .decide(&Candidate { pod: &pod, namespace: "shop", uid: &review_uid(name, 0), dry_run: false })
            .unwrap();
        assert_eq!(d.rule, RuleKind::ZoneBalancer, "{d:?}");
        zones.push(d.required["topology.kubernetes.io/zone"].clone());
    }
    assert_eq!(zones, ["a", "b", "c", "a"], "least-loaded zone, ties to the lowest name");
    let pod = incoming("big", "h", json!({"app": "big", "zone-balance": "true"}));
    let d = decider
        .decide(&Candidate { pod: &pod, namespace: "shop", uid: &review_uid("big", 0), dry_run: false })
        .unwrap();
    assert_eq!(d.rule, RuleKind::None, "five replicas are not a single-replica workload");
}

#[test]
fn reinvocations_bare_pods_and_bad_rules() {
    let decider =
        Decider::new(index(&cluster(Some(STRATEGY))), Arc::new(StaticRules::default()), Duration::from_secs(60));
    let mut pod = incoming("web", "h1", json!({"app": "web"}));
    pod.metadata.annotations = Some([(RESERVATION_ANNOTATION.to_string(), "uid-0".to_string())].into());
    let d = decider.decide(&Candidate { pod: &pod, namespace: "shop", uid: "uid-0", dry_run: false }).unwrap();
    assert!(!d.places() && d.reason.contains("already placed"), "{d:?}");
    let mut bare = incoming("web", "h1", json!({}));
    bare.metadata.owner_references = None;
    let d = decider.decide(&Candidate { pod: &bare, namespace: "shop", uid: "b", dry_run: false }).unwrap();
    assert!(!d.places() && d.reason.contains("no controller"), "{d:?}");

    let bad =
        Decider::new(index(&cluster(Some("weight=x"))), Arc::new(StaticRules::default()), Duration::from_secs(60));
    let pod = incoming("web", "h1", json!({"app": "web"}));
    let e = bad.decide(&Candidate { pod: &pod, namespace: "shop", uid: "x", dry_run: false }).unwrap_err();
    assert_eq!(e.metric_label(), "rule");
    assert!(e.to_string().contains("Deployment/shop/web"), "{e}");
}

/// A strategy past a PodDistribution's limits is a rule error naming the limit and its position (the
/// webhook then admits the pod unmutated with a warning, as for any rule error); at the limit it applies.
#[test]
fn a_strategy_past_its_limits_is_a_rule_error_naming_the_limit() {
    let rules = |n: usize| (0..n).map(|i| format!("weight=1,nodeSelector=capacity:c{i}")).collect::<Vec<_>>().join(";");
    let pod = incoming("web", "h1", json!({"app": "web"}));
    let past =
        Decider::new(index(&cluster(Some(&rules(17)))), Arc::new(StaticRules::default()), Duration::from_secs(60));
    let e = past.decide(&Candidate { pod: &pod, namespace: "shop", uid: "x", dry_run: false }).unwrap_err();
    assert!(matches!(e, DecideError::Rule(_)), "{e:?}");
    assert!(e.to_string().contains("(rule 17): more than 16 rules"), "{e}");
    let at = Decider::new(index(&cluster(Some(&rules(16)))), Arc::new(StaticRules::default()), Duration::from_secs(60));
    assert!(at.decide(&Candidate { pod: &pod, namespace: "shop", uid: "y", dry_run: false }).is_ok());
}

/// The pod of decision `uid` as a watch shows it: named, bound to a node of its group, carrying the id.
fn seen_pod(uid: &str, group: &str, i: usize) -> Pod {
    let mut seen = serde_json::to_value(incoming("web", "h1", json!({"app": "web"}))).unwrap();
    seen["metadata"]["name"] = json!(format!("web-h1-{i}"));
    seen["metadata"]["annotations"] = json!({RESERVATION_ANNOTATION: uid});
    seen["spec"]["nodeName"] = json!(if group == "spot" { "spot-c" } else { "od-a" });
    seen["status"] = json!({"phase": "Running"});
    serde_json::from_value(seen).unwrap()
}

#[test]
fn strict_mode_counts_a_shared_reservation_until_the_local_watch_sees_its_pod() {
    use placement_core::ledger::LedgerState;
    use placement_core::model::{WorkloadKind, WorkloadRef};
    let key = WorkloadRef::new(WorkloadKind::Deployment, "shop", "web");
    let (index_a, index_b) = (index(&cluster(Some(STRATEGY))), index(&cluster(Some(STRATEGY))));
    let a = Decider::new(index_a.clone(), Arc::new(StaticRules::default()), Duration::from_secs(60));
    let b = Decider::new(index_b.clone(), Arc::new(StaticRules::default()), Duration::from_secs(60));

    // Replica a decides four pods and shares them.
    let mut groups = Vec::new();
    for i in 0..4 {
        let pod = incoming("web", "h1", json!({"app": "web"}));
        let uid = review_uid("a", i as u64);
        let d = a.decide(&Candidate { pod: &pod, namespace: "shop", uid: &uid, dry_run: false }).unwrap();
        groups.push(d.required["capacity"].clone());
    }
    let shared = a.shared_state(&key, &LedgerState::default());
    assert_eq!(shared.reservations.len(), 4);
    assert!(shared.confirmed.is_empty());

    // a's watch shows a-0's pod: a marks it confirmed but keeps it listed for lagging peers.
    index_a.write().apply_pod(&seen_pod(&review_uid("a", 0), &groups[0], 0));
    let shared = a.shared_state(&key, &shared);
    assert_eq!(shared.reservations.len(), 4, "still listed");
    assert!(shared.confirmed.contains_key(&review_uid("a", 0)));

    // b has not seen that pod yet: it counts all four.
    b.sync_shared_ledger(&key, &shared);
    assert_eq!(index_b.read().ledger().len(), 4, "a-0 counted as a reservation until b sees its pod");
    index_b.write().apply_pod(&seen_pod(&review_uid("a", 0), &groups[0], 0));
    assert_eq!(index_b.read().ledger().len(), 3, "and as a pod once it does, never twice");
    b.sync_shared_ledger(&key, &shared);
    assert_eq!(index_b.read().ledger().len(), 3, "a re-read does not bring it back");

    // a drops a-1 (say its pod pinned another group): the next write leaves it out, and b follows.
    a.release(&review_uid("a", 1));
    let shared = a.shared_state(&key, &shared);
    assert!(!shared.reservations.iter().any(|r| r.id == review_uid("a", 1)), "{shared:?}");
    b.sync_shared_ledger(&key, &shared);
    assert_eq!(index_b.read().ledger().len(), 2);

    // A confirmation whose listing time is over drops the reservation everywhere.
    let mut old = shared.clone();
    old.confirmed.insert(review_uid("a", 2), jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1));
    b.sync_shared_ledger(&key, &old);
    assert_eq!(index_b.read().ledger().len(), 1);
    assert!(!b.shared_state(&key, &old).reservations.iter().any(|r| r.id == review_uid("a", 2)));

    // b's own next decision counts a-0's pod and a-3's reservation (a-1 and a-2 are gone): three on target(3).
    let pod = incoming("web", "h1", json!({"app": "web"}));
    let d = b.decide(&Candidate { pod: &pod, namespace: "shop", uid: &review_uid("b", 0), dry_run: false }).unwrap();
    let mut counts = BTreeMap::<String, u32>::new();
    for g in [&groups[0], &groups[3], &d.required["capacity"]] {
        *counts.entry(g.clone()).or_default() += 1;
    }
    let want = Apportionment::new(vec![("a".into(), 1), ("b".into(), 3)], Some(Base { group: 0, count: 1 }))
        .unwrap()
        .target(3);
    assert_eq!(counts.get("on-demand").copied().unwrap_or(0), want[0], "{counts:?}");
}

#[test]
fn pods_bound_by_their_creator_and_reinvocations_are_left_as_they_are() {
    let decider =
        Decider::new(index(&cluster(Some(STRATEGY))), Arc::new(StaticRules::default()), Duration::from_secs(60));
    let decide =
        |pod: &Pod, uid: &str| decider.decide(&Candidate { pod, namespace: "shop", uid, dry_run: false }).unwrap();

    // spec.nodeName: the scheduler never sees the pod, a selector could only get it rejected.
    let mut bound = incoming("web", "h1", json!({"app": "web"}));
    bound.spec.as_mut().unwrap().node_name = Some("od-a".into());
    let d = decide(&bound, &review_uid("bound", 0));
    assert_eq!(d.rule, RuleKind::None);
    assert!(d.reason.contains("bound to node od-a"), "{}", d.reason);
    assert!(!d.places() && d.reservation.is_none());

    // A reinvocation carries the decision (a steering-only decision has no reservation annotation).
    let mut decided = incoming("web", "h1", json!({"app": "web"}));
    decided.metadata.annotations = Some(BTreeMap::from([(
        "placement.dev/decision".to_string(),
        "RebalancePolicy default: steered to node od-b".to_string(),
    )]));
    let d = decide(&decided, &review_uid("again", 0));
    assert!(d.reason.contains("reinvocation") && !d.places(), "{d:?}");

    // A reservation id of any size is quoted cut.
    let mut reserved = incoming("web", "h1", json!({"app": "web"}));
    reserved.metadata.annotations = Some(BTreeMap::from([(RESERVATION_ANNOTATION.to_string(), "x".repeat(100_000))]));
    let d = decide(&reserved, &review_uid("reserved", 0));
    assert!(d.reason.len() < 200 && !d.places(), "{}", d.reason);

    assert_eq!(decider.index().read().ledger().len(), 0, "none of them reserved anything");
    assert!(
        decide(&incoming("web", "h1", json!({"app": "web"})), &review_uid("fresh", 0)).places(),
        "an ordinary pod is placed"
    );
}

#[test]
fn the_decision_annotation_is_bounded() {
    use placement_webhook::admission::{DECISION_ANNOTATION, DECISION_ANNOTATION_MAX, placement};
    use placement_webhook::decide::Decision;
    let long = Decision {
        rule: RuleKind::Strategy,
        source: "strategy annotation on Deployment/shop/web".into(),
        required: BTreeMap::from([("capacity".to_string(), "spot".to_string())]),
        preferred: BTreeMap::new(),
        reason: "r".repeat(DECISION_ANNOTATION_MAX * 4),
        reservation: None,
        steer: None,
    };
    let text = &placement(&long).annotations[DECISION_ANNOTATION];
    assert_eq!(text.chars().count(), DECISION_ANNOTATION_MAX);
    assert!(text.ends_with('…'));
    let short = Decision { reason: "spot: shortfall 1".into(), ..long };
    assert_eq!(placement(&short).annotations[DECISION_ANNOTATION], format!("{}: spot: shortfall 1", short.source));
}

/// A uid the API server would not send (not a UUID, or a megabyte of it) is decided like any other but
/// never stored: no reservation, nothing in the ledger.
#[test]
fn a_uid_not_of_our_shape_is_decided_but_reserves_nothing() {
    let decider =
        Decider::new(index(&cluster(Some(STRATEGY))), Arc::new(StaticRules::default()), Duration::from_secs(60));
    let huge = "f".repeat(1 << 20);
    let longer = format!("{}-0", review_uid("x", 0));
    for uid in ["burst-0", huge.as_str(), longer.as_str()] {
        let pod = incoming("web", "h1", json!({"app": "web"}));
        let d = decider.decide(&Candidate { pod: &pod, namespace: "shop", uid, dry_run: false }).unwrap();
        assert!(d.places(), "{d:?}");
        assert_eq!(d.reservation, None, "uid of {} bytes", uid.len());
    }
    assert_eq!(decider.index().read().ledger().len(), 0);
    let pod = incoming("web", "h1", json!({"app": "web"}));
    let uid = review_uid("x", 1);
    let d = decider.decide(&Candidate { pod: &pod, namespace: "shop", uid: &uid, dry_run: false }).unwrap();
    assert_eq!(d.reservation.as_deref(), Some(uid.as_str()), "a UUID reserves");
}

/// Rules a test can change while the decider runs (the live source follows watches the same way).
#[derive(Default)]
struct ChangingRules(std::sync::Mutex<StaticRules>);

impl placement_webhook::decide::RuleSource for ChangingRules {
    fn distributions(&self, namespace: &str) -> Vec<Arc<PodDistribution>> {
        self.0.lock().unwrap().distributions(namespace)
    }
    fn zone_balancers(&self, namespace: &str) -> Vec<Arc<ZoneBalancer>> {
        self.0.lock().unwrap().zone_balancers(namespace)
    }
    fn rebalance_policies(&self) -> Vec<Arc<placement_kube::crd::RebalancePolicy>> {
        vec![]
    }
}

fn zone_balancer(label: &str) -> Arc<ZoneBalancer> {
    let yaml = format!(
        "apiVersion: placement.dev/v1alpha1\nkind: ZoneBalancer\nmetadata: {{name: singletons, namespace: shop}}\n\
         spec: {{selector: {{matchLabels: {{{label}: \"true\"}}}}, mode: webhook, affinity: required}}"
    );
    Arc::new(serde_yaml_ng::from_str(&yaml).unwrap())
}

/// A ZoneBalancer whose selector changes gets a new zone scope and its old one is unregistered; a
/// deleted one's scope goes at the next upkeep pass. So edits and churn never pile scopes up.
#[test]
fn zone_scopes_follow_their_balancers_and_are_freed() {
    let mut objects = cluster(None);
    objects.push(deployment("s1", 1, None));
    objects.push(replicaset("s1", "h"));
    let rules = Arc::new(ChangingRules::default());
    let decider = Decider::new(index(&objects), rules.clone(), Duration::from_secs(60));
    let registered = || (decider.zone_scope_count(), decider.index().read().counts().zone_scope_count());
    let pod = incoming("s1", "h", json!({"app": "s1", "a": "true", "b": "true"}));
    for (i, label) in ["a", "b", "a", "b"].into_iter().enumerate() {
        rules.0.lock().unwrap().zone_balancers = vec![zone_balancer(label)];
        let uid = review_uid(label, i as u64);
        let d = decider.decide(&Candidate { pod: &pod, namespace: "shop", uid: &uid, dry_run: false }).unwrap();
        assert_eq!(d.rule, RuleKind::ZoneBalancer, "{d:?}");
        assert_eq!(registered(), (1, 1), "after selector {label}");
    }
    assert_eq!(decider.forget_unused_scopes(), 0, "the balancer is still there");
    rules.0.lock().unwrap().zone_balancers.clear();
    assert_eq!(decider.forget_unused_scopes(), 1);
    assert_eq!(registered(), (0, 0));
}
