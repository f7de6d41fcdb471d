//! The live index against the fake API server with the real kube watchers: counts match the objects,
//! readiness waits for every initial list, and watch restarts, compaction and errors never leave the
//! index wrong.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use placement_core::group::NodeGroup;
use placement_core::model::WorkloadRef;
use placement_core::selector::LabelSelector;
use placement_kube::convert::SnapshotBuilder;
use placement_kube::live::{self, Kind, LiveIndex, WatchOptions};
use placement_testkit::{FakeApiServer, Fault, Verb};
use serde_json::{Value, json};
use std::time::Duration;

fn node(name: &str, zone: &str, capacity: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {
            "topology.kubernetes.io/zone": zone, "capacity": capacity}},
        "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn replicaset(name: &str, deployment: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": "shop",
        "uid": format!("uid-{name}"),
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "uid": "d", "controller": true}]},
        "spec": {"selector": {"matchLabels": {"app": deployment}}}})
}

fn pod(name: &str, rs: &str, hash: &str, node: Option<&str>) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop",
        "labels": {"app": "web", "pod-template-hash": hash},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": format!("uid-{rs}"), "controller": true}]},
        "spec": spec, "status": {"phase": if node.is_some() { "Running" } else { "Pending" }}})
}

fn groups() -> Vec<NodeGroup> {
    ["on-demand", "spot"]
        .iter()
        .map(|c| NodeGroup::new(c.to_string(), LabelSelector::from_pairs([("capacity", *c)])))
        .collect()
}

fn counts(index: &LiveIndex, revision: &str) -> Vec<u32> {
    index.counts().group_counts(&WorkloadRef::deployment("shop", "web"), Some(revision), &groups())
}

/// The index built from the server's objects in one go, for comparison.
fn from_scratch(server: &FakeApiServer) -> LiveIndex {
    let mut index = LiveIndex::new();
    let nodes: Vec<k8s_openapi::api::core::v1::Node> =
        server.list("v1", "Node", None).into_iter().map(|v| serde_json::from_value(v).unwrap()).collect();
    let rss: Vec<k8s_openapi::api::apps::v1::ReplicaSet> =
        server.list("apps/v1", "ReplicaSet", None).into_iter().map(|v| serde_json::from_value(v).unwrap()).collect();
    let pods: Vec<Pod> =
        server.list("v1", "Pod", None).into_iter().map(|v| serde_json::from_value(v).unwrap()).collect();
    for n in &nodes {
        index.apply_node(n);
    }
    for r in &rss {
        index.apply_replicaset(r);
    }
    for p in &pods {
        index.apply_pod(p);
    }
    index
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn seed(server: &FakeApiServer) {
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})).unwrap();
    for (i, cap) in ["on-demand", "on-demand", "spot", "spot"].iter().enumerate() {
        server.put(node(&format!("n{i}"), ["a", "b", "c"][i % 3], cap)).unwrap();
    }
    server.put(replicaset("web-111", "web")).unwrap();
    server.put(replicaset("web-222", "web")).unwrap();
    for i in 0..6 {
        let n = format!("n{}", i % 4);
        server.put(pod(&format!("web-111-{i}"), "web-111", "111", Some(&n))).unwrap();
    }
    server.put(pod("web-222-0", "web-222", "222", Some("n2"))).unwrap();
}

#[tokio::test]
async fn counts_follow_the_cluster_event_by_event() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    let (shared, _watchers) = live::spawn(server.client(), WatchOptions::default());
    assert!(shared.wait_ready(Duration::from_secs(15)).await, "ready once every list is synced");
    {
        let index = shared.read();
        assert_eq!(index.node_count(), 4);
        assert_eq!(index.pod_count(), 7);
        // n0, n1 on-demand; n2, n3 spot: pods 0..6 on n0,n1,n2,n3,n0,n1 -> on-demand 4, spot 2.
        assert_eq!(counts(&index, "111"), vec![4, 2]);
        assert_eq!(counts(&index, "222"), vec![0, 1], "the new revision is counted on its own");
        let n0 = index.node("n0").unwrap();
        assert_eq!((n0.requested.cpu_millis, n0.pod_count), (1000, 2));
        assert_eq!(index.error_count(), 0);
    }

    let pods: Api<Pod> = Api::namespaced(server.client(), "shop");
    let p: Pod = serde_json::from_value(pod("web-111-9", "web-111", "111", Some("n3"))).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    eventually("the new pod is counted", || counts(&shared.read(), "111") == vec![4, 3]).await;
    pods.delete("web-111-0", &DeleteParams::default()).await.unwrap();
    eventually("the deleted pod is not", || counts(&shared.read(), "111") == vec![3, 3]).await;
    // A node relabelled from spot to on-demand moves its pods without a recount.
    let mut n3 = node("n3", "a", "on-demand");
    n3["metadata"]["resourceVersion"] = json!(null);
    server.put(n3).unwrap();
    eventually("relabelled node", || counts(&shared.read(), "111") == vec![5, 1]).await;
    // A malformed pod is reported and skipped, never a panic.
    let mut bad = pod("bad", "web-111", "111", Some("n0"));
    bad["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("5x");
    server.put(bad).unwrap();
    eventually("the malformed pod is reported", || shared.read().error_count() == 1).await;
    let err = shared.read().recent_errors().next().unwrap().to_string();
    assert!(err.contains("shop/bad") && err.contains("spec.containers[0].resources.requests.cpu"), "{err}");
    assert_eq!(counts(&shared.read(), "111"), vec![5, 1]);
}

#[tokio::test]
async fn not_ready_until_every_list_succeeds() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    server.faults().inject(Fault::error(500).on(Verb::List).resource("pods").times(3));
    let (shared, _watchers) = live::spawn(server.client(), WatchOptions::default());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!shared.is_ready() || server.faults().hits() == 3, "not ready while the pod list fails");
    assert!(shared.wait_ready(Duration::from_secs(20)).await);
    assert_eq!(server.faults().hits(), 3);
    assert_eq!(shared.read().pod_count(), 7);
    assert!(shared.read().is_synced(Kind::Pod));
}

#[tokio::test]
async fn restarts_relists_and_compaction_converge_to_the_truth() {
    let server = FakeApiServer::start().await.unwrap();
    seed(&server);
    let options = WatchOptions { page_size: 3, ..WatchOptions::default() };
    let (shared, _watchers) = live::spawn(server.client(), options);
    assert!(shared.wait_ready(Duration::from_secs(15)).await);

    // Watches fail while pods are deleted and created; the event log is compacted, so the watchers
    // must relist (410 Gone) and drop what they missed.
    let lists_before = shared.read().relist_count();
    server.faults().inject(Fault::error(500).on(Verb::Watch).resource("pods"));
    server.drop_watches();
    for i in 0..3 {
        server.delete("v1", "Pod", "shop", &format!("web-111-{i}")).unwrap();
    }
    for i in 10..15 {
        server.put(pod(&format!("web-222-{i}"), "web-222", "222", Some("n1"))).unwrap();
    }
    server.compact();
    server.faults().clear();
    let truth = from_scratch(&server);
    let want_old = counts(&truth, "111");
    let want_new = counts(&truth, "222");
    assert_eq!((want_old.clone(), want_new.clone()), (vec![2, 1], vec![5, 1]));
    eventually("the live index converges after relisting", || {
        let index = shared.read();
        let ok = counts(&index, "111") == want_old
            && counts(&index, "222") == want_new
            && index.pod_count() == truth.pod_count();
        if !ok {
            eprintln!("live: {:?} {:?} {} pods", counts(&index, "111"), counts(&index, "222"), index.pod_count());
        }
        ok
    })
    .await;
    assert!(shared.read().relist_count() > lists_before, "the 410 made the pod watcher relist");
    let live = shared.read().snapshot();
    let scratch = truth.snapshot();
    assert_eq!(live.pods, scratch.pods);
    assert_eq!(live.nodes, scratch.nodes);
    assert!(shared.is_ready(), "a relist keeps the index ready");
}

#[test]
fn relist_deletes_what_it_did_not_mention() {
    let mut index = LiveIndex::new();
    let p = |name: &str| -> Pod { serde_json::from_value(pod(name, "web-111", "111", Some("n0"))).unwrap() };
    let n: k8s_openapi::api::core::v1::Node = serde_json::from_value(node("n0", "a", "spot")).unwrap();
    index.apply_node(&n);
    index.apply_pod(&p("a"));
    index.apply_pod(&p("b"));
    index.begin_relist(Kind::Pod);
    index.apply_pod(&p("b"));
    assert_eq!(index.pod_count(), 2, "the old view serves until the relist completes");
    index.apply_pod(&p("c"));
    index.end_relist(Kind::Pod);
    let names: Vec<String> = index.snapshot().pods.into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(index.node("n0").unwrap().pod_count, 2);
    assert!(index.is_synced(Kind::Pod) && !index.is_synced(Kind::Node));
}

#[test]
fn snapshot_builder_and_live_index_agree() {
    let objects: Vec<Pod> =
        (0..5).map(|i| serde_json::from_value(pod(&format!("p{i}"), "web-111", "111", Some("n0"))).unwrap()).collect();
    let nodes: Vec<k8s_openapi::api::core::v1::Node> = vec![serde_json::from_value(node("n0", "a", "spot")).unwrap()];
    let (snapshot, errors) = SnapshotBuilder::new().nodes(&nodes).pods(&objects).build();
    assert!(errors.is_empty());
    let mut index = LiveIndex::new();
    index.apply_node(&nodes[0]);
    for p in &objects {
        index.apply_pod(p);
    }
    assert_eq!(index.snapshot().pods, snapshot.pods);
    assert_eq!(index.snapshot().nodes, snapshot.nodes);
}

#[test]
fn generated_cluster_objects_convert_back_to_the_snapshot() {
    use placement_core::testing::generator::{ClusterSpec, generate};
    let snapshot = generate(&ClusterSpec::small());
    let mut index = LiveIndex::new();
    for o in placement_testkit::objects::cluster_objects(&snapshot) {
        match o["kind"].as_str().unwrap() {
            "Node" => index.apply_node(&serde_json::from_value(o).unwrap()),
            "Pod" => index.apply_pod(&serde_json::from_value(o).unwrap()),
            "ReplicaSet" => index.apply_replicaset(&serde_json::from_value(o).unwrap()),
            "Deployment" => index.apply_deployment(&serde_json::from_value(o).unwrap()),
            "StatefulSet" => index.apply_statefulset(&serde_json::from_value(o).unwrap()),
            "PodDisruptionBudget" => index.apply_pdb(&serde_json::from_value(o).unwrap()),
            _ => {}
        }
    }
    assert_eq!(index.error_count(), 0, "{:?}", index.recent_errors().next());
    let live = index.snapshot();
    assert_eq!(live.nodes.len(), snapshot.nodes.len());
    for want in &snapshot.nodes {
        let got = live.nodes.iter().find(|n| n.name == want.name).unwrap();
        assert_eq!(
            (&got.labels, &got.allocatable, got.ready, got.max_pods),
            (&want.labels, &want.allocatable, want.ready, want.max_pods)
        );
        assert_eq!((got.requested, got.pod_count), (want.requested, want.pod_count), "node {}", want.name);
    }
    assert_eq!(live.pods.len(), snapshot.pods.len());
    for want in &snapshot.pods {
        let got = index.pod(&want.namespace, &want.name).unwrap();
        // Job pods carry no revision in Kubernetes (the generator gives them one).
        let want_revision =
            if want.controller == placement_core::model::ControllerKind::Job { None } else { want.revision.clone() };
        assert_eq!(
            (
                &got.workload,
                &got.revision,
                &got.controller,
                &got.node_name,
                got.requests,
                got.phase,
                got.priority,
                got.terminating
            ),
            (
                &want.workload,
                &want_revision,
                &want.controller,
                &want.node_name,
                want.requests,
                want.phase,
                want.priority,
                want.terminating
            ),
            "pod {}/{}",
            want.namespace,
            want.name
        );
    }
    assert_eq!(
        live.workloads.len(),
        snapshot
            .workloads
            .iter()
            .filter(|w| matches!(
                w.workload.kind,
                placement_core::model::WorkloadKind::Deployment | placement_core::model::WorkloadKind::StatefulSet
            ))
            .count()
    );
}

#[tokio::test]
async fn custom_resources_are_reflected_with_readiness() {
    use placement_kube::crd::ZoneBalancer;
    use placement_kube::live::Reflected;
    let server = FakeApiServer::start().await.unwrap();
    for crd in placement_kube::crd::all_crds() {
        server.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})).unwrap();
    let example: Value = serde_yaml_ng::from_str(include_str!("../../examples/crds/zonebalancer.yaml")).unwrap();
    let mut zb = example.clone();
    zb["metadata"]["namespace"] = json!("shop");
    server.put(zb).unwrap();
    // The first list fails twice: not ready until it succeeds.
    server.faults().inject(Fault::error(500).on(Verb::List).resource("zonebalancers").times(2));
    let reflected = Reflected::spawn(Api::<ZoneBalancer>::all(server.client()));
    assert!(!reflected.is_ready());
    assert!(reflected.wait_ready(Duration::from_secs(15)).await);
    assert_eq!(server.faults().hits(), 2);
    assert_eq!(reflected.store().state().len(), 1);
    let mut second = example;
    second["metadata"]["name"] = json!("second");
    second["metadata"]["namespace"] = json!("shop");
    server.put(second).unwrap();
    eventually("the new resource is reflected", || reflected.store().state().len() == 2).await;
}

#[tokio::test]
async fn the_example_cluster_and_resources_load_and_index() {
    use placement_core::strategy::Strategy;
    let server = FakeApiServer::start().await.unwrap();
    for crd in placement_kube::crd::all_crds() {
        server.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    let n = server.put_yaml(include_str!("../../examples/clusters/small.yaml")).unwrap();
    assert_eq!(n, 9);
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/crds");
    for entry in std::fs::read_dir(examples).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        server.put_yaml(&text).unwrap();
    }
    let (shared, _watchers) = live::spawn(server.client(), WatchOptions::default());
    assert!(shared.wait_ready(Duration::from_secs(15)).await);
    let index = shared.read();
    let web = WorkloadRef::deployment("shop", "web");
    let workload = index.workload(&web).expect("the Deployment is indexed");
    let strategy: Strategy = workload.annotations[placement_core::strategy::STRATEGY_ANNOTATION]
        .parse()
        .expect("the example strategy parses");
    let groups: Vec<NodeGroup> = strategy.groups();
    assert_eq!(index.counts().group_counts(&web, Some("5d8f7"), &groups), vec![1, 1]);
    assert_eq!(index.node_count(), 3);
}

#[test]
fn a_seen_pod_confirms_its_reservation_under_the_same_lock() {
    use placement_core::ledger::{RESERVATION_ANNOTATION, Reservation};
    const UID: &str = "6f1c2a9e-3b7d-4c55-9a0e-2d4b8f7a1c30";
    let mut index = LiveIndex::new();
    let n: k8s_openapi::api::core::v1::Node = serde_json::from_value(node("n0", "a", "spot")).unwrap();
    index.apply_node(&n);
    let web = WorkloadRef::deployment("shop", "web");
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
    let reservation = Reservation {
        id: UID.into(),
        workload: web.clone(),
        revision: Some("111".into()),
        group: "spot".into(),
        pod: None,
        expires,
    };
    assert!(index.ledger_mut().add(reservation.clone()));
    let total = |i: &LiveIndex| counts(i, "111")[1] + i.ledger().reserved(&web, Some("111"), "spot");
    assert_eq!(total(&index), 1, "reserved, not yet seen");
    let mut p = pod("web-111-x", "web-111", "111", Some("n0"));
    p["metadata"]["annotations"] = json!({RESERVATION_ANNOTATION: UID});
    index.apply_pod(&serde_json::from_value(p).unwrap());
    assert_eq!(index.ledger().reserved(&web, Some("111"), "spot"), 0);
    assert_eq!(total(&index), 1, "seen, no longer reserved: counted once");
    assert!(!index.ledger_mut().add(reservation), "a late copy of a confirmed reservation is ignored");
}

/// A tenant can put any value in a pod's `placement.dev/reservation`: only ids of our shape (UUIDs) are
/// remembered as tombstones; a 100 KiB value or a short made-up one leaves nothing behind.
#[test]
fn a_reservation_annotation_not_of_our_shape_leaves_no_tombstone() {
    use placement_core::ledger::RESERVATION_ANNOTATION;
    let mut index = LiveIndex::new();
    let ours = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let huge = "x".repeat(100 << 10);
    for (name, value) in [("p-ours", ours), ("p-short", "burst-0"), ("p-huge", huge.as_str())] {
        let mut p = pod(name, "web-111", "111", None);
        p["metadata"]["annotations"] = json!({RESERVATION_ANNOTATION: value});
        index.apply_pod(&serde_json::from_value(p).unwrap());
    }
    assert!(index.ledger().is_confirmed(ours), "our shape: remembered, so a late copy is never counted");
    assert!(!index.ledger().is_confirmed("burst-0"));
    assert!(!index.ledger().is_confirmed(&huge));
    let kept = index.snapshot().pods.iter().filter(|p| p.annotations.contains_key(RESERVATION_ANNOTATION)).count();
    assert_eq!(kept, 1, "only the UUID-shaped value is kept on the indexed pod");
}
