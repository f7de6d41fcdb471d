//! The cost of one watch event in the live index, at 5,000 nodes and 150,000 pods: a pod update
//! (converted from a decoded k8s Pod and applied), a pod added then deleted, and a node update.
//! Decoding the JSON is the kube client's part and is measured separately. Results and the command are
//! in docs/performance.md.

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::{Node, Pod};
use placement_core::testing::{ClusterSpec, generate};
use placement_kube::live::LiveIndex;
use placement_testkit::objects::cluster_objects;
use std::hint::black_box;
use std::time::Duration;

fn synced_index() -> (LiveIndex, Vec<Pod>, Vec<Node>) {
    let snapshot = generate(&ClusterSpec::large());
    let mut index = LiveIndex::new();
    let (mut pods, mut nodes) = (Vec::new(), Vec::new());
    for o in cluster_objects(&snapshot) {
        match o["kind"].as_str() {
            Some("Node") => {
                let n: Node = serde_json::from_value(o).expect("node");
                index.apply_node(&n);
                if nodes.len() < 100 {
                    nodes.push(n);
                }
            }
            Some("Pod") => {
                let p: Pod = serde_json::from_value(o).expect("pod");
                index.apply_pod(&p);
                if pods.len() < 1_000 {
                    pods.push(p);
                }
            }
            Some("ReplicaSet") => index.apply_replicaset(&serde_json::from_value(o).expect("rs")),
            _ => {}
        }
    }
    (index, pods, nodes)
}

fn events(c: &mut Criterion) {
    let (mut index, pods, nodes) = synced_index();
    let mut g = c.benchmark_group("live_event");
    g.sample_size(30).measurement_time(Duration::from_secs(5));
    let mut i = 0;
    g.bench_function("pod_update", |b| {
        b.iter(|| {
            i = (i + 1) % pods.len();
            index.apply_pod(black_box(&pods[i]));
        })
    });
    let mut fresh = pods[0].clone();
    fresh.metadata.name = Some("bench-new-pod".into());
    g.bench_function("pod_add_delete", |b| {
        b.iter(|| {
            index.apply_pod(black_box(&fresh));
            index.delete(placement_kube::live::Kind::Pod, "team-00", "bench-new-pod");
        })
    });
    let mut j = 0;
    g.bench_function("node_update", |b| {
        b.iter(|| {
            j = (j + 1) % nodes.len();
            index.apply_node(black_box(&nodes[j]));
        })
    });
    let pod_json: Vec<String> = pods.iter().take(100).map(|p| serde_json::to_string(p).expect("json")).collect();
    let mut k = 0;
    g.bench_function("pod_decode_json", |b| {
        b.iter(|| {
            k = (k + 1) % pod_json.len();
            black_box(serde_json::from_str::<Pod>(&pod_json[k]).expect("decode"))
        })
    });
    g.finish();
}

criterion_group!(benches, events);
criterion_main!(benches);
