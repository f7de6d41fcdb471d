//! A seeded synthetic cluster: [`generate`] turns a [`ClusterSpec`] into a [`Snapshot`] that looks like
//! a production cluster, deterministically (same spec and seed, same snapshot; the RNG is
//! `ChaCha8Rng::seed_from_u64(seed)` and nothing iterates a hash map).
//!
//! What it builds, and why each part is there (every decision module meets it in benches):
//!
//! * **Nodes** from a handful of instance shapes ([`INSTANCE_SHAPES`]), spread round-robin over zones
//!   `zone-a`, `zone-b`, ... (label `topology.kubernetes.io/zone`), split into on-demand and spot
//!   groups (label `node-type` = `ondemand`/`spot`); spot nodes carry the taint `spot=true:NoSchedule`.
//!   A few are NotReady, a few cordoned, a few have no metrics.
//! * **Workloads**: a couple of DaemonSets (one pod per node, counted in the pod total), then mostly
//!   Deployments (pods controlled by a ReplicaSet, with a `pod-template-hash` revision; a few mid-rollout
//!   with two revisions), some StatefulSets and Jobs, over several namespaces. Replicas are heavy-tailed
//!   (a Pareto tail, capped) with about 30 % single-replica workloads; the totals are exact.
//! * **Odd pods** the rebalancer must leave alone: mirror (static) pods, bare pods, pinned pods, pods
//!   with emptyDir or hostPath, high-priority pods, finished Job pods, a few terminating pods.
//! * **Pending pods** with a nodeSelector (scarce zone, spot, or an instance type nobody has).
//! * **Placement** never overcommits: a pod is bound only where its requests fit the node's free
//!   allocatable and a pod slot is left (the less allocated of two random nodes that fit, else a scan;
//!   a pod that fits nowhere stays pending). Pods that do not tolerate the spot taint only go to on-demand nodes; pods that do are
//!   spread so that spot nodes carry their share.
//! * **Usage** = requests x a per-node factor chosen so that a node's usage is a target utilization:
//!   a few percent of nodes hot (> 0.8 of allocatable in cpu and memory), some cold (< 0.2), the rest in
//!   between; each pod's usage jitters around its node's factor.

use crate::Labels;
use crate::model::{
    ControllerKind, LocalVolume, MIRROR_ANNOTATION, Node, PINNED_ANNOTATION, Pdb, Pod, PodPhase, Snapshot, Workload,
    WorkloadKind, WorkloadRef,
};
use crate::resources::Resources;
use crate::selector::LabelSelector;
use crate::taints::{Effect, Taint, Toleration};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Label that tells on-demand from spot nodes.
pub const NODE_TYPE_LABEL: &str = "node-type";
/// Label of a node's instance shape.
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";
/// Label of a node's hostname.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Namespace of DaemonSet and mirror pods.
pub const SYSTEM_NAMESPACE: &str = "kube-system";
/// Priority of DaemonSet and mirror pods (`system-node-critical`).
pub const SYSTEM_NODE_CRITICAL: i32 = 2_000_001_000;
/// Priority of the "high priority" workloads.
pub const HIGH_PRIORITY: i32 = 1_000_000;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// Pods per node of the preset specs.
const PODS_PER_NODE: usize = 30;
/// Largest Pareto draw kept, relative to the smallest: bounds the biggest workload to several hundred
/// pods at any scale.
const REPLICA_TAIL_CAP: f64 = 150.0;
const REPLICA_TAIL_ALPHA: f64 = 1.2;
/// Workloads with more replicas than this never get the two largest request profiles.
const BIG_REQUESTS_MAX_REPLICAS: u32 = 20;
/// Random probes before a scan of every node of the pod's class.
const PLACEMENT_PROBES: usize = 8;
/// Fitting nodes compared per pod (the least allocated wins): 1 spreads fill widely, 2 evens it out.
const PLACEMENT_CHOICES: usize = 1;
/// Alphabet Kubernetes uses for generated name suffixes.
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// One machine shape: capacity, and how often it appears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceShape {
    pub name: &'static str,
    pub cpu_cores: u64,
    pub memory_gib: u64,
    /// Relative frequency among nodes.
    pub weight: u32,
}

impl InstanceShape {
    /// Capacity minus kube-reserved (70m + 10m per core; 255Mi + 11Mi per pod slot + 100Mi eviction
    /// threshold, the EKS formula).
    pub fn allocatable(&self, max_pods: u32) -> Resources {
        let cpu = self.cpu_cores * 1000;
        let memory = self.memory_gib * GIB;
        let reserved_cpu = 70 + 10 * self.cpu_cores;
        let reserved_memory = (255 + 11 * u64::from(max_pods) + 100) * MIB;
        Resources::new(cpu.saturating_sub(reserved_cpu), memory.saturating_sub(reserved_memory))
    }
}

/// The instance shapes nodes are drawn from.
pub const INSTANCE_SHAPES: [InstanceShape; 4] = [
    InstanceShape { name: "m5.xlarge", cpu_cores: 4, memory_gib: 16, weight: 20 },
    InstanceShape { name: "m5.2xlarge", cpu_cores: 8, memory_gib: 32, weight: 40 },
    InstanceShape { name: "m5.4xlarge", cpu_cores: 16, memory_gib: 64, weight: 30 },
    InstanceShape { name: "m5.8xlarge", cpu_cores: 32, memory_gib: 128, weight: 10 },
];

/// Per-pod requests of a workload, before jitter: (cpu millis, memory MiB, relative frequency).
const REQUEST_PROFILES: [(u64, u64, u32); 7] =
    [(50, 96, 26), (100, 256, 30), (250, 768, 22), (500, 1536, 12), (1000, 3072, 7), (2000, 6144, 2), (4000, 8192, 1)];

const WORKLOAD_PREFIXES: [&str; 12] =
    ["web", "api", "worker", "cache", "auth", "search", "billing", "ingest", "report", "gateway", "notify", "media"];

/// What cluster to generate. Every field is public: start from a preset and change what you need,
/// `ClusterSpec { seed: 7, spot_fraction: 0.5, ..ClusterSpec::small() }`. Out-of-range values are
/// clamped (fractions to 0..=1, counts to what the pod total allows), never a panic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Nodes, exactly.
    pub nodes: usize,
    /// Pods of every kind (DaemonSet, mirror, bare, controlled, pending), exactly.
    pub pods: usize,
    /// Zones `zone-a`, `zone-b`, ...; nodes are spread round-robin.
    pub zones: usize,
    /// Fraction of nodes in the spot group (rounded to a node count).
    pub spot_fraction: f64,
    /// `Workload` entries, DaemonSets included (fewer when the pod total cannot give each a pod).
    pub workloads: usize,
    /// Application namespaces `team-00`, ... (DaemonSet and mirror pods live in `kube-system`).
    pub namespaces: usize,
    pub seed: u64,
    /// DaemonSets, one pod on every node each.
    pub daemonsets: usize,
    /// Fraction of the non-DaemonSet workloads with one replica.
    pub single_replica_fraction: f64,
    /// Fraction of the non-DaemonSet workloads that are StatefulSets.
    pub statefulset_fraction: f64,
    /// Fraction of the non-DaemonSet workloads that are Jobs.
    pub job_fraction: f64,
    /// Pods without a controller.
    pub bare_pods: usize,
    /// Mirror (static) pods, at most one per node.
    pub mirror_pods: usize,
    /// Controlled pods left pending with a nodeSelector (more may stay pending if a pod fits nowhere).
    pub pending_pods: usize,
    /// Fraction of workloads whose pods tolerate the spot taint.
    pub spot_tolerating_fraction: f64,
    /// Fraction of multi-replica Deployments and StatefulSets with a PodDisruptionBudget.
    pub pdb_fraction: f64,
    /// Fraction of nodes with usage above 0.8 of allocatable (cpu and memory).
    pub hot_fraction: f64,
    /// Fraction of nodes with usage below 0.2 of allocatable.
    pub cold_fraction: f64,
    /// Fraction of (Ready) nodes without metrics; NotReady nodes never have metrics.
    pub no_metrics_fraction: f64,
    pub not_ready_fraction: f64,
    pub cordoned_fraction: f64,
}

impl ClusterSpec {
    /// 5,000 nodes, 150,000 pods, 3 zones, ~10,000 workloads: the benchmark scale.
    pub fn large() -> Self {
        Self::scaled(5_000)
    }

    /// 1,000 nodes, 30,000 pods.
    pub fn medium() -> Self {
        Self::scaled(1_000)
    }

    /// 500 nodes, 15,000 pods: fast enough for debug-build tests.
    pub fn small() -> Self {
        Self::scaled(500)
    }

    /// The preset proportions for `nodes` nodes: 30 pods and 2 workloads per node, 3 zones, 30 % spot.
    pub fn scaled(nodes: usize) -> Self {
        let pods = nodes * PODS_PER_NODE;
        ClusterSpec {
            nodes,
            pods,
            zones: 3,
            spot_fraction: 0.3,
            workloads: nodes * 2,
            namespaces: (nodes / 250).clamp(3, 40),
            seed: 0,
            daemonsets: 2,
            single_replica_fraction: 0.3,
            statefulset_fraction: 0.03,
            job_fraction: 0.02,
            bare_pods: pods / 2_000,
            mirror_pods: (nodes / 200).max(1),
            pending_pods: pods / 1_000,
            spot_tolerating_fraction: 0.5,
            pdb_fraction: 0.2,
            hot_fraction: 0.04,
            cold_fraction: 0.10,
            no_metrics_fraction: 0.01,
            not_ready_fraction: 0.005,
            cordoned_fraction: 0.01,
        }
    }

    /// The same spec with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// `zone-a`, `zone-b`, ... `zone-z`, then `zone-26`, ...
pub fn zone_name(index: usize) -> String {
    match u8::try_from(index) {
        Ok(i) if i < 26 => format!("zone-{}", char::from(b'a' + i)),
        _ => format!("zone-{index}"),
    }
}

/// Generate the cluster `spec` describes. Deterministic for a spec (seed included); never binds a pod
/// where its requests do not fit or no pod slot is left.
pub fn generate(spec: &ClusterSpec) -> Snapshot {
    let counts = Counts::of(spec);
    let mut g = Generator {
        rng: ChaCha8Rng::seed_from_u64(spec.seed),
        spec,
        counts,
        nodes: Vec::with_capacity(counts.nodes),
        loads: Vec::with_capacity(counts.nodes),
        ondemand: Vec::new(),
        spot: Vec::new(),
        class_cpu: [(0, 0); 2],
        pods: Vec::with_capacity(spec.pods),
        pod_node: Vec::with_capacity(spec.pods),
        workloads: Vec::with_capacity(spec.workloads),
        pdbs: Vec::new(),
    };
    g.make_nodes();
    g.make_daemonsets();
    g.make_mirror_pods();
    g.make_controlled_workloads();
    g.make_bare_pods();
    g.set_node_conditions_and_usage();
    Snapshot::new(g.nodes, g.pods, g.pdbs, g.workloads)
}

/// The exact counts a spec resolves to, after clamping.
#[derive(Clone, Copy, Debug)]
struct Counts {
    nodes: usize,
    zones: usize,
    spot_nodes: usize,
    daemonsets: usize,
    mirror: usize,
    bare: usize,
    /// Pods of Deployments, StatefulSets and Jobs.
    controlled: usize,
    controlled_workloads: usize,
    single_replica: usize,
    pending: usize,
}

impl Counts {
    fn of(spec: &ClusterSpec) -> Self {
        let nodes = spec.nodes;
        // No node, no DaemonSet pod; and never more DaemonSet pods than the pod total.
        let daemonsets =
            spec.pods.checked_div(nodes).map_or(0, |per_node| spec.daemonsets.min(per_node).min(spec.workloads));
        let mut remaining = spec.pods - daemonsets * nodes;
        let mirror = spec.mirror_pods.min(remaining).min(nodes);
        remaining -= mirror;
        let mut bare = spec.bare_pods.min(remaining);
        let mut controlled = remaining - bare;
        let controlled_workloads = (spec.workloads - daemonsets).min(controlled);
        if controlled_workloads == 0 {
            // No workload to own them: they become bare pods, so the pod total stays exact.
            bare += controlled;
            controlled = 0;
        }
        let single_replica = Self::single_replica(spec.single_replica_fraction, controlled, controlled_workloads);
        Counts {
            nodes,
            zones: spec.zones.max(1),
            spot_nodes: round_fraction(nodes, spec.spot_fraction),
            daemonsets,
            mirror,
            bare,
            controlled,
            controlled_workloads,
            single_replica,
            pending: spec.pending_pods.min(controlled),
        }
    }

    /// Single-replica workloads: the requested fraction, bounded so that the multi-replica workloads
    /// (at least 2 pods each) can take exactly the remaining pods.
    fn single_replica(fraction: f64, pods: usize, workloads: usize) -> usize {
        if workloads == 0 || pods == workloads {
            return workloads;
        }
        // pods > workloads: at least one multi-replica workload.
        let wanted = round_fraction(workloads, fraction);
        let least = (2 * workloads).saturating_sub(pods);
        wanted.clamp(least, workloads - 1)
    }
}

/// Free room of a node while placing.
#[derive(Clone, Copy, Debug)]
struct Load {
    allocatable: Resources,
    used: Resources,
    pods: u32,
    max_pods: u32,
    class: NodeClass,
}

impl Load {
    fn fits(&self, requests: Resources) -> bool {
        self.pods < self.max_pods && (self.used + requests).fits_in(self.allocatable)
    }

    /// The larger of the cpu and memory fractions allocated once `requests` is added.
    fn allocated_after(&self, requests: Resources) -> f64 {
        let used = self.used + requests;
        ratio(used.cpu_millis, self.allocatable.cpu_millis).max(ratio(used.memory_bytes, self.allocatable.memory_bytes))
    }
}

/// Which nodes a pod may be placed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeClass {
    OnDemand = 0,
    Spot = 1,
}

/// A workload before its pods exist.
struct WorkloadPlan {
    workload: WorkloadRef,
    replicas: u32,
    requests: Resources,
    tolerates_spot: bool,
    revision: String,
    /// A rollout in progress: the first `n` pods are of this older revision.
    old_revision: Option<(String, u32)>,
    priority: i32,
    pinned: bool,
    empty_dir: Option<LocalVolume>,
}

const NO_NODE: u32 = u32::MAX;

struct Generator<'a> {
    rng: ChaCha8Rng,
    spec: &'a ClusterSpec,
    counts: Counts,
    nodes: Vec<Node>,
    loads: Vec<Load>,
    /// Placement candidates of each class: node indexes, each repeated once per 4 cores.
    ondemand: Vec<u32>,
    spot: Vec<u32>,
    /// Requested and allocatable cpu per [`NodeClass`].
    class_cpu: [(u64, u64); 2],
    pods: Vec<Pod>,
    /// Index of each pod's node in `nodes`, `NO_NODE` when pending.
    pod_node: Vec<u32>,
    workloads: Vec<Workload>,
    pdbs: Vec<Pdb>,
}

impl Generator<'_> {
    // -- nodes ------------------------------------------------------------------------------------

    fn make_nodes(&mut self) {
        let n = self.counts.nodes;
        let mut is_spot = vec![false; n];
        is_spot[..self.counts.spot_nodes].fill(true);
        is_spot.shuffle(&mut self.rng);
        let zones: Vec<String> = (0..self.counts.zones).map(zone_name).collect();
        let shape_weights: Vec<u32> = INSTANCE_SHAPES.iter().map(|s| s.weight).collect();
        let spot_taint = Taint::new("spot", "true", Effect::NoSchedule);
        for (i, spot) in is_spot.into_iter().enumerate() {
            let shape = INSTANCE_SHAPES[weighted_index(&mut self.rng, &shape_weights)];
            let name = format!("node-{i:05}");
            let mut labels = Labels::new();
            labels.insert(HOSTNAME_LABEL.into(), name.clone());
            labels.insert(crate::ZONE_LABEL.into(), zones[i % zones.len()].clone());
            labels.insert(NODE_TYPE_LABEL.into(), if spot { "spot" } else { "ondemand" }.into());
            labels.insert(INSTANCE_TYPE_LABEL.into(), shape.name.into());
            let max_pods = 110;
            let allocatable = shape.allocatable(max_pods);
            let index = u32::try_from(i).unwrap_or(NO_NODE);
            // A node is a candidate once per 4 cores: random probes find nodes in proportion to
            // their size, so big and small nodes fill alike.
            let slots = (shape.cpu_cores / 4).max(1) as usize;
            let (class, candidates) =
                if spot { (NodeClass::Spot, &mut self.spot) } else { (NodeClass::OnDemand, &mut self.ondemand) };
            candidates.extend(std::iter::repeat_n(index, slots));
            self.class_cpu[class as usize].1 += allocatable.cpu_millis;
            self.loads.push(Load { allocatable, used: Resources::ZERO, pods: 0, max_pods, class });
            self.nodes.push(Node {
                name,
                labels,
                taints: if spot { vec![spot_taint.clone()] } else { Vec::new() },
                allocatable,
                max_pods,
                requested: Resources::ZERO,
                pod_count: 0,
                usage: None,
                ready: true,
                unschedulable: false,
            });
        }
    }

    /// NotReady, cordoned, metrics and heat, each with an exact count over a shuffled node order; then
    /// usage for nodes with metrics and their running pods.
    fn set_node_conditions_and_usage(&mut self) {
        let n = self.nodes.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        let not_ready = round_fraction(n, self.spec.not_ready_fraction);
        let cordoned = round_fraction(n, self.spec.cordoned_fraction).min(n - not_ready);
        let no_metrics = round_fraction(n, self.spec.no_metrics_fraction).min(n - not_ready);
        let with_metrics = n - not_ready - no_metrics;
        let hot = round_fraction(n, self.spec.hot_fraction).min(with_metrics);
        let cold = round_fraction(n, self.spec.cold_fraction).min(with_metrics - hot);

        // Cordoning is independent of metrics: it takes the nodes right after the NotReady ones.
        for &i in &order[not_ready..not_ready + cordoned] {
            self.nodes[i].unschedulable = true;
        }
        for &i in &order[..not_ready] {
            self.nodes[i].ready = false;
        }
        // Metrics are missing for the NotReady nodes and the `no_metrics` nodes at the end of the order.
        let mut utilization: Vec<Option<(f64, f64)>> = vec![None; n];
        let metric_nodes = &order[not_ready..n - no_metrics];
        for (rank, &i) in metric_nodes.iter().enumerate() {
            let (cpu, memory) = if rank < hot {
                (self.rng.random_range(0.82..0.97), self.rng.random_range(0.81..0.95))
            } else if rank < hot + cold {
                (self.rng.random_range(0.02..0.15), self.rng.random_range(0.03..0.18))
            } else {
                let cpu: f64 = self.rng.random_range(0.25..0.7);
                let memory = (cpu * self.rng.random_range(0.6..1.1)).clamp(0.25, 0.75);
                (cpu, memory)
            };
            utilization[i] = Some((cpu, memory));
        }

        // Per-node factor usage/requests, then each running pod's usage around it.
        let mut factors: Vec<Option<(f64, f64)>> = vec![None; n];
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let Some((cpu, memory)) = utilization[i] else {
                continue;
            };
            let usage =
                Resources::new(scale(node.allocatable.cpu_millis, cpu), scale(node.allocatable.memory_bytes, memory));
            node.usage = Some(usage);
            let used = self.loads[i].used;
            factors[i] = Some((ratio(usage.cpu_millis, used.cpu_millis), ratio(usage.memory_bytes, used.memory_bytes)));
        }
        for (pod, &node) in self.pods.iter_mut().zip(&self.pod_node) {
            let Some(Some((fc, fm))) = factors.get(node as usize) else {
                continue;
            };
            if pod.phase != PodPhase::Running {
                continue;
            }
            let jitter: f64 = self.rng.random_range(0.8..1.2);
            pod.usage = Some(Resources::new(
                scale(pod.requests.cpu_millis, fc * jitter),
                scale(pod.requests.memory_bytes, fm * jitter),
            ));
        }
    }

    // -- placement --------------------------------------------------------------------------------

    /// A node of `class` where `requests` fit: random probes, then a scan from a random start.
    fn find_node(&mut self, class: NodeClass, requests: Resources) -> Option<u32> {
        let candidates = match class {
            NodeClass::OnDemand => &self.ondemand,
            NodeClass::Spot => &self.spot,
        };
        if candidates.is_empty() {
            return None;
        }
        // The less allocated of the first two random nodes that fit (the scheduler's LeastAllocated,
        // sampled): nodes fill evenly whatever their size.
        let mut best: Option<(u32, f64)> = None;
        let mut found = 0;
        for _ in 0..PLACEMENT_PROBES {
            let i = candidates[self.rng.random_range(0..candidates.len())];
            let load = &self.loads[i as usize];
            if !load.fits(requests) {
                continue;
            }
            let after = load.allocated_after(requests);
            if best.is_none_or(|(_, b)| after < b) {
                best = Some((i, after));
            }
            found += 1;
            if found == PLACEMENT_CHOICES {
                break;
            }
        }
        if let Some((i, _)) = best {
            return Some(i);
        }
        let start = self.rng.random_range(0..candidates.len());
        candidates[start..].iter().chain(&candidates[..start]).copied().find(|&i| self.loads[i as usize].fits(requests))
    }

    /// Place a pod that holds resources. A spot-tolerating pod goes to the class (spot or on-demand)
    /// with the smaller share of its cpu allocated so far, so that both fill evenly, and falls back to
    /// the other class. Returns `NO_NODE` when nothing fits.
    fn place(&mut self, requests: Resources, tolerates_spot: bool) -> u32 {
        let first = if tolerates_spot && self.class_fill(NodeClass::Spot) < self.class_fill(NodeClass::OnDemand) {
            NodeClass::Spot
        } else {
            NodeClass::OnDemand
        };
        let mut found = self.find_node(first, requests);
        if found.is_none() && tolerates_spot {
            let other = match first {
                NodeClass::Spot => NodeClass::OnDemand,
                NodeClass::OnDemand => NodeClass::Spot,
            };
            found = self.find_node(other, requests);
        }
        match found {
            Some(i) => {
                self.reserve(i, requests);
                i
            }
            None => NO_NODE,
        }
    }

    fn reserve(&mut self, node: u32, requests: Resources) {
        let load = &mut self.loads[node as usize];
        load.used += requests;
        load.pods += 1;
        let class = &mut self.class_cpu[load.class as usize];
        class.0 += requests.cpu_millis;
    }

    /// Fraction of a class's allocatable cpu requested so far (1 for an empty class: never preferred).
    fn class_fill(&self, class: NodeClass) -> f64 {
        let (used, allocatable) = self.class_cpu[class as usize];
        if allocatable == 0 { 1.0 } else { used as f64 / allocatable as f64 }
    }

    fn push_pod(&mut self, mut pod: Pod, node: u32) {
        if node == NO_NODE {
            pod.node_name = None;
            pod.phase = PodPhase::Pending;
            pod.ready = false;
        } else {
            pod.node_name = Some(self.nodes[node as usize].name.clone());
        }
        self.pods.push(pod);
        self.pod_node.push(node);
    }

    // -- system pods ------------------------------------------------------------------------------

    fn make_daemonsets(&mut self) {
        const DAEMONSETS: [(&str, u64, u64); 4] =
            [("kube-proxy", 100, 128), ("node-exporter", 50, 64), ("log-agent", 100, 256), ("csi-node", 50, 128)];
        for d in 0..self.counts.daemonsets {
            let (base, cpu, memory_mib) = DAEMONSETS[d % DAEMONSETS.len()];
            let name = if d < DAEMONSETS.len() { base.to_string() } else { format!("{base}-{d}") };
            let workload = WorkloadRef::new(WorkloadKind::DaemonSet, SYSTEM_NAMESPACE, &name);
            let revision = random_name(&mut self.rng, 10);
            let requests = Resources::new(cpu, memory_mib * MIB);
            for node in 0..self.nodes.len() {
                let node = u32::try_from(node).unwrap_or(NO_NODE);
                let suffix = encode_suffix(u64::from(node));
                let pod = Pod {
                    uid: None,
                    namespace: SYSTEM_NAMESPACE.into(),
                    name: format!("{name}-{suffix}"),
                    labels: app_labels(&name, "controller-revision-hash", &revision),
                    annotations: BTreeMap::new(),
                    workload: Some(workload.clone()),
                    revision: Some(revision.clone()),
                    controller: ControllerKind::DaemonSet,
                    node_name: None,
                    node_selector: Labels::new(),
                    required_affinity: None,
                    tolerations: vec![Toleration::exists("", None)],
                    requests,
                    usage: None,
                    priority: SYSTEM_NODE_CRITICAL,
                    phase: PodPhase::Running,
                    terminating: false,
                    ready: true,
                    volumes: vec![LocalVolume::HostPath],
                    unschedulable_since: None,
                };
                // The first DaemonSet pods go on empty nodes: they fit unless a node is tiny.
                let placed = if self.loads[node as usize].fits(requests) {
                    self.reserve(node, requests);
                    node
                } else {
                    NO_NODE
                };
                self.push_pod(pod, placed);
            }
            let n = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
            self.workloads.push(Workload {
                workload,
                replicas: n,
                max_unavailable: 1,
                labels: app_labels(&name, "", ""),
                annotations: BTreeMap::new(),
            });
        }
    }

    fn make_mirror_pods(&mut self) {
        let mut hosts: Vec<usize> = (0..self.nodes.len()).collect();
        hosts.shuffle(&mut self.rng);
        hosts.truncate(self.counts.mirror);
        hosts.sort_unstable();
        let requests = Resources::new(250, 512 * MIB);
        for host in hosts {
            let node = u32::try_from(host).unwrap_or(NO_NODE);
            let mut annotations = BTreeMap::new();
            annotations.insert(MIRROR_ANNOTATION.to_string(), random_name(&mut self.rng, 10));
            let pod = Pod {
                uid: None,
                namespace: SYSTEM_NAMESPACE.into(),
                name: format!("etcd-proxy-{}", self.nodes[host].name),
                labels: app_labels("etcd-proxy", "", ""),
                annotations,
                workload: None,
                revision: None,
                // Static pods ignore taints: no tolerations even on spot nodes.
                controller: ControllerKind::Node,
                node_name: None,
                node_selector: Labels::new(),
                required_affinity: None,
                tolerations: Vec::new(),
                requests,
                usage: None,
                priority: SYSTEM_NODE_CRITICAL,
                phase: PodPhase::Running,
                terminating: false,
                ready: true,
                volumes: vec![LocalVolume::HostPath],
                unschedulable_since: None,
            };
            let placed = if self.loads[host].fits(requests) {
                self.reserve(node, requests);
                node
            } else {
                NO_NODE
            };
            self.push_pod(pod, placed);
        }
    }

    fn make_bare_pods(&mut self) {
        let namespaces = self.spec.namespaces.max(1);
        for i in 0..self.counts.bare {
            let namespace = namespace_name(self.rng.random_range(0..namespaces));
            let requests = Resources::new(100, 128 * MIB);
            let pod = Pod {
                uid: None,
                namespace,
                name: format!("debug-{}", encode_suffix(i as u64)),
                labels: app_labels("debug", "", ""),
                annotations: BTreeMap::new(),
                workload: None,
                revision: None,
                controller: ControllerKind::None,
                node_name: None,
                node_selector: Labels::new(),
                required_affinity: None,
                tolerations: Vec::new(),
                requests,
                usage: None,
                priority: 0,
                phase: PodPhase::Running,
                terminating: false,
                ready: true,
                volumes: Vec::new(),
                unschedulable_since: None,
            };
            let node = self.place(requests, false);
            self.push_pod(pod, node);
        }
    }

    // -- controlled workloads ---------------------------------------------------------------------

    fn make_controlled_workloads(&mut self) {
        let mut plans = self.plan_workloads();
        // Largest requests first (first-fit decreasing): big pods find room before the cluster fills.
        plans.sort_by_key(|p| std::cmp::Reverse((p.requests.cpu_millis, p.requests.memory_bytes)));
        let mut pending_left = self.counts.pending;
        let mut pods_left = self.counts.controlled;
        for plan in plans {
            for ordinal in 0..plan.replicas {
                // Selection sampling: exactly `pending` pods over the whole sequence.
                let pending = pending_left > 0 && self.rng.random_range(0..pods_left) < pending_left;
                pods_left -= 1;
                if pending {
                    pending_left -= 1;
                }
                self.make_controlled_pod(&plan, ordinal, pending);
            }
            self.finish_workload(plan);
        }
    }

    /// Kinds, replicas, requests and flags of every Deployment, StatefulSet and Job.
    fn plan_workloads(&mut self) -> Vec<WorkloadPlan> {
        let c = self.counts;
        let n = c.controlled_workloads;
        let mut replicas = self.replica_counts();
        replicas.shuffle(&mut self.rng);
        let statefulsets = round_fraction(n, self.spec.statefulset_fraction);
        let jobs = round_fraction(n, self.spec.job_fraction).min(n - statefulsets);
        let mut kinds = vec![WorkloadKind::Deployment; n];
        kinds[..statefulsets].fill(WorkloadKind::StatefulSet);
        kinds[statefulsets..statefulsets + jobs].fill(WorkloadKind::Job);
        kinds.shuffle(&mut self.rng);
        let namespaces = self.spec.namespaces.max(1);
        let profile_weights: Vec<u32> = REQUEST_PROFILES.iter().map(|p| p.2).collect();
        let small_profiles = REQUEST_PROFILES.len() - 2;
        let tolerating = fraction(self.spec.spot_tolerating_fraction);

        let mut plans = Vec::with_capacity(n);
        for (i, (kind, replicas)) in kinds.into_iter().zip(replicas).enumerate() {
            let prefix = WORKLOAD_PREFIXES[self.rng.random_range(0..WORKLOAD_PREFIXES.len())];
            let name = format!("{prefix}-{i:05}");
            let namespace = namespace_name(self.rng.random_range(0..namespaces));
            let weights = if replicas > BIG_REQUESTS_MAX_REPLICAS {
                &profile_weights[..small_profiles]
            } else {
                &profile_weights[..]
            };
            let (cpu, memory_mib, _) = REQUEST_PROFILES[weighted_index(&mut self.rng, weights)];
            let jitter: f64 = self.rng.random_range(0.75..1.25);
            let cpu = (scale(cpu, jitter) / 10 * 10).clamp(50, 4000);
            let memory = (scale(memory_mib, jitter) * MIB).clamp(64 * MIB, 8 * GIB);
            let tolerates_spot = match kind {
                WorkloadKind::StatefulSet => chance(&mut self.rng, tolerating / 5.0),
                _ => chance(&mut self.rng, tolerating),
            };
            let revision = random_name(&mut self.rng, 10);
            let old_revision = (kind == WorkloadKind::Deployment && replicas >= 3 && chance(&mut self.rng, 0.03))
                .then(|| (random_name(&mut self.rng, 10), replicas / 3));
            let priority = if chance(&mut self.rng, 0.05) { HIGH_PRIORITY } else { 0 };
            let pinned = chance(&mut self.rng, 0.01);
            let empty_dir = chance(&mut self.rng, 0.1).then(|| LocalVolume::EmptyDir {
                size_limit: (self.rng.random_bool(0.5)).then_some(GIB),
                used: Some(64 * MIB),
            });
            plans.push(WorkloadPlan {
                workload: WorkloadRef::new(kind, namespace, name),
                replicas,
                requests: Resources::new(cpu, memory),
                tolerates_spot,
                revision,
                old_revision,
                priority,
                pinned,
                empty_dir,
            });
        }
        plans
    }

    /// Replicas of every controlled workload, summing to exactly `counts.controlled`: ones for the
    /// single-replica workloads, and for the others 2 plus a share of the rest proportional to a capped
    /// Pareto draw (heavy tail), rounded down with the leftover handed out one pod at a time.
    fn replica_counts(&mut self) -> Vec<u32> {
        let c = self.counts;
        let multi = c.controlled_workloads - c.single_replica;
        let mut replicas = vec![1u32; c.single_replica];
        if multi == 0 {
            return replicas;
        }
        let extra = c.controlled - c.single_replica - 2 * multi;
        let draws: Vec<f64> = (0..multi)
            .map(|_| {
                let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
                u.powf(-1.0 / REPLICA_TAIL_ALPHA).min(REPLICA_TAIL_CAP)
            })
            .collect();
        let total: f64 = draws.iter().sum();
        let mut shares: Vec<usize> = draws.iter().map(|d| ((d / total) * extra as f64).floor() as usize).collect();
        let mut left = extra.saturating_sub(shares.iter().sum());
        while left > 0 {
            let i = self.rng.random_range(0..multi);
            shares[i] += 1;
            left -= 1;
        }
        replicas.extend(shares.into_iter().map(|s| u32::try_from(s + 2).unwrap_or(u32::MAX)));
        replicas
    }

    fn make_controlled_pod(&mut self, plan: &WorkloadPlan, ordinal: u32, pending: bool) {
        let w = &plan.workload;
        let revision = match &plan.old_revision {
            Some((old, n)) if ordinal < *n => old.clone(),
            _ => plan.revision.clone(),
        };
        let (controller, name, hash_label) = match w.kind {
            WorkloadKind::StatefulSet => {
                (ControllerKind::StatefulSet, format!("{}-{ordinal}", w.name), "controller-revision-hash")
            }
            WorkloadKind::Job => (
                ControllerKind::Job,
                format!("{}-{}", w.name, encode_suffix(u64::from(ordinal))),
                "batch.kubernetes.io/controller-uid",
            ),
            _ => (
                ControllerKind::ReplicaSet,
                format!("{}-{revision}-{}", w.name, encode_suffix(u64::from(ordinal))),
                "pod-template-hash",
            ),
        };
        let mut annotations = BTreeMap::new();
        if plan.pinned {
            annotations.insert(PINNED_ANNOTATION.to_string(), "true".to_string());
        }
        let mut tolerations = Vec::new();
        if plan.tolerates_spot {
            tolerations.push(if ordinal.is_multiple_of(2) {
                Toleration::equal("spot", "true", Some(Effect::NoSchedule))
            } else {
                Toleration::exists("spot", None)
            });
        }
        let phase = if w.kind == WorkloadKind::Job && chance(&mut self.rng, 0.25) {
            PodPhase::Succeeded
        } else {
            PodPhase::Running
        };
        let mut pod = Pod {
            uid: None,
            namespace: w.namespace.clone(),
            name,
            labels: app_labels(&w.name, hash_label, &revision),
            annotations,
            workload: Some(w.clone()),
            revision: Some(revision),
            controller,
            node_name: None,
            node_selector: Labels::new(),
            required_affinity: None,
            tolerations,
            requests: plan.requests,
            usage: None,
            priority: plan.priority,
            phase,
            terminating: phase == PodPhase::Running && chance(&mut self.rng, 0.001),
            ready: phase == PodPhase::Running,
            volumes: plan.empty_dir.iter().cloned().collect(),
            unschedulable_since: None,
        };
        let node = if pending {
            self.add_unsatisfiable_selector(&mut pod);
            NO_NODE
        } else if phase == PodPhase::Succeeded {
            // Finished pods stay bound but hold nothing: any node of the class will do.
            self.finished_pod_node(plan.tolerates_spot)
        } else {
            self.place(plan.requests, plan.tolerates_spot)
        };
        if node == NO_NODE {
            pod.phase = PodPhase::Pending;
        }
        self.push_pod(pod, node);
    }

    /// A pending pod's nodeSelector: a spot node, a zone, or an instance type no node has.
    fn add_unsatisfiable_selector(&mut self, pod: &mut Pod) {
        match self.rng.random_range(0..3) {
            0 => {
                pod.node_selector.insert(NODE_TYPE_LABEL.into(), "spot".into());
                if pod.tolerations.is_empty() {
                    pod.tolerations.push(Toleration::equal("spot", "true", Some(Effect::NoSchedule)));
                }
            }
            1 => {
                let zone = zone_name(self.rng.random_range(0..self.counts.zones));
                pod.node_selector.insert(crate::ZONE_LABEL.into(), zone);
            }
            _ => {
                pod.node_selector.insert(INSTANCE_TYPE_LABEL.into(), "p4d.24xlarge".into());
            }
        }
    }

    fn finished_pod_node(&mut self, tolerates_spot: bool) -> u32 {
        let candidates = if tolerates_spot && !self.spot.is_empty() && self.rng.random_bool(0.5) {
            &self.spot
        } else {
            &self.ondemand
        };
        if candidates.is_empty() {
            return NO_NODE;
        }
        candidates[self.rng.random_range(0..candidates.len())]
    }

    fn finish_workload(&mut self, plan: WorkloadPlan) {
        let w = plan.workload;
        let max_unavailable = match w.kind {
            WorkloadKind::Deployment => (plan.replicas / 4).max(1),
            _ => 1,
        };
        let wants_pdb = plan.replicas >= 2
            && matches!(w.kind, WorkloadKind::Deployment | WorkloadKind::StatefulSet)
            && chance(&mut self.rng, self.spec.pdb_fraction);
        if wants_pdb {
            let allowed =
                if self.rng.random_bool(0.1) { 0 } else { self.rng.random_range(1..=(plan.replicas - 1).min(3)) };
            self.pdbs.push(Pdb {
                namespace: w.namespace.clone(),
                name: format!("{}-pdb", w.name),
                selector: LabelSelector::from_pairs([("app", w.name.as_str())]),
                disruptions_allowed: allowed,
            });
        }
        self.workloads.push(Workload {
            labels: app_labels(&w.name, "", ""),
            workload: w,
            replicas: plan.replicas,
            max_unavailable,
            annotations: BTreeMap::new(),
        });
    }
}

/// `app=<name>`, plus the revision label when `hash_label` is not empty.
fn app_labels(name: &str, hash_label: &str, revision: &str) -> Labels {
    let mut labels = Labels::new();
    labels.insert("app".into(), name.into());
    if !hash_label.is_empty() {
        labels.insert(hash_label.into(), revision.into());
    }
    labels
}

fn namespace_name(i: usize) -> String {
    format!("team-{i:02}")
}

/// A random name of `len` characters from Kubernetes' suffix alphabet.
fn random_name(rng: &mut ChaCha8Rng, len: usize) -> String {
    (0..len).map(|_| char::from(NAME_ALPHABET[rng.random_range(0..NAME_ALPHABET.len())])).collect()
}

/// A 5-character suffix from the same alphabet, distinct for distinct `n` below 27^5.
fn encode_suffix(mut n: u64) -> String {
    let base = NAME_ALPHABET.len() as u64;
    let mut out = [0u8; 5];
    for slot in out.iter_mut().rev() {
        *slot = NAME_ALPHABET[(n % base) as usize];
        n /= base;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// Index drawn with probability proportional to `weights` (all-zero weights give 0).
fn weighted_index(rng: &mut ChaCha8Rng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    if total == 0 {
        return 0;
    }
    let mut pick = rng.random_range(0..total);
    for (i, &w) in weights.iter().enumerate() {
        if pick < w {
            return i;
        }
        pick -= w;
    }
    weights.len() - 1
}

/// A fraction clamped to 0..=1 (NaN is 0).
fn fraction(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    let p = fraction(p);
    p >= 1.0 || (p > 0.0 && rng.random_bool(p))
}

/// `round(n * fraction)`, within 0..=n.
fn round_fraction(n: usize, f: f64) -> usize {
    ((n as f64 * fraction(f)).round() as usize).min(n)
}

/// `value * factor`, rounded down, saturating.
fn scale(value: u64, factor: f64) -> u64 {
    let x = value as f64 * factor;
    if x.is_nan() || x <= 0.0 { 0 } else { x as u64 }
}

/// `numerator / denominator`, 0 when the denominator is 0.
fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 { 0.0 } else { numerator as f64 / denominator as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_distinct_and_fixed_width() {
        let a = encode_suffix(0);
        let b = encode_suffix(1);
        let c = encode_suffix(27);
        assert_eq!(a, "bbbbb");
        assert_eq!(b, "bbbbc");
        assert_eq!(c, "bbbcb");
    }

    #[test]
    fn zone_names() {
        assert_eq!(zone_name(0), "zone-a");
        assert_eq!(zone_name(2), "zone-c");
        assert_eq!(zone_name(25), "zone-z");
        assert_eq!(zone_name(26), "zone-26");
    }

    #[test]
    fn counts_table() {
        // (pods, nodes, workloads, daemonsets, single fraction) -> (controlled, workloads, single)
        struct Case {
            spec: ClusterSpec,
            controlled: usize,
            controlled_workloads: usize,
            single: usize,
        }
        let base = ClusterSpec::scaled(10);
        let cases = [
            // 300 pods - 2x10 DaemonSet - 1 mirror - 0 bare = 279 over 18 workloads, 5 single (0.3 x 18).
            Case { spec: base.clone(), controlled: 279, controlled_workloads: 18, single: 5 },
            // As many pods as workloads: all single.
            Case {
                spec: ClusterSpec { pods: 20 + 1 + 18, ..base.clone() },
                controlled: 18,
                controlled_workloads: 18,
                single: 18,
            },
            // 20 controlled pods over 18 workloads: at most 2 multi-replica, so at least 16 single.
            Case {
                spec: ClusterSpec { pods: 20 + 1 + 20, ..base.clone() },
                controlled: 20,
                controlled_workloads: 18,
                single: 16,
            },
            // No node: no DaemonSet or mirror pod, everything controlled.
            Case {
                spec: ClusterSpec { nodes: 0, ..base.clone() },
                controlled: 300,
                controlled_workloads: 20,
                single: 6,
            },
        ];
        for (i, c) in cases.into_iter().enumerate() {
            let got = Counts::of(&c.spec);
            assert_eq!(got.controlled, c.controlled, "case {i}");
            assert_eq!(got.controlled_workloads, c.controlled_workloads, "case {i}");
            assert_eq!(got.single_replica, c.single, "case {i}");
        }
    }

    #[test]
    fn replica_counts_sum_exactly() {
        for seed in 0..5 {
            let spec = ClusterSpec::scaled(50).with_seed(seed);
            let counts = Counts::of(&spec);
            let mut g = Generator {
                rng: ChaCha8Rng::seed_from_u64(seed),
                spec: &spec,
                counts,
                nodes: Vec::new(),
                loads: Vec::new(),
                ondemand: Vec::new(),
                spot: Vec::new(),
                class_cpu: [(0, 0); 2],
                pods: Vec::new(),
                pod_node: Vec::new(),
                workloads: Vec::new(),
                pdbs: Vec::new(),
            };
            let r = g.replica_counts();
            assert_eq!(r.len(), counts.controlled_workloads);
            assert_eq!(r.iter().map(|&x| x as usize).sum::<usize>(), counts.controlled);
            assert_eq!(r.iter().filter(|&&x| x == 1).count(), counts.single_replica);
        }
    }

    #[test]
    fn degenerate_specs_do_not_panic() {
        let specs = [
            ClusterSpec::scaled(0),
            ClusterSpec { zones: 0, spot_fraction: f64::NAN, hot_fraction: 2.0, ..ClusterSpec::scaled(3) },
            ClusterSpec { workloads: 0, ..ClusterSpec::scaled(3) },
            ClusterSpec { pods: 0, ..ClusterSpec::scaled(3) },
            ClusterSpec { spot_fraction: 1.0, spot_tolerating_fraction: 0.0, ..ClusterSpec::scaled(4) },
        ];
        for spec in specs {
            let s = generate(&spec);
            assert_eq!(s.nodes.len(), spec.nodes);
            assert_eq!(s.pods.len(), spec.pods, "{spec:?}");
        }
    }
}
