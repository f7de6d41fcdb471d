//! `RebalancePolicy` (cluster-scoped, short name `rbp`): how the utilization rebalancer scores nodes,
//! when a node is hot or cold (with hysteresis memory), which pods it may evict and within which budgets
//! (`docs/semantics.md#4-rebalancer`; it replaces the Rebalancer Operator's policy). Dry-run is the
//! default. The status keeps what must survive a restart — smoothed scores, hysteresis streaks and the
//! eviction history that budgets and backoff are computed from — and a summary of the last plan.

use super::CrdError;
use super::common::{
    DURATION_PATTERN, MAX_BACKOFF_SECONDS, MAX_INTERVAL_SECONDS, at_most, check_dns_label, check_dns_subdomain,
    duration_rule, format_seconds, kind_from_str, label_selector_to_core, parse_duration,
};
use super::conditions::{Condition, impl_status_conditions};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as KubeLabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use placement_core::model::{PodKey, WorkloadRef};
use placement_core::rebalance::{
    EvictionRecord, NodeState, Plan, RebalancePolicy as CorePolicy, RebalanceState, UtilizationSource,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn core() -> CorePolicy {
    CorePolicy::default()
}
fn d_hot() -> f64 {
    core().hot_threshold
}
fn d_cold() -> f64 {
    core().cold_threshold
}
fn d_hysteresis() -> f64 {
    core().hysteresis
}
fn d_enter() -> u32 {
    core().observations_to_enter
}
fn d_leave() -> u32 {
    core().observations_to_leave
}
fn d_alpha() -> f64 {
    core().ewma_alpha
}
fn d_cpu_weight() -> f64 {
    core().cpu_weight
}
fn d_memory_weight() -> f64 {
    core().memory_weight
}
fn d_target_sigma() -> f64 {
    core().target_sigma
}
fn d_min_improvement() -> f64 {
    core().min_improvement
}
fn d_per_minute() -> u32 {
    core().max_evictions_per_minute
}
fn d_per_plan() -> u32 {
    core().max_evictions_per_plan
}
fn d_workload_backoff() -> String {
    format_seconds(core().workload_backoff_seconds)
}
fn d_node_backoff() -> String {
    format_seconds(core().node_backoff_seconds)
}
fn d_interval() -> String {
    "1m".to_string()
}
fn d_true() -> bool {
    true
}

/// Where node utilization comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    #[default]
    Metrics,
    Requests,
}

impl Source {
    pub fn to_core(self) -> UtilizationSource {
        match self {
            Source::Metrics => UtilizationSource::Metrics,
            Source::Requests => UtilizationSource::Requests,
        }
    }
}

/// How the rebalancer scores nodes, which pods it may move, and within which budgets.
// Printer columns repeat `type_ = ...` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "placement.dev",
    version = "v1alpha1",
    kind = "RebalancePolicy",
    plural = "rebalancepolicies",
    status = "RebalancePolicyStatus",
    shortname = "rbp",
    category = "placement",
    doc = "The utilization rebalancer's thresholds, hysteresis, scope and eviction budgets (dry-run by default).",
    printcolumn(
        name = "DryRun",
        type_ = "boolean",
        json_path = ".spec.dryRun",
        description = "Report only, never evict"
    ),
    printcolumn(name = "Hot", type_ = "number", json_path = ".spec.hotThreshold", description = "Hot threshold"),
    printcolumn(
        name = "Cold",
        type_ = "number",
        json_path = ".spec.coldThreshold",
        description = "Cold threshold",
        priority = 1
    ),
    printcolumn(
        name = "Sigma",
        type_ = "number",
        json_path = ".status.lastPlan.sigmaAfter",
        description = "Score spread after the last plan"
    ),
    printcolumn(
        name = "Evictions",
        type_ = "integer",
        json_path = ".status.lastPlan.evictionsPlanned",
        description = "Evictions in the last plan"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "The spec is valid and in effect"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since creation"
    )
)]
#[x_kube(
    validation = kube::core::Rule::new("self.coldThreshold < self.hotThreshold").message("coldThreshold must be below hotThreshold").field_path(".coldThreshold"),
    validation = kube::core::Rule::new("self.cpuWeight + self.memoryWeight > 0.0").message("cpuWeight + memoryWeight must be above 0").field_path(".cpuWeight")
)]
#[serde(rename_all = "camelCase")]
pub struct RebalancePolicySpec {
    /// A node whose smoothed score is at or above this is hot (0..1; score = weighted CPU and memory
    /// utilization).
    #[serde(default = "d_hot")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub hot_threshold: f64,
    /// A node whose smoothed score is at or below this is cold (0..1, below `hotThreshold`).
    #[serde(default = "d_cold")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub cold_threshold: f64,
    /// A hot node cools only below `hotThreshold - hysteresis` (cold mirrored).
    #[serde(default = "d_hysteresis")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub hysteresis: f64,
    /// Consecutive observations at or above the threshold before a node becomes hot (or cold): K.
    #[serde(default = "d_enter")]
    #[schemars(range(min = 1, max = 100))]
    pub observations_to_enter: u32,
    /// Consecutive observations past the hysteresis band before a node stops being hot (or cold): M.
    #[serde(default = "d_leave")]
    #[schemars(range(min = 1, max = 100))]
    pub observations_to_leave: u32,
    /// EWMA weight of the newest observation (above 0, at most 1; 1 disables smoothing).
    #[serde(default = "d_alpha")]
    #[schemars(range(min = 0.0, max = 1.0))]
    #[x_kube(validation = kube::core::Rule::new("self > 0.0").message("ewmaAlpha must be above 0"))]
    pub ewma_alpha: f64,
    /// Weight of CPU utilization in the node score.
    #[serde(default = "d_cpu_weight")]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub cpu_weight: f64,
    /// Weight of memory utilization in the node score.
    #[serde(default = "d_memory_weight")]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub memory_weight: f64,
    /// Stop planning once the standard deviation of node scores is at or below this.
    #[serde(default = "d_target_sigma")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub target_sigma: f64,
    /// A move must lower the sum of squared deviations of node scores from their mean (n times the
    /// variance) by at least this much (above 0). Unlike sigma itself, which one eviction moves by about
    /// 1/n, this gain depends only on the pod and the two nodes, so one value fits 10 nodes and 5,000.
    #[serde(default = "d_min_improvement")]
    #[schemars(range(min = 0.0, max = 1.0))]
    #[x_kube(validation = kube::core::Rule::new("self > 0.0").message("minImprovement must be above 0"))]
    pub min_improvement: f64,
    /// `metrics`: usage from metrics.k8s.io (nodes without metrics are skipped); `requests`: requested
    /// over allocatable.
    #[serde(default)]
    pub source: Source,
    /// Cluster-wide evictions in any 60-second window (a time window, not per pass).
    #[serde(default = "d_per_minute")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_evictions_per_minute: u32,
    /// Evictions per namespace in any hour; unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_evictions_per_namespace_per_hour: Option<u32>,
    /// Evictions in one plan.
    #[serde(default = "d_per_plan")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_evictions_per_plan: u32,
    /// Namespaces in scope (all when empty).
    #[serde(default)]
    #[schemars(length(max = 256), inner(length(min = 1, max = 63)))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub namespaces: Vec<String>,
    /// Namespaces never in scope (applied after `namespaces`).
    #[serde(default)]
    #[schemars(length(max = 256), inner(length(min = 1, max = 63)))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub exclude_namespaces: Vec<String>,
    /// Pods in scope, by their labels (all when empty), e.g. an opt-in label `rebalance: ok`.
    #[serde(default)]
    pub pod_selector: KubeLabelSelector,
    /// Job pods may be evicted too.
    #[serde(default)]
    pub allow_jobs: bool,
    /// Controller kinds, by the owner reference's `kind` (`Rollout`), whose pods may be evicted. Pods
    /// of a controller placement does not know (Argo `Workflow`, Tekton `TaskRun`, KubeVirt, Spark, ...)
    /// are never evicted otherwise: nothing may recreate them, and an evicted workflow step loses its
    /// work. Name only kinds that recreate an evicted pod elsewhere with nothing lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 63), regex(pattern = KIND_PATTERN)))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub allow_controller_kinds: Vec<String>,
    /// Workloads whose `emptyDir` volumes are expendable scratch, so their pods may be evicted and the
    /// volumes' contents lost. A pod with any emptyDir is never evicted otherwise (a sizeLimit bounds
    /// the disk used, not what is lost).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub scratch_empty_dirs: Vec<ScratchWorkload>,
    /// After an eviction, how long before another pod of the same workload may be evicted (`10m`).
    #[serde(default = "d_workload_backoff")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = duration_rule("workloadBackoff", 0, MAX_BACKOFF_SECONDS))]
    pub workload_backoff: String,
    /// After an eviction, how long before the same node may lose another pod in a later plan (`5m`).
    #[serde(default = "d_node_backoff")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = duration_rule("nodeBackoff", 0, MAX_BACKOFF_SECONDS))]
    pub node_backoff: String,
    /// How often the rebalancer observes and plans (at least `10s`).
    #[serde(default = "d_interval")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = duration_rule("interval", MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS))]
    pub interval: String,
    /// Report what would be evicted and why, never evict. Defaults to true: set false to act.
    #[serde(default = "d_true")]
    pub dry_run: bool,
}

impl Default for RebalancePolicySpec {
    /// Every field at its default (the values the API server fills in for `spec: {}`).
    fn default() -> Self {
        RebalancePolicySpec {
            hot_threshold: d_hot(),
            cold_threshold: d_cold(),
            hysteresis: d_hysteresis(),
            observations_to_enter: d_enter(),
            observations_to_leave: d_leave(),
            ewma_alpha: d_alpha(),
            cpu_weight: d_cpu_weight(),
            memory_weight: d_memory_weight(),
            target_sigma: d_target_sigma(),
            min_improvement: d_min_improvement(),
            source: Source::default(),
            max_evictions_per_minute: d_per_minute(),
            max_evictions_per_namespace_per_hour: None,
            max_evictions_per_plan: d_per_plan(),
            namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            pod_selector: KubeLabelSelector::default(),
            allow_jobs: false,
            allow_controller_kinds: Vec::new(),
            scratch_empty_dirs: Vec::new(),
            workload_backoff: d_workload_backoff(),
            node_backoff: d_node_backoff(),
            interval: d_interval(),
            dry_run: true,
        }
    }
}

/// An owner reference `kind`: a Kubernetes kind name.
pub const KIND_PATTERN: &str = "^[A-Z][A-Za-z0-9]*$";

/// A workload named in `scratchEmptyDirs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScratchWorkload {
    /// The workload's namespace.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Its kind: `Deployment`, `StatefulSet`, or the owner kind of another controller (`Rollout`).
    #[schemars(length(min = 1, max = 63), regex(pattern = KIND_PATTERN))]
    pub kind: String,
    /// Its name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl RebalancePolicySpec {
    /// `allowControllerKinds` checked, and `scratchEmptyDirs` as core workloads.
    fn scratch_workloads(&self) -> Result<Vec<WorkloadRef>, CrdError> {
        for (i, kind) in self.allow_controller_kinds.iter().enumerate() {
            check_kind(&format!("spec.allowControllerKinds[{i}]"), kind)?;
        }
        self.scratch_empty_dirs
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let path = format!("spec.scratchEmptyDirs[{i}]");
                check_dns_label(&format!("{path}.namespace"), &w.namespace)?;
                check_kind(&format!("{path}.kind"), &w.kind)?;
                check_dns_subdomain(&format!("{path}.name"), &w.name)?;
                Ok(WorkloadRef::new(kind_from_str(&w.kind), w.namespace.clone(), w.name.clone()))
            })
            .collect()
    }
}

/// A kind name as `KIND_PATTERN` says (the schema checks it too; `to_core` for specs from files).
pub fn check_kind(path: &str, kind: &str) -> Result<(), CrdError> {
    let mut chars = kind.chars();
    let ok = kind.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric());
    if ok { Ok(()) } else { Err(CrdError::format(path, format!("{kind:?} is not a kind name (like Rollout)"))) }
}

/// Shortest interval between passes.
pub const MIN_INTERVAL_SECONDS: u64 = 10;

impl RebalancePolicySpec {
    /// Check every field and convert; errors name the field (`spec.coldThreshold: ...`).
    pub fn to_core(&self) -> Result<CorePolicy, CrdError> {
        for (i, ns) in self.namespaces.iter().enumerate() {
            check_dns_label(&format!("spec.namespaces[{i}]"), ns)?;
        }
        for (i, ns) in self.exclude_namespaces.iter().enumerate() {
            check_dns_label(&format!("spec.excludeNamespaces[{i}]"), ns)?;
        }
        let pod_selector = label_selector_to_core("spec.podSelector", &self.pod_selector)?;
        let workload_backoff = parse_duration("spec.workloadBackoff", &self.workload_backoff, 0, MAX_BACKOFF_SECONDS)?;
        let node_backoff = parse_duration("spec.nodeBackoff", &self.node_backoff, 0, MAX_BACKOFF_SECONDS)?;
        self.interval()?;
        at_most("spec.observationsToEnter", self.observations_to_enter, 100)?;
        at_most("spec.observationsToLeave", self.observations_to_leave, 100)?;
        at_most("spec.maxEvictionsPerMinute", self.max_evictions_per_minute, 1_000)?;
        at_most("spec.maxEvictionsPerPlan", self.max_evictions_per_plan, 1_000)?;
        if let Some(n) = self.max_evictions_per_namespace_per_hour {
            at_most("spec.maxEvictionsPerNamespacePerHour", n, 100_000)?;
        }
        let policy = CorePolicy {
            hot_threshold: self.hot_threshold,
            cold_threshold: self.cold_threshold,
            hysteresis: self.hysteresis,
            observations_to_enter: self.observations_to_enter,
            observations_to_leave: self.observations_to_leave,
            ewma_alpha: self.ewma_alpha,
            cpu_weight: self.cpu_weight,
            memory_weight: self.memory_weight,
            target_sigma: self.target_sigma,
            min_improvement: self.min_improvement,
            source: self.source.to_core(),
            max_evictions_per_minute: self.max_evictions_per_minute,
            max_evictions_per_namespace_per_hour: self.max_evictions_per_namespace_per_hour,
            max_evictions_per_plan: self.max_evictions_per_plan,
            namespaces: self.namespaces.clone(),
            exclude_namespaces: self.exclude_namespaces.clone(),
            pod_selector,
            allow_jobs: self.allow_jobs,
            allow_controller_kinds: self.allow_controller_kinds.clone(),
            scratch_empty_dirs: self.scratch_workloads()?,
            workload_backoff_seconds: workload_backoff.as_secs(),
            node_backoff_seconds: node_backoff.as_secs(),
            dry_run: self.dry_run,
        };
        policy.validate().map_err(|e| CrdError::out_of_range(format!("spec.{}", e.field), e.message))?;
        Ok(policy)
    }

    /// Time between passes (`spec.interval`, at least 10 s).
    pub fn interval(&self) -> Result<std::time::Duration, CrdError> {
        parse_duration("spec.interval", &self.interval, MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS)
    }
}

/// One node's remembered state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStateEntry {
    /// Node name.
    pub node: String,
    /// Smoothed (EWMA) score.
    pub score: f64,
    /// The node is hot.
    #[serde(default)]
    pub hot: bool,
    /// The node is cold.
    #[serde(default)]
    pub cold: bool,
    /// Consecutive observations at or above the hot threshold.
    #[serde(default)]
    pub hot_streak: u32,
    /// Consecutive observations below `hotThreshold - hysteresis`.
    #[serde(default)]
    pub cool_streak: u32,
    /// Consecutive observations at or below the cold threshold.
    #[serde(default)]
    pub cold_streak: u32,
    /// Consecutive observations above `coldThreshold + hysteresis`.
    #[serde(default)]
    pub warm_streak: u32,
}

/// A workload by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntry {
    /// Workload kind (`Deployment`, `StatefulSet`, ...).
    pub kind: String,
    /// Workload namespace.
    pub namespace: String,
    /// Workload name.
    pub name: String,
}

impl WorkloadEntry {
    pub fn from_core(w: &WorkloadRef) -> Self {
        WorkloadEntry { kind: w.kind.to_string(), namespace: w.namespace.clone(), name: w.name.clone() }
    }

    pub fn to_core(&self) -> WorkloadRef {
        WorkloadRef::new(kind_from_str(&self.kind), self.namespace.clone(), self.name.clone())
    }
}

/// An eviction carried out (or, in dry-run, that would have been): budgets and backoff windows are
/// computed from these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvictionEntry {
    /// When.
    #[serde(deserialize_with = "crate::crd::lenient::time_or_epoch")]
    pub at: Time,
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub pod: String,
    /// The pod's workload, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadEntry>,
    /// Node the pod was evicted from.
    pub from: String,
    /// Node the plan expected it to land on.
    pub to: String,
    /// The WorkloadSLO that covered the pod, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<String>,
    /// A dry-run eviction (nothing was evicted). Dry-run entries count against the budgets of later
    /// dry-run plans, so dry-run reports what the policy would really do over time; they never count
    /// once `dryRun` is false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// What the rebalancer remembers between passes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistedState {
    /// Smoothed score and hysteresis streaks per node, in node order.
    #[serde(default)]
    pub nodes: Vec<NodeStateEntry>,
    /// Recent evictions (pruned once older than every budget and backoff window).
    #[serde(default)]
    pub history: Vec<EvictionEntry>,
    /// When the nodes were last observed.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::crd::lenient::optional_time")]
    pub last_observed: Option<Time>,
}

impl PersistedState {
    pub fn from_core(s: &RebalanceState) -> Self {
        PersistedState {
            nodes: s
                .nodes
                .iter()
                .map(|(node, n)| NodeStateEntry {
                    node: node.clone(),
                    score: n.score,
                    hot: n.hot,
                    cold: n.cold,
                    hot_streak: n.hot_streak,
                    cool_streak: n.cool_streak,
                    cold_streak: n.cold_streak,
                    warm_streak: n.warm_streak,
                })
                .collect(),
            history: s
                .history
                .iter()
                .map(|r| EvictionEntry {
                    at: Time(r.at),
                    namespace: r.pod.namespace.clone(),
                    pod: r.pod.name.clone(),
                    workload: r.workload.as_ref().map(WorkloadEntry::from_core),
                    from: r.from.clone(),
                    to: r.to.clone(),
                    slo: r.slo.clone(),
                    dry_run: false,
                })
                .collect(),
            last_observed: s.last_observed.map(Time),
        }
    }

    pub fn to_core(&self) -> RebalanceState {
        RebalanceState {
            nodes: self
                .nodes
                .iter()
                .map(|n| {
                    let state = NodeState {
                        score: if n.score.is_finite() { n.score } else { 0.0 },
                        hot: n.hot,
                        cold: n.cold,
                        hot_streak: n.hot_streak,
                        cool_streak: n.cool_streak,
                        cold_streak: n.cold_streak,
                        warm_streak: n.warm_streak,
                    };
                    (n.node.clone(), state)
                })
                .collect::<BTreeMap<_, _>>(),
            history: self
                .history
                .iter()
                .map(|e| EvictionRecord {
                    at: e.at.0,
                    pod: PodKey { namespace: e.namespace.clone(), name: e.pod.clone() },
                    workload: e.workload.as_ref().map(WorkloadEntry::to_core),
                    from: e.from.clone(),
                    to: e.to.clone(),
                    slo: e.slo.clone(),
                })
                .collect(),
            last_observed: self.last_observed.as_ref().map(|t| t.0),
        }
    }
}

/// An eviction in the last plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedEvictionEntry {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub pod: String,
    /// Node the pod is on.
    pub from: String,
    /// Node it is expected to land on.
    pub to: String,
    /// Why this move, in words.
    pub reason: String,
}

/// A candidate the last plan did not evict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockedEntry {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub pod: String,
    /// Node the pod is on.
    pub node: String,
    /// The filter or budget that stopped it, as a short label (`pdb`, `cluster_rate`, ...).
    pub reason: String,
    /// The same, in words.
    pub message: String,
}

/// Most evictions and blocked candidates listed in a plan summary (the counts are always complete).
pub const PLAN_LIST_LIMIT: usize = 50;

/// A summary of the last plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    /// When the plan was made.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::crd::lenient::optional_time")]
    pub at: Option<Time>,
    /// The plan was a dry run (nothing evicted).
    #[serde(default)]
    pub dry_run: bool,
    /// Standard deviation of node scores before the plan.
    #[serde(default)]
    pub sigma_before: f64,
    /// Standard deviation of node scores expected after it.
    #[serde(default)]
    pub sigma_after: f64,
    /// Hot nodes, in name order.
    #[serde(default)]
    pub hot_nodes: Vec<String>,
    /// Cold nodes, in name order.
    #[serde(default)]
    pub cold_nodes: Vec<String>,
    /// Number of evictions planned.
    #[serde(default)]
    pub evictions_planned: u32,
    /// Number of planned evictions the API server accepted (always 0 in dry-run).
    #[serde(default)]
    pub evictions_done: u32,
    /// Number of candidates blocked by a filter or budget.
    #[serde(default)]
    pub evictions_blocked: u32,
    /// The planned evictions (first 50).
    #[serde(default)]
    pub evictions: Vec<PlannedEvictionEntry>,
    /// The blocked candidates with the reason (first 50).
    #[serde(default)]
    pub blocked: Vec<BlockedEntry>,
    /// Why planning stopped.
    #[serde(default)]
    pub stop_reason: String,
    /// What the plan could not take into account (a WorkloadSLO whose workload is missing, objects
    /// that could not be read); first 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl PlanSummary {
    pub fn from_plan(plan: &Plan, at: Timestamp) -> Self {
        let mut hot: Vec<String> = plan.nodes.iter().filter(|n| n.hot).map(|n| n.node.clone()).collect();
        let mut cold: Vec<String> = plan.nodes.iter().filter(|n| n.cold).map(|n| n.node.clone()).collect();
        hot.sort();
        cold.sort();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        PlanSummary {
            at: Some(Time(at)),
            dry_run: plan.dry_run,
            sigma_before: plan.sigma_before,
            sigma_after: plan.sigma_after,
            hot_nodes: hot,
            cold_nodes: cold,
            evictions_planned: count(plan.evictions.len()),
            evictions_done: 0,
            evictions_blocked: count(plan.skipped.len()),
            evictions: plan
                .evictions
                .iter()
                .take(PLAN_LIST_LIMIT)
                .map(|e| PlannedEvictionEntry {
                    namespace: e.pod.namespace.clone(),
                    pod: e.pod.name.clone(),
                    from: e.from.clone(),
                    to: e.to.clone(),
                    reason: e.reason.clone(),
                })
                .collect(),
            blocked: plan
                .skipped
                .iter()
                .take(PLAN_LIST_LIMIT)
                .map(|s| BlockedEntry {
                    namespace: s.pod.namespace.clone(),
                    pod: s.pod.name.clone(),
                    node: s.node.clone(),
                    reason: s.reason.metric_label().to_string(),
                    message: s.why.clone(),
                })
                .collect(),
            stop_reason: plan.stop.to_string(),
            notes: Vec::new(),
        }
    }
}

/// Where the rebalancer expects an evicted pod's replacement to run: the planned target node of a
/// workload, for a short while after the eviction (read by the webhook to prefer that node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SteeringEntry {
    /// The workload whose replacement pod is steered.
    pub workload: WorkloadEntry,
    /// The node the plan moved the pod to.
    pub node: String,
    /// The node the pod was evicted from (the replacement should not go back there).
    pub from: String,
    /// After this time the entry is ignored and dropped.
    #[serde(deserialize_with = "crate::crd::lenient::time_or_epoch")]
    pub expires: Time,
}

/// Most steering entries kept in status (the newest win).
pub const STEERING_LIMIT: usize = 100;

/// Conditions, the rebalancer's persisted state and the last plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebalancePolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the spec is valid and in effect (otherwise the message names the bad field).
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Node scores, hysteresis streaks and eviction history (budget and backoff windows), kept across
    /// restarts.
    #[serde(default)]
    pub state: PersistedState,
    /// The last plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_plan: Option<PlanSummary>,
    /// Planned target nodes of recent evictions, for the replacement pods (at most 100, expiring).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steering: Vec<SteeringEntry>,
}

impl_status_conditions!(RebalancePolicyStatus);
