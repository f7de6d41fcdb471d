//! The one evictor filter chain every plan uses: pods that are never evicted, and why. Budgets and
//! backoff (in `budget`) come after these, and the planner reports whichever stopped a candidate.
//!
//! The rule is that an eviction loses nothing unless someone opted in by name
//! (`docs/semantics.md#6-do-no-harm`, rule 3), so every filter that guards data or a pod's existence
//! defaults to "never" and names its opt-in in the reason:
//!
//! * **Controllers.** Only pods of a ReplicaSet (a Deployment's, usually) are recreated elsewhere by
//!   something placement knows. StatefulSet pods need a covering WorkloadSLO with `allowStatefulSet`;
//!   Job pods need `allowJobs`; pods of any other kind (Argo `Workflow`, Tekton `TaskRun`, KubeVirt
//!   `VirtualMachineInstance`, Spark, anything unknown) need their kind in the policy's or a covering
//!   WorkloadSLO's `allowControllerKinds`: an evicted workflow step is not rerun, its work is lost.
//! * **emptyDir.** Any emptyDir, whatever its `sizeLimit` or medium, loses its contents on eviction: a
//!   cache with 3 GiB of warm data is as lost as a spool. Only a workload declared scratch (the
//!   policy's `scratchEmptyDirs`, or a covering WorkloadSLO's `emptyDirIsScratch`) may be evicted.
//! * **Local PersistentVolumes** (and claims whose volume could not be looked up) never: the pod cannot
//!   follow its volume to another node, so an eviction only restarts it where it was, or strands it.
//!   There is no opt-in.
//! * **hostPath** never, for the same reason as local volumes.

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
    /// A controller kind placement does not know recreates evicted pods; not opted in.
    UnknownController {
        controller: String,
    },
    /// A PersistentVolumeClaim bound to a node-local volume (or not known to be otherwise).
    LocalVolume {
        claim: String,
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
            SkipReason::UnknownController { .. } => "unknown_controller",
            SkipReason::LocalVolume { .. } => "local_volume",
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
            SkipReason::EmptyDir { detail } => write!(
                f,
                "emptyDir {detail}: its contents would be lost (opt in: the policy's scratchEmptyDirs or a WorkloadSLO's emptyDirIsScratch)"
            ),
            SkipReason::UnknownController { controller: kind } => write!(
                f,
                "controlled by a {kind}, which placement does not know to recreate it (opt in: allowControllerKinds)"
            ),
            SkipReason::LocalVolume { claim, detail } => {
                write!(f, "claim {claim} {detail}: the pod cannot follow its volume to another node")
            }
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
    let covering = || slos.iter().filter(|s| s.covers(pod));
    match &pod.controller {
        ControllerKind::DaemonSet => return Some(SkipReason::DaemonSet),
        ControllerKind::None => return Some(SkipReason::Bare),
        ControllerKind::Job if !policy.allow_jobs => return Some(SkipReason::Job),
        ControllerKind::Other(kind)
            if !policy.allow_controller_kinds.contains(kind)
                && !covering().any(|s| s.allow_controller_kinds.contains(kind)) =>
        {
            return Some(SkipReason::UnknownController { controller: kind.clone() });
        }
        _ => {}
    }
    if pod.priority >= SYSTEM_CLUSTER_CRITICAL {
        return Some(SkipReason::Critical { priority: pod.priority });
    }
    if pod.is_pinned() {
        return Some(SkipReason::Pinned);
    }
    if let Some(reason) = volume_filter(pod, policy, slos) {
        return Some(reason);
    }
    if pod.controller == ControllerKind::StatefulSet && !covering().any(|s| s.allow_stateful) {
        return Some(SkipReason::StatefulSet);
    }
    if !policy.in_scope(pod) {
        return Some(SkipReason::OutOfScope);
    }
    None
}

/// The first of the pod's volumes whose data an eviction would lose or strand.
fn volume_filter(pod: &Pod, policy: &RebalancePolicy, slos: &[WorkloadSlo]) -> Option<SkipReason> {
    let scratch = || {
        pod.workload.as_ref().is_some_and(|w| policy.scratch_empty_dirs.contains(w))
            || slos.iter().any(|s| s.empty_dir_is_scratch && s.covers(pod))
    };
    for v in &pod.volumes {
        match v {
            LocalVolume::HostPath => return Some(SkipReason::HostPath),
            LocalVolume::PersistentClaim { claim, local } => {
                let detail = match local {
                    Some(false) => continue,
                    Some(true) => "is bound to a node-local PersistentVolume",
                    None => "could not be resolved to a PersistentVolume (assumed node-local)",
                };
                return Some(SkipReason::LocalVolume { claim: claim.clone(), detail: detail.into() });
            }
            LocalVolume::EmptyDir { .. } if scratch() => {}
            LocalVolume::EmptyDir { size_limit: None, .. } => {
                return Some(SkipReason::EmptyDir { detail: "without sizeLimit".into() });
            }
            LocalVolume::EmptyDir { size_limit: Some(limit), used: Some(used) } if used > limit => {
                return Some(SkipReason::EmptyDir { detail: format!("uses {used} bytes, above its limit {limit}") });
            }
            LocalVolume::EmptyDir { size_limit: Some(limit), used } => {
                let used = used.map(|u| format!(", {u} bytes in use")).unwrap_or_default();
                return Some(SkipReason::EmptyDir { detail: format!("with sizeLimit {limit} bytes{used}") });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PodBuilder, PodPhase, WorkloadKind, WorkloadRef};
    use crate::selector::LabelSelector;

    const GIB: u64 = 1 << 30;

    fn slo(app: &str) -> WorkloadSlo {
        WorkloadSlo {
            name: app.into(),
            namespace: "apps".into(),
            selector: LabelSelector::from_pairs([("app", app)]),
            max_disruptions_per_hour: 1,
            allow_stateful: false,
            allow_controller_kinds: Vec::new(),
            empty_dir_is_scratch: false,
        }
    }

    fn empty_dir(size_limit: Option<u64>, used: Option<u64>) -> LocalVolume {
        LocalVolume::EmptyDir { size_limit, used }
    }

    fn claim(local: Option<bool>) -> LocalVolume {
        LocalVolume::PersistentClaim { claim: "data".into(), local }
    }

    /// A table row: name, pod, policy, WorkloadSLOs, the label expected (`None`: evictable).
    type Row<'a> = (&'a str, Pod, &'a RebalancePolicy, Vec<WorkloadSlo>, Option<&'a str>);

    /// The default filters, and each opt-in, one row each.
    #[test]
    fn filter_table() {
        let base = || PodBuilder::new("apps", "p").deployment("web").on_node("n1");
        let default = RebalancePolicy::default();
        let jobs = RebalancePolicy { allow_jobs: true, ..RebalancePolicy::default() };
        let workflows =
            RebalancePolicy { allow_controller_kinds: vec!["Workflow".into()], ..RebalancePolicy::default() };
        let cache_scratch = RebalancePolicy {
            scratch_empty_dirs: vec![WorkloadRef::deployment("apps", "cache")],
            ..RebalancePolicy::default()
        };
        let excluded = RebalancePolicy { exclude_namespaces: vec!["apps".into()], ..RebalancePolicy::default() };
        let db_stateful = WorkloadSlo { allow_stateful: true, ..slo("db") };
        let wf_kinds = WorkloadSlo { allow_controller_kinds: vec!["Workflow".into()], ..slo("wf") };
        let cache_slo = WorkloadSlo { empty_dir_is_scratch: true, ..slo("cache") };
        let workflow =
            || PodBuilder::new("apps", "step-1").controlled_by("Workflow", "etl").label("app", "wf").on_node("n1");
        let cache = || {
            PodBuilder::new("apps", "cache-1")
                .deployment("cache")
                .label("app", "cache")
                .volume(empty_dir(Some(4 * GIB), Some(3 * GIB)))
                .on_node("n1")
        };
        let none: Vec<WorkloadSlo> = Vec::new();
        #[rustfmt::skip]
        let cases: Vec<Row> = vec![
            ("plain deployment pod", base().build(), &default, none.clone(), None),
            ("terminating", base().terminating().build(), &default, none.clone(), Some("terminating")),
            ("succeeded", base().phase(PodPhase::Succeeded).build(), &default, none.clone(), Some("terminating")),
            ("mirror", PodBuilder::new("kube-system", "p").on_node("n1").mirror().build(), &default, none.clone(), Some("mirror")),
            ("daemonset", PodBuilder::new("apps", "p").daemonset("ds").on_node("n1").build(), &default, none.clone(), Some("daemonset")),
            ("bare", PodBuilder::new("apps", "p").on_node("n1").build(), &default, none.clone(), Some("bare")),
            ("job", PodBuilder::new("apps", "p").job("j").on_node("n1").build(), &default, none.clone(), Some("job")),
            ("job, allowJobs", PodBuilder::new("apps", "p").job("j").on_node("n1").build(), &jobs, none.clone(), None),
            ("argo Workflow", workflow().build(), &default, none.clone(), Some("unknown_controller")),
            ("tekton TaskRun", PodBuilder::new("apps", "p").controlled_by("TaskRun", "t").on_node("n1").build(), &default, none.clone(), Some("unknown_controller")),
            ("kubevirt VMI", PodBuilder::new("apps", "p").controlled_by("VirtualMachineInstance", "vm").on_node("n1").build(), &default, none.clone(), Some("unknown_controller")),
            ("spark driver's executor", PodBuilder::new("apps", "p").controlled_by("Pod", "driver").on_node("n1").build(), &default, none.clone(), Some("unknown_controller")),
            ("Workflow, policy allowControllerKinds", workflow().build(), &workflows, none.clone(), None),
            ("Workflow, WorkloadSLO allowControllerKinds", workflow().build(), &default, vec![wf_kinds.clone()], None),
            ("TaskRun, WorkloadSLO allows Workflow only", PodBuilder::new("apps", "p").controlled_by("TaskRun", "t").label("app", "wf").on_node("n1").build(), &default, vec![wf_kinds.clone()], Some("unknown_controller")),
            ("critical", base().priority(SYSTEM_CLUSTER_CRITICAL).build(), &default, none.clone(), Some("critical")),
            ("pinned", base().annotation("placement.dev/pinned", "true").build(), &default, none.clone(), Some("pinned")),
            ("hostPath", base().volume(LocalVolume::HostPath).build(), &default, none.clone(), Some("host_path")),
            ("hostPath, even declared scratch", cache().volume(LocalVolume::HostPath).build(), &cache_scratch, none.clone(), Some("host_path")),
            ("emptyDir unbounded", base().volume(empty_dir(None, None)).build(), &default, none.clone(), Some("empty_dir")),
            ("emptyDir over its limit", base().volume(empty_dir(Some(10), Some(11))).build(), &default, none.clone(), Some("empty_dir")),
            ("emptyDir within its limit (3 GiB cache)", cache().build(), &default, none.clone(), Some("empty_dir")),
            ("emptyDir, usage unknown", base().volume(empty_dir(Some(GIB), None)).build(), &default, none.clone(), Some("empty_dir")),
            ("emptyDir, policy scratchEmptyDirs", cache().build(), &cache_scratch, none.clone(), None),
            ("emptyDir unbounded, policy scratchEmptyDirs", cache().volume(empty_dir(None, None)).build(), &cache_scratch, none.clone(), None),
            ("emptyDir, scratch names another workload", base().volume(empty_dir(Some(GIB), None)).build(), &cache_scratch, none.clone(), Some("empty_dir")),
            ("emptyDir, WorkloadSLO emptyDirIsScratch", cache().build(), &default, vec![cache_slo.clone()], None),
            ("emptyDir, WorkloadSLO does not cover it", base().volume(empty_dir(Some(GIB), None)).build(), &default, vec![cache_slo.clone()], Some("empty_dir")),
            ("claim on a local PV", base().volume(claim(Some(true))).build(), &default, none.clone(), Some("local_volume")),
            ("claim not resolved", base().volume(claim(None)).build(), &default, none.clone(), Some("local_volume")),
            ("claim on a network PV", base().volume(claim(Some(false))).build(), &default, none.clone(), None),
            ("local PV, even with every opt-in", cache().volume(claim(Some(true))).build(), &cache_scratch, vec![cache_slo.clone()], Some("local_volume")),
            ("statefulset", PodBuilder::new("apps", "p").statefulset("db").on_node("n1").build(), &default, none.clone(), Some("statefulset")),
            ("statefulset, SLO without allowStatefulSet", PodBuilder::new("apps", "p").statefulset("db").label("app", "db").on_node("n1").build(), &default, vec![slo("db")], Some("statefulset")),
            ("statefulset, SLO allowStatefulSet", PodBuilder::new("apps", "p").statefulset("db").label("app", "db").on_node("n1").build(), &default, vec![db_stateful.clone()], None),
            ("statefulset on a local PV, SLO allowStatefulSet", PodBuilder::new("apps", "p").statefulset("db").label("app", "db").volume(claim(Some(true))).on_node("n1").build(), &default, vec![db_stateful], Some("local_volume")),
            ("out of scope", base().build(), &excluded, none.clone(), Some("out_of_scope")),
        ];
        for (row, pod, policy, slos, want) in cases {
            let got = never_evict(&pod, policy, &slos);
            assert_eq!(got.as_ref().map(SkipReason::metric_label), want, "{row}: {got:?}");
        }
    }

    #[test]
    fn reasons_name_the_opt_in() {
        let p = RebalancePolicy::default();
        let wf = PodBuilder::new("apps", "s").controlled_by("Workflow", "etl").on_node("n1").build();
        let why = never_evict(&wf, &p, &[]).unwrap().to_string();
        assert!(why.contains("Workflow") && why.contains("allowControllerKinds"), "{why}");
        let cache = PodBuilder::new("apps", "c").deployment("cache").volume(empty_dir(Some(GIB), None)).on_node("n1");
        let why = never_evict(&cache.build(), &p, &[]).unwrap().to_string();
        assert!(why.contains("scratchEmptyDirs") && why.contains("emptyDirIsScratch"), "{why}");
        let kind = WorkloadKind::Other("Workflow".into());
        assert_eq!(wf.workload.map(|w| w.kind), Some(kind));
    }
}
