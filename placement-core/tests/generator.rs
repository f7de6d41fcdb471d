//! The synthetic cluster generator and the proptest strategies of the `testing` feature: deterministic,
//! never overcommitting, shaped as specified, and internally consistent.

use placement_core::model::{ControllerKind, PodPhase, Snapshot, WorkloadKind};
use placement_core::resources::Resources;
use placement_core::taints::untolerated;
use placement_core::testing::{
    ClusterSpec, arb_cluster, arb_label_selector, arb_node, arb_pod_on, arb_weights, arb_workload_counts,
    cluster_shape, generate, hot_nodes, inconsistencies, largest_workload, overcommitted_nodes, pick_pending_pod,
    single_replica_workloads,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// `small()` with seed 42, generated once for the shape tests.
fn small() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| generate(&ClusterSpec::small().with_seed(42)))
}

/// Requests and pod counts per node, summed independently of `Snapshot::new`.
fn sums_by_node(s: &Snapshot) -> BTreeMap<&str, (Resources, u32)> {
    let mut sums: BTreeMap<&str, (Resources, u32)> = BTreeMap::new();
    for p in &s.pods {
        if let (Some(n), false) = (&p.node_name, p.is_terminal()) {
            let e = sums.entry(n.as_str()).or_default();
            e.0 += p.requests;
            e.1 += 1;
        }
    }
    sums
}

fn assert_never_overcommitted(s: &Snapshot) {
    let sums = sums_by_node(s);
    let names: BTreeSet<&str> = s.nodes.iter().map(|n| n.name.as_str()).collect();
    assert!(sums.keys().all(|n| names.contains(n)), "pods bound to unknown nodes");
    for node in &s.nodes {
        let (req, count) = sums.get(node.name.as_str()).copied().unwrap_or_default();
        assert!(req.fits_in(node.allocatable), "node {} overcommitted: {req} of {}", node.name, node.allocatable);
        assert!(count <= node.max_pods, "node {} runs {count} pods", node.name);
        assert_eq!(node.requested, req, "node {} requested", node.name);
        assert_eq!(node.pod_count, count, "node {} pod_count", node.name);
    }
    assert!(overcommitted_nodes(s).is_empty());
    assert_eq!(inconsistencies(s), Vec::<String>::new());
}

#[test]
fn presets_have_the_documented_scale() {
    let large = ClusterSpec::large();
    assert_eq!((large.nodes, large.pods, large.zones, large.workloads), (5_000, 150_000, 3, 10_000));
    let medium = ClusterSpec::medium();
    assert_eq!((medium.nodes, medium.pods), (1_000, 30_000));
    let small = ClusterSpec::small();
    assert_eq!((small.nodes, small.pods, small.workloads), (500, 15_000, 1_000));
}

#[test]
fn same_seed_same_snapshot_other_seed_other_snapshot() {
    let spec = ClusterSpec::scaled(100).with_seed(7);
    let a = generate(&spec);
    let b = generate(&spec);
    assert_eq!(a, b);
    let c = generate(&spec.clone().with_seed(8));
    assert_ne!(a, c);
    // Not just a renaming: the placement differs too.
    let bound = |s: &Snapshot| -> Vec<Option<String>> { s.pods.iter().map(|p| p.node_name.clone()).collect() };
    assert_ne!(bound(&a), bound(&c));
}

#[test]
fn never_overcommits() {
    assert_never_overcommitted(small());
    for seed in 0..4 {
        // A crowded variant too: 60 pods per node of mostly the same sizes, most nodes nearly full.
        let spec = ClusterSpec { pods: 60 * 80, ..ClusterSpec::scaled(80).with_seed(seed) };
        assert_never_overcommitted(&generate(&spec));
    }
}

#[test]
fn counts_are_exact() {
    let s = small();
    let spec = ClusterSpec::small();
    assert_eq!(s.nodes.len(), 500);
    assert_eq!(s.pods.len(), 15_000);
    // Workload entries: 1,000 asked, and 15,000 pods are plenty to give each at least one.
    assert_eq!(s.workloads.len(), spec.workloads);
    let names: BTreeSet<_> = s.nodes.iter().map(|n| &n.name).collect();
    assert_eq!(names.len(), 500);
    let keys: BTreeSet<_> = s.pods.iter().map(|p| p.key()).collect();
    assert_eq!(keys.len(), s.pods.len(), "pod keys are unique");
}

#[test]
fn three_balanced_zones_and_thirty_percent_spot() {
    let shape = cluster_shape(small());
    let zones: Vec<_> = shape.nodes_per_zone.keys().map(String::as_str).collect();
    assert_eq!(zones, ["zone-a", "zone-b", "zone-c"]);
    // Round-robin: 500 = 167 + 167 + 166.
    assert_eq!(shape.nodes_per_zone.values().copied().collect::<Vec<_>>(), [167, 167, 166]);
    // 0.3 x 500.
    assert_eq!(shape.nodes_per_type.get("spot"), Some(&150));
    assert_eq!(shape.nodes_per_type.get("ondemand"), Some(&350));
    for node in &small().nodes {
        let spot = node.label("node-type") == Some("spot");
        let tainted = node.taints.iter().any(|t| t.key == "spot" && t.value == "true");
        assert_eq!(spot, tainted, "node {}", node.name);
    }
}

#[test]
fn spot_pods_tolerate_the_taint_except_static_pods() {
    let s = small();
    let nodes: BTreeMap<&str, _> = s.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut on_spot = 0;
    for p in &s.pods {
        let Some(node) = p.node_name.as_deref().and_then(|n| nodes.get(n)) else {
            continue;
        };
        if node.label("node-type") != Some("spot") {
            continue;
        }
        on_spot += 1;
        if p.controller != ControllerKind::Node {
            assert!(untolerated(&node.taints, &p.tolerations).is_none(), "{}/{} on {}", p.namespace, p.name, node.name);
        }
    }
    // Spot nodes are 30 % of the nodes and carry a comparable share of the pods.
    assert!(on_spot > 15_000 / 5, "only {on_spot} pods on spot nodes");
}

#[test]
fn workload_mix_is_realistic() {
    let s = small();
    let shape = cluster_shape(s);
    let kinds = &shape.workloads_per_kind;
    assert_eq!(kinds.get("DaemonSet"), Some(&2));
    assert!(kinds.get("Deployment").copied().unwrap_or(0) > 900, "{kinds:?}");
    assert!(kinds.get("StatefulSet").copied().unwrap_or(0) > 10, "{kinds:?}");
    assert!(kinds.get("Job").copied().unwrap_or(0) > 5, "{kinds:?}");
    // ~30 % single replica.
    let single = shape.single_replica_workloads as f64 / shape.workloads as f64;
    assert!((0.27..=0.33).contains(&single), "single-replica {single}");
    assert!(!single_replica_workloads(s).is_empty());
    // DaemonSets: one pod per node each.
    let ds_pods = s.pods.iter().filter(|p| p.controller == ControllerKind::DaemonSet).count();
    assert_eq!(ds_pods, 2 * 500);
    // Heavy tail: the largest workload is far above the median.
    let mut replicas: Vec<u32> =
        s.workloads.iter().filter(|w| w.workload.kind != WorkloadKind::DaemonSet).map(|w| w.replicas).collect();
    replicas.sort_unstable();
    let median = replicas[replicas.len() / 2];
    let max = replicas[replicas.len() - 1];
    assert!(max >= 10 * median, "max {max}, median {median}");
    // Replicas match the pods each workload owns.
    let mut owned: BTreeMap<_, u32> = BTreeMap::new();
    for p in &s.pods {
        if let Some(w) = &p.workload {
            *owned.entry(w).or_default() += 1;
        }
    }
    for w in &s.workloads {
        assert_eq!(owned.get(&w.workload).copied(), Some(w.replicas), "{}", w.workload);
    }
    // Odd pods exist for the filters to meet.
    assert!(s.pods.iter().any(|p| p.is_mirror()));
    assert!(s.pods.iter().any(|p| p.controller == ControllerKind::None));
    assert!(s.pods.iter().any(|p| p.phase == PodPhase::Succeeded));
    assert!(s.pods.iter().any(|p| p.is_pinned()));
    assert!(!s.pdbs.is_empty());
    let namespaces: BTreeSet<_> = s.pods.iter().map(|p| &p.namespace).collect();
    assert!(namespaces.len() >= 4, "{namespaces:?}");
}

#[test]
fn requests_are_in_range() {
    for p in &small().pods {
        assert!((50..=4000).contains(&p.requests.cpu_millis), "{}", p.name);
        assert!((64 << 20..=8 << 30).contains(&p.requests.memory_bytes), "{}", p.name);
    }
}

#[test]
fn a_few_hot_nodes_some_cold_some_without_metrics() {
    let s = small();
    let shape = cluster_shape(s);
    // 4 % hot (both usage fractions above 0.8), 10 % cold, 1 % without metrics plus the NotReady ones.
    assert_eq!(hot_nodes(s, 0.8), 20);
    assert_eq!(shape.hot_nodes, 20);
    assert_eq!(shape.cold_nodes, 50);
    // 0.005 x 500 = 2.5, rounded half away from zero: 3 NotReady; 5 more without metrics.
    assert_eq!(shape.not_ready_nodes, 3);
    assert_eq!(shape.nodes_without_metrics, 3 + 5);
    assert_eq!(shape.cordoned_nodes, 5);
    for node in &s.nodes {
        if let Some(u) = node.usage {
            assert!(u.fits_in(node.allocatable), "node {} usage {u}", node.name);
        }
    }
    // Pods on nodes with metrics have usage, others none.
    let with_metrics: BTreeSet<&str> = s.nodes.iter().filter(|n| n.usage.is_some()).map(|n| n.name.as_str()).collect();
    for p in s.pods.iter().filter(|p| p.phase == PodPhase::Running) {
        let metrics = p.node_name.as_deref().is_some_and(|n| with_metrics.contains(n));
        assert_eq!(p.usage.is_some(), metrics, "{}", p.name);
    }
}

#[test]
fn pending_pods_have_a_node_selector() {
    let s = small();
    let pending: Vec<_> = s.pods.iter().filter(|p| p.node_name.is_none()).collect();
    let with_selector = pending.iter().filter(|p| !p.node_selector.is_empty()).count();
    // 15,000 / 1,000 = 15 asked; placement may leave a few more that fit nowhere, never many.
    assert_eq!(with_selector, 15);
    assert!(pending.len() < 15 + 150, "{} pending", pending.len());
    assert!(pending.iter().all(|p| p.phase == PodPhase::Pending));
}

#[test]
fn pick_pending_pod_makes_a_fresh_pod_of_the_workload() {
    let s = small();
    let w = largest_workload(s).expect("workloads");
    let pod = pick_pending_pod(s, &w.workload).expect("the largest workload has pods");
    assert_eq!(pod.workload.as_ref(), Some(&w.workload));
    assert_eq!(pod.node_name, None);
    assert_eq!(pod.phase, PodPhase::Pending);
    assert!(s.pods.iter().all(|p| p.key() != pod.key()), "{}", pod.name);
    for single in single_replica_workloads(s).into_iter().take(20) {
        let pod = pick_pending_pod(s, &single.workload);
        // A single-replica workload whose only pod is counting yields a pod; a finished Job's would not.
        assert!(pod.is_some(), "{}", single.workload);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arb_cluster_is_consistent(s in arb_cluster(8, 60)) {
        let sums = sums_by_node(&s);
        let names: BTreeSet<&str> = s.nodes.iter().map(|n| n.name.as_str()).collect();
        prop_assert_eq!(names.len(), s.nodes.len());
        for p in &s.pods {
            if let Some(n) = &p.node_name {
                prop_assert!(names.contains(n.as_str()), "pod {} on unknown node {}", p.name, n);
            }
        }
        for node in &s.nodes {
            let (req, count) = sums.get(node.name.as_str()).copied().unwrap_or_default();
            prop_assert_eq!(node.requested, req);
            prop_assert_eq!(node.pod_count, count);
            prop_assert!(req.fits_in(node.allocatable));
            prop_assert!(count <= node.max_pods);
            if let Some(u) = node.usage {
                prop_assert!(u.fits_in(node.allocatable));
            }
        }
        let keys: BTreeSet<_> = s.pods.iter().map(|p| p.key()).collect();
        prop_assert_eq!(keys.len(), s.pods.len());
        for w in &s.workloads {
            let counting = s.pods.iter().filter(|p| p.workload.as_ref() == Some(&w.workload) && p.counts()).count();
            prop_assert_eq!(counting as u32, w.replicas);
        }
        prop_assert!(inconsistencies(&s).is_empty());
    }

    #[test]
    fn bound_pods_tolerate_their_node(s in arb_cluster(6, 40)) {
        for p in s.pods.iter().filter(|p| !p.is_mirror()) {
            if let Some(node) = p.node_name.as_deref().and_then(|n| s.node(n)) {
                prop_assert!(untolerated(&node.taints, &p.tolerations).is_none(), "{} on {}", p.name, node.name);
            }
        }
    }

    #[test]
    fn arb_pod_on_fits_the_node_it_is_bound_to(
        (nodes, pod) in prop::collection::vec(arb_node(), 0..5)
            .prop_flat_map(|nodes| (Just(nodes.clone()), arb_pod_on(&nodes)))
    ) {
        if let Some(n) = &pod.node_name {
            let node = nodes.iter().find(|x| &x.name == n);
            prop_assert!(node.is_some());
            if let Some(node) = node
                && !pod.is_terminal()
            {
                prop_assert!(pod.requests.fits_in(node.free()));
            }
        }
    }

    #[test]
    fn selectors_are_valid(sel in arb_label_selector()) {
        prop_assert!(sel.validate().is_ok(), "{sel}");
    }

    #[test]
    fn weights_and_counts_have_the_asked_shape(w in arb_weights(4), c in arb_workload_counts(3, 9)) {
        prop_assert!((1..=4).contains(&w.len()));
        prop_assert!(w.iter().any(|&x| x > 0));
        prop_assert_eq!(c.len(), 3);
        prop_assert!(c.iter().all(|&x| x <= 9));
    }
}

/// The benchmark-scale cluster: exact counts and heat, and (in release) well under 2 s.
/// Slow in debug builds: `cargo test --release -p placement-core --test generator -- --ignored`.
#[test]
#[ignore = "5,000 nodes: run in release with --ignored"]
fn large_cluster_shape_and_speed() {
    let started = std::time::Instant::now();
    let s = generate(&ClusterSpec::large());
    let elapsed = started.elapsed();
    if !cfg!(debug_assertions) {
        assert!(elapsed.as_secs_f64() < 2.0, "took {elapsed:?}");
    }
    let shape = cluster_shape(&s);
    assert_eq!((shape.nodes, shape.pods, shape.workloads), (5_000, 150_000, 10_000));
    assert_eq!(shape.nodes_per_zone.len(), 3);
    assert_eq!(shape.nodes_per_type.get("spot"), Some(&1_500));
    // 4 % of 5,000 hot, 10 % cold.
    assert_eq!((shape.hot_nodes, shape.cold_nodes), (200, 500));
    assert_never_overcommitted(&s);
}

mod exported_strategies {
    use placement_core::strategy::Strategy as Annotation;
    use placement_core::testing::{arb_rebalance_policy, arb_strategy};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arb_strategy_values_round_trip_and_apportion(s in arb_strategy()) {
            prop_assert_eq!(s.to_string().parse::<Annotation>().unwrap(), s.clone());
            prop_assert!(s.apportionment().is_ok());
        }

        #[test]
        fn arb_rebalance_policy_values_validate(p in arb_rebalance_policy()) {
            prop_assert!(p.validate().is_ok(), "{:?}", p.validate());
        }
    }
}
