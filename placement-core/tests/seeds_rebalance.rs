//! The Testing Playbook of the Rebalancer Operator's README as named tests: dry-run by default, budget
//! enforcement, PDB compliance, node class preference and priority guard rails — plus the basics of a
//! good plan.

use jiff::Timestamp;
use placement_core::model::{
    NodeBuilder, Pdb, Pod, PodBuilder, SYSTEM_CLUSTER_CRITICAL, Snapshot, Workload, WorkloadRef,
};
use placement_core::rebalance::{
    NodeClass, Plan, PlanInput, RebalancePolicy, RebalanceState, SkipReason, WorkloadSlo, observe, plan,
};
use placement_core::selector::LabelSelector;

const GI: u64 = 1 << 30;

fn now() -> Timestamp {
    "2026-11-24T12:00:00Z".parse().unwrap()
}

/// One hot node (`hot`) and three idle ones; `pods` run on the hot node.
fn cluster(pods: Vec<Pod>, extra_nodes: Vec<placement_core::model::Node>) -> Snapshot {
    let usage: u64 = pods.iter().map(|p| p.usage.unwrap().cpu_millis).sum();
    let mem: u64 = pods.iter().map(|p| p.usage.unwrap().memory_bytes).sum();
    let mut nodes = vec![NodeBuilder::new("hot").allocatable(8000, 32 * GI).usage(usage + 500, mem + 2 * GI).build()];
    for i in 1..=3 {
        nodes.push(NodeBuilder::new(format!("idle-{i}")).allocatable(8000, 32 * GI).usage(800, 3 * GI).build());
    }
    nodes.extend(extra_nodes);
    let workloads = ["web", "api"]
        .iter()
        .map(|w| Workload {
            workload: WorkloadRef::deployment("apps", *w),
            replicas: 10,
            max_unavailable: 5,
            labels: Default::default(),
            annotations: Default::default(),
        })
        .collect();
    Snapshot::new(nodes, pods, vec![], workloads)
}

fn busy(name: &str, workload: &str) -> Pod {
    PodBuilder::new("apps", name)
        .deployment(workload)
        .label("app", workload)
        .on_node("hot")
        .requests(1000, 2 * GI)
        .usage(1500, 6 * GI)
        .build()
}

fn run(snapshot: &Snapshot, policy: &RebalancePolicy, slos: &[WorkloadSlo], classes: &[NodeClass]) -> Plan {
    let mut state = RebalanceState::default();
    for _ in 0..policy.observations_to_enter {
        state = observe(policy, &state, snapshot, now());
    }
    plan(&PlanInput { snapshot, policy, state: &state, slos, classes, now: now() })
}

fn policy() -> RebalancePolicy {
    RebalancePolicy { target_sigma: 0.01, workload_backoff_seconds: 0, ..RebalancePolicy::default() }
}

#[test]
fn dry_run_is_the_default_and_the_plan_lowers_sigma() {
    let snap = cluster((0..4).map(|i| busy(&format!("web-{i}"), "web")).collect(), vec![]);
    let p = run(&snap, &policy(), &[], &[]);
    assert!(p.dry_run);
    assert!(!p.evictions.is_empty());
    assert!(p.sigma_after < p.sigma_before);
    for e in &p.evictions {
        assert_eq!(e.from, "hot");
        assert!(e.to.starts_with("idle-"));
        assert!(e.reason.contains("on hot node hot"), "{}", e.reason);
    }
}

#[test]
fn budget_enforcement_workload_slo_one_per_hour() {
    let snap =
        cluster(vec![busy("api-1", "api"), busy("api-2", "api"), busy("api-3", "api"), busy("api-4", "api")], vec![]);
    let slo = WorkloadSlo {
        name: "prod-api".into(),
        namespace: "apps".into(),
        selector: LabelSelector::from_pairs([("app", "api")]),
        max_disruptions_per_hour: 1,
        allow_stateful: false,
        allow_controller_kinds: Vec::new(),
        empty_dir_is_scratch: false,
    };
    let p = run(&snap, &policy(), &[slo], &[]);
    assert_eq!(p.evictions.len(), 1, "{:#?}", p.evictions);
    let blocked: Vec<_> = p.skipped.iter().filter(|s| matches!(s.reason, SkipReason::SloBudget { .. })).collect();
    assert!(!blocked.is_empty());
    assert!(blocked[0].why.contains("budget exhausted"), "{}", blocked[0].why);
}

#[test]
fn pdb_with_no_disruptions_allowed_is_respected() {
    let mut snap = cluster((0..4).map(|i| busy(&format!("web-{i}"), "web")).collect(), vec![]);
    snap.pdbs.push(Pdb {
        namespace: "apps".into(),
        name: "web".into(),
        selector: LabelSelector::from_pairs([("app", "web")]),
        disruptions_allowed: 0,
    });
    let p = run(&snap, &policy(), &[], &[]);
    assert!(p.evictions.is_empty());
    assert!(p.skipped.iter().all(|s| matches!(s.reason, SkipReason::PdbExhausted { .. })), "{:#?}", p.skipped);
    // One disruption allowed: exactly one eviction.
    snap.pdbs[0].disruptions_allowed = 1;
    assert_eq!(run(&snap, &policy(), &[], &[]).evictions.len(), 1);
}

#[test]
fn node_class_preference_biases_the_destination() {
    let arm = |i: u32| {
        NodeBuilder::new(format!("arm-{i}"))
            .label("arch", "arm64")
            .allocatable(8000, 32 * GI)
            .usage(800, 3 * GI)
            .build()
    };
    let snap = cluster((0..4).map(|i| busy(&format!("web-{i}"), "web")).collect(), vec![arm(1), arm(2), arm(3)]);
    let prefer_arm = [
        NodeClass { name: "arm".into(), selector: LabelSelector::from_pairs([("arch", "arm64")]), weight: 100 },
        NodeClass { name: "rest".into(), selector: LabelSelector::default(), weight: 40 },
    ];
    let p = run(&snap, &policy(), &[], &prefer_arm);
    assert!(!p.evictions.is_empty());
    assert!(p.evictions.iter().all(|e| e.to.starts_with("arm-")), "{:#?}", p.evictions);
    let never_arm =
        [NodeClass { name: "arm".into(), selector: LabelSelector::from_pairs([("arch", "arm64")]), weight: 0 }];
    let p = run(&snap, &policy(), &[], &never_arm);
    assert!(p.evictions.iter().all(|e| e.to.starts_with("idle-")), "weight 0 is never a target");
}

#[test]
fn priority_guardrails_filter_system_critical_pods() {
    let critical = PodBuilder::new("kube-system", "dns")
        .deployment("coredns")
        .on_node("hot")
        .priority(SYSTEM_CLUSTER_CRITICAL)
        .requests(1000, GI)
        .usage(6500, 26 * GI)
        .build();
    let snap = cluster(vec![critical], vec![]);
    let p = run(&snap, &policy(), &[], &[]);
    assert!(p.evictions.is_empty());
    assert_eq!(p.skipped[0].reason.metric_label(), "critical");
}

#[test]
fn cluster_rate_is_a_time_window_across_passes() {
    let snap = cluster((0..6).map(|i| busy(&format!("web-{i}"), "web")).collect(), vec![]);
    let pol = RebalancePolicy { max_evictions_per_minute: 2, node_backoff_seconds: 0, ..policy() };
    let mut state = RebalanceState::default();
    for _ in 0..pol.observations_to_enter {
        state = observe(&pol, &state, &snap, now());
    }
    let first = plan(&PlanInput { snapshot: &snap, policy: &pol, state: &state, slos: &[], classes: &[], now: now() });
    assert_eq!(first.evictions.len(), 2);
    state.record(first.records());
    // 30 s later (a new reconcile), the window still holds both evictions.
    let later = now() + jiff::SignedDuration::from_secs(30);
    let second = plan(&PlanInput { snapshot: &snap, policy: &pol, state: &state, slos: &[], classes: &[], now: later });
    assert!(second.evictions.is_empty());
    assert!(matches!(second.stop, placement_core::rebalance::StopReason::Budget { .. }));
}

#[test]
fn backoff_is_keyed_by_workload_not_pod_name() {
    let snap = cluster((0..4).map(|i| busy(&format!("web-new-{i}"), "web")).collect(), vec![]);
    let pol = RebalancePolicy { workload_backoff_seconds: 600, node_backoff_seconds: 0, ..policy() };
    let mut state = RebalanceState::default();
    for _ in 0..pol.observations_to_enter {
        state = observe(&pol, &state, &snap, now());
    }
    state.record([placement_core::rebalance::EvictionRecord {
        at: now() - jiff::SignedDuration::from_secs(60),
        pod: placement_core::model::PodKey { namespace: "apps".into(), name: "web-old-name".into() },
        workload: Some(WorkloadRef::deployment("apps", "web")),
        from: "elsewhere".into(),
        to: "hot".into(),
        slo: None,
    }]);
    let p = plan(&PlanInput { snapshot: &snap, policy: &pol, state: &state, slos: &[], classes: &[], now: now() });
    assert!(p.evictions.is_empty());
    assert!(p.skipped.iter().all(|s| s.reason.metric_label() == "workload_backoff"), "{:#?}", p.skipped);
}

#[test]
fn the_default_min_improvement_still_moves_pods_on_a_5000_node_cluster() {
    // 250 hot nodes among 5,000 (sigma well above the target): one move changes the cluster-wide sigma
    // by ~1/n, far below the default 0.001, yet relieving those nodes is exactly the job. The gain is
    // counted as the drop of n * sigma^2, which one move changes by the same amount whatever n is.
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for h in 0..250 {
        let node = format!("hot-{h}");
        for i in 0..4 {
            let pod = PodBuilder::new("apps", format!("web-{h}-{i}"))
                .deployment("web")
                .label("app", "web")
                .on_node(&node)
                .requests(1000, 2 * GI)
                .usage(1500, 6 * GI)
                .build();
            pods.push(pod);
        }
        nodes.push(NodeBuilder::new(node).allocatable(8000, 32 * GI).usage(6500, 26 * GI).build());
    }
    for i in 250..5_000 {
        nodes.push(NodeBuilder::new(format!("idle-{i}")).allocatable(8000, 32 * GI).usage(800, 3 * GI).build());
    }
    let workloads = vec![Workload {
        workload: WorkloadRef::deployment("apps", "web"),
        replicas: 1000,
        max_unavailable: 100,
        labels: Default::default(),
        annotations: Default::default(),
    }];
    let snap = Snapshot::new(nodes, pods, vec![], workloads);
    let policy = RebalancePolicy { workload_backoff_seconds: 0, ..RebalancePolicy::default() };
    let p = run(&snap, &policy, &[], &[]);
    assert!(!p.evictions.is_empty(), "stopped with: {}", p.stop);
    assert!(p.sigma_after < p.sigma_before);
    let per_move = (p.sigma_before - p.sigma_after) / p.evictions.len() as f64;
    assert!(per_move < policy.min_improvement, "each move lowers sigma by {per_move}, below 0.001");
}

/// The largest backoffs a policy can hold (whatever a CRD's schema let through) are arithmetic, not a
/// crash: the operator once panicked on `workloadBackoff: 999999999999h` and crash-looped.
#[test]
fn the_largest_backoffs_mean_never_again_not_a_panic() {
    let snap = cluster((0..4).map(|i| busy(&format!("web-new-{i}"), "web")).collect(), vec![]);
    for (workload, node) in [(u64::MAX, 0), (0, u64::MAX), (u64::MAX, u64::MAX), (i64::MAX as u64, i64::MAX as u64)] {
        let pol = RebalancePolicy { workload_backoff_seconds: workload, node_backoff_seconds: node, ..policy() };
        let mut state = RebalanceState::default();
        for _ in 0..pol.observations_to_enter {
            state = observe(&pol, &state, &snap, now());
        }
        state.record([placement_core::rebalance::EvictionRecord {
            at: now() - jiff::SignedDuration::from_secs(60),
            pod: placement_core::model::PodKey { namespace: "apps".into(), name: "web-old".into() },
            workload: Some(WorkloadRef::deployment("apps", "web")),
            from: "hot".into(),
            to: "cold".into(),
            slo: None,
        }]);
        // History is kept for the longer backoff: with u64::MAX it once wrapped to -1 s and forgot it all.
        state = observe(&pol, &state, &snap, now());
        assert_eq!(state.history.len(), 1, "backoffs {workload}/{node}");
        let p = plan(&PlanInput { snapshot: &snap, policy: &pol, state: &state, slos: &[], classes: &[], now: now() });
        assert!(p.evictions.is_empty(), "backoffs {workload}/{node}: {:#?}", p.evictions);
        assert!(
            p.skipped.iter().all(|s| ["workload_backoff", "node_backoff"].contains(&s.reason.metric_label())),
            "{:#?}",
            p.skipped
        );
    }
}

/// Among equal moves the lower priority goes first, then namespace and name: the plan is the same
/// whatever order the pods are listed in (the candidates used to be taken in swap_remove order).
#[test]
fn equal_moves_evict_the_lower_priority_first_then_in_name_order() {
    let pod = |name: &str, priority: i32| {
        PodBuilder::new("apps", name)
            .deployment("web")
            .on_node("hot")
            .requests(1000, 2 * GI)
            .usage(1500, 6 * GI)
            .priority(priority)
            .build()
    };
    let pods = vec![pod("web-a", 100), pod("web-b", 0), pod("web-c", 100), pod("web-d", 0), pod("web-e", 50)];
    let pol = RebalancePolicy { max_evictions_per_plan: 5, max_evictions_per_minute: 5, ..policy() };
    let want = ["web-b", "web-d", "web-e", "web-a", "web-c"];
    for rotation in 0..pods.len() {
        let mut listed = pods.clone();
        listed.rotate_left(rotation);
        listed.swap(0, rotation % 2 + 1);
        let p = run(&cluster(listed, vec![]), &pol, &[], &[]);
        let order: Vec<&str> = p.evictions.iter().map(|e| e.pod.name.as_str()).collect();
        assert!(order.len() >= 3, "{:#?}", p.stop);
        assert_eq!(order, want[..order.len()], "rotation {rotation}");
    }
}
