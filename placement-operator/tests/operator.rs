//! The whole operator as `placement-operator run` starts it (every controller, leader election, the
//! live index) against the fake API server: a ZoneBalancer in operator mode pins its workloads, a
//! PodDistribution gets its status, and a RebalancePolicy (dry run, by requests) gets its plan.

use placement_operator::runtime::leader::LeaseConfig;
use placement_operator::runtime::{RunConfig, run_with};
use placement_testkit::FakeApiServer;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const NS: &str = "shop";

fn seed(fake: &FakeApiServer) {
    for crd in placement_kube::crd::all_crds() {
        fake.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    for ns in [NS, "placement-system"] {
        fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).unwrap();
    }
    for (name, zone, capacity) in [("a-1", "a", "on-demand"), ("b-1", "b", "on-demand"), ("c-1", "c", "spot")] {
        fake.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
                "labels": {"topology.kubernetes.io/zone": zone, "capacity": capacity}},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}}))
            .unwrap();
    }
    // Three single-replica workloads for the balancer.
    for i in 0..3 {
        fake.put(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("one-{i}"), "namespace": NS,
                "labels": {"tier": "singleton"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": format!("one-{i}")}},
                "template": {"metadata": {"labels": {"app": format!("one-{i}")}}, "spec": {"containers": [{"name": "c", "image": "c"}]}}}}))
            .unwrap();
    }
    fake.put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "ZoneBalancer", "metadata": {"name": "singletons", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"tier": "singleton"}}, "mode": "operator"}}))
        .unwrap();
    // A distributed workload with two pods, both on on-demand.
    fake.put(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS, "uid": "web-uid"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "c"}]}}}}))
        .unwrap();
    fake.put(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-h1", "namespace": NS, "uid": "rs-uid",
            "labels": {"app": "web", "pod-template-hash": "h1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "web-uid", "controller": true}]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "h1"}}}}))
        .unwrap();
    for (i, node) in ["a-1", "b-1"].iter().enumerate() {
        fake.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("web-h1-{i}"), "namespace": NS,
                "labels": {"app": "web", "pod-template-hash": "h1"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-h1", "uid": "rs-uid", "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "c"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}))
            .unwrap();
    }
    fake.put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "PodDistribution", "metadata": {"name": "web", "namespace": NS},
        "spec": {"targetRef": {"kind": "Deployment", "name": "web"},
            "groups": [{"name": "on-demand", "nodeSelector": {"matchLabels": {"capacity": "on-demand"}}, "weight": 1},
                       {"name": "spot", "nodeSelector": {"matchLabels": {"capacity": "spot"}}, "weight": 1}]}}))
        .unwrap();
    fake.put(
        json!({"apiVersion": "placement.dev/v1alpha1", "kind": "RebalancePolicy", "metadata": {"name": "default"},
        "spec": {"source": "requests", "interval": "10s", "namespaces": [NS]}}),
    )
    .unwrap();
}

async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_starts_every_controller_and_they_act_as_leader() {
    let fake = FakeApiServer::start().await.unwrap();
    seed(&fake);
    let config = RunConfig {
        kubeconfig: None,
        probe_listen: "127.0.0.1:0".parse().unwrap(),
        lease: LeaseConfig {
            duration: Duration::from_secs(4),
            renew: Duration::from_secs(2),
            retry: Duration::from_millis(200),
            ..LeaseConfig::new("placement-operator", "placement-system", "op-e2e")
        },
        watch_namespace: None,
        shutdown_timeout: Duration::from_secs(3),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator =
        tokio::spawn(run_with(clients(&fake), config, listener, placement_operator::controllers, async move {
            let _ = stopped.await;
        }));

    // The balancer pins each workload to its own zone.
    let zones = || -> Vec<String> {
        (0..3)
            .filter_map(|i| {
                let d = fake.get("apps/v1", "Deployment", NS, &format!("one-{i}"))?;
                d.pointer("/spec/template/spec/nodeSelector/topology.kubernetes.io~1zone")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect()
    };
    assert!(eventually(Duration::from_secs(20), || zones().len() == 3).await, "pinned: {:?}", zones());
    let mut pinned = zones();
    pinned.sort();
    assert_eq!(pinned, ["a", "b", "c"]);

    // The distribution's status shows both pods on on-demand, one above its target of one.
    let groups = || {
        fake.get("placement.dev/v1alpha1", "PodDistribution", NS, "web")
            .and_then(|pd| pd.pointer("/status/groups").cloned())
            .unwrap_or(Value::Null)
    };
    assert!(
        eventually(Duration::from_secs(20), || groups().pointer("/0/drift").and_then(Value::as_i64) == Some(1)).await,
        "status groups: {}",
        groups()
    );
    assert_eq!(groups().pointer("/1/target").and_then(Value::as_u64), Some(1));

    // The rebalancer planned (a dry run: nothing to relieve in this cluster) and said so in its status.
    let plan = || {
        fake.get("placement.dev/v1alpha1", "RebalancePolicy", "", "default")
            .and_then(|p| p.pointer("/status/lastPlan").cloned())
            .unwrap_or(Value::Null)
    };
    assert!(eventually(Duration::from_secs(20), || !plan().is_null()).await, "no plan in the policy's status");

    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(15), operator).await.expect("shutdown is bounded").unwrap();
    assert!(result.is_ok(), "{result:?}");
}

fn clients(server: &FakeApiServer) -> placement_operator::runtime::Clients {
    placement_operator::runtime::Clients { client: server.client(), without_retry: server.client_without_retry() }
}
