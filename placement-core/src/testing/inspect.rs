//! Helpers over a [`Snapshot`] for benches, tests and tuning: what a cluster looks like
//! ([`cluster_shape`]), whether it is internally consistent ([`inconsistencies`],
//! [`overcommitted_nodes`]), how hot its nodes are ([`usage_fraction`], [`usage_score`],
//! [`hot_nodes`]), and a fresh pending pod of an existing workload to feed an admission decision
//! ([`pick_pending_pod`]).
//!
//! These are linear scans written for clarity; call them in a bench's setup, not in its measured loop.

use super::generator::NODE_TYPE_LABEL;
use crate::model::{Node, Pod, PodPhase, Snapshot, Workload, WorkloadKind, WorkloadRef};
use crate::resources::Resources;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Usage as a fraction of allocatable, `(cpu, memory)`; `None` for a node without metrics. A resource
/// with zero allocatable counts as 0.
pub fn usage_fraction(node: &Node) -> Option<(f64, f64)> {
    let usage = node.usage?;
    Some((
        ratio(usage.cpu_millis, node.allocatable.cpu_millis),
        ratio(usage.memory_bytes, node.allocatable.memory_bytes),
    ))
}

/// The rebalancer's node score with equal cpu and memory weights: the mean of the two usage fractions.
pub fn usage_score(node: &Node) -> Option<f64> {
    usage_fraction(node).map(|(cpu, memory)| (cpu + memory) / 2.0)
}

/// Nodes whose [`usage_score`] is above `threshold` (0.8 is "hot").
pub fn hot_nodes(snapshot: &Snapshot, threshold: f64) -> usize {
    snapshot.nodes.iter().filter(|n| usage_score(n).is_some_and(|s| s > threshold)).count()
}

/// Nodes whose bound pods request more than allocatable, or that run more than `max_pods` pods,
/// according to their `requested` and `pod_count` fields.
pub fn overcommitted_nodes(snapshot: &Snapshot) -> Vec<&Node> {
    snapshot.nodes.iter().filter(|n| !n.requested.fits_in(n.allocatable) || n.pod_count > n.max_pods).collect()
}

/// Everything internally inconsistent in a snapshot, one sentence each (empty when consistent):
/// duplicate node names or pod keys, pods bound to a node that does not exist, and nodes whose
/// `requested`/`pod_count` differ from the sums over their bound, non-terminal pods. Overcommit is a
/// separate question: see [`overcommitted_nodes`].
pub fn inconsistencies(snapshot: &Snapshot) -> Vec<String> {
    let mut problems = Vec::new();
    let mut totals: BTreeMap<&str, (Resources, u32)> = BTreeMap::new();
    for node in &snapshot.nodes {
        if totals.insert(node.name.as_str(), (Resources::ZERO, 0)).is_some() {
            problems.push(format!("node {} appears twice", node.name));
        }
    }
    let mut keys = BTreeSet::new();
    for pod in &snapshot.pods {
        if !keys.insert((pod.namespace.as_str(), pod.name.as_str())) {
            problems.push(format!("pod {}/{} appears twice", pod.namespace, pod.name));
        }
        let Some(node_name) = &pod.node_name else {
            continue;
        };
        match totals.get_mut(node_name.as_str()) {
            None => problems
                .push(format!("pod {}/{} is bound to node {node_name}, which does not exist", pod.namespace, pod.name)),
            Some((requested, count)) if pod.holds_resources() => {
                *requested += pod.requests;
                *count += 1;
            }
            Some(_) => {}
        }
    }
    for node in &snapshot.nodes {
        let (requested, count) = totals.get(node.name.as_str()).copied().unwrap_or_default();
        if node.requested != requested {
            problems
                .push(format!("node {}: requested says {}, its pods request {}", node.name, node.requested, requested));
        }
        if node.pod_count != count {
            problems.push(format!(
                "node {}: pod_count says {}, it has {count} pods holding resources",
                node.name, node.pod_count
            ));
        }
    }
    problems
}

/// The pods of `workload`, in snapshot order.
pub fn workload_pods<'a>(snapshot: &'a Snapshot, workload: &'a WorkloadRef) -> impl Iterator<Item = &'a Pod> + 'a {
    snapshot.pods.iter().filter(move |p| p.workload.as_ref() == Some(workload))
}

/// A new pod of `workload`, ready for an admission decision: a copy of the workload's last counting
/// bound pod (its last counting pod when none is bound) as a pending pod with a name no pod of the
/// snapshot has. `None` when the workload has no counting pod to copy.
pub fn pick_pending_pod(snapshot: &Snapshot, workload: &WorkloadRef) -> Option<Pod> {
    let mut template: Option<&Pod> = None;
    let mut pods = 0usize;
    for pod in workload_pods(snapshot, workload) {
        pods += 1;
        if !pod.counts() {
            continue;
        }
        let better = match template {
            None => true,
            Some(t) => pod.node_name.is_some() || t.node_name.is_none(),
        };
        if better {
            template = Some(pod);
        }
    }
    let template = template?;
    let name = match (&workload.kind, &template.revision) {
        (WorkloadKind::StatefulSet, _) => format!("{}-{pods}", workload.name),
        (WorkloadKind::Deployment, Some(rev)) => format!("{}-{rev}-admit{pods}", workload.name),
        _ => format!("{}-admit{pods}", workload.name),
    };
    Some(pending_pod_from(template, name))
}

/// `template` as a new pending pod called `name`: unbound, phase Pending, not ready, not terminating,
/// no usage; everything else (workload, revision, labels, requests, tolerations, nodeSelector,
/// volumes, priority) kept.
pub fn pending_pod_from(template: &Pod, name: impl Into<String>) -> Pod {
    let mut pod = template.clone();
    pod.name = name.into();
    pod.node_name = None;
    pod.phase = PodPhase::Pending;
    pod.ready = false;
    pod.terminating = false;
    pod.usage = None;
    pod
}

/// The Deployments and StatefulSets with one replica: the least-loaded-zone balancer's scope.
pub fn single_replica_workloads(snapshot: &Snapshot) -> Vec<&Workload> {
    snapshot
        .workloads
        .iter()
        .filter(|w| w.replicas == 1 && matches!(w.workload.kind, WorkloadKind::Deployment | WorkloadKind::StatefulSet))
        .collect()
}

/// The workload with the most replicas, DaemonSets excluded (the first of equals).
pub fn largest_workload(snapshot: &Snapshot) -> Option<&Workload> {
    snapshot.workloads.iter().filter(|w| w.workload.kind != WorkloadKind::DaemonSet).fold(
        None,
        |best: Option<&Workload>, w| match best {
            Some(b) if b.replicas >= w.replicas => Some(b),
            _ => Some(w),
        },
    )
}

/// What a cluster looks like, in counts: printable, and serializable for reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterShape {
    pub nodes: usize,
    pub pods: usize,
    pub bound_pods: usize,
    pub pending_pods: usize,
    /// Nodes per value of `topology.kubernetes.io/zone` (`<none>` without the label).
    pub nodes_per_zone: BTreeMap<String, usize>,
    /// Nodes per value of `node-type` (`<none>` without the label).
    pub nodes_per_type: BTreeMap<String, usize>,
    /// Nodes per `zone/node-type`.
    pub nodes_per_zone_and_type: BTreeMap<String, usize>,
    pub not_ready_nodes: usize,
    pub cordoned_nodes: usize,
    pub nodes_without_metrics: usize,
    /// Nodes with [`usage_score`] above 0.8.
    pub hot_nodes: usize,
    /// Nodes with [`usage_score`] below 0.2.
    pub cold_nodes: usize,
    pub workloads: usize,
    pub workloads_per_kind: BTreeMap<String, usize>,
    /// `Workload` entries with exactly one replica.
    pub single_replica_workloads: usize,
    pub pdbs: usize,
    /// Sum of `requested` over nodes, and of `allocatable`.
    pub requested: Resources,
    pub allocatable: Resources,
}

/// Count what `snapshot` holds.
pub fn cluster_shape(snapshot: &Snapshot) -> ClusterShape {
    let mut shape = ClusterShape {
        nodes: snapshot.nodes.len(),
        pods: snapshot.pods.len(),
        workloads: snapshot.workloads.len(),
        pdbs: snapshot.pdbs.len(),
        ..ClusterShape::default()
    };
    for node in &snapshot.nodes {
        let zone = node.label(crate::ZONE_LABEL).unwrap_or("<none>");
        let kind = node.label(NODE_TYPE_LABEL).unwrap_or("<none>");
        *shape.nodes_per_zone.entry(zone.to_string()).or_default() += 1;
        *shape.nodes_per_type.entry(kind.to_string()).or_default() += 1;
        *shape.nodes_per_zone_and_type.entry(format!("{zone}/{kind}")).or_default() += 1;
        shape.not_ready_nodes += usize::from(!node.ready);
        shape.cordoned_nodes += usize::from(node.unschedulable);
        match usage_score(node) {
            None => shape.nodes_without_metrics += 1,
            Some(s) if s > 0.8 => shape.hot_nodes += 1,
            Some(s) if s < 0.2 => shape.cold_nodes += 1,
            Some(_) => {}
        }
        shape.requested += node.requested;
        shape.allocatable += node.allocatable;
    }
    shape.bound_pods = snapshot.pods.iter().filter(|p| p.node_name.is_some()).count();
    shape.pending_pods = shape.pods - shape.bound_pods;
    for w in &snapshot.workloads {
        *shape.workloads_per_kind.entry(w.workload.kind.to_string()).or_default() += 1;
        shape.single_replica_workloads += usize::from(w.replicas == 1);
    }
    shape
}

impl fmt::Display for ClusterShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} nodes ({} NotReady, {} cordoned, {} without metrics; {} hot, {} cold)",
            self.nodes,
            self.not_ready_nodes,
            self.cordoned_nodes,
            self.nodes_without_metrics,
            self.hot_nodes,
            self.cold_nodes
        )?;
        writeln!(f, "  per zone:      {}", join_counts(&self.nodes_per_zone))?;
        writeln!(f, "  per node-type: {}", join_counts(&self.nodes_per_type))?;
        writeln!(f, "  per zone/type: {}", join_counts(&self.nodes_per_zone_and_type))?;
        writeln!(
            f,
            "{} pods ({} bound, {} pending); requested {} of allocatable {}",
            self.pods, self.bound_pods, self.pending_pods, self.requested, self.allocatable
        )?;
        write!(
            f,
            "{} workloads ({}; {} single-replica), {} PDBs",
            self.workloads,
            join_counts(&self.workloads_per_kind),
            self.single_replica_workloads,
            self.pdbs
        )
    }
}

fn join_counts(counts: &BTreeMap<String, usize>) -> String {
    counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 { 0.0 } else { numerator as f64 / denominator as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeBuilder, PodBuilder};

    fn two_node_snapshot() -> Snapshot {
        Snapshot::new(
            vec![
                NodeBuilder::new("n1").allocatable(1000, 1000).usage(900, 800).build(),
                NodeBuilder::new("n2").allocatable(1000, 1000).build(),
            ],
            vec![
                PodBuilder::new("ns", "web-a")
                    .deployment("web")
                    .revision("r1")
                    .on_node("n1")
                    .requests(600, 100)
                    .build(),
                PodBuilder::new("ns", "web-b").deployment("web").revision("r1").pending().requests(600, 100).build(),
            ],
            vec![],
            vec![],
        )
    }

    #[test]
    fn usage_and_heat() {
        let s = two_node_snapshot();
        assert_eq!(usage_fraction(&s.nodes[0]), Some((0.9, 0.8)));
        assert_eq!(usage_fraction(&s.nodes[1]), None);
        // (0.9 + 0.8) / 2 = 0.85
        assert_eq!(hot_nodes(&s, 0.8), 1);
        assert_eq!(hot_nodes(&s, 0.86), 0);
    }

    #[test]
    fn consistency_and_overcommit() {
        let mut s = two_node_snapshot();
        assert!(inconsistencies(&s).is_empty());
        assert!(overcommitted_nodes(&s).is_empty());
        // Bind the pending pod to n1 without recomputing: requested is stale, 1200m > 1000m after.
        s.pods[1].node_name = Some("n1".into());
        s.pods[1].phase = PodPhase::Running;
        assert_eq!(inconsistencies(&s).len(), 2, "{:?}", inconsistencies(&s));
        s.recompute_requested();
        assert!(inconsistencies(&s).is_empty());
        assert_eq!(overcommitted_nodes(&s).len(), 1);
        s.pods[0].node_name = Some("gone".into());
        s.recompute_requested();
        assert_eq!(inconsistencies(&s).len(), 1);
    }

    #[test]
    fn pending_pod_copies_a_bound_template() {
        let s = two_node_snapshot();
        let w = WorkloadRef::deployment("ns", "web");
        let p = pick_pending_pod(&s, &w).expect("web has pods");
        assert_eq!(p.name, "web-r1-admit2");
        assert_eq!(p.node_name, None);
        assert_eq!(p.phase, PodPhase::Pending);
        assert_eq!(p.workload, Some(w));
        assert_eq!(p.requests, Resources::new(600, 100));
        assert!(s.pods.iter().all(|q| q.name != p.name));
        assert!(pick_pending_pod(&s, &WorkloadRef::deployment("ns", "nope")).is_none());
    }

    #[test]
    fn shape_counts() {
        let shape = cluster_shape(&two_node_snapshot());
        assert_eq!(shape.nodes, 2);
        assert_eq!((shape.bound_pods, shape.pending_pods), (1, 1));
        assert_eq!(shape.nodes_without_metrics, 1);
        assert_eq!(shape.hot_nodes, 1);
        assert_eq!(shape.nodes_per_zone.get("<none>"), Some(&2));
        assert_eq!(shape.requested, Resources::new(600, 100));
    }
}
