//! The one evictor filter chain every plan uses: pods that are never evicted, and why. Budgets and
//! backoff (in `budget`) come after these, and the planner reports whichever stopped a candidate.

use super::policy::{RebalancePolicy, WorkloadSlo};
use crate::model::{ControllerKind, LocalVolume, Pod, SYSTEM_CLUSTER_CRITICAL};
use serde::Serialize;
use std::fmt;

/// Why a candidate pod on a hot node was not evicted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum SkipReason {
    Terminating,
    Mirror,
    DaemonSet,
    Bare,
    Job,
    Critical {
        priority: i32,
    },
    Pinned,
    HostPath,
    EmptyDir {
        detail: String,
    },
    StatefulSet,
    OutOfScope,
    ClusterRateLimit {
        limit: u32,
    },
    NamespaceBudget {
        namespace: String,
        limit: u32,
    },
    SloBudget {
        slo: String,
        limit: u32,
    },
    PdbExhausted {
        pdb: String,
    },
    WorkloadMaxUnavailable {
        max_unavailable: u32,
    },
    WorkloadBackoff {
        until: String,
    },
    NodeBackoff {
        until: String,
    },
    PlanLimit {
        limit: u32,
    },
    NoFeasibleTarget {
        detail: String,
    },
    /// The plan stopped (sigma low enough, or no move helps enough) before reaching this pod.
    NotNeeded {
        detail: String,
    },
}

impl SkipReason {
    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SkipReason::Terminating => "terminating",
            SkipReason::Mirror => "mirror",
            SkipReason::DaemonSet => "daemonset",
            SkipReason::Bare => "bare",
            SkipReason::Job => "job",
            SkipReason::Critical { .. } => "critical",
            SkipReason::Pinned => "pinned",
            SkipReason::HostPath => "host_path",
            SkipReason::EmptyDir { .. } => "empty_dir",
            SkipReason::StatefulSet => "statefulset",
            SkipReason::OutOfScope => "out_of_scope",
            SkipReason::ClusterRateLimit { .. } => "cluster_rate",
            SkipReason::NamespaceBudget { .. } => "namespace_budget",
            SkipReason::SloBudget { .. } => "slo_budget",
            SkipReason::PdbExhausted { .. } => "pdb",
            SkipReason::WorkloadMaxUnavailable { .. } => "max_unavailable",
            SkipReason::WorkloadBackoff { .. } => "workload_backoff",
            SkipReason::NodeBackoff { .. } => "node_backoff",
            SkipReason::PlanLimit { .. } => "plan_limit",
            SkipReason::NoFeasibleTarget { .. } => "no_target",
            SkipReason::NotNeeded { .. } => "not_needed",
        }
    }

    /// A budget (as opposed to a filter that never lets the pod go).
    pub fn is_budget(&self) -> bool {
        matches!(
            self,
            SkipReason::ClusterRateLimit { .. }
                | SkipReason::NamespaceBudget { .. }
                | SkipReason::SloBudget { .. }
                | SkipReason::PdbExhausted { .. }
                | SkipReason::WorkloadMaxUnavailable { .. }
                | SkipReason::WorkloadBackoff { .. }
                | SkipReason::NodeBackoff { .. }
                | SkipReason::PlanLimit { .. }
        )
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Terminating => f.write_str("terminal or terminating"),
            SkipReason::Mirror => f.write_str("static (mirror) pod"),
            SkipReason::DaemonSet => f.write_str("DaemonSet pod"),
            SkipReason::Bare => f.write_str("bare pod (no controller would recreate it)"),
            SkipReason::Job => f.write_str("Job pod (allowJobs is false)"),
            SkipReason::Critical { priority } => {
                write!(f, "priority {priority} >= system-cluster-critical")
            }
            SkipReason::Pinned => f.write_str("pinned (placement.dev/pinned: \"true\")"),
            SkipReason::HostPath => f.write_str("uses hostPath"),
            SkipReason::EmptyDir { detail } => write!(f, "emptyDir {detail}"),
            SkipReason::StatefulSet => f.write_str("StatefulSet pod (no WorkloadSLO allows it)"),
            SkipReason::OutOfScope => f.write_str("outside the policy's namespaces or pod selector"),
            SkipReason::ClusterRateLimit { limit } => {
                write!(f, "cluster budget exhausted ({limit} evictions per minute)")
            }
            SkipReason::NamespaceBudget { namespace, limit } => {
                write!(f, "namespace budget exhausted ({limit} per hour in {namespace})")
            }
            SkipReason::SloBudget { slo, limit } => {
                write!(f, "WorkloadSLO {slo} budget exhausted ({limit} per hour)")
            }
            SkipReason::PdbExhausted { pdb } => {
                write!(f, "PodDisruptionBudget {pdb} allows no more disruptions")
            }
            SkipReason::WorkloadMaxUnavailable { max_unavailable } => {
                write!(f, "workload would exceed maxUnavailable {max_unavailable}")
            }
            SkipReason::WorkloadBackoff { until } => write!(f, "workload in backoff until {until}"),
            SkipReason::NodeBackoff { until } => write!(f, "node in backoff until {until}"),
            SkipReason::PlanLimit { limit } => {
                write!(f, "plan limit reached ({limit} evictions per plan)")
            }
            SkipReason::NoFeasibleTarget { detail } => write!(f, "no feasible target ({detail})"),
            SkipReason::NotNeeded { detail } => write!(f, "not needed: {detail}"),
        }
    }
}

/// The first filter that forbids evicting `pod`, if any.
pub fn never_evict(pod: &Pod, policy: &RebalancePolicy, slos: &[WorkloadSlo]) -> Option<SkipReason> {
    if pod.is_terminal() || pod.terminating {
        return Some(SkipReason::Terminating);
    }
    if pod.is_mirror() {
        return Some(SkipReason::Mirror);
    }
    match &pod.controller {
        ControllerKind::DaemonSet => return Some(SkipReason::DaemonSet),
        ControllerKind::None => return Some(SkipReason::Bare),
        ControllerKind::Job if !policy.allow_jobs => return Some(SkipReason::Job),
        _ => {}
    }
    if pod.priority >= SYSTEM_CLUSTER_CRITICAL {
        return Some(SkipReason::Critical { priority: pod.priority });
    }
    if pod.is_pinned() {
        return Some(SkipReason::Pinned);
    }
    for v in &pod.volumes {
        match v {
            LocalVolume::HostPath => return Some(SkipReason::HostPath),
            LocalVolume::EmptyDir { size_limit: None, .. } => {
                return Some(SkipReason::EmptyDir { detail: "without sizeLimit".into() });
            }
            LocalVolume::EmptyDir { size_limit: Some(limit), used: Some(used) } if used > limit => {
                return Some(SkipReason::EmptyDir { detail: format!("uses {used} bytes, above its limit {limit}") });
            }
            LocalVolume::EmptyDir { .. } => {}
        }
    }
    if pod.controller == ControllerKind::StatefulSet && !slos.iter().any(|s| s.allow_stateful && s.covers(pod)) {
        return Some(SkipReason::StatefulSet);
    }
    if !policy.in_scope(pod) {
        return Some(SkipReason::OutOfScope);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PodBuilder, PodPhase};
    use crate::selector::LabelSelector;

    #[test]
    fn filter_table() {
        let p = RebalancePolicy::default();
        let base = || PodBuilder::new("apps", "p").deployment("web").on_node("n1");
        let slo = WorkloadSlo {
            name: "db".into(),
            namespace: "apps".into(),
            selector: LabelSelector::from_pairs([("app", "db")]),
            max_disruptions_per_hour: 1,
            allow_stateful: true,
        };
        let cases: Vec<(&str, Pod, Option<&str>)> = vec![
            ("plain deployment pod", base().build(), None),
            ("terminating", base().terminating().build(), Some("terminating")),
            ("succeeded", base().phase(PodPhase::Succeeded).build(), Some("terminating")),
            ("mirror", PodBuilder::new("kube-system", "p").on_node("n1").mirror().build(), Some("mirror")),
            ("daemonset", PodBuilder::new("apps", "p").daemonset("ds").on_node("n1").build(), Some("daemonset")),
            ("bare", PodBuilder::new("apps", "p").on_node("n1").build(), Some("bare")),
            ("job", PodBuilder::new("apps", "p").job("j").on_node("n1").build(), Some("job")),
            ("critical", base().priority(SYSTEM_CLUSTER_CRITICAL).build(), Some("critical")),
            ("pinned", base().annotation("placement.dev/pinned", "true").build(), Some("pinned")),
            ("hostPath", base().volume(LocalVolume::HostPath).build(), Some("host_path")),
            (
                "emptyDir unbounded",
                base().volume(LocalVolume::EmptyDir { size_limit: None, used: None }).build(),
                Some("empty_dir"),
            ),
            (
                "emptyDir over",
                base().volume(LocalVolume::EmptyDir { size_limit: Some(10), used: Some(11) }).build(),
                Some("empty_dir"),
            ),
            (
                "emptyDir within",
                base().volume(LocalVolume::EmptyDir { size_limit: Some(10), used: Some(9) }).build(),
                None,
            ),
            ("statefulset", PodBuilder::new("apps", "p").statefulset("db").on_node("n1").build(), Some("statefulset")),
            (
                "statefulset allowed",
                PodBuilder::new("apps", "p").statefulset("db").label("app", "db").on_node("n1").build(),
                None,
            ),
        ];
        for (name, pod, want) in cases {
            assert_eq!(never_evict(&pod, &p, std::slice::from_ref(&slo)).map(|r| r.metric_label()), want, "{name}");
        }
        let scoped = RebalancePolicy { exclude_namespaces: vec!["apps".into()], ..RebalancePolicy::default() };
        assert_eq!(never_evict(&base().build(), &scoped, &[]), Some(SkipReason::OutOfScope));
        let jobs = RebalancePolicy { allow_jobs: true, ..RebalancePolicy::default() };
        assert_eq!(never_evict(&PodBuilder::new("apps", "p").job("j").on_node("n1").build(), &jobs, &[]), None);
    }
}
