//! The node autoscaler stand-in, with the scheduler stand-in, through the real kube client: a pod no
//! node fits is marked `Unschedulable`; after the delay a node of the first pool it could run on is
//! made and the pod is bound to it; with the pool's capacity unavailable nothing is made and the pod
//! waits; a pod no pool could run stays pending without a node made.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use placement_testkit::FakeApiServer;
use placement_testkit::autoscaler::{AutoscalerOptions, NodePool, POOL_LABEL};
use placement_testkit::workloads::unschedulable_since;
use serde_json::json;
use std::time::{Duration, Instant};

const DELAY: Duration = Duration::from_millis(400);

fn pools() -> Vec<NodePool> {
    vec![
        NodePool::new("on-demand", [("capacity", "on-demand")]),
        NodePool::new("spot", [("capacity", "spot")]).tainted("spot", "", "NoSchedule"),
    ]
}

/// A pod selecting `capacity`; tolerating the spot taint when `tolerant`.
fn pod(name: &str, capacity: &str, tolerant: bool) -> Pod {
    let tolerations = if tolerant { json!([{"key": "spot", "operator": "Exists"}]) } else { json!([]) };
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeSelector": {"capacity": capacity}, "tolerations": tolerations, "containers": [{"name": "app", "image": "app"}]}}))
    .unwrap()
}

async fn get(pods: &Api<Pod>, name: &str) -> Pod {
    pods.get(name).await.unwrap()
}

/// Waits up to `limit` for `done` to hold for the pod; the pod as last seen.
async fn wait_for(pods: &Api<Pod>, name: &str, limit: Duration, done: impl Fn(&Pod) -> bool) -> Pod {
    let started = Instant::now();
    loop {
        let p = get(pods, name).await;
        if done(&p) || started.elapsed() > limit {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone()
}

#[tokio::test]
async fn a_pod_waiting_for_a_pool_gets_a_node_of_it_after_the_delay() {
    let fake = FakeApiServer::start().await.unwrap();
    let _controllers = fake.start_workload_controllers();
    let autoscaler = fake.start_autoscaler(AutoscalerOptions { pools: pools(), delay: DELAY });
    let pods: Api<Pod> = Api::namespaced(fake.client(), "default");
    let started = Instant::now();
    pods.create(&PostParams::default(), &pod("web-1", "spot", true)).await.unwrap();

    let marked = wait_for(&pods, "web-1", Duration::from_secs(5), |p| unschedulable_since(p).is_some()).await;
    assert!(unschedulable_since(&marked).is_some(), "the scheduler marks it Unschedulable: {:?}", marked.status);
    let bound = wait_for(&pods, "web-1", Duration::from_secs(10), |p| node_of(p).is_some()).await;
    assert_eq!(node_of(&bound).as_deref(), Some("spot-1"), "bound to the node made for it");
    assert!(started.elapsed() >= DELAY, "not before the delay: {:?}", started.elapsed());
    assert_eq!(autoscaler.launched(), ["spot-1"], "one node, of the first pool the pod could run on");

    let node = Api::<Node>::all(fake.client()).get("spot-1").await.unwrap();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("capacity").map(String::as_str), Some("spot"));
    assert_eq!(labels.get(POOL_LABEL).map(String::as_str), Some("spot"));
    let taints = node.spec.clone().and_then(|s| s.taints).unwrap_or_default();
    assert_eq!(
        taints.iter().map(|t| (t.key.as_str(), t.effect.as_str())).collect::<Vec<_>>(),
        [("spot", "NoSchedule")]
    );
    assert!(placement_testkit::workloads::node_is_ready(&node), "the new node is Ready");

    // A second pod for the same pool lands on the node already there: nothing more is made.
    pods.create(&PostParams::default(), &pod("web-2", "spot", true)).await.unwrap();
    let second = wait_for(&pods, "web-2", Duration::from_secs(5), |p| node_of(p).is_some()).await;
    assert_eq!(node_of(&second).as_deref(), Some("spot-1"));
    tokio::time::sleep(DELAY * 2).await;
    assert_eq!(autoscaler.launched(), ["spot-1"]);
}

#[tokio::test]
async fn with_capacity_unavailable_nothing_is_made_until_it_returns() {
    let fake = FakeApiServer::start().await.unwrap();
    let _controllers = fake.start_workload_controllers();
    let autoscaler = fake.start_autoscaler(AutoscalerOptions { pools: pools(), delay: DELAY });
    autoscaler.set_capacity_available("spot", false);
    let pods: Api<Pod> = Api::namespaced(fake.client(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "spot", true)).await.unwrap();

    tokio::time::sleep(DELAY * 4).await;
    let waiting = get(&pods, "web-1").await;
    assert_eq!(node_of(&waiting), None, "no capacity, no node");
    assert!(autoscaler.launched().is_empty(), "{:?}", autoscaler.launched());
    assert!(autoscaler.refused("spot") >= 1, "the attempt is counted as refused");
    assert_eq!(autoscaler.refused("on-demand"), 0);

    autoscaler.set_capacity_available("spot", true);
    let bound = wait_for(&pods, "web-1", Duration::from_secs(10), |p| node_of(p).is_some()).await;
    assert_eq!(node_of(&bound).as_deref(), Some("spot-1"), "made once capacity returns");
}

#[tokio::test]
async fn a_pod_no_pool_could_run_waits_without_a_node_made() {
    let fake = FakeApiServer::start().await.unwrap();
    let _controllers = fake.start_workload_controllers();
    let autoscaler = fake.start_autoscaler(AutoscalerOptions { pools: pools(), delay: DELAY });
    let pods: Api<Pod> = Api::namespaced(fake.client(), "default");
    // Spot, but not tolerating the spot taint; and a capacity no pool has.
    pods.create(&PostParams::default(), &pod("intolerant", "spot", false)).await.unwrap();
    pods.create(&PostParams::default(), &pod("gpu", "gpu", true)).await.unwrap();

    let marked = wait_for(&pods, "gpu", Duration::from_secs(5), |p| unschedulable_since(p).is_some()).await;
    assert!(unschedulable_since(&marked).is_some());
    tokio::time::sleep(DELAY * 4).await;
    assert!(autoscaler.launched().is_empty(), "{:?}", autoscaler.launched());
    for name in ["intolerant", "gpu"] {
        assert_eq!(node_of(&get(&pods, name).await), None, "{name} still pending");
    }
}
