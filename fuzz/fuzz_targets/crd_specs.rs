//! Every placement CR on arbitrary YAML, never a panic. The first byte picks what is read:
//!
//! * a spec of each kind: deserializing and converting (`to_core`) gives a value or an error naming
//!   the field;
//! * a whole object, spec and status, as a watch delivers it: the status is decoded to the core state
//!   the controllers keep (rebalancer state and eviction history, tracking state, shared ledgers), and
//!   the controllers' arithmetic runs on it: an observation and a plan over a small hot cluster, a
//!   traffic-weight step, ledger liveness, all at a fixed `now` and at the ends of time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_core::model::{NodeBuilder, PodBuilder, Snapshot};
use placement_core::rebalance::{PlanInput, observe, plan};
use placement_kube::crd::{self, SharedLedger};

fn check<T: serde::de::DeserializeOwned>(text: &str, convert: impl Fn(&T) -> Result<(), String>) {
    if let Ok(spec) = serde_yaml_ng::from_str::<T>(text) {
        if let Err(e) = convert(&spec) {
            assert!(e.starts_with("spec"), "an error names the field: {e}");
        }
    }
}

/// The times every controller may run at: today, and the first and last the clock type holds.
fn nows() -> [jiff::Timestamp; 3] {
    ["2026-12-07T12:00:00Z".parse().unwrap(), jiff::Timestamp::MIN, jiff::Timestamp::MAX]
}

/// One hot node and three idle ones, four pods of one Deployment on the hot one.
fn hot_cluster() -> Snapshot {
    const GI: u64 = 1 << 30;
    let mut nodes = vec![NodeBuilder::new("hot").allocatable(8000, 32 * GI).usage(7500, 30 * GI).build()];
    for i in 0..3 {
        nodes.push(NodeBuilder::new(format!("idle-{i}")).allocatable(8000, 32 * GI).usage(800, 3 * GI).build());
    }
    let pods = (0..4)
        .map(|i| {
            let p = PodBuilder::new("apps", format!("web-{i}")).deployment("web").on_node("hot");
            p.requests(1000, 2 * GI).usage(1500, 6 * GI).build()
        })
        .collect();
    Snapshot::new(nodes, pods, vec![], vec![])
}

fn rebalance_policy(text: &str) {
    let Ok(object) = serde_yaml_ng::from_str::<crd::RebalancePolicy>(text) else { return };
    let Ok(policy) = object.spec.to_core() else { return };
    let mut state = object.status.map(|s| s.state.to_core()).unwrap_or_default();
    let snapshot = hot_cluster();
    for now in nows() {
        for _ in 0..policy.observations_to_enter.min(3) {
            state = observe(&policy, &state, &snapshot, now);
        }
        let input = PlanInput { snapshot: &snapshot, policy: &policy, state: &state, slos: &[], classes: &[], now };
        let planned = plan(&input);
        state.record(planned.records());
        let _ = crd::rebalance_policy::PersistedState::from_core(&state);
    }
}

fn traffic_weight(text: &str) {
    let Ok(object) = serde_yaml_ng::from_str::<crd::TrafficWeight>(text) else { return };
    let Ok(policy) = object.spec.to_core(8) else { return };
    let Ok(compiled) = policy.compile() else { return };
    let state = object.status.map(|s| s.tracking_state()).unwrap_or_default();
    for now in nows() {
        for current in ["0", "1.5", "79228162514264337593543950335"] {
            let _ = placement_core::tracking::step(&compiled, &state, current.parse().unwrap(), 8, now);
        }
    }
}

fn shared_ledger<T: SharedLedger + serde::de::DeserializeOwned>(text: &str) {
    let Ok(object) = serde_yaml_ng::from_str::<T>(text) else { return };
    let shared = object.shared_ledger();
    for now in nows() {
        let pruned = shared.pruned(now);
        let _ = placement_core::ledger::Ledger::from_state(pruned);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let s = |e: crd::CrdError| e.to_string();
    match kind % 10 {
        0 => check::<crd::ZoneBalancerSpec>(text, |x| x.to_core().map(drop).map_err(s)),
        1 => check::<crd::PodDistributionSpec>(text, |x| x.to_core("shop").map(drop).map_err(s)),
        2 => check::<crd::RebalancePolicySpec>(text, |x| x.to_core().map(drop).map_err(s)),
        3 => check::<crd::WorkloadSLOSpec>(text, |x| {
            let target = placement_core::selector::LabelSelector::from_pairs([("app", "api")]);
            x.to_core_with_target("shop", "api", Some(&target)).map(drop).map_err(s)
        }),
        4 => check::<crd::NodeClassSpec>(text, |x| x.to_core("class").map(drop).map_err(s)),
        5 => check::<crd::TrafficWeightSpec>(text, |x| x.to_core(8).map(drop).map_err(s)),
        6 => rebalance_policy(text),
        7 => traffic_weight(text),
        8 => shared_ledger::<crd::PodDistribution>(text),
        _ => shared_ledger::<crd::ZoneBalancer>(text),
    }
});
