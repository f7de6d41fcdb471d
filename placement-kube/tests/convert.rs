//! `placement_kube::convert` against fixtures written as `kubectl get -o yaml` prints them
//! (`tests/fixtures/convert/*.yaml`). Every expected number is worked out by hand in the comments.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use placement_core::Labels;
use placement_core::model::{ControllerKind, LocalVolume, Pod, PodPhase, WorkloadKind, WorkloadRef};
use placement_core::resources::Resources;
use placement_core::selector::{LabelSelector, NodeAffinity, NodeSelectorTerm, Operator, Requirement};
use placement_core::taints::{Effect, Taint, Toleration};
use placement_kube::convert::{
    self, ConvertError, NoOwners, NodeMetrics, OwnerLookup, PodMetrics, ReplicaSetOwners, SnapshotBuilder,
};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

const MI: u64 = 1 << 20;
const GI: u64 = 1 << 30;
const NODE_A: &str = "ip-10-0-1-23.eu-west-1.compute.internal";
const NODE_B: &str = "ip-10-0-2-41.eu-west-1.compute.internal";
const NODE_C: &str = "ip-10-0-3-17.eu-west-1.compute.internal";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/convert/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load<T: DeserializeOwned>(name: &str) -> T {
    serde_yaml_ng::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[derive(serde::Deserialize)]
struct List<T> {
    items: Vec<T>,
}

fn load_list<T: DeserializeOwned>(name: &str) -> Vec<T> {
    load::<List<T>>(name).items
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn pod(name: &str) -> Pod {
    convert::pod(&load(name), &NoOwners).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn node_by_name(name: &str) -> placement_core::model::Node {
    let nodes: Vec<k8s::Node> = load_list("nodes.yaml");
    let n = nodes.iter().find(|n| n.metadata.name.as_deref() == Some(name)).expect("node in fixture");
    convert::node(n).expect("node converts")
}

// ------------------------------------------------------------------------------------------------
// Pods

#[test]
fn pending_pod_with_selector_and_multi_term_affinity() {
    let p = pod("pod-pending-affinity.yaml");
    let want = Pod {
        namespace: "shop".into(),
        name: "web-7d4b9c8f5d-x2x9q".into(),
        uid: Some("0c8e2f4a-6b7d-4e19-a3f2-91d5c7e8b640".into()),
        labels: labels(&[("app.kubernetes.io/name", "web"), ("pod-template-hash", "7d4b9c8f5d")]),
        annotations: BTreeMap::new(),
        // No ReplicaSet known: the naming rule strips "-7d4b9c8f5d".
        workload: Some(WorkloadRef::deployment("shop", "web")),
        revision: Some("7d4b9c8f5d".into()),
        controller: ControllerKind::ReplicaSet,
        node_name: None,
        node_selector: labels(&[("kubernetes.io/os", "linux"), ("node.kubernetes.io/lifecycle", "on-demand")]),
        required_affinity: Some(NodeAffinity {
            terms: vec![
                NodeSelectorTerm {
                    match_expressions: vec![
                        Requirement::new("topology.kubernetes.io/zone", Operator::In, &["eu-west-1a", "eu-west-1b"]),
                        Requirement::new("example.com/cpu-generation", Operator::Gt, &["5"]),
                    ],
                    match_fields: vec![],
                },
                NodeSelectorTerm {
                    match_expressions: vec![
                        Requirement::new("topology.kubernetes.io/zone", Operator::In, &["eu-west-1c"]),
                        Requirement::new("example.com/memory-gib", Operator::Lt, &["512"]),
                        Requirement::new("example.com/spot", Operator::DoesNotExist, &[]),
                    ],
                    match_fields: vec![Requirement::new("metadata.name", Operator::NotIn, &[NODE_C])],
                },
            ],
        }),
        tolerations: vec![
            Toleration::exists("node.kubernetes.io/not-ready", Some(Effect::NoExecute)),
            Toleration::exists("node.kubernetes.io/unreachable", Some(Effect::NoExecute)),
        ],
        requests: Resources::new(250, 256 * MI),
        usage: None,
        priority: 1000,
        phase: PodPhase::Pending,
        terminating: false,
        ready: false,
        // The projected service-account volume is not node-local.
        volumes: vec![],
        // The scheduler's `PodScheduled=False`, `Unschedulable` condition, since its transition.
        unschedulable_since: Some("2026-11-03T09:14:27Z".parse().unwrap()),
    };
    assert_eq!(p, want);

    // The converted affinity behaves as the scheduler's would on the converted nodes: term 0 matches
    // zone a (generation 7 > 5) and zone b (6 > 5); term 1 needs example.com/memory-gib, which the
    // zone-c node lacks, and excludes it by name anyway.
    let affinity = p.required_affinity.as_ref().expect("affinity");
    for (node, want) in [(NODE_A, true), (NODE_B, true), (NODE_C, false)] {
        let n = node_by_name(node);
        assert_eq!(affinity.matches(&n.name, &n.labels), want, "{node}");
    }
    // Two terms: no single group is implied by the affinity, only by the nodeSelector.
    assert_eq!(p.implied_node_labels(), p.node_selector);
}

#[test]
fn init_containers_sidecar_and_overhead_give_the_scheduler_request() {
    let p = pod("pod-sidecar-overhead.yaml");
    // app 300m ("0.3") / 512Mi, worker 200m / 256Mi ("268435456"), sidecar mesh-proxy 100m / 128Mi.
    //   running: 300 + 200 + 100 = 600m;  512 + 256 + 128 = 896Mi
    // init, in order:
    //   migrate alone:                    1000m / 64Mi
    //   mesh-proxy starting (sidecar):     100m / 128Mi
    //   warmup with mesh-proxy:            500 + 100 = 600m / 1024 + 128 = 1152Mi
    //   peak:                             1000m / 1152Mi
    // max(running, peak) = 1000m / 1152Mi; plus overhead 250m / 120Mi = 1250m / 1272Mi.
    assert_eq!(p.requests, Resources::new(1250, 1272 * MI));
    assert_eq!(p.requests.memory_bytes, 1_333_788_672);
    assert_eq!(p.node_name.as_deref(), Some(NODE_A));
    assert_eq!(p.phase, PodPhase::Running);
    assert!(p.ready);
    assert_eq!(p.priority, 0);
    assert_eq!(
        p.volumes,
        vec![
            LocalVolume::EmptyDir { size_limit: Some(GI), used: None },
            // medium: Memory, no sizeLimit: still node-local data lost on eviction.
            LocalVolume::EmptyDir { size_limit: None, used: None },
        ]
    );
    assert_eq!(
        p.annotations.get("kubectl.kubernetes.io/restartedAt").map(String::as_str),
        Some("2026-11-02T16:40:03Z")
    );
}

#[test]
fn limits_only_default_requests_per_resource() {
    let p = pod("pod-limits-only.yaml");
    // shell: limits only, 2 CPU / 1Gi. net: request 100m CPU, memory only as a limit, 512Mi.
    assert_eq!(p.requests, Resources::new(2000 + 100, GI + 512 * MI));
    // A bare pod: no controller, no workload, never counts.
    assert_eq!(p.controller, ControllerKind::None);
    assert_eq!(p.workload, None);
    assert_eq!(p.revision, None);
    assert!(!p.counts());
}

#[test]
fn daemonset_pod_with_wildcard_and_default_tolerations() {
    let p = pod("pod-daemonset.yaml");
    assert_eq!(p.workload, Some(WorkloadRef::new(WorkloadKind::DaemonSet, "monitoring", "node-exporter")));
    assert_eq!(p.controller, ControllerKind::DaemonSet);
    assert_eq!(p.revision.as_deref(), Some("6f9c8b7d54"));
    assert_eq!(p.priority, 2_000_001_000);
    assert_eq!(p.requests, Resources::new(102, 180 * MI));
    assert_eq!(p.volumes, vec![LocalVolume::HostPath]);
    assert_eq!(p.uid.as_deref(), Some("1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"));
    assert_eq!(
        p.tolerations,
        vec![
            Toleration::exists("", None),
            Toleration::exists("node.kubernetes.io/not-ready", Some(Effect::NoExecute)),
            Toleration::exists("node.kubernetes.io/unreachable", Some(Effect::NoExecute)),
            Toleration::exists("node.kubernetes.io/disk-pressure", Some(Effect::NoSchedule)),
            Toleration::exists("node.kubernetes.io/unschedulable", Some(Effect::NoSchedule)),
            Toleration::equal("dedicated", "monitoring", Some(Effect::NoSchedule)),
            // No operator: Equal. No effect: every effect.
            Toleration::equal("example.com/spot", "true", None),
        ]
    );
    // The wildcard tolerates every taint of the NotReady, tainted, cordoned node.
    let bad = node_by_name(NODE_B);
    assert_eq!(placement_core::taints::untolerated(&bad.taints, &p.tolerations), None);
    // The DaemonSet controller pins each pod to its node with matchFields on metadata.name.
    let affinity = p.required_affinity.as_ref().expect("affinity");
    assert_eq!(
        affinity.terms,
        vec![NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![Requirement::new("metadata.name", Operator::In, &[NODE_A])],
        }]
    );
    assert!(affinity.matches(NODE_A, &Labels::new()));
    assert!(!affinity.matches(NODE_B, &Labels::new()));
}

#[test]
fn mirror_pod_is_owned_by_its_node() {
    let p = pod("pod-mirror.yaml");
    assert_eq!(p.controller, ControllerKind::Node);
    assert_eq!(p.workload, None);
    assert!(p.is_mirror());
    assert_eq!(
        p.annotations.get(placement_core::model::MIRROR_ANNOTATION).map(String::as_str),
        Some("3f1b2c9d8e7a6f5b4c3d2e1f0a9b8c7d")
    );
    assert_eq!(p.tolerations, vec![Toleration::exists("", Some(Effect::NoExecute))]);
    assert_eq!(p.requests, Resources::new(250, 0));
    assert_eq!(p.node_name.as_deref(), Some("cp-1"));
}

#[test]
fn lifecycle_table() {
    struct Case {
        file: &'static str,
        phase: PodPhase,
        terminating: bool,
        ready: bool,
        counts: bool,
        holds_resources: bool,
    }
    // Only the pending pod carries the scheduler's Unschedulable condition.
    let unschedulable = |file: &str| file == "pod-pending-affinity.yaml";
    let cases = [
        Case {
            file: "pod-terminating.yaml",
            phase: PodPhase::Running,
            terminating: true,
            ready: false,
            counts: false,
            holds_resources: true,
        },
        Case {
            file: "pod-job-succeeded.yaml",
            phase: PodPhase::Succeeded,
            terminating: false,
            ready: false,
            counts: false,
            holds_resources: false,
        },
        Case {
            file: "pod-statefulset.yaml",
            phase: PodPhase::Running,
            terminating: false,
            ready: true,
            counts: true,
            holds_resources: true,
        },
        Case {
            file: "pod-pending-affinity.yaml",
            phase: PodPhase::Pending,
            terminating: false,
            ready: false,
            counts: true,
            holds_resources: true,
        },
    ];
    for c in cases {
        let p = pod(c.file);
        assert_eq!(p.phase, c.phase, "{}", c.file);
        assert_eq!(p.terminating, c.terminating, "{}", c.file);
        assert_eq!(p.ready, c.ready, "{}", c.file);
        assert_eq!(p.counts(), c.counts, "{}", c.file);
        assert_eq!(p.holds_resources(), c.holds_resources, "{}", c.file);
        assert_eq!(p.unschedulable_since.is_some(), unschedulable(c.file), "{}", c.file);
    }
}

#[test]
fn owner_chain_table() {
    // (fixture, workload, controller, revision), all resolved without any ReplicaSet known.
    let cases: Vec<(&str, Option<WorkloadRef>, ControllerKind, Option<&str>)> = vec![
        (
            "pod-terminating.yaml",
            Some(WorkloadRef::deployment("shop", "web")),
            ControllerKind::ReplicaSet,
            Some("6c5b4a3f2e"),
        ),
        (
            "pod-job-succeeded.yaml",
            Some(WorkloadRef::new(WorkloadKind::Job, "ops", "backup-29367840")),
            ControllerKind::Job,
            None,
        ),
        (
            "pod-statefulset.yaml",
            Some(WorkloadRef::new(WorkloadKind::StatefulSet, "data", "postgres")),
            ControllerKind::StatefulSet,
            Some("postgres-6d5f7b8c9"),
        ),
        (
            "pod-daemonset.yaml",
            Some(WorkloadRef::new(WorkloadKind::DaemonSet, "monitoring", "node-exporter")),
            ControllerKind::DaemonSet,
            Some("6f9c8b7d54"),
        ),
        ("pod-mirror.yaml", None, ControllerKind::Node, None),
        ("pod-limits-only.yaml", None, ControllerKind::None, None),
        // Unknown ReplicaSet: the naming rule says Deployment "legacy" (the lookup test shows better).
        (
            "pod-orphan-replicaset.yaml",
            Some(WorkloadRef::deployment("shop", "legacy")),
            ControllerKind::ReplicaSet,
            Some("6b8f9d"),
        ),
    ];
    for (file, workload, controller, revision) in cases {
        let p = pod(file);
        assert_eq!(p.workload, workload, "{file}");
        assert_eq!(p.controller, controller, "{file}");
        assert_eq!(p.revision.as_deref(), revision, "{file}");
    }
}

#[test]
fn deployment_pod_resolved_by_replicaset_lookup_and_by_hash_fallback() {
    let replicasets: Vec<ReplicaSet> = load_list("replicasets.yaml");
    let owners: ReplicaSetOwners = replicasets.iter().collect();
    assert_eq!(owners.len(), 2);

    // Known ReplicaSet owned by Deployment checkout.
    let checkout = convert::pod(&load("pod-sidecar-overhead.yaml"), &owners).unwrap();
    assert_eq!(checkout.workload, Some(WorkloadRef::deployment("shop", "checkout")));
    assert_eq!(checkout.revision.as_deref(), Some("5c9f8d7b6"));

    // Known orphaned ReplicaSet: the lookup wins over the naming rule.
    let legacy = convert::pod(&load("pod-orphan-replicaset.yaml"), &owners).unwrap();
    assert_eq!(legacy.workload, Some(WorkloadRef::new(WorkloadKind::ReplicaSet, "shop", "legacy-6b8f9d")));
    assert_eq!(legacy.controller, ControllerKind::ReplicaSet);

    // ReplicaSet not known yet (a fresh rollout during admission): the naming rule.
    let web = convert::pod(&load("pod-pending-affinity.yaml"), &owners).unwrap();
    assert_eq!(web.workload, Some(WorkloadRef::deployment("shop", "web")));

    // Without the pod-template-hash label the naming rule does not apply: the ReplicaSet itself.
    let mut unlabeled: k8s::Pod = load("pod-pending-affinity.yaml");
    unlabeled.metadata.labels.as_mut().unwrap().remove("pod-template-hash");
    let p = convert::pod(&unlabeled, &NoOwners).unwrap();
    assert_eq!(p.workload, Some(WorkloadRef::new(WorkloadKind::ReplicaSet, "shop", "web-7d4b9c8f5d")));
    assert_eq!(p.revision, None);

    // Any closure is a lookup; it is asked with the pod's namespace and the ReplicaSet's name.
    let asked = std::cell::RefCell::new(Vec::new());
    let lookup = |ns: &str, rs: &str| {
        asked.borrow_mut().push(format!("{ns}/{rs}"));
        Some(WorkloadRef::new(WorkloadKind::Other("Rollout".into()), ns, "web-rollout"))
    };
    let p = convert::pod(&load("pod-pending-affinity.yaml"), &lookup).unwrap();
    assert_eq!(p.workload, Some(WorkloadRef::new(WorkloadKind::Other("Rollout".into()), "shop", "web-rollout")));
    assert_eq!(asked.into_inner(), vec!["shop/web-7d4b9c8f5d"]);

    // Removing a ReplicaSet from the cache brings the naming rule back.
    let mut owners = owners;
    owners.remove("shop", "legacy-6b8f9d");
    assert_eq!(owners.replicaset_owner("shop", "legacy-6b8f9d"), None);
    assert_eq!(
        owners.replicaset_owner("shop", "checkout-5c9f8d7b6"),
        Some(WorkloadRef::deployment("shop", "checkout"))
    );
}

#[test]
fn only_the_controller_owner_reference_counts() {
    let mut p: k8s::Pod = load("pod-statefulset.yaml");
    for o in p.metadata.owner_references.iter_mut().flatten() {
        o.controller = Some(false);
    }
    let converted = convert::pod(&p, &NoOwners).unwrap();
    assert_eq!(converted.controller, ControllerKind::None);
    assert_eq!(converted.workload, None);
}

#[test]
fn admission_pod_without_name_converts_with_an_empty_name() {
    let mut p: k8s::Pod = load("pod-pending-affinity.yaml");
    p.metadata.name = None;
    let converted = convert::pod(&p, &NoOwners).unwrap();
    assert_eq!(converted.name, "");
    assert_eq!(converted.workload, Some(WorkloadRef::deployment("shop", "web")));
    // Errors then name the pod by its generateName.
    p.spec.as_mut().unwrap().containers[0]
        .resources
        .as_mut()
        .unwrap()
        .requests
        .as_mut()
        .unwrap()
        .insert("cpu".into(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("lots".into()));
    let e = convert::pod(&p, &NoOwners).unwrap_err();
    assert_eq!(e.object, "shop/web-7d4b9c8f5d-*");
    assert_eq!(e.field, "spec.containers[0].resources.requests.cpu");
    p.metadata.namespace = None;
    assert_eq!(convert::pod(&p, &NoOwners).unwrap_err().field, "metadata.namespace");
}

// ------------------------------------------------------------------------------------------------
// Nodes

#[test]
fn nodes_table() {
    let nodes: Vec<k8s::Node> = load_list("nodes.yaml");
    let got: Vec<_> = nodes.iter().map(|n| convert::node(n).expect("converts")).collect();

    let a = &got[0];
    assert_eq!(a.name, NODE_A);
    // 3920m; 15214976Ki = 15214976 × 1024 bytes; pods "58".
    assert_eq!(a.allocatable, Resources::new(3920, 15_214_976 * 1024));
    assert_eq!(a.max_pods, 58);
    assert!(a.ready);
    assert!(!a.unschedulable);
    assert!(a.taints.is_empty());
    assert_eq!(a.label("topology.kubernetes.io/zone"), Some("eu-west-1a"));
    assert_eq!((a.requested, a.pod_count, a.usage), (Resources::ZERO, 0, None));

    let b = &got[1];
    assert_eq!(b.allocatable, Resources::new(7910, 31_792_544 * 1024));
    assert_eq!(b.max_pods, 110);
    assert!(!b.ready, "Ready=Unknown is not ready");
    assert!(b.unschedulable);
    assert_eq!(
        b.taints,
        vec![
            Taint::new("dedicated", "gpu", Effect::NoSchedule),
            Taint::new("node.kubernetes.io/unreachable", "", Effect::NoSchedule),
            Taint::new("node.kubernetes.io/unreachable", "", Effect::NoExecute),
            // Cordoned a moment ago: the lifecycle controller's taint, added by the conversion.
            Taint::new("node.kubernetes.io/unschedulable", "", Effect::NoSchedule),
        ]
    );

    let c = &got[2];
    // No status yet: nothing allocatable, the default 110 pods, not ready.
    assert_eq!(c.allocatable, Resources::ZERO);
    assert_eq!(c.max_pods, convert::node::DEFAULT_MAX_PODS);
    assert_eq!(c.max_pods, 110);
    assert!(!c.ready);
    assert_eq!(c.taints, vec![Taint::new("node.kubernetes.io/not-ready", "", Effect::NoSchedule)]);
}

#[test]
fn cordon_taint_is_not_added_twice() {
    let mut n: k8s::Node = load_list::<k8s::Node>("nodes.yaml").remove(1);
    n.spec.as_mut().unwrap().taints.as_mut().unwrap().push(k8s::Taint {
        effect: "NoSchedule".into(),
        key: "node.kubernetes.io/unschedulable".into(),
        ..Default::default()
    });
    let converted = convert::node(&n).unwrap();
    assert_eq!(converted.taints.iter().filter(|t| t.key == "node.kubernetes.io/unschedulable").count(), 1);
}

// ------------------------------------------------------------------------------------------------
// Workloads and PDBs

#[test]
fn deployment_max_unavailable_rounding() {
    let deployments: Vec<Deployment> = load_list("deployments.yaml");
    let got: Vec<(String, u32, u32)> = deployments
        .iter()
        .map(|d| convert::deployment(d).expect("converts"))
        .map(|w| (w.workload.name, w.replicas, w.max_unavailable))
        .collect();
    let want: Vec<(String, u32, u32)> = [
        ("web", 10, 2),         // 2.5 rounds down
        ("api", 3, 0),          // 0.75 rounds down; maxSurge 1 so no fencepost
        ("batch-router", 7, 2), // 2.1 rounds down
        ("cache", 4, 1),        // 0.4 -> 0 with maxSurge 0: fencepost makes it 1
        ("reports", 8, 2),      // Recreate: the 25% default
        ("search", 5, 3),       // integer
    ]
    .iter()
    .map(|(n, r, m)| (n.to_string(), *r, *m))
    .collect();
    assert_eq!(got, want);

    let web = convert::deployment(&deployments[0]).unwrap();
    assert_eq!(web.workload, WorkloadRef::deployment("shop", "web"));
    assert_eq!(web.labels, labels(&[("app.kubernetes.io/name", "web"), ("app.kubernetes.io/part-of", "shop")]));
    let strategy = placement_core::strategy::Strategy::from_annotations(&web.annotations)
        .expect("annotation kept")
        .expect("parses");
    assert_eq!(strategy.rules.len(), 2);
}

#[test]
fn deployment_defaults_without_strategy_or_replicas() {
    let mut d: Deployment = load_list::<Deployment>("deployments.yaml").remove(0);
    let spec = d.spec.as_mut().unwrap();
    spec.replicas = None;
    spec.strategy = None;
    // 1 replica: maxUnavailable 25% -> 0, maxSurge 25% -> 1 (rounded up): stays 0.
    let w = convert::deployment(&d).unwrap();
    assert_eq!((w.replicas, w.max_unavailable), (1, 0));
}

#[test]
fn statefulset_max_unavailable() {
    let sets: Vec<StatefulSet> = load_list("statefulsets.yaml");
    let got: Vec<(String, u32, u32)> = sets
        .iter()
        .map(|s| convert::statefulset(s).expect("converts"))
        .map(|w| (w.workload.to_string(), w.replicas, w.max_unavailable))
        .collect();
    assert_eq!(
        got,
        vec![
            ("StatefulSet/data/postgres".to_string(), 3, 1), // default 1
            ("StatefulSet/data/kafka".to_string(), 5, 2),    // 50% of 5 = 2.5 -> 2
            ("StatefulSet/data/etcd".to_string(), 3, 1),     // 10% of 3 -> 0, at least 1
            ("StatefulSet/data/zk".to_string(), 3, 1),       // OnDelete: default 1
        ]
    );
}

#[test]
fn replicaset_owner_is_its_controller() {
    let replicasets: Vec<ReplicaSet> = load_list("replicasets.yaml");
    assert_eq!(convert::replicaset_owner(&replicasets[0]), Some(WorkloadRef::deployment("shop", "checkout")));
    assert_eq!(convert::replicaset_owner(&replicasets[1]), None);
}

#[test]
fn pdbs_with_match_expressions_missing_status_and_missing_selector() {
    let pdbs: Vec<PodDisruptionBudget> = load_list("pdbs.yaml");
    let got: Vec<_> = pdbs.iter().map(|p| convert::pdb(p).expect("converts")).collect();

    let web = got[0].as_ref().expect("has a selector");
    assert_eq!((web.namespace.as_str(), web.name.as_str(), web.disruptions_allowed), ("shop", "web", 1));
    assert_eq!(
        web.selector,
        LabelSelector {
            match_labels: labels(&[("app.kubernetes.io/name", "web")]),
            match_expressions: vec![
                Requirement::new("tier", Operator::In, &["frontend", "edge"]),
                Requirement::new("track", Operator::NotIn, &["canary"]),
                Requirement::new("release", Operator::Exists, &[]),
                Requirement::new("example.com/legacy", Operator::DoesNotExist, &[]),
            ],
        }
    );
    let covered = |pairs: &[(&str, &str)]| {
        web.covers(&placement_core::model::PodBuilder::new("shop", "p").build().with_labels(labels(pairs)))
    };
    assert!(covered(&[("app.kubernetes.io/name", "web"), ("tier", "edge"), ("release", "1")]));
    assert!(!covered(&[("app.kubernetes.io/name", "web"), ("tier", "edge"), ("release", "1"), ("track", "canary")]));
    assert!(!covered(&[("app.kubernetes.io/name", "web"), ("tier", "edge")]));
    assert!(!covered(&[
        ("app.kubernetes.io/name", "web"),
        ("tier", "edge"),
        ("release", "1"),
        ("example.com/legacy", "")
    ]));

    let postgres = got[1].as_ref().expect("has a selector");
    assert_eq!(postgres.disruptions_allowed, 0, "no status yet: no disruption allowed");

    let everything = got[2].as_ref().expect("empty selector");
    assert!(everything.selector.is_empty());

    assert_eq!(got[3], None, "no selector selects no pod");
}

trait WithLabels {
    fn with_labels(self, labels: Labels) -> Self;
}
impl WithLabels for Pod {
    fn with_labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }
}

// ------------------------------------------------------------------------------------------------
// Metrics

#[test]
fn node_and_pod_metrics_usage() {
    let nodes: Vec<NodeMetrics> = load_list("node-metrics.yaml");
    // 1843251617n rounds up to 1844m; 9437184Ki = 9Gi.
    assert_eq!(convert::node_usage(&nodes[0]).unwrap(), Resources::new(1844, 9 * GI));
    assert_eq!(convert::node_usage(&nodes[1]).unwrap(), Resources::new(412, 5 * GI));
    assert_eq!(nodes[0].window.as_deref(), Some("20.051s"));
    assert!(nodes[0].timestamp.is_some());

    let pods: Vec<PodMetrics> = load_list("pod-metrics.yaml");
    // Per container, rounded up: 211304578n -> 212m, 38000001n -> 39m, 9870325n -> 10m.
    // Memory: 402648Ki + 97420Ki + 48Mi = 412311552 + 99758080 + 50331648.
    assert_eq!(convert::pod_usage(&pods[0]).unwrap(), Resources::new(212 + 39 + 10, 562_401_280));
    assert_eq!(convert::pod_usage(&pods[1]).unwrap(), Resources::new(0, 23 * MI));
}

/// Type-checked, never run: the metrics types can be listed and watched with kube.
#[allow(dead_code)]
fn metrics_types_work_with_kube_api(client: kube::Client) {
    let nodes: kube::Api<NodeMetrics> = kube::Api::all(client.clone());
    let pods: kube::Api<PodMetrics> = kube::Api::namespaced(client, "shop");
    let _list = async move { nodes.list(&Default::default()).await };
    let _watch = kube::runtime::watcher(pods, kube::runtime::watcher::Config::default());
}

#[test]
fn metrics_types_are_kube_resources_and_round_trip() {
    use kube::Resource;
    assert_eq!(NodeMetrics::group(&()), "metrics.k8s.io");
    assert_eq!(NodeMetrics::version(&()), "v1beta1");
    assert_eq!(NodeMetrics::plural(&()), "nodes");
    assert_eq!(NodeMetrics::kind(&()), "NodeMetrics");
    assert_eq!(PodMetrics::plural(&()), "pods");
    assert_eq!(PodMetrics::api_version(&()), "metrics.k8s.io/v1beta1");
    assert_eq!(PodMetrics::url_path(&(), Some("shop")), "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods");
    assert_eq!(NodeMetrics::url_path(&(), None), "/apis/metrics.k8s.io/v1beta1/nodes");

    let pods: Vec<PodMetrics> = load_list("pod-metrics.yaml");
    let json = serde_json::to_value(&pods[0]).unwrap();
    assert_eq!(json["apiVersion"], "metrics.k8s.io/v1beta1");
    assert_eq!(json["kind"], "PodMetrics");
    assert_eq!(json["containers"][2]["usage"]["memory"], "48Mi");
    let back: PodMetrics = serde_json::from_value(json).unwrap();
    assert_eq!(back, pods[0]);

    let nodes: Vec<NodeMetrics> = load_list("node-metrics.yaml");
    let json = serde_json::to_value(&nodes[1]).unwrap();
    assert_eq!(json["kind"], "NodeMetrics");
    assert_eq!(json["usage"]["memory"], "5368709120");
    assert_eq!(serde_json::from_value::<NodeMetrics>(json).unwrap(), nodes[1]);
}

// ------------------------------------------------------------------------------------------------
// Malformed objects

const SUFFIXES: &str = "(expected one of n u m k M G T P E Ki Mi Gi Ti Pi Ei or an exponent like e3)";

#[test]
fn malformed_pods_name_object_and_exact_field() {
    let pods: Vec<k8s::Pod> = load_list("malformed-pods.yaml");
    let got: Vec<String> = pods.iter().map(|p| convert::pod(p, &NoOwners).unwrap_err().to_string()).collect();
    let affinity = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution";
    let want = vec![
        format!(
            "Pod shop/bad-cpu: spec.containers[1].resources.requests.cpu: quantity \"5x\": unknown suffix \"x\" {SUFFIXES}"
        ),
        "Pod shop/bad-init-limit: spec.initContainers[0].resources.limits.memory: quantity \"1.5.3Gi\": not a number"
            .to_string(),
        "Pod shop/bad-overhead: spec.overhead.cpu: quantity \"-250m\": negative values are not allowed here"
            .to_string(),
        "Pod shop/bad-size-limit: spec.volumes[1].emptyDir.sizeLimit: quantity \"lots\": not a number".to_string(),
        format!(
            "Pod shop/bad-gt: {affinity}.nodeSelectorTerms[1].matchExpressions[0]: key \"example.com/cpu-generation\": operator Gt needs exactly one integer value, got [\"five\"]"
        ),
        format!(
            "Pod shop/bad-operator: {affinity}.nodeSelectorTerms[0].matchExpressions[1].operator: unknown operator \"Contains\""
        ),
        "Pod shop/bad-toleration: spec.tolerations[2].effect: unknown taint effect \"NoScheduled\"".to_string(),
    ];
    assert_eq!(got, want);
    let e = convert::pod(&pods[0], &NoOwners).unwrap_err();
    assert_eq!(
        (e.kind, e.object.as_str(), e.field.as_str(), e.metric_label()),
        ("Pod", "shop/bad-cpu", "spec.containers[1].resources.requests.cpu", "Pod")
    );
}

#[test]
fn malformed_nodes_name_object_and_exact_field() {
    let nodes: Vec<k8s::Node> = load_list("malformed-nodes.yaml");
    let got: Vec<String> = nodes.iter().map(|n| convert::node(n).unwrap_err().to_string()).collect();
    assert_eq!(
        got,
        vec![
            format!("Node bad-memory: status.allocatable.memory: quantity \"12XB\": unknown suffix \"XB\" {SUFFIXES}"),
            "Node bad-pods: status.allocatable.pods: quantity \"1000000000000\": too large".to_string(),
            "Node bad-taint: spec.taints[1].effect: unknown taint effect \"NoExecution\"".to_string(),
        ]
    );
}

fn from_yaml<T: DeserializeOwned>(yaml: &str) -> T {
    serde_yaml_ng::from_str(yaml).expect("valid YAML")
}

#[test]
fn malformed_workloads_pdbs_and_metrics() {
    let pod_metrics_want =
        format!("PodMetrics shop/p: containers[1].usage.memory: quantity \"2Qi\": unknown suffix \"Qi\" {SUFFIXES}");
    let cases: Vec<(ConvertError, &str)> = vec![
        (
            convert::deployment(&from_yaml(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  replicas: 4\n  selector: {}\n  template: {}\n  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxUnavailable: \"25\"}\n",
            ))
            .unwrap_err(),
            "Deployment shop/web: spec.strategy.rollingUpdate.maxUnavailable: \"25\" is neither an integer nor a percentage like \"25%\"",
        ),
        (
            convert::deployment(&from_yaml(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  replicas: -2\n  selector: {}\n  template: {}\n",
            ))
            .unwrap_err(),
            "Deployment shop/web: spec.replicas: -2 is negative",
        ),
        (
            convert::deployment(&from_yaml(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {namespace: shop}\nspec:\n  selector: {}\n  template: {}\n",
            ))
            .unwrap_err(),
            "Deployment shop/<unnamed>: metadata.name: missing",
        ),
        (
            convert::statefulset(&from_yaml(
                "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: kafka, namespace: data}\nspec:\n  replicas: 5\n  selector: {}\n  template: {}\n  updateStrategy:\n    rollingUpdate: {maxUnavailable: -1}\n",
            ))
            .unwrap_err(),
            "StatefulSet data/kafka: spec.updateStrategy.rollingUpdate.maxUnavailable: -1 is negative",
        ),
        (
            convert::pdb(&from_yaml(
                "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web, namespace: shop}\nspec:\n  selector:\n    matchExpressions:\n    - {key: tier, operator: In, values: [web]}\n    - {key: gen, operator: Gt, values: [\"3\"]}\n",
            ))
            .unwrap_err(),
            "PodDisruptionBudget shop/web: spec.selector.matchExpressions[1]: key \"gen\": operator Gt is only allowed in node affinity",
        ),
        (
            convert::pdb(&from_yaml(
                "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web, namespace: shop}\nspec:\n  selector:\n    matchExpressions:\n    - {key: tier, operator: In}\n",
            ))
            .unwrap_err(),
            "PodDisruptionBudget shop/web: spec.selector.matchExpressions[0]: key \"tier\": operator In needs at least one value",
        ),
        (
            convert::node_usage(&from_yaml(
                "metadata: {name: n1}\nusage: {cpu: 1.2.3, memory: 1Gi}\n",
            ))
            .unwrap_err(),
            "NodeMetrics n1: usage.cpu: quantity \"1.2.3\": not a number",
        ),
        (
            convert::pod_usage(&from_yaml(
                "metadata: {name: p, namespace: shop}\ncontainers:\n- {name: a, usage: {cpu: 1m, memory: 1Mi}}\n- {name: b, usage: {cpu: 1m, memory: 2Qi}}\n",
            ))
            .unwrap_err(),
            &pod_metrics_want,
        ),
    ];
    for (err, want) in &cases {
        assert_eq!(err.to_string(), *want);
    }
}

// ------------------------------------------------------------------------------------------------
// Snapshot

const POD_FIXTURES: &[&str] = &[
    "pod-pending-affinity.yaml",
    "pod-sidecar-overhead.yaml",
    "pod-limits-only.yaml",
    "pod-daemonset.yaml",
    "pod-mirror.yaml",
    "pod-terminating.yaml",
    "pod-job-succeeded.yaml",
    "pod-statefulset.yaml",
    "pod-orphan-replicaset.yaml",
];

struct Cluster {
    nodes: Vec<k8s::Node>,
    pods: Vec<std::sync::Arc<k8s::Pod>>,
    replicasets: Vec<ReplicaSet>,
    deployments: Vec<Deployment>,
    statefulsets: Vec<StatefulSet>,
    pdbs: Vec<PodDisruptionBudget>,
    node_metrics: Vec<NodeMetrics>,
    pod_metrics: Vec<PodMetrics>,
}

fn cluster() -> Cluster {
    let mut nodes: Vec<k8s::Node> = load_list("nodes.yaml");
    nodes.extend(load_list::<k8s::Node>("malformed-nodes.yaml"));
    // Pods as a reflector store hands them out.
    let mut pods: Vec<std::sync::Arc<k8s::Pod>> =
        POD_FIXTURES.iter().map(|f| std::sync::Arc::new(load::<k8s::Pod>(f))).collect();
    pods.extend(load_list::<k8s::Pod>("malformed-pods.yaml").into_iter().map(std::sync::Arc::new));
    Cluster {
        nodes,
        pods,
        replicasets: load_list("replicasets.yaml"),
        deployments: load_list("deployments.yaml"),
        statefulsets: load_list("statefulsets.yaml"),
        pdbs: load_list("pdbs.yaml"),
        node_metrics: load_list("node-metrics.yaml"),
        pod_metrics: load_list("pod-metrics.yaml"),
    }
}

fn build(c: &Cluster, reverse: bool) -> (placement_core::model::Snapshot, Vec<ConvertError>) {
    fn order<T>(items: &[T], reverse: bool) -> Vec<&T> {
        let mut v: Vec<&T> = items.iter().collect();
        if reverse {
            v.reverse();
        }
        v
    }
    let b = SnapshotBuilder::new();
    // Pods before ReplicaSets on purpose: the order of the lists does not matter.
    let b = b.pods(order(&c.pods, reverse)).nodes(order(&c.nodes, reverse));
    b.replicasets(order(&c.replicasets, reverse))
        .deployments(order(&c.deployments, reverse))
        .statefulsets(order(&c.statefulsets, reverse))
        .pdbs(order(&c.pdbs, reverse))
        .node_metrics(order(&c.node_metrics, reverse))
        .pod_metrics(order(&c.pod_metrics, reverse))
        .build()
}

#[test]
fn snapshot_reports_and_skips_malformed_objects() {
    let c = cluster();
    let (s, errors) = build(&c, false);

    // 3 malformed nodes, then 7 malformed pods; nothing else.
    let objects: Vec<String> = errors.iter().map(|e| format!("{} {}", e.kind, e.object)).collect();
    assert_eq!(
        objects,
        [
            "Node bad-memory",
            "Node bad-pods",
            "Node bad-taint",
            "Pod shop/bad-cpu",
            "Pod shop/bad-init-limit",
            "Pod shop/bad-overhead",
            "Pod shop/bad-size-limit",
            "Pod shop/bad-gt",
            "Pod shop/bad-operator",
            "Pod shop/bad-toleration",
        ]
    );

    let node_names: Vec<&str> = s.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(node_names, [NODE_A, NODE_B, NODE_C]);
    let pod_keys: Vec<String> = s.pods.iter().map(|p| p.key().to_string()).collect();
    assert_eq!(
        pod_keys,
        [
            "data/postgres-1",
            "kube-system/kube-apiserver-cp-1",
            "monitoring/node-exporter-7xk2p",
            "ops/backup-29367840-5xg8w",
            "ops/debug-shell",
            "shop/checkout-5c9f8d7b6-pl4wz",
            "shop/legacy-6b8f9d-k2j4n",
            "shop/web-6c5b4a3f2e-qq7rd",
            "shop/web-7d4b9c8f5d-x2x9q",
        ]
    );

    // Node A: checkout 1250m/1272Mi + node-exporter 102m/180Mi + legacy 50m/64Mi.
    let a = s.node(NODE_A).unwrap();
    assert_eq!((a.requested, a.pod_count), (Resources::new(1402, 1516 * MI), 3));
    // Node B: debug-shell 2100m/1536Mi + terminating web 250m/256Mi + postgres 1500m/4Gi; the
    // succeeded Job pod holds nothing.
    let b = s.node(NODE_B).unwrap();
    assert_eq!((b.requested, b.pod_count), (Resources::new(3850, 5888 * MI), 3));
    let c_node = s.node(NODE_C).unwrap();
    assert_eq!((c_node.requested, c_node.pod_count), (Resources::ZERO, 0));

    assert_eq!(a.usage, Some(Resources::new(1844, 9 * GI)));
    assert_eq!(b.usage, Some(Resources::new(412, 5 * GI)));
    assert_eq!(c_node.usage, None);
    let by_key = |k: &str| s.pods.iter().find(|p| p.key().to_string() == k).unwrap();
    assert_eq!(by_key("shop/checkout-5c9f8d7b6-pl4wz").usage, Some(Resources::new(261, 562_401_280)));
    assert_eq!(by_key("shop/legacy-6b8f9d-k2j4n").usage, Some(Resources::new(0, 23 * MI)));
    assert_eq!(by_key("data/postgres-1").usage, None);

    // The ReplicaSet list resolved the checkout and the orphaned legacy pods; web's ReplicaSets are
    // not in it, so the naming rule resolved those.
    assert_eq!(by_key("shop/checkout-5c9f8d7b6-pl4wz").workload, Some(WorkloadRef::deployment("shop", "checkout")));
    assert_eq!(
        by_key("shop/legacy-6b8f9d-k2j4n").workload,
        Some(WorkloadRef::new(WorkloadKind::ReplicaSet, "shop", "legacy-6b8f9d"))
    );
    assert_eq!(by_key("shop/web-7d4b9c8f5d-x2x9q").workload, Some(WorkloadRef::deployment("shop", "web")));

    let workloads: Vec<String> = s.workloads.iter().map(|w| w.workload.to_string()).collect();
    assert_eq!(
        workloads,
        [
            "Deployment/shop/api",
            "Deployment/shop/batch-router",
            "Deployment/shop/cache",
            "Deployment/shop/reports",
            "Deployment/shop/search",
            "Deployment/shop/web",
            "StatefulSet/data/etcd",
            "StatefulSet/data/kafka",
            "StatefulSet/data/postgres",
            "StatefulSet/data/zk",
        ]
    );
    let pdbs: Vec<String> = s.pdbs.iter().map(|p| format!("{}/{}", p.namespace, p.name)).collect();
    assert_eq!(pdbs, ["data/postgres", "ops/everything", "shop/web"]);
}

#[test]
fn snapshot_does_not_depend_on_input_order() {
    let c = cluster();
    let (forward, _) = build(&c, false);
    let (backward, _) = build(&c, true);
    assert_eq!(forward, backward);
}

#[test]
fn snapshot_of_nothing_is_empty() {
    let (s, errors) = SnapshotBuilder::new().build();
    assert_eq!(s, placement_core::model::Snapshot::default());
    assert!(errors.is_empty());
}

/// Claims are kept by name (their locality is looked up later, `convert::volumes`): a
/// `persistentVolumeClaim` by its claimName, a generic ephemeral volume by the claim Kubernetes
/// creates for it, `<pod>-<volume>`.
#[test]
fn persistent_volume_claims_are_kept_unresolved() {
    let raw: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "db", "name": "pg-0", "uid": "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f"},
        "spec": {"containers": [{"name": "pg", "image": "postgres"}], "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "data-pg-0"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}}},
            {"name": "config", "configMap": {"name": "pg"}}
        ]}
    }))
    .unwrap();
    let p = placement_kube::convert::pod(&raw, &placement_kube::convert::NoOwners).unwrap();
    assert_eq!(
        p.volumes,
        vec![
            LocalVolume::PersistentClaim { claim: "data-pg-0".into(), local: None },
            LocalVolume::PersistentClaim { claim: "pg-0-scratch".into(), local: None },
        ]
    );
    assert_eq!(p.uid.as_deref(), Some("5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f"));
}
