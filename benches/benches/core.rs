//! placement-core at cluster scale: building the counting index, one admission decision (weighted and
//! zone), one full rebalance plan, and one tracking step, at 500, 1,000 and 5,000 nodes (30 pods per
//! node, 3 zones, on-demand and spot). Results and the command are in docs/performance.md.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use placement_core::admission::{DistributionRule, decide_distribution, decide_zone, zone_scope_key};
use placement_core::apportion::{Apportionment, Fallback};
use placement_core::group::NodeGroup;
use placement_core::index::{CountIndex, ZoneScope};
use placement_core::ledger::Ledger;
use placement_core::model::Snapshot;
use placement_core::rebalance::{PlanInput, RebalancePolicy, RebalanceState, observe, plan};
use placement_core::selector::LabelSelector;
use placement_core::taints::Toleration;
use placement_core::testing::{ClusterSpec, generate, largest_workload, pick_pending_pod, single_replica_workloads};
use placement_core::tracking::{TrackingPolicy, TrackingState, WeightRange, step};
use rust_decimal::Decimal;
use std::hint::black_box;
use std::time::Duration;

const SIZES: [usize; 3] = [500, 1_000, 5_000];

fn cluster(nodes: usize) -> Snapshot {
    generate(&ClusterSpec::scaled(nodes))
}

fn zone_scope(snapshot: &Snapshot) -> ZoneScope {
    let ns = single_replica_workloads(snapshot).first().map_or("default".to_string(), |w| w.workload.namespace.clone());
    ZoneScope { namespace: ns, selector: LabelSelector::default(), topology_key: placement_core::ZONE_LABEL.into() }
}

fn index_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("index_build");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for n in SIZES {
        let snap = cluster(n);
        let scope = zone_scope(&snap);
        g.bench_with_input(BenchmarkId::from_parameter(n), &snap, |b, snap| {
            b.iter_with_large_drop(|| {
                let mut index = CountIndex::new();
                index.add_zone_scope(scope.clone(), []).unwrap();
                index.reset(black_box(snap));
                index
            })
        });
    }
    g.finish();
}

fn decisions(c: &mut Criterion) {
    let mut g = c.benchmark_group("decision");
    for n in SIZES {
        let snap = cluster(n);
        let mut index = CountIndex::new();
        let scope = index.add_zone_scope(zone_scope(&snap), []).unwrap();
        index.reset(&snap);
        let ledger = Ledger::new();
        let rule = DistributionRule::new(
            vec![
                (NodeGroup::new("ondemand", LabelSelector::from_pairs([("node-type", "ondemand")])), 80),
                (NodeGroup::new("spot", LabelSelector::from_pairs([("node-type", "spot")])), 20),
            ],
            None,
            Fallback::Next,
        )
        .unwrap();
        // A typical workload (the median replica count of multi-replica Deployments) and the largest.
        let mut multi: Vec<_> = snap
            .workloads
            .iter()
            .filter(|w| w.replicas > 1 && w.workload.kind == placement_core::model::WorkloadKind::Deployment)
            .collect();
        multi.sort_by_key(|w| w.replicas);
        let median = multi[multi.len() / 2].workload.clone();
        let largest = largest_workload(&snap).expect("a workload").workload.clone();
        for (label, workload) in [("weighted", median), ("weighted_largest", largest)] {
            let mut pod = pick_pending_pod(&snap, &workload).expect("a pod");
            pod.tolerations.push(Toleration::exists("spot", None));
            pod.node_selector.clear();
            g.bench_with_input(BenchmarkId::new(label, n), &pod, |b, pod| {
                b.iter(|| decide_distribution(&index, &ledger, &rule, black_box(pod)).unwrap())
            });
        }
        let single = single_replica_workloads(&snap)
            .into_iter()
            .find(|w| w.workload.namespace == index.zone_scope(scope).unwrap().namespace)
            .expect("a single-replica workload");
        let mut zpod = pick_pending_pod(&snap, &single.workload).expect("a pod");
        zpod.node_selector.clear();
        zpod.required_affinity = None;
        let key = zone_scope_key(&zpod.namespace, "bench");
        g.bench_with_input(BenchmarkId::new("zone", n), &zpod, |b, pod| {
            b.iter(|| decide_zone(&index, &ledger, scope, &key, &[], black_box(pod)))
        });
    }
    g.finish();
}

fn rebalance(c: &mut Criterion) {
    let mut g = c.benchmark_group("rebalance_plan");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    let policy =
        RebalancePolicy { max_evictions_per_plan: 50, max_evictions_per_minute: 50, ..RebalancePolicy::default() };
    let now = "2026-11-24T12:00:00Z".parse().unwrap();
    for n in SIZES {
        let snap = cluster(n);
        let mut state = RebalanceState::default();
        for _ in 0..policy.observations_to_enter {
            state = observe(&policy, &state, &snap, now);
        }
        let hot = state.nodes.values().filter(|s| s.hot).count();
        let once = plan(&PlanInput { snapshot: &snap, policy: &policy, state: &state, slos: &[], classes: &[], now });
        eprintln!(
            "rebalance_plan/{n}: {hot} hot nodes; the plan makes {} evictions ({} skipped), stop: {}",
            once.evictions.len(),
            once.skipped.len(),
            once.stop
        );
        g.bench_with_input(BenchmarkId::from_parameter(n), &snap, |b, snap| {
            b.iter(|| {
                plan(&PlanInput {
                    snapshot: black_box(snap),
                    policy: &policy,
                    state: &state,
                    slos: &[],
                    classes: &[],
                    now,
                })
            })
        });
    }
    g.finish();
}

fn tracking(c: &mut Criterion) {
    let policy = TrackingPolicy {
        target_value: Decimal::from(1000),
        base_value: 8,
        minimum: 0,
        range: WeightRange::default(),
        cooldown_seconds: 300,
        deadband: 1,
        disable_scale_in: false,
        schedules: vec![placement_core::tracking::Schedule {
            time_zone: "Asia/Tokyo".into(),
            start: "22:00".into(),
            end: "06:00".into(),
            days: vec![],
            value: 4,
        }],
    }
    .compile()
    .unwrap();
    let now = "2026-11-24T12:00:00Z".parse().unwrap();
    let state = TrackingState::default();
    c.bench_function("tracking_step", |b| b.iter(|| step(&policy, &state, black_box(Decimal::new(30_005, 1)), 8, now)));
}

/// Building a strategy's cached sequence from nothing (what the first admission of a large workload
/// pays once, under the index lock), cold: a fresh `Apportionment` per iteration, up to 1,000, 5,000
/// and 20,000 pods. Weights as users write them, and the legal shapes (16 groups, weights ≤ 10,000)
/// that made Still's look-ahead slow: it ranges over about `W / w` sizes for a group of weight `w`.
fn apportion_worst_legal(c: &mut Criterion) {
    let mut g = c.benchmark_group("apportion_worst_legal");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let cases: [(&str, Vec<u32>); 6] = [
        ("80_20", vec![80, 20]),
        ("1_10000", vec![1, 10_000]),
        ("15x1_and_10000", [1; 15].into_iter().chain([10_000]).collect()),
        ("1_and_15x10000", std::iter::once(1).chain([10_000; 15]).collect()),
        (
            "16_near_primes",
            vec![9973, 9967, 9949, 9941, 9931, 9929, 9923, 9907, 9901, 9887, 9883, 9871, 9859, 9857, 9851, 1],
        ),
        // The slowest of 400 random legal shapes on this machine.
        ("16_random", vec![411, 2329, 1231, 1262, 932, 1276, 6479, 229, 3041, 169, 3191, 4264, 1597, 261, 6556, 970]),
    ];
    for (name, weights) in cases {
        let groups: Vec<(String, u32)> = weights.iter().enumerate().map(|(i, &w)| (format!("g{i}"), w)).collect();
        for n in [1_000u32, 5_000, 20_000] {
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                b.iter(|| Apportionment::new(groups.clone(), None).unwrap().target(black_box(n)));
            });
        }
    }
    g.finish();
}

criterion_group!(benches, index_build, decisions, rebalance, tracking, apportion_worst_legal);
criterion_main!(benches);
