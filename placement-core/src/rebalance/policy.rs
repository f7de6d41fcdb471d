//! The rebalance policy, workload SLOs and node classes: typed arguments, their defaults and their
//! validation side by side (descheduler style).

use super::PolicyError;
use crate::Labels;
use crate::model::{Pod, WorkloadRef};
use crate::selector::LabelSelector;
use serde::{Deserialize, Serialize};

/// Where utilization comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UtilizationSource {
    /// metrics.k8s.io usage (smoothed); nodes without metrics are neither scored nor targets.
    #[default]
    Metrics,
    /// Requested over allocatable.
    Requests,
}

macro_rules! default_fn {
    ($name:ident, $t:ty, $v:expr) => {
        fn $name() -> $t {
            $v
        }
    };
}
default_fn!(d_hot, f64, 0.8);
default_fn!(d_cold, f64, 0.3);
default_fn!(d_hysteresis, f64, 0.05);
default_fn!(d_k, u32, 3);
default_fn!(d_m, u32, 3);
default_fn!(d_alpha, f64, 0.5);
default_fn!(d_weight, f64, 1.0);
default_fn!(d_target_sigma, f64, 0.05);
default_fn!(d_min_improvement, f64, 0.001);
default_fn!(d_per_minute, u32, 5);
default_fn!(d_per_plan, u32, 10);
default_fn!(d_workload_backoff, u64, 600);
default_fn!(d_node_backoff, u64, 300);
default_fn!(d_true, bool, true);

/// A `RebalancePolicy`'s spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RebalancePolicy {
    /// A node whose smoothed score is at or above this is a hot candidate (0..1).
    #[serde(default = "d_hot")]
    pub hot_threshold: f64,
    /// At or below this, a cold candidate (0..1, below `hotThreshold`).
    #[serde(default = "d_cold")]
    pub cold_threshold: f64,
    /// A hot node cools only below `hotThreshold - hysteresis` (cold mirrored).
    #[serde(default = "d_hysteresis")]
    pub hysteresis: f64,
    /// Consecutive observations to become hot (or cold).
    #[serde(default = "d_k")]
    pub observations_to_enter: u32,
    /// Consecutive observations to stop being hot (or cold).
    #[serde(default = "d_m")]
    pub observations_to_leave: u32,
    /// EWMA weight of the newest observation (0 < alpha <= 1; 1 disables smoothing).
    #[serde(default = "d_alpha")]
    pub ewma_alpha: f64,
    #[serde(default = "d_weight")]
    pub cpu_weight: f64,
    #[serde(default = "d_weight")]
    pub memory_weight: f64,
    /// Stop once sigma is at or below this.
    #[serde(default = "d_target_sigma")]
    pub target_sigma: f64,
    /// A move must lower sigma by at least this much.
    #[serde(default = "d_min_improvement")]
    pub min_improvement: f64,
    #[serde(default)]
    pub source: UtilizationSource,
    /// Cluster-wide evictions in any 60-second window.
    #[serde(default = "d_per_minute")]
    pub max_evictions_per_minute: u32,
    /// Evictions per namespace in any hour; unlimited when absent.
    #[serde(default)]
    pub max_evictions_per_namespace_per_hour: Option<u32>,
    /// Evictions in one plan.
    #[serde(default = "d_per_plan")]
    pub max_evictions_per_plan: u32,
    /// Namespaces in scope (all when empty).
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    /// Pods in scope, by label (all when empty).
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Evict Job pods too.
    #[serde(default)]
    pub allow_jobs: bool,
    /// Controller kinds besides ReplicaSet (and StatefulSet with a WorkloadSLO) whose pods may be
    /// evicted, by the owner reference's `kind` (`Rollout`): the admin vouches that they recreate
    /// evicted pods and lose nothing. Empty by default: pods of unknown controllers are never evicted.
    #[serde(default)]
    pub allow_controller_kinds: Vec<String>,
    /// Workloads whose `emptyDir` volumes are expendable scratch: their pods may be evicted and the
    /// volumes' contents lost. Empty by default: a pod with any emptyDir is never evicted.
    #[serde(default)]
    pub scratch_empty_dirs: Vec<WorkloadRef>,
    /// Seconds before another pod of the same workload may be evicted.
    #[serde(default = "d_workload_backoff")]
    pub workload_backoff_seconds: u64,
    /// Seconds before a node that lost a pod may lose another in a later plan.
    #[serde(default = "d_node_backoff")]
    pub node_backoff_seconds: u64,
    /// Report, never evict (the default).
    #[serde(default = "d_true")]
    pub dry_run: bool,
}

impl Default for RebalancePolicy {
    fn default() -> Self {
        serde_json_default()
    }
}

/// Every field at its default.
fn serde_json_default() -> RebalancePolicy {
    RebalancePolicy {
        hot_threshold: d_hot(),
        cold_threshold: d_cold(),
        hysteresis: d_hysteresis(),
        observations_to_enter: d_k(),
        observations_to_leave: d_m(),
        ewma_alpha: d_alpha(),
        cpu_weight: d_weight(),
        memory_weight: d_weight(),
        target_sigma: d_target_sigma(),
        min_improvement: d_min_improvement(),
        source: UtilizationSource::default(),
        max_evictions_per_minute: d_per_minute(),
        max_evictions_per_namespace_per_hour: None,
        max_evictions_per_plan: d_per_plan(),
        namespaces: Vec::new(),
        exclude_namespaces: Vec::new(),
        pod_selector: LabelSelector::default(),
        allow_jobs: false,
        allow_controller_kinds: Vec::new(),
        scratch_empty_dirs: Vec::new(),
        workload_backoff_seconds: d_workload_backoff(),
        node_backoff_seconds: d_node_backoff(),
        dry_run: true,
    }
}

fn check(ok: bool, field: &'static str, message: impl FnOnce() -> String) -> Result<(), PolicyError> {
    if ok { Ok(()) } else { Err(PolicyError { field, message: message() }) }
}

fn fraction(v: f64, field: &'static str) -> Result<(), PolicyError> {
    check(v.is_finite() && (0.0..=1.0).contains(&v), field, || format!("{v} must be between 0 and 1"))
}

impl RebalancePolicy {
    pub fn validate(&self) -> Result<(), PolicyError> {
        fraction(self.hot_threshold, "hotThreshold")?;
        fraction(self.cold_threshold, "coldThreshold")?;
        fraction(self.hysteresis, "hysteresis")?;
        fraction(self.target_sigma, "targetSigma")?;
        check(self.cold_threshold < self.hot_threshold, "coldThreshold", || {
            format!("{} must be below hotThreshold ({})", self.cold_threshold, self.hot_threshold)
        })?;
        check(self.observations_to_enter >= 1, "observationsToEnter", || "must be at least 1".into())?;
        check(self.observations_to_leave >= 1, "observationsToLeave", || "must be at least 1".into())?;
        check(self.ewma_alpha.is_finite() && self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0, "ewmaAlpha", || {
            format!("{} must be in (0, 1]", self.ewma_alpha)
        })?;
        for (v, field) in [(self.cpu_weight, "cpuWeight"), (self.memory_weight, "memoryWeight")] {
            check(v.is_finite() && v >= 0.0, field, || format!("{v} must be 0 or more"))?;
        }
        check(self.cpu_weight + self.memory_weight > 0.0, "cpuWeight", || {
            "cpuWeight + memoryWeight must be above 0".into()
        })?;
        check(self.min_improvement.is_finite() && self.min_improvement > 0.0, "minImprovement", || {
            format!("{} must be above 0", self.min_improvement)
        })?;
        self.pod_selector.validate().map_err(|e| PolicyError { field: "podSelector", message: e.to_string() })
    }

    /// Is the pod's namespace and labels in this policy's scope?
    pub fn in_scope(&self, pod: &Pod) -> bool {
        (self.namespaces.is_empty() || self.namespaces.contains(&pod.namespace))
            && !self.exclude_namespaces.contains(&pod.namespace)
            && self.pod_selector.matches(&pod.labels)
    }
}

/// A `WorkloadSLO`: disruption guard rails for the pods it selects in its namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSlo {
    pub name: String,
    pub namespace: String,
    pub selector: LabelSelector,
    /// Evictions of selected pods in any hour.
    pub max_disruptions_per_hour: u32,
    /// StatefulSet pods may be evicted.
    #[serde(default)]
    pub allow_stateful: bool,
    /// Pods of these controller kinds (owner reference `kind`, e.g. `Rollout`) may be evicted.
    #[serde(default)]
    pub allow_controller_kinds: Vec<String>,
    /// The covered pods' `emptyDir` volumes are expendable scratch: they may be evicted with them.
    #[serde(default)]
    pub empty_dir_is_scratch: bool,
}

impl WorkloadSlo {
    pub fn covers(&self, pod: &Pod) -> bool {
        pod.namespace == self.namespace && self.selector.matches(&pod.labels)
    }
}

/// A `NodeClass`: nodes by label, with a preference as eviction targets (0 = never, 100 = full).
/// A move's sigma improvement is scaled by `weight / 100` when ranking moves, so a less preferred class
/// must improve balance more to be chosen. Nodes in no class have weight 100.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeClass {
    pub name: String,
    pub selector: LabelSelector,
    pub weight: u32,
}

impl NodeClass {
    /// The weight of a node: its first matching class's, else 100.
    pub fn weight_of(classes: &[NodeClass], labels: &Labels) -> u32 {
        classes.iter().find(|c| c.selector.matches(labels)).map_or(100, |c| c.weight.min(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_dry_run() {
        let p: RebalancePolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, RebalancePolicy::default());
        assert!(p.dry_run);
        p.validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let cases: Vec<(&str, &str)> = vec![
            (r#"{"coldThreshold": 0.9}"#, "coldThreshold: 0.9 must be below hotThreshold (0.8)"),
            (r#"{"hotThreshold": 1.5}"#, "hotThreshold: 1.5 must be between 0 and 1"),
            (r#"{"ewmaAlpha": 0}"#, "ewmaAlpha: 0 must be in (0, 1]"),
            (r#"{"observationsToEnter": 0}"#, "observationsToEnter: must be at least 1"),
            (r#"{"cpuWeight": 0, "memoryWeight": 0}"#, "cpuWeight: cpuWeight + memoryWeight must be above 0"),
            (r#"{"minImprovement": 0}"#, "minImprovement: 0 must be above 0"),
        ];
        for (json, want) in cases {
            let p: RebalancePolicy = serde_json::from_str(json).unwrap();
            assert_eq!(p.validate().unwrap_err().to_string(), want, "{json}");
        }
        assert!(serde_json::from_str::<RebalancePolicy>(r#"{"hotThreshhold": 0.5}"#).is_err(), "typos are rejected");
    }
}
