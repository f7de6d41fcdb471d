//! The scenario file of `simulate` (documented in `docs/scenarios.md`): a small cluster, the workloads
//! to place, a rebalance policy and traffic-weight series. Everything that can be checked while the file
//! is read is checked then (quantities, selectors, strategies, policies), so an error names the field
//! path and the line at fault.

use super::quantity::{Bytes, ResourceSpec};
use super::selectors::ValidSelector;
use placement_core::Labels;
use placement_core::model::{
    ControllerKind, LocalVolume, Node, Pdb, Pod, PodPhase, Snapshot, Workload, WorkloadKind, WorkloadRef,
};
use placement_core::resources::Resources;
use placement_core::taints::{Taint, Toleration};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A whole scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The moment the scenario happens at (RFC 3339); decisions that need a time use it.
    pub now: jiff::Timestamp,
    pub cluster: ClusterSpec,
    #[serde(default)]
    pub zone_balancer: Option<super::zones::ZoneBalancerSpec>,
    #[serde(default)]
    pub distributions: Vec<super::distribution::DistributionSpec>,
    #[serde(default)]
    pub rebalance: Option<super::rebalance::RebalanceSpec>,
    #[serde(default)]
    pub traffic_weights: Vec<super::traffic::TrafficSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSpec {
    pub nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub workloads: Vec<WorkloadSpec>,
    #[serde(default)]
    pub pdbs: Vec<PdbSpec>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// One node, or `count` identical nodes named `NAME-1 .. NAME-count`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSpec {
    pub name: String,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub taints: Vec<Taint>,
    pub allocatable: ResourceSpec,
    #[serde(default = "default_max_pods")]
    pub max_pods: u32,
    #[serde(default = "yes")]
    pub ready: bool,
    #[serde(default)]
    pub unschedulable: bool,
    /// Whether metrics.k8s.io reports this node; node usage is then `systemUsage` plus its pods' usage.
    #[serde(default = "yes")]
    pub metrics: bool,
    #[serde(default)]
    pub system_usage: ResourceSpec,
    /// Pods on each of these nodes.
    #[serde(default)]
    pub pods: Vec<PodSpec>,
}

fn default_max_pods() -> u32 {
    110
}

/// One pod, or `count` pods named `NAME-1 .. NAME-count`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSpec {
    pub name: String,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The owning workload; absent means a bare pod.
    #[serde(default)]
    pub workload: Option<WorkloadRefSpec>,
    #[serde(default)]
    pub mirror: bool,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub requests: ResourceSpec,
    /// Usage from metrics; defaults to the requests.
    #[serde(default)]
    pub usage: Option<ResourceSpec>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    #[serde(default)]
    pub node_selector: Labels,
    #[serde(default = "yes")]
    pub ready: bool,
    #[serde(default)]
    pub phase: Option<PodPhase>,
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
}

pub fn default_namespace() -> String {
    "default".to_string()
}

/// `{emptyDir: {sizeLimit: 1Gi, used: 10Mi}}` or `{hostPath: {}}`, as in a pod spec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", try_from = "RawVolume")]
pub struct VolumeSpec(pub LocalVolume);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawVolume {
    #[serde(default)]
    empty_dir: Option<EmptyDirSpec>,
    #[serde(default)]
    host_path: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    persistent_volume_claim: Option<ClaimSpec>,
}

/// `{claimName: data-db-0, local: true}`: a claim, and whether its volume is node-local (unknown when
/// left out, which the rebalancer treats as local).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimSpec {
    claim_name: String,
    #[serde(default)]
    local: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EmptyDirSpec {
    #[serde(default)]
    size_limit: Option<Bytes>,
    #[serde(default)]
    used: Option<Bytes>,
}

impl TryFrom<RawVolume> for VolumeSpec {
    type Error = &'static str;
    fn try_from(raw: RawVolume) -> Result<Self, Self::Error> {
        match (raw.empty_dir, raw.host_path, raw.persistent_volume_claim) {
            (Some(e), None, None) => Ok(VolumeSpec(LocalVolume::EmptyDir {
                size_limit: e.size_limit.map(|b| b.0),
                used: e.used.map(|b| b.0),
            })),
            (None, Some(_), None) => Ok(VolumeSpec(LocalVolume::HostPath)),
            (None, None, Some(c)) => {
                Ok(VolumeSpec(LocalVolume::PersistentClaim { claim: c.claim_name, local: c.local }))
            }
            _ => Err("a volume is exactly one of emptyDir, hostPath or persistentVolumeClaim"),
        }
    }
}

/// `{kind: Deployment, name: web}`; the namespace is the pod's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadRefSpec {
    #[serde(default = "deployment")]
    pub kind: String,
    pub name: String,
}

fn deployment() -> String {
    "Deployment".to_string()
}

pub fn workload_kind(kind: &str) -> (WorkloadKind, ControllerKind) {
    match kind {
        "Deployment" => (WorkloadKind::Deployment, ControllerKind::ReplicaSet),
        "ReplicaSet" => (WorkloadKind::ReplicaSet, ControllerKind::ReplicaSet),
        "StatefulSet" => (WorkloadKind::StatefulSet, ControllerKind::StatefulSet),
        "DaemonSet" => (WorkloadKind::DaemonSet, ControllerKind::DaemonSet),
        "Job" => (WorkloadKind::Job, ControllerKind::Job),
        other => (WorkloadKind::Other(other.to_string()), ControllerKind::Other(other.to_string())),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadSpec {
    #[serde(default = "deployment")]
    pub kind: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    pub replicas: u32,
    #[serde(default = "one")]
    pub max_unavailable: u32,
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PdbSpec {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    pub selector: ValidSelector,
    pub disruptions_allowed: u32,
}

fn expand(name: &str, count: u32) -> Vec<String> {
    if count == 1 { vec![name.to_string()] } else { (1..=count).map(|i| format!("{name}-{i}")).collect() }
}

impl PodSpec {
    /// The pods this spec stands for, bound to `node` (or pending when `None`).
    pub fn build(&self, node: Option<&str>, name_prefix: &str) -> Vec<Pod> {
        expand(&format!("{name_prefix}{}", self.name), self.count)
            .into_iter()
            .map(|name| {
                let (workload, controller) = match (&self.workload, self.mirror) {
                    (_, true) => (None, ControllerKind::Node),
                    (Some(w), false) => {
                        let (kind, controller) = workload_kind(&w.kind);
                        (Some(WorkloadRef::new(kind, self.namespace.clone(), w.name.clone())), controller)
                    }
                    (None, false) => (None, ControllerKind::None),
                };
                let mut annotations = self.annotations.clone();
                if self.mirror {
                    annotations.insert(placement_core::model::MIRROR_ANNOTATION.into(), "scenario".into());
                }
                let requests: Resources = self.requests.into();
                Pod {
                    namespace: self.namespace.clone(),
                    uid: None,
                    name,
                    labels: self.labels.clone(),
                    annotations,
                    workload,
                    revision: self.revision.clone(),
                    controller,
                    node_name: node.map(str::to_string),
                    node_selector: self.node_selector.clone(),
                    required_affinity: None,
                    tolerations: self.tolerations.clone(),
                    requests,
                    usage: Some(self.usage.map(Resources::from).unwrap_or(requests)),
                    priority: self.priority,
                    phase: self.phase.unwrap_or(if node.is_some() { PodPhase::Running } else { PodPhase::Pending }),
                    terminating: false,
                    ready: self.ready && node.is_some(),
                    volumes: self.volumes.iter().map(|v| v.0.clone()).collect(),
                    unschedulable_since: None,
                }
            })
            .collect()
    }
}

impl ClusterSpec {
    /// The cluster as a core snapshot: nodes expanded, pods bound, requested totals and node usage
    /// (system usage plus the pods' usage, for nodes with metrics) filled in.
    pub fn snapshot(&self) -> Snapshot {
        let mut nodes = Vec::new();
        let mut pods = Vec::new();
        for spec in &self.nodes {
            for name in expand(&spec.name, spec.count) {
                let node_pods: Vec<Pod> =
                    spec.pods.iter().flat_map(|p| p.build(Some(&name), &format!("{name}-"))).collect();
                let usage = spec.metrics.then(|| {
                    Resources::from(spec.system_usage)
                        + node_pods.iter().filter(|p| p.holds_resources()).filter_map(|p| p.usage).sum::<Resources>()
                });
                nodes.push(Node {
                    name: name.clone(),
                    labels: spec.labels.clone(),
                    taints: spec.taints.clone(),
                    allocatable: spec.allocatable.into(),
                    max_pods: spec.max_pods,
                    requested: Resources::ZERO,
                    pod_count: 0,
                    usage,
                    ready: spec.ready,
                    unschedulable: spec.unschedulable,
                });
                pods.extend(node_pods);
            }
        }
        let workloads = self
            .workloads
            .iter()
            .map(|w| Workload {
                workload: WorkloadRef::new(workload_kind(&w.kind).0, w.namespace.clone(), w.name.clone()),
                replicas: w.replicas,
                max_unavailable: w.max_unavailable,
                labels: w.labels.clone(),
                annotations: BTreeMap::new(),
            })
            .collect();
        let pdbs = self
            .pdbs
            .iter()
            .map(|p| Pdb {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                selector: p.selector.0.clone(),
                disruptions_allowed: p.disruptions_allowed,
            })
            .collect();
        Snapshot::new(nodes, pods, pdbs, workloads)
    }
}

/// A scenario file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{source_name}: {path}: {message}{}", line_suffix(*.line, *.column))]
    Invalid { source_name: String, path: String, message: String, line: Option<usize>, column: Option<usize> },
}

fn line_suffix(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

impl Scenario {
    /// Parse a scenario from YAML text; `source_name` names the file in errors.
    pub fn parse(source_name: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let location = inner.location();
            // serde_yaml_ng prefixes its message with the path and suffixes the location: keep the core.
            let mut message = inner.to_string();
            if let Some(pos) = message.find(" at line ") {
                message.truncate(pos);
            }
            // ... and may prefix a (shorter) path of its own.
            if let Some((prefix, rest)) = message.split_once(": ")
                && path.starts_with(prefix)
            {
                message = rest.to_string();
            }
            ScenarioError::Invalid {
                source_name: source_name.to_string(),
                path: if path == "." { "(document)".to_string() } else { path },
                message,
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
            }
        })
    }
}
