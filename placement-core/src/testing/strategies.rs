//! proptest strategies for property-testing placement policies over small clusters.
//!
//! Values are realistic in shape (zones `zone-a..c`, on-demand and spot nodes with the spot taint,
//! instance shapes, usage, unready and cordoned nodes) and consistent: [`arb_cluster`] binds a pod only
//! where it fits and builds the snapshot with [`Snapshot::new`], so every node's `requested` and
//! `pod_count` are the sums over its bound pods, and no node is overcommitted. Pods come from a handful
//! of workloads, including every kind a rebalancer must filter out: DaemonSet, mirror, bare, Job,
//! StatefulSet, pinned, hostPath, emptyDir, high priority, finished and terminating.
//!
//! Everything shrinks towards fewer nodes and pods, smaller requests, and plainer pods.

use super::generator::{INSTANCE_SHAPES, NODE_TYPE_LABEL, zone_name};
use crate::Labels;
use crate::model::{
    ControllerKind, LocalVolume, MIRROR_ANNOTATION, Node, PINNED_ANNOTATION, Pdb, Pod, PodPhase,
    SYSTEM_CLUSTER_CRITICAL, Snapshot, Workload, WorkloadKind, WorkloadRef,
};
use crate::resources::Resources;
use crate::selector::{LabelSelector, Operator, Requirement};
use crate::taints::{Effect, Taint, Toleration};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;

/// Zones nodes of these strategies are spread over.
pub const ARB_ZONES: usize = 3;

const MIB: u64 = 1 << 20;
const LABEL_KEYS: [&str; 5] = ["app", "tier", "team", "env", "track"];
const LABEL_VALUES: [&str; 4] = ["a", "b", "c", "d"];

// ---------------------------------------------------------------------------------------------------
// Labels, selectors, weights, counts

/// Labels over a small key and value domain (0 to 4 pairs), so that selectors from
/// [`arb_label_selector`] match some of them and not others.
pub fn arb_labels() -> impl Strategy<Value = Labels> {
    prop::collection::btree_map(label_key(), label_value(), 0..=4)
}

/// A valid label selector (passes [`LabelSelector::validate`]) over the domain of [`arb_labels`]:
/// 0 to 2 `matchLabels` and 0 to 2 expressions (`In`, `NotIn`, `Exists`, `DoesNotExist`).
pub fn arb_label_selector() -> impl Strategy<Value = LabelSelector> {
    (prop::collection::btree_map(label_key(), label_value(), 0..=2), prop::collection::vec(arb_requirement(), 0..=2))
        .prop_map(|(match_labels, match_expressions)| LabelSelector { match_labels, match_expressions })
}

fn label_key() -> impl Strategy<Value = String> {
    prop::sample::select(&LABEL_KEYS[..]).prop_map(String::from)
}

fn label_value() -> impl Strategy<Value = String> {
    prop::sample::select(&LABEL_VALUES[..]).prop_map(String::from)
}

fn arb_requirement() -> impl Strategy<Value = Requirement> {
    let values = prop::sample::subsequence(&LABEL_VALUES[..], 1..=2)
        .prop_map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
    prop_oneof![
        (label_key(), values.clone()).prop_map(|(key, values)| Requirement { key, operator: Operator::In, values }),
        (label_key(), values).prop_map(|(key, values)| Requirement { key, operator: Operator::NotIn, values }),
        label_key().prop_map(|key| Requirement { key, operator: Operator::Exists, values: Vec::new() }),
        label_key().prop_map(|key| Requirement { key, operator: Operator::DoesNotExist, values: Vec::new() }),
    ]
}

/// Weights of 1 to `max_groups` groups (at least one group even when `max_groups` is 0), each 0 to
/// 100 with zeros common, and at least one positive.
pub fn arb_weights(max_groups: usize) -> impl Strategy<Value = Vec<u32>> {
    let weight = prop_oneof![
        2 => Just(0u32),
        5 => 1..=10u32,
        3 => 1..=100u32,
    ];
    (prop::collection::vec(weight, 1..=max_groups.max(1)), any::<Index>(), 1..=10u32).prop_map(
        |(mut weights, at, positive)| {
            if weights.iter().all(|&w| w == 0) {
                let i = at.index(weights.len());
                weights[i] = positive;
            }
            weights
        },
    )
}

/// Current pod counts of one workload over `groups` groups, each 0 to `max_per_group`: the state an
/// admission decision starts from (after scale-ups, deletions, node failures).
pub fn arb_workload_counts(groups: usize, max_per_group: u32) -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(0..=max_per_group, groups)
}

// ---------------------------------------------------------------------------------------------------
// Strategy annotations and rebalance policies
//
// Strategies and rebalance policies

/// A valid strategy annotation value: 1 to 4 rules over `node-type` and zone labels, a positive weight
/// somewhere, and maybe a base on the first rule. Its `Display` parses back to itself.
pub fn arb_strategy() -> impl Strategy<Value = crate::strategy::Strategy> {
    let rule = (0u32..10, prop::sample::select(vec!["ondemand", "spot", "gpu"]), prop::option::of(0usize..ARB_ZONES));
    (prop::option::of(0u32..5), prop::collection::vec(rule, 1..5))
        .prop_filter("a positive weight", |(_, rules)| rules.iter().any(|(w, _, _)| *w > 0))
        .prop_map(|(base, rules)| {
            let mut seen = std::collections::BTreeSet::new();
            let rules = rules
                .into_iter()
                .enumerate()
                .map(|(i, (weight, kind, zone))| {
                    let mut node_selector = vec![("node-type".to_string(), kind.to_string())];
                    if let Some(z) = zone {
                        node_selector.push((crate::ZONE_LABEL.to_string(), super::generator::zone_name(z)));
                    }
                    // Keep selectors distinct so that every group can be told apart.
                    if !seen.insert(node_selector.clone()) {
                        node_selector.push(("rule".to_string(), i.to_string()));
                    }
                    crate::strategy::Rule { base: if i == 0 { base } else { None }, weight, node_selector }
                })
                .collect();
            crate::strategy::Strategy { rules }
        })
}

/// A valid rebalance policy with varied thresholds, hysteresis, smoothing, weights and budgets.
pub fn arb_rebalance_policy() -> impl Strategy<Value = crate::rebalance::RebalancePolicy> {
    (
        (0.55f64..0.95, 0.05f64..0.5, 0.0f64..0.1),
        (1u32..5, 1u32..5, 0.1f64..=1.0),
        (0.0f64..3.0, 0.0f64..3.0, 0.0f64..0.1),
        (1u32..20, prop::option::of(1u32..10), 1u32..20, any::<bool>()),
    )
        .prop_map(
            |(
                (hot, cold_fraction, hysteresis),
                (k, m, alpha),
                (wc, wm, target_sigma),
                (per_minute, per_ns, per_plan, jobs),
            )| {
                crate::rebalance::RebalancePolicy {
                    hot_threshold: hot,
                    cold_threshold: hot * cold_fraction,
                    hysteresis,
                    observations_to_enter: k,
                    observations_to_leave: m,
                    ewma_alpha: alpha,
                    cpu_weight: wc + 0.01,
                    memory_weight: wm,
                    target_sigma,
                    max_evictions_per_minute: per_minute,
                    max_evictions_per_namespace_per_hour: per_ns,
                    max_evictions_per_plan: per_plan,
                    allow_jobs: jobs,
                    ..crate::rebalance::RebalancePolicy::default()
                }
            },
        )
}

// ---------------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------------
// Nodes

/// A node named `node-<n>`: zone `zone-a..c`, `node-type` on-demand (70 %) or spot (30 %, tainted
/// `spot=true:NoSchedule`), an instance shape, usually Ready and schedulable, usually with usage
/// (0 to 100 % of allocatable, per resource). `requested` and `pod_count` are zero: a snapshot fills
/// them.
pub fn arb_node() -> impl Strategy<Value = Node> {
    (
        0..1000usize,
        0..ARB_ZONES,
        prop::bool::weighted(0.3),
        0..INSTANCE_SHAPES.len(),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.05),
        prop::option::weighted(0.9, (0..=1000u64, 0..=1000u64)),
    )
        .prop_map(|(n, zone, spot, shape, ready, cordoned, usage)| {
            let shape = INSTANCE_SHAPES[shape];
            let max_pods = 110;
            let allocatable = shape.allocatable(max_pods);
            let name = format!("node-{n}");
            let mut labels = Labels::new();
            labels.insert("kubernetes.io/hostname".into(), name.clone());
            labels.insert(crate::ZONE_LABEL.into(), zone_name(zone));
            labels.insert(NODE_TYPE_LABEL.into(), if spot { "spot" } else { "ondemand" }.into());
            labels.insert("node.kubernetes.io/instance-type".into(), shape.name.into());
            Node {
                name,
                labels,
                taints: if spot { vec![Taint::new("spot", "true", Effect::NoSchedule)] } else { Vec::new() },
                allocatable,
                max_pods,
                requested: Resources::ZERO,
                pod_count: 0,
                usage: usage.map(|(cpu, memory)| {
                    Resources::new(allocatable.cpu_millis * cpu / 1000, allocatable.memory_bytes / 1000 * memory)
                }),
                ready,
                unschedulable: cordoned,
            }
        })
}

// ---------------------------------------------------------------------------------------------------
// Pods

/// Who owns a generated pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// One of [`WORKLOADS`].
    Workload(usize),
    Bare,
    Mirror,
}

/// The handful of workloads pods belong to: (kind, namespace, name).
const WORKLOADS: [(WorkloadKind, &str, &str); 6] = [
    (WorkloadKind::Deployment, "default", "web"),
    (WorkloadKind::Deployment, "default", "api"),
    (WorkloadKind::Deployment, "team-a", "worker"),
    (WorkloadKind::StatefulSet, "team-a", "db"),
    (WorkloadKind::DaemonSet, "kube-system", "agent"),
    (WorkloadKind::Job, "team-a", "batch"),
];

/// A pod before it is bound: everything random about it.
#[derive(Clone, Debug)]
struct PodDraft {
    owner: Owner,
    /// Second revision (a rollout in progress).
    new_revision: bool,
    cpu_millis: u64,
    memory_bytes: u64,
    /// The node to try; `None` for a pod meant to stay pending.
    node: Option<Index>,
    /// Tolerates the spot taint even where it need not.
    tolerates_spot: bool,
    /// A pending pod asks for spot nodes.
    spot_selector: bool,
    pinned: bool,
    high_priority: bool,
    volume: Option<LocalVolume>,
    phase: PodPhase,
    terminating: bool,
    /// Usage in per mille of requests, for a running bound pod.
    usage_permille: Option<u64>,
}

fn arb_owner() -> impl Strategy<Value = Owner> {
    prop_oneof![
        12 => (0..WORKLOADS.len()).prop_map(Owner::Workload),
        1 => Just(Owner::Bare),
        1 => Just(Owner::Mirror),
    ]
}

fn arb_local_volume() -> impl Strategy<Value = LocalVolume> {
    prop_oneof![
        Just(LocalVolume::HostPath),
        (prop::option::of(Just(1u64 << 30)), prop::option::of(0..=2u64 << 30))
            .prop_map(|(size_limit, used)| LocalVolume::EmptyDir { size_limit, used }),
    ]
}

fn arb_pod_draft() -> impl Strategy<Value = PodDraft> {
    (
        (
            arb_owner(),
            any::<bool>(),
            prop::sample::select(&[50u64, 100, 250, 500, 1000, 2000, 4000][..]),
            prop::sample::select(&[64u64, 128, 256, 512, 1024, 4096, 8192][..]),
            prop::option::weighted(0.9, any::<Index>()),
            prop::bool::weighted(0.3),
            any::<bool>(),
        ),
        (
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.05),
            prop::option::weighted(0.15, arb_local_volume()),
            prop_oneof![
                10 => Just(PodPhase::Running),
                1 => Just(PodPhase::Succeeded),
                1 => Just(PodPhase::Failed),
            ],
            prop::bool::weighted(0.05),
            prop::option::weighted(0.9, 0..=2000u64),
        ),
    )
        .prop_map(
            |(
                (owner, new_revision, cpu_millis, memory_mib, node, tolerates_spot, spot_selector),
                (pinned, high_priority, volume, phase, terminating, usage_permille),
            )| PodDraft {
                owner,
                new_revision,
                cpu_millis,
                memory_bytes: memory_mib * MIB,
                node,
                tolerates_spot,
                spot_selector,
                pinned,
                high_priority,
                volume,
                phase,
                terminating,
                usage_permille,
            },
        )
}

impl PodDraft {
    fn workload(&self) -> Option<WorkloadRef> {
        match self.owner {
            Owner::Workload(i) => {
                let (kind, namespace, name) = &WORKLOADS[i];
                Some(WorkloadRef::new(kind.clone(), *namespace, *name))
            }
            Owner::Bare | Owner::Mirror => None,
        }
    }

    /// The pod, unbound, with its `i`-based name.
    fn to_pod(&self, i: usize) -> Pod {
        let workload = self.workload();
        let (namespace, base) = match self.owner {
            Owner::Workload(w) => (WORKLOADS[w].1, WORKLOADS[w].2),
            Owner::Bare => ("default", "debug"),
            Owner::Mirror => ("kube-system", "static"),
        };
        let controller = match workload.as_ref().map(|w| &w.kind) {
            Some(WorkloadKind::Deployment) => ControllerKind::ReplicaSet,
            Some(WorkloadKind::StatefulSet) => ControllerKind::StatefulSet,
            Some(WorkloadKind::DaemonSet) => ControllerKind::DaemonSet,
            Some(WorkloadKind::Job) => ControllerKind::Job,
            Some(WorkloadKind::ReplicaSet) => ControllerKind::ReplicaSet,
            Some(WorkloadKind::Other(k)) => ControllerKind::Other(k.clone()),
            None if self.owner == Owner::Mirror => ControllerKind::Node,
            None => ControllerKind::None,
        };
        let revision = workload.as_ref().map(|_| if self.new_revision { "rev2" } else { "rev1" }.to_string());
        let mut labels = Labels::new();
        labels.insert("app".into(), base.into());
        if let Some(r) = &revision {
            labels.insert("pod-template-hash".into(), r.clone());
        }
        let mut annotations = BTreeMap::new();
        if self.owner == Owner::Mirror {
            annotations.insert(MIRROR_ANNOTATION.to_string(), "hash".to_string());
        }
        if self.pinned {
            annotations.insert(PINNED_ANNOTATION.to_string(), "true".to_string());
        }
        let mut tolerations = Vec::new();
        if controller == ControllerKind::DaemonSet {
            tolerations.push(Toleration::exists("", None));
        } else if self.tolerates_spot {
            tolerations.push(Toleration::equal("spot", "true", Some(Effect::NoSchedule)));
        }
        let priority =
            if self.high_priority || controller == ControllerKind::DaemonSet { SYSTEM_CLUSTER_CRITICAL } else { 0 };
        Pod {
            uid: None,
            namespace: namespace.into(),
            name: format!("{base}-{i}"),
            labels,
            annotations,
            workload,
            revision,
            controller,
            node_name: None,
            node_selector: Labels::new(),
            required_affinity: None,
            tolerations,
            requests: Resources::new(self.cpu_millis, self.memory_bytes),
            usage: None,
            priority,
            phase: PodPhase::Pending,
            terminating: false,
            ready: false,
            volumes: self.volume.iter().cloned().collect(),
            unschedulable_since: None,
        }
    }
}

/// Room left on one node while binding pods.
#[derive(Clone, Copy, Debug)]
struct Room {
    free: Resources,
    pods_left: u32,
}

impl Room {
    fn of(node: &Node) -> Self {
        Room { free: node.free(), pods_left: node.max_pods.saturating_sub(node.pod_count) }
    }

    fn take(&mut self, requests: Resources) -> bool {
        if self.pods_left == 0 || !requests.fits_in(self.free) {
            return false;
        }
        self.free = self.free.saturating_sub(requests);
        self.pods_left -= 1;
        true
    }
}

/// Bind `draft` (as pod number `i`) to its chosen node when the node's taints are tolerated (the pod
/// gets the spot toleration if it lacks it, as its owner would have added) and there is room: a
/// finished pod takes no room. Otherwise it stays pending.
fn realize(draft: &PodDraft, i: usize, nodes: &[Node], rooms: &mut [Room]) -> Pod {
    let mut pod = draft.to_pod(i);
    let target = draft.node.filter(|_| !nodes.is_empty()).map(|at| at.index(nodes.len()));
    let Some(n) = target else {
        if draft.spot_selector {
            pod.node_selector.insert(NODE_TYPE_LABEL.into(), "spot".into());
        }
        return pod;
    };
    let node = &nodes[n];
    if pod.controller != ControllerKind::Node && crate::taints::untolerated(&node.taints, &pod.tolerations).is_some() {
        pod.tolerations.push(Toleration::exists("spot", Some(Effect::NoSchedule)));
    }
    let finished = matches!(draft.phase, PodPhase::Succeeded | PodPhase::Failed);
    if !finished && !rooms[n].take(pod.requests) {
        return pod;
    }
    pod.node_name = Some(node.name.clone());
    pod.phase = draft.phase;
    pod.ready = draft.phase == PodPhase::Running && node.ready;
    pod.terminating = !finished && draft.terminating;
    if draft.phase == PodPhase::Running && node.usage.is_some() {
        pod.usage = draft.usage_permille.map(|permille| {
            Resources::new(pod.requests.cpu_millis * permille / 1000, pod.requests.memory_bytes / 1000 * permille)
        });
    }
    pod
}

/// A pod for `nodes` (nodes as they are now, with their `requested` and `pod_count`): usually bound to
/// one of them when it fits its free allocatable and pod slots (tolerating the node's taints), else
/// pending. Owned by one of a handful of workloads or bare or mirror, with the odd kinds a rebalancer
/// filters out. Names are `<app>-<n>`, n < 1,000,000, unique only by chance: build clusters with
/// [`arb_cluster`], which names pods uniquely and never overcommits across pods.
pub fn arb_pod_on(nodes: &[Node]) -> impl Strategy<Value = Pod> + use<> {
    let nodes = nodes.to_vec();
    (arb_pod_draft(), 0..1_000_000usize).prop_map(move |(draft, i)| {
        let mut rooms: Vec<Room> = nodes.iter().map(Room::of).collect();
        realize(&draft, i, &nodes, &mut rooms)
    })
}

// ---------------------------------------------------------------------------------------------------
// Clusters

/// A small cluster: 1 to `max_nodes` nodes from [`arb_node`] (renamed `node-0`, `node-1`, ...), 0 to
/// `max_pods` pods bound in order where they fit (never overcommitting a node; the rest pending),
/// `Workload` entries for every workload with pods (replicas = its counting pods, maxUnavailable 1 to
/// 3), and sometimes a PDB on `web`. Built with [`Snapshot::new`], so `requested` and `pod_count` are
/// exact.
pub fn arb_cluster(max_nodes: usize, max_pods: usize) -> impl Strategy<Value = Snapshot> {
    (
        prop::collection::vec(arb_node(), 1..=max_nodes.max(1)),
        prop::collection::vec(arb_pod_draft(), 0..=max_pods),
        1..=3u32,
        prop::option::of(0..=2u32),
    )
        .prop_map(|(nodes, drafts, max_unavailable, web_pdb)| assemble(nodes, &drafts, max_unavailable, web_pdb))
}

fn assemble(mut nodes: Vec<Node>, drafts: &[PodDraft], max_unavailable: u32, web_pdb: Option<u32>) -> Snapshot {
    for (i, node) in nodes.iter_mut().enumerate() {
        node.name = format!("node-{i}");
        node.labels.insert("kubernetes.io/hostname".into(), node.name.clone());
    }
    let mut rooms: Vec<Room> = nodes.iter().map(Room::of).collect();
    let pods: Vec<Pod> = drafts.iter().enumerate().map(|(i, d)| realize(d, i, &nodes, &mut rooms)).collect();
    let mut replicas: BTreeMap<WorkloadRef, u32> = BTreeMap::new();
    for pod in &pods {
        if let Some(w) = &pod.workload {
            let n = replicas.entry(w.clone()).or_default();
            *n += u32::from(pod.counts());
        }
    }
    let workloads = replicas
        .into_iter()
        .map(|(workload, replicas)| {
            let mut labels = Labels::new();
            labels.insert("app".into(), workload.name.clone());
            Workload { workload, replicas, max_unavailable, labels, annotations: BTreeMap::new() }
        })
        .collect();
    let pdbs = web_pdb
        .map(|allowed| Pdb {
            namespace: "default".into(),
            name: "web".into(),
            selector: LabelSelector::from_pairs([("app", "web")]),
            disruptions_allowed: allowed,
        })
        .into_iter()
        .collect();
    Snapshot::new(nodes, pods, pdbs, workloads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn realize_respects_room_and_taints() {
        let spot = Node {
            taints: vec![Taint::new("spot", "true", Effect::NoSchedule)],
            ..crate::model::NodeBuilder::new("n").allocatable(1000, 1 << 30).build()
        };
        let nodes = vec![spot];
        let mut rooms = vec![Room::of(&nodes[0])];
        let mut runner = TestRunner::deterministic();
        let mut draft = arb_pod_draft().new_tree(&mut runner).unwrap().current();
        draft.owner = Owner::Workload(0);
        // Any index picks the only node.
        draft.node = Some(any::<Index>().new_tree(&mut runner).unwrap().current());
        draft.phase = PodPhase::Running;
        draft.cpu_millis = 600;
        draft.memory_bytes = 1 << 20;
        draft.tolerates_spot = false;
        let first = realize(&draft, 0, &nodes, &mut rooms);
        assert_eq!(first.node_name.as_deref(), Some("n"));
        assert!(crate::taints::untolerated(&nodes[0].taints, &first.tolerations).is_none());
        // 600m + 600m > 1000m: the second stays pending.
        let second = realize(&draft, 1, &nodes, &mut rooms);
        assert_eq!(second.node_name, None);
        assert_eq!(second.phase, PodPhase::Pending);
    }

    #[test]
    fn weights_always_have_a_positive() {
        let mut runner = TestRunner::deterministic();
        for max in [0, 1, 2, 5] {
            for _ in 0..200 {
                let w = arb_weights(max).new_tree(&mut runner).unwrap().current();
                assert!(!w.is_empty() && w.len() <= max.max(1));
                assert!(w.iter().any(|&x| x > 0), "{w:?}");
            }
        }
    }
}
