//! Embedding placement-core in a Rust program: build a snapshot with the builders, then ask for a
//! weighted admission decision, a zone decision, a rebalance plan and a traffic weight. Every answer
//! carries its reason.
//!
//! `cargo run -p placement-examples --example embed`

use placement_core::admission::{DistributionRule, decide_distribution, decide_zone, zone_scope_key};
use placement_core::apportion::Fallback;
use placement_core::index::{CountIndex, ZoneScope};
use placement_core::ledger::Ledger;
use placement_core::model::{NodeBuilder, PodBuilder, Snapshot};
use placement_core::rebalance::{PlanInput, RebalancePolicy, RebalanceState, observe, plan};
use placement_core::selector::LabelSelector;
use placement_core::strategy::Strategy;
use placement_core::tracking::{TrackingPolicy, TrackingState, WeightRange, parse_metric, step};
use rust_decimal::Decimal;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gi = 1u64 << 30;
    let mut nodes = Vec::new();
    for zone in ["a", "b"] {
        nodes.push(
            NodeBuilder::new(format!("od-{zone}"))
                .zone(zone)
                .label("node-type", "ondemand")
                .usage(1000, 4 * gi)
                .build(),
        );
        nodes.push(
            NodeBuilder::new(format!("spot-{zone}")).zone(zone).label("node-type", "spot").usage(500, 2 * gi).build(),
        );
    }
    // A busy on-demand node in zone a.
    nodes[0].usage = Some(placement_core::resources::Resources::new(3600, 15 * gi));
    let pods = (0..4)
        .map(|i| {
            PodBuilder::new("shop", format!("api-{i}"))
                .deployment("api")
                .revision("r1")
                .on_node("od-a")
                .requests(500, gi)
                .usage(800, 3 * gi)
                .build()
        })
        .collect();
    let snapshot = Snapshot::new(nodes, pods, vec![], vec![]);

    // Weighted admission from the SmartScheduler annotation.
    let mut index = CountIndex::new();
    let scope = ZoneScope {
        namespace: "tools".into(),
        selector: LabelSelector::default(),
        topology_key: placement_core::ZONE_LABEL.into(),
    };
    let scope = index.add_zone_scope(scope, [])?;
    index.reset(&snapshot);
    let ledger = Ledger::new();
    let strategy: Strategy =
        "base=1,weight=1,nodeSelector=node-type:ondemand;weight=2,nodeSelector=node-type:spot".parse()?;
    let rule = DistributionRule::from_strategy(&strategy, Fallback::Next)?;
    let pod = PodBuilder::new("shop", "api-new").deployment("api").revision("r1").pending().build();
    let d = decide_distribution(&index, &ledger, &rule, &pod)?;
    println!("weighted: {:?} because {}", d.group_name, d.reason);

    // Least-loaded zone for a single-replica tool.
    let tool = PodBuilder::new("tools", "grafana-0").deployment("grafana").pending().build();
    let z = decide_zone(&index, &ledger, scope, &zone_scope_key("tools", "tools"), &[], &tool);
    println!("zone: {:?} because {}", z.zone, z.reason);

    // A rebalance plan (dry run by default), after enough observations to call a node hot.
    let policy = RebalancePolicy { hot_threshold: 0.75, ..RebalancePolicy::default() };
    let now = "2026-11-24T12:00:00Z".parse()?;
    let mut state = RebalanceState::default();
    for _ in 0..policy.observations_to_enter {
        state = observe(&policy, &state, &snapshot, now);
    }
    let p = plan(&PlanInput { snapshot: &snapshot, policy: &policy, state: &state, slos: &[], classes: &[], now });
    println!("plan: sigma {:.3} -> {:.3}, stopped: {}", p.sigma_before, p.sigma_after, p.stop);
    for e in &p.evictions {
        println!("  evict {}", e.reason);
    }

    // A traffic weight from a Prometheus value.
    let tracking = TrackingPolicy {
        target_value: Decimal::from(1000),
        base_value: 8,
        minimum: 0,
        range: WeightRange::default(),
        cooldown_seconds: 300,
        deadband: 0,
        disable_scale_in: false,
        schedules: vec![],
    }
    .compile()?;
    let t = step(&tracking, &TrackingState::default(), parse_metric("3000")?, 8, now);
    println!("weight: {:?} because {}", t.apply, t.reason);
    Ok(())
}
