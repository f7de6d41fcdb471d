//! The plan never violates a filter or budget, never raises sigma, and never picks an infeasible target.

use jiff::Timestamp;
use placement_core::fit;
use placement_core::model::{
    LocalVolume, Node, NodeBuilder, Pdb, Pod, PodBuilder, SYSTEM_CLUSTER_CRITICAL, Snapshot, Workload, WorkloadRef,
};
use placement_core::rebalance::{PlanInput, RebalancePolicy, RebalanceState, never_evict, observe, plan};
use placement_core::selector::LabelSelector;
use placement_core::taints::{Effect, Taint, Toleration};
use proptest::prelude::*;
use std::collections::HashMap;

const GI: u64 = 1 << 30;

#[derive(Clone, Debug)]
struct PodSeed {
    node: usize,
    workload: u8,
    kind: u8,
    cpu: u64,
    mem: u64,
    tolerates: bool,
}

fn arb_cluster() -> impl Strategy<Value = Snapshot> {
    let nodes = prop::collection::vec((prop::sample::select(vec![4000u64, 8000, 16000]), any::<bool>(), 0u8..10), 2..9);
    let pods = prop::collection::vec((0usize..9, 0u8..4, 0u8..12, 100u64..3000, 1u64..6, any::<bool>()), 0..40);
    let pdbs = prop::collection::vec((0u8..4, 0u32..3), 0..3);
    (nodes, pods, pdbs).prop_map(|(nodes, pods, pdbs)| {
        let k = nodes.len();
        let node_objs: Vec<Node> = nodes
            .iter()
            .enumerate()
            .map(|(i, (cpu, tainted, flag))| {
                let mut b = NodeBuilder::new(format!("n{i}")).allocatable(*cpu, cpu / 1000 * 4 * GI);
                if *tainted {
                    b = b.taint(Taint::new("spot", "true", Effect::NoSchedule));
                }
                if *flag == 0 {
                    b = b.not_ready();
                }
                if *flag == 1 {
                    b = b.unschedulable();
                }
                b.build()
            })
            .collect();
        let seeds: Vec<PodSeed> = pods
            .into_iter()
            .map(|(node, workload, kind, cpu, mem, tolerates)| PodSeed {
                node: node % k,
                workload,
                kind,
                cpu,
                mem,
                tolerates,
            })
            .collect();
        let mut used: HashMap<usize, (u64, u64)> = HashMap::new();
        let mut pod_objs = Vec::new();
        for (i, s) in seeds.iter().enumerate() {
            let alloc = node_objs[s.node].allocatable;
            let e = used.entry(s.node).or_default();
            let (cpu, mem) = (s.cpu / 2, s.mem * GI / 2);
            if e.0 + cpu > alloc.cpu_millis || e.1 + mem > alloc.memory_bytes {
                continue;
            }
            e.0 += cpu;
            e.1 += mem;
            let name = format!("p{i}");
            let w = format!("w{}", s.workload);
            let mut b = PodBuilder::new("apps", &name)
                .on_node(format!("n{}", s.node))
                .requests(cpu, mem)
                .usage(s.cpu, s.mem * GI)
                .label("app", &w);
            b = match s.kind {
                0 => b.daemonset("ds"),
                1 => b.mirror(),
                2 => b,
                3 => b.job("j"),
                4 => b.statefulset(&w),
                5 => b.deployment(&w).priority(SYSTEM_CLUSTER_CRITICAL),
                6 => b.deployment(&w).annotation("placement.dev/pinned", "true"),
                7 => b.deployment(&w).volume(LocalVolume::HostPath),
                8 => b.deployment(&w).volume(LocalVolume::EmptyDir { size_limit: None, used: None }),
                _ => b.deployment(&w),
            };
            if s.tolerates {
                b = b.toleration(Toleration::exists("spot", None));
            }
            pod_objs.push(b.build());
        }
        // Node usage = system + pods' usage, capped at allocatable.
        let mut nodes_out = node_objs;
        for n in nodes_out.iter_mut() {
            let (c, m) = pod_objs
                .iter()
                .filter(|p| p.node_name.as_deref() == Some(&n.name))
                .fold((200u64, GI), |(c, m), p| (c + p.usage.unwrap().cpu_millis, m + p.usage.unwrap().memory_bytes));
            n.usage = Some(placement_core::resources::Resources::new(
                c.min(n.allocatable.cpu_millis),
                m.min(n.allocatable.memory_bytes),
            ));
        }
        let pdbs = pdbs
            .into_iter()
            .map(|(w, allowed)| Pdb {
                namespace: "apps".into(),
                name: format!("pdb-w{w}"),
                selector: LabelSelector::from_pairs([("app", format!("w{w}"))]),
                disruptions_allowed: allowed,
            })
            .collect();
        let workloads = (0..4)
            .map(|w| Workload {
                workload: WorkloadRef::deployment("apps", format!("w{w}")),
                replicas: 10,
                max_unavailable: 1 + w as u32 % 3,
                labels: Default::default(),
                annotations: Default::default(),
            })
            .collect();
        Snapshot::new(nodes_out, pod_objs, pdbs, workloads)
    })
}

fn arb_policy() -> impl Strategy<Value = RebalancePolicy> {
    (0.5f64..0.9, 1u32..6, 1u32..8, prop::option::of(1u32..4), 0.0f64..0.1).prop_map(
        |(hot, per_minute, per_plan, per_ns, target_sigma)| RebalancePolicy {
            hot_threshold: hot,
            cold_threshold: hot / 2.0,
            observations_to_enter: 1,
            max_evictions_per_minute: per_minute,
            max_evictions_per_plan: per_plan,
            max_evictions_per_namespace_per_hour: per_ns,
            target_sigma,
            workload_backoff_seconds: 0,
            node_backoff_seconds: 0,
            ..RebalancePolicy::default()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn plans_are_safe(snapshot in arb_cluster(), policy in arb_policy()) {
        let now: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        let state = observe(&policy, &RebalanceState::default(), &snapshot, now);
        let p = plan(&PlanInput { snapshot: &snapshot, policy: &policy, state: &state, slos: &[], classes: &[], now });
        prop_assert!(p.sigma_after <= p.sigma_before + 1e-12, "sigma raised");
        let limit = policy.max_evictions_per_plan.min(policy.max_evictions_per_minute) as usize;
        prop_assert!(p.evictions.len() <= limit);
        if let Some(per_ns) = policy.max_evictions_per_namespace_per_hour {
            prop_assert!(p.evictions.len() <= per_ns as usize);
        }
        let mut nodes: HashMap<String, Node> = snapshot.nodes.iter().map(|n| (n.name.clone(), n.clone())).collect();
        let pods: HashMap<String, &Pod> = snapshot.pods.iter().map(|p| (p.name.clone(), p)).collect();
        let mut per_workload: HashMap<WorkloadRef, u32> = HashMap::new();
        for e in &p.evictions {
            prop_assert!(e.sigma_after < e.sigma_before, "a step did not lower sigma");
            let pod = pods[&e.pod.name];
            prop_assert!(never_evict(pod, &policy, &[]).is_none(), "filtered pod evicted: {}", e.pod);
            prop_assert!(state.nodes[&e.from].hot, "source not hot");
            prop_assert!(!state.nodes[&e.to].hot, "target hot");
            let target = nodes.get(&e.to).unwrap().clone();
            prop_assert!(fit::check(&target, pod).is_ok(), "infeasible target {}: {:?}", e.to, fit::check(&target, pod));
            let t = nodes.get_mut(&e.to).unwrap();
            t.requested += pod.requests;
            t.pod_count += 1;
            let w = pod.workload.clone().unwrap();
            *per_workload.entry(w).or_default() += 1;
        }
        for pdb in &snapshot.pdbs {
            let n = p.evictions.iter().filter(|e| pdb.covers(pods[&e.pod.name])).count() as u32;
            prop_assert!(n <= pdb.disruptions_allowed, "PDB {} exceeded", pdb.name);
        }
        for (w, n) in per_workload {
            let max = snapshot.workload(&w).map_or(1, |x| x.max_unavailable);
            prop_assert!(n <= max, "maxUnavailable of {} exceeded", w);
        }
    }
}
