//! The snapshot model: the plain values every decision reads. Adapters build these from Kubernetes
//! objects; tests build them with the builders below. Nothing here knows about the API server.
//!
//! A pod **counts** for its workload (`docs/semantics.md#counting`) when it is not terminal, not
//! terminating, and has a resolved workload (by owner chain, never by an `app` label). Its group is decided
//! by its bound node's labels, or for a pending pod by the labels its nodeSelector and required affinity
//! imply.

use crate::Labels;
use crate::resources::Resources;
use crate::selector::{LabelSelector, NodeAffinity};
use crate::taints::{Taint, Toleration};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Pods at or above this priority (`system-cluster-critical`) are never evicted.
pub const SYSTEM_CLUSTER_CRITICAL: i32 = 2_000_000_000;
/// Annotation that exempts a pod from every eviction.
pub const PINNED_ANNOTATION: &str = "placement.dev/pinned";
/// Annotation of a static pod's mirror.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    /// Maximum pods (`allocatable.pods`); 110 by default.
    #[serde(default = "default_max_pods")]
    pub max_pods: u32,
    /// Sum of the effective requests of the non-terminal pods bound to this node.
    #[serde(default)]
    pub requested: Resources,
    /// Number of non-terminal pods bound to this node.
    #[serde(default)]
    pub pod_count: u32,
    /// Usage from metrics.k8s.io; `None` when the node has no metrics.
    #[serde(default)]
    pub usage: Option<Resources>,
    #[serde(default = "yes")]
    pub ready: bool,
    #[serde(default)]
    pub unschedulable: bool,
}

fn default_max_pods() -> u32 {
    110
}
fn yes() -> bool {
    true
}

impl Node {
    /// Allocatable minus requested.
    pub fn free(&self) -> Resources {
        self.allocatable.saturating_sub(self.requested)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// Kinds of workload a pod can belong to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    /// A ReplicaSet with no owning Deployment.
    ReplicaSet,
    DaemonSet,
    Job,
    /// Anything else with a controller (a CronJob's Job resolves to `Job`; unknown kinds keep their name).
    Other(String),
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkloadKind::Other(k) => f.write_str(k),
            k => write!(f, "{k:?}"),
        }
    }
}

/// A workload, resolved from a pod's owner chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl WorkloadRef {
    pub fn new(kind: WorkloadKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        WorkloadRef { kind, namespace: namespace.into(), name: name.into() }
    }

    pub fn deployment(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self::new(WorkloadKind::Deployment, namespace, name)
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// What directly controls a pod; decides which evictions are allowed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ControllerKind {
    /// No controller: a bare pod.
    None,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    /// A static pod's mirror (owner kind `Node`).
    Node,
    Other(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PodPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// A volume on node-local storage.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LocalVolume {
    EmptyDir {
        /// `sizeLimit` in bytes; `None` means unbounded.
        size_limit: Option<u64>,
        /// Bytes in use, when known.
        used: Option<u64>,
    },
    HostPath,
    /// A PersistentVolumeClaim. `local` says whether its bound PersistentVolume is node-local (`spec.local`,
    /// `spec.hostPath`, or required node affinity to a single `kubernetes.io/hostname`): `None` until
    /// the adapter has looked the claim up (the pod conversion alone cannot know), and then also when
    /// the claim or its volume could not be found.
    PersistentClaim {
        claim: String,
        #[serde(default)]
        local: Option<bool>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// `metadata.uid`, when known: evictions carry it as a precondition, so a pod recreated under the
    /// same name (a StatefulSet's) is never evicted in its predecessor's place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The workload, by owner chain.
    #[serde(default)]
    pub workload: Option<WorkloadRef>,
    /// `pod-template-hash` or `controller-revision-hash`.
    #[serde(default)]
    pub revision: Option<String>,
    pub controller: ControllerKind,
    /// The node the pod is bound to.
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub node_selector: Labels,
    #[serde(default)]
    pub required_affinity: Option<NodeAffinity>,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// Effective requests (see [`crate::resources::effective_requests`]).
    #[serde(default)]
    pub requests: Resources,
    /// Usage from metrics.k8s.io, when known.
    #[serde(default)]
    pub usage: Option<Resources>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub phase: PodPhase,
    /// `deletionTimestamp` is set.
    #[serde(default)]
    pub terminating: bool,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub volumes: Vec<LocalVolume>,
    /// Since when the scheduler has found no node for it (`PodScheduled=False`, reason
    /// `Unschedulable`), while it is so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable_since: Option<jiff::Timestamp>,
}

impl Pod {
    pub fn key(&self) -> PodKey {
        PodKey { namespace: self.namespace.clone(), name: self.name.clone() }
    }

    /// Succeeded or Failed.
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase, PodPhase::Succeeded | PodPhase::Failed)
    }

    /// Counts for its workload: has one, not terminal, not terminating.
    pub fn counts(&self) -> bool {
        self.workload.is_some() && !self.is_terminal() && !self.terminating
    }

    /// Uses node resources: not terminal (terminating pods still hold their requests).
    pub fn holds_resources(&self) -> bool {
        !self.is_terminal()
    }

    pub fn is_mirror(&self) -> bool {
        self.controller == ControllerKind::Node || self.annotations.contains_key(MIRROR_ANNOTATION)
    }

    pub fn is_pinned(&self) -> bool {
        self.annotations.get(PINNED_ANNOTATION).is_some_and(|v| v == "true")
    }

    /// Labels every node this pending pod may land on must carry: its nodeSelector plus the
    /// single-valued `In` expressions of a single required-affinity term.
    pub fn implied_node_labels(&self) -> Labels {
        let mut labels = self.required_affinity.as_ref().map(NodeAffinity::implied_labels).unwrap_or_default();
        labels.extend(self.node_selector.iter().map(|(k, v)| (k.clone(), v.clone())));
        labels
    }
}

/// `namespace/name` of a pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A PodDisruptionBudget, reduced to what the planner needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pdb {
    pub namespace: String,
    pub name: String,
    pub selector: LabelSelector,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: u32,
}

impl Pdb {
    pub fn covers(&self, pod: &Pod) -> bool {
        pod.namespace == self.namespace && self.selector.matches(&pod.labels)
    }
}

/// A workload object (Deployment, StatefulSet, ...), reduced to what decisions need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub workload: WorkloadRef,
    pub replicas: u32,
    /// Absolute `maxUnavailable` for disruptions (resolved from a percentage by the adapter).
    #[serde(default = "one")]
    pub max_unavailable: u32,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

/// Everything a decision may read about the cluster at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    #[serde(default)]
    pub pdbs: Vec<Pdb>,
    #[serde(default)]
    pub workloads: Vec<Workload>,
}

impl Snapshot {
    /// Build a snapshot and fill each node's `requested` and `pod_count` from the pods bound to it.
    pub fn new(nodes: Vec<Node>, pods: Vec<Pod>, pdbs: Vec<Pdb>, workloads: Vec<Workload>) -> Self {
        let mut s = Snapshot { nodes, pods, pdbs, workloads };
        s.recompute_requested();
        s
    }

    /// Recompute every node's `requested` and `pod_count` from the bound, non-terminal pods.
    pub fn recompute_requested(&mut self) {
        let mut by_node: BTreeMap<&str, (Resources, u32)> = BTreeMap::new();
        for p in self.pods.iter().filter(|p| p.holds_resources()) {
            if let Some(n) = &p.node_name {
                let e = by_node.entry(n.as_str()).or_default();
                e.0 += p.requests;
                e.1 += 1;
            }
        }
        for node in &mut self.nodes {
            let (req, count) = by_node.get(node.name.as_str()).copied().unwrap_or_default();
            node.requested = req;
            node.pod_count = count;
        }
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn workload(&self, r: &WorkloadRef) -> Option<&Workload> {
        self.workloads.iter().find(|w| &w.workload == r)
    }
}

// ---------------------------------------------------------------------------------------------------
// Builders, for tests, examples and scenarios.

/// Builds a [`Node`]: `NodeBuilder::new("n1").label("zone", "a").allocatable(4000, 16 << 30).build()`.
#[derive(Clone, Debug)]
pub struct NodeBuilder(Node);

impl NodeBuilder {
    pub fn new(name: impl Into<String>) -> Self {
        NodeBuilder(Node {
            name: name.into(),
            labels: Labels::new(),
            taints: Vec::new(),
            allocatable: Resources::new(4000, 16 << 30),
            max_pods: 110,
            requested: Resources::ZERO,
            pod_count: 0,
            usage: None,
            ready: true,
            unschedulable: false,
        })
    }
    pub fn label(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.0.labels.insert(k.into(), v.into());
        self
    }
    pub fn zone(self, zone: impl Into<String>) -> Self {
        self.label(crate::ZONE_LABEL, zone)
    }
    pub fn taint(mut self, t: Taint) -> Self {
        self.0.taints.push(t);
        self
    }
    pub fn allocatable(mut self, cpu_millis: u64, memory_bytes: u64) -> Self {
        self.0.allocatable = Resources::new(cpu_millis, memory_bytes);
        self
    }
    pub fn requested(mut self, cpu_millis: u64, memory_bytes: u64) -> Self {
        self.0.requested = Resources::new(cpu_millis, memory_bytes);
        self
    }
    pub fn usage(mut self, cpu_millis: u64, memory_bytes: u64) -> Self {
        self.0.usage = Some(Resources::new(cpu_millis, memory_bytes));
        self
    }
    pub fn max_pods(mut self, n: u32) -> Self {
        self.0.max_pods = n;
        self
    }
    pub fn not_ready(mut self) -> Self {
        self.0.ready = false;
        self
    }
    pub fn unschedulable(mut self) -> Self {
        self.0.unschedulable = true;
        self
    }
    pub fn build(self) -> Node {
        self.0
    }
}

/// Builds a [`Pod`] that belongs to a Deployment by default:
/// `PodBuilder::new("ns", "web-1").deployment("web").on_node("n1").build()`.
#[derive(Clone, Debug)]
pub struct PodBuilder(Pod);

impl PodBuilder {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        PodBuilder(Pod {
            namespace: namespace.into(),
            name: name.into(),
            uid: None,
            labels: Labels::new(),
            annotations: BTreeMap::new(),
            workload: None,
            revision: None,
            controller: ControllerKind::None,
            node_name: None,
            node_selector: Labels::new(),
            required_affinity: None,
            tolerations: Vec::new(),
            requests: Resources::new(100, 128 << 20),
            usage: None,
            priority: 0,
            phase: PodPhase::Running,
            terminating: false,
            ready: true,
            volumes: Vec::new(),
            unschedulable_since: None,
        })
    }
    /// Owned by a ReplicaSet of Deployment `name`.
    pub fn deployment(mut self, name: impl Into<String>) -> Self {
        self.0.workload = Some(WorkloadRef::deployment(self.0.namespace.clone(), name));
        self.0.controller = ControllerKind::ReplicaSet;
        self
    }
    pub fn statefulset(mut self, name: impl Into<String>) -> Self {
        self.0.workload = Some(WorkloadRef::new(WorkloadKind::StatefulSet, self.0.namespace.clone(), name));
        self.0.controller = ControllerKind::StatefulSet;
        self
    }
    pub fn daemonset(mut self, name: impl Into<String>) -> Self {
        self.0.workload = Some(WorkloadRef::new(WorkloadKind::DaemonSet, self.0.namespace.clone(), name));
        self.0.controller = ControllerKind::DaemonSet;
        self
    }
    pub fn job(mut self, name: impl Into<String>) -> Self {
        self.0.workload = Some(WorkloadRef::new(WorkloadKind::Job, self.0.namespace.clone(), name));
        self.0.controller = ControllerKind::Job;
        self
    }
    pub fn mirror(mut self) -> Self {
        self.0.controller = ControllerKind::Node;
        self.0.annotations.insert(MIRROR_ANNOTATION.into(), "hash".into());
        self
    }
    pub fn revision(mut self, r: impl Into<String>) -> Self {
        self.0.revision = Some(r.into());
        self
    }
    pub fn label(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.0.labels.insert(k.into(), v.into());
        self
    }
    pub fn annotation(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.0.annotations.insert(k.into(), v.into());
        self
    }
    pub fn on_node(mut self, node: impl Into<String>) -> Self {
        self.0.node_name = Some(node.into());
        self
    }
    /// Pending (not bound).
    pub fn pending(mut self) -> Self {
        self.0.node_name = None;
        self.0.phase = PodPhase::Pending;
        self.0.ready = false;
        self
    }
    pub fn node_selector(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.0.node_selector.insert(k.into(), v.into());
        self
    }
    pub fn affinity(mut self, a: NodeAffinity) -> Self {
        self.0.required_affinity = Some(a);
        self
    }
    pub fn toleration(mut self, t: Toleration) -> Self {
        self.0.tolerations.push(t);
        self
    }
    pub fn requests(mut self, cpu_millis: u64, memory_bytes: u64) -> Self {
        self.0.requests = Resources::new(cpu_millis, memory_bytes);
        self
    }
    pub fn usage(mut self, cpu_millis: u64, memory_bytes: u64) -> Self {
        self.0.usage = Some(Resources::new(cpu_millis, memory_bytes));
        self
    }
    pub fn priority(mut self, p: i32) -> Self {
        self.0.priority = p;
        self
    }
    pub fn phase(mut self, p: PodPhase) -> Self {
        self.0.phase = p;
        self
    }
    pub fn terminating(mut self) -> Self {
        self.0.terminating = true;
        self
    }
    pub fn not_ready(mut self) -> Self {
        self.0.ready = false;
        self
    }
    pub fn uid(mut self, uid: impl Into<String>) -> Self {
        self.0.uid = Some(uid.into());
        self
    }
    /// Owned by a controller of a kind placement does not know (`Workflow`, `Rollout`, ...).
    pub fn controlled_by(mut self, kind: impl Into<String>, name: impl Into<String>) -> Self {
        let kind = kind.into();
        self.0.workload = Some(WorkloadRef::new(WorkloadKind::Other(kind.clone()), self.0.namespace.clone(), name));
        self.0.controller = ControllerKind::Other(kind);
        self
    }
    pub fn volume(mut self, v: LocalVolume) -> Self {
        self.0.volumes.push(v);
        self
    }
    pub fn build(self) -> Pod {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_rules() {
        let base = PodBuilder::new("ns", "p").deployment("web").on_node("n1");
        assert!(base.clone().build().counts());
        assert!(!base.clone().phase(PodPhase::Succeeded).build().counts());
        assert!(!base.clone().phase(PodPhase::Failed).build().counts());
        assert!(!base.clone().terminating().build().counts());
        assert!(!PodBuilder::new("ns", "bare").build().counts(), "bare pods have no workload");
        assert!(base.terminating().build().holds_resources());
    }

    #[test]
    fn snapshot_fills_requested_from_bound_pods() {
        let s = Snapshot::new(
            vec![NodeBuilder::new("n1").build(), NodeBuilder::new("n2").build()],
            vec![
                PodBuilder::new("ns", "a").deployment("w").on_node("n1").requests(100, 10).build(),
                PodBuilder::new("ns", "b").deployment("w").on_node("n1").requests(200, 20).build(),
                PodBuilder::new("ns", "c")
                    .deployment("w")
                    .on_node("n1")
                    .requests(999, 99)
                    .phase(PodPhase::Succeeded)
                    .build(),
                PodBuilder::new("ns", "d").deployment("w").pending().build(),
            ],
            vec![],
            vec![],
        );
        assert_eq!(s.node("n1").unwrap().requested, Resources::new(300, 30));
        assert_eq!(s.node("n1").unwrap().pod_count, 2);
        assert_eq!(s.node("n2").unwrap().requested, Resources::ZERO);
    }

    #[test]
    fn implied_labels_merge_selector_and_affinity() {
        use crate::selector::{NodeSelectorTerm, Operator, Requirement};
        let p = PodBuilder::new("ns", "p")
            .pending()
            .node_selector("type", "spot")
            .affinity(NodeAffinity {
                terms: vec![NodeSelectorTerm {
                    match_expressions: vec![Requirement::new("zone", Operator::In, &["a"])],
                    match_fields: vec![],
                }],
            })
            .build();
        let l = p.implied_node_labels();
        assert_eq!(l.get("type").map(String::as_str), Some("spot"));
        assert_eq!(l.get("zone").map(String::as_str), Some("a"));
    }
}
