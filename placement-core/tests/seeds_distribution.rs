//! The README examples of Versprei and SmartScheduler, two of the tools placement replaces
//! (`docs/migration.md`), with the results `docs/semantics.md#2-weighted-distribution-with-base` gives,
//! including the ReplicaSet burst the originals got wrong.

use jiff::Timestamp;
use placement_core::admission::{DistributionRule, decide_distribution};
use placement_core::apportion::Fallback;
use placement_core::group::NodeGroup;
use placement_core::index::CountIndex;
use placement_core::ledger::{Ledger, Reservation};
use placement_core::model::{NodeBuilder, Pod, PodBuilder, Snapshot, WorkloadRef};
use placement_core::selector::LabelSelector;
use placement_core::strategy::Strategy;

fn cluster(label: &str, values: &[&str]) -> Snapshot {
    let nodes = values
        .iter()
        .flat_map(|v| {
            (0..3).map(move |i| {
                NodeBuilder::new(format!("{v}-{i}")).label(label, *v).allocatable(64_000, 256 << 30).build()
            })
        })
        .collect();
    Snapshot::new(nodes, vec![], vec![], vec![])
}

fn new_pod(i: usize) -> Pod {
    PodBuilder::new("default", format!("web-{i}")).deployment("web").revision("r1").pending().build()
}

/// Scale 0 -> sum(bursts): each burst is admitted entirely before its pods reach the index, as the
/// API server does for a ReplicaSet. Returns the final counts per group.
fn scale(snapshot: &Snapshot, rule: &DistributionRule, bursts: &[usize], use_ledger: bool) -> Vec<u32> {
    let mut index = CountIndex::from_snapshot(snapshot);
    let mut ledger = Ledger::new();
    let now = Timestamp::from_second(1_000).unwrap();
    let mut i = 0;
    for &burst in bursts {
        let mut admitted = Vec::new();
        for _ in 0..burst {
            let pod = new_pod(i);
            i += 1;
            let d = decide_distribution(&index, &ledger, rule, &pod).unwrap();
            let group = d.group_name.clone().expect("a group");
            if use_ledger {
                ledger.add(Reservation {
                    id: pod.name.clone(),
                    workload: pod.workload.clone().unwrap(),
                    revision: pod.revision.clone(),
                    group,
                    pod: Some(pod.key()),
                    expires: now + jiff::SignedDuration::from_secs(30),
                });
            }
            let mut placed = pod;
            placed.node_selector = d.node_selector;
            admitted.push(placed);
        }
        // The burst reaches the watch cache (pending, with its nodeSelector): confirm reservations.
        for pod in admitted {
            index.apply_pod(&pod);
            ledger.confirm(&pod.name, now);
        }
    }
    rule.counts(&index, &ledger, &WorkloadRef::deployment("default", "web"), Some("r1"))
}

#[test]
fn versprei_80_20_scales_to_exact_target_in_bursts() {
    let snap = cluster("type", &["default", "spot"]);
    let rule = versprei_80_20();
    assert_eq!(scale(&snap, &rule, &[1, 2, 4, 3], true), vec![8, 2]);
    assert_eq!(scale(&snap, &rule, &[1, 2, 4, 8, 5], true), vec![16, 4]);
    assert_eq!(scale(&snap, &rule, &[20], true), vec![16, 4]);
}

#[test]
fn without_reservations_a_burst_lands_in_one_group() {
    // The originals counted only what the cache had seen: every pod of a burst saw the same counts.
    let snap = cluster("type", &["default", "spot"]);
    let rule = versprei_80_20();
    assert_eq!(scale(&snap, &rule, &[10], false), vec![10, 0]);
}

/// The Versprei README's PodDistributor: 80 % on `type: default`, 20 % on `type: spot`.
fn versprei_80_20() -> DistributionRule {
    let group = |name: &str| NodeGroup::new(name, LabelSelector::from_pairs([("type", name)]));
    DistributionRule::new(vec![(group("default"), 80), (group("spot"), 20)], None, Fallback::Next).unwrap()
}

fn strategy(s: &str) -> DistributionRule {
    DistributionRule::from_strategy(&s.parse::<Strategy>().unwrap(), Fallback::Next).unwrap()
}

#[test]
fn smart_scheduler_readme_usage_example() {
    // "Result: 1 base + 2 ondemand + 3 spot = 6 total pods"
    let snap = cluster("node-type", &["ondemand", "spot"]);
    let rule = strategy("base=1,weight=1,nodeSelector=node-type:ondemand;weight=2,nodeSelector=node-type:spot");
    assert_eq!(scale(&snap, &rule, &[6], true), vec![3, 3]);
    assert_eq!(scale(&snap, &rule, &[1, 1, 1, 1, 1, 1], true), vec![3, 3]);
}

#[test]
fn smart_scheduler_example_1_base_two_then_one_to_three() {
    let snap = cluster("node-type", &["ondemand", "spot"]);
    let rule = strategy("base=2,weight=1,nodeSelector=node-type:ondemand;weight=3,nodeSelector=node-type:spot");
    // 2 base + 8 weighted at 1:3 = 2 + 6.
    assert_eq!(scale(&snap, &rule, &[10], true), vec![4, 6]);
    assert_eq!(scale(&snap, &rule, &[2], true), vec![2, 0], "the base comes first");
}

#[test]
fn smart_scheduler_example_2_multi_zone_keeps_both_pairs() {
    let rule = strategy(
        "base=1,weight=2,nodeSelector=zone:us-west-1a,node-type:ondemand;weight=1,nodeSelector=zone:us-west-1b,node-type:spot",
    );
    assert_eq!(rule.groups[0].selector.match_labels.len(), 2, "the original dropped the second pair");
    let nodes = vec![
        NodeBuilder::new("a-od").label("zone", "us-west-1a").label("node-type", "ondemand").build(),
        NodeBuilder::new("a-spot").label("zone", "us-west-1a").label("node-type", "spot").build(),
        NodeBuilder::new("b-spot").label("zone", "us-west-1b").label("node-type", "spot").build(),
    ];
    let snap = Snapshot::new(nodes, vec![], vec![], vec![]);
    // 1 base + 6 weighted at 2:1 = 1 + 4, and 2.
    assert_eq!(scale(&snap, &rule, &[7], true), vec![5, 2]);
}

#[test]
fn smart_scheduler_example_3_gpu() {
    let snap = cluster("accelerator", &["nvidia-tesla-k80", "nvidia-tesla-v100"]);
    let rule = strategy(
        "base=1,weight=1,nodeSelector=accelerator:nvidia-tesla-k80;weight=2,nodeSelector=accelerator:nvidia-tesla-v100",
    );
    // 1 base on K80, then the weighted part prefers V100 1:2: v100, k80, v100.
    assert_eq!(scale(&snap, &rule, &[4], true), vec![2, 2]);
    assert_eq!(scale(&snap, &rule, &[7], true), vec![3, 4]);
}
