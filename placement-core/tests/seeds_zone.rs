//! The Single Pod AZ Balancer, done right: zones learned from nodes, the least-loaded zone
//! chosen with ties to the lowest name, terminated pods and other namespaces not counted, pinned pods
//! left alone.

use placement_core::admission::{decide_zone, zone_scope_key};
use placement_core::index::{CountIndex, ScopeId, ZoneScope};
use placement_core::ledger::Ledger;
use placement_core::model::{NodeBuilder, PodBuilder, PodPhase, Snapshot};
use placement_core::selector::LabelSelector;

const ZONE: &str = placement_core::ZONE_LABEL;

fn setup(snapshot: &Snapshot) -> (CountIndex, ScopeId) {
    let mut index = CountIndex::new();
    let scope = ZoneScope { namespace: "tools".into(), selector: LabelSelector::default(), topology_key: ZONE.into() };
    let scope = index.add_zone_scope(scope, []).unwrap();
    index.reset(snapshot);
    (index, scope)
}

fn three_zones() -> Snapshot {
    let nodes = ["a", "b", "c"].iter().map(|z| NodeBuilder::new(format!("n-{z}")).zone(*z).build()).collect();
    Snapshot::new(nodes, vec![], vec![], vec![])
}

/// Create single-replica Deployments one at a time; each pod is bound in its zone before the next.
fn place(index: &mut CountIndex, scope: ScopeId, names: &[&str]) -> Vec<String> {
    let key = zone_scope_key("tools", "balancer");
    let ledger = Ledger::new();
    names
        .iter()
        .map(|name| {
            let pod = PodBuilder::new("tools", format!("{name}-x")).deployment(*name).pending().build();
            let d = decide_zone(index, &ledger, scope, &key, &[], &pod);
            let zone = d.zone.expect("a zone");
            index.apply_pod(
                &PodBuilder::new("tools", format!("{name}-x")).deployment(*name).on_node(format!("n-{zone}")).build(),
            );
            zone
        })
        .collect()
}

#[test]
fn single_replica_deployments_spread_over_zones() {
    let (mut index, scope) = setup(&three_zones());
    assert_eq!(place(&mut index, scope, &["a1", "a2", "a3", "a4", "a5"]), vec!["a", "b", "c", "a", "b"]);
}

#[test]
fn a_new_zone_gets_the_next_pod() {
    let (mut index, scope) = setup(&three_zones());
    place(&mut index, scope, &["x1", "x2", "x3"]);
    index.apply_node(&NodeBuilder::new("n-d").zone("d").build());
    assert_eq!(place(&mut index, scope, &["x4"]), vec!["d"]);
}

#[test]
fn zones_come_from_nodes_not_pods() {
    // A pod pending with a selector for a zone that has no node does not create a domain.
    let mut snap = three_zones();
    snap.pods.push(PodBuilder::new("tools", "ghost").deployment("ghost").pending().node_selector(ZONE, "zz").build());
    let (mut index, scope) = setup(&snap);
    assert_eq!(place(&mut index, scope, &["y1", "y2", "y3"]), vec!["a", "b", "c"]);
}

#[test]
fn terminated_pods_and_other_namespaces_do_not_count() {
    let mut snap = three_zones();
    snap.pods
        .push(PodBuilder::new("tools", "done").deployment("done").on_node("n-a").phase(PodPhase::Succeeded).build());
    snap.pods.push(PodBuilder::new("tools", "leaving").deployment("leaving").on_node("n-a").terminating().build());
    snap.pods.push(PodBuilder::new("other", "busy").deployment("busy").on_node("n-a").build());
    snap.recompute_requested();
    let (mut index, scope) = setup(&snap);
    assert_eq!(place(&mut index, scope, &["z1"]), vec!["a"]);
}

#[test]
fn a_zone_without_a_ready_node_is_skipped() {
    let snap = Snapshot::new(
        vec![
            NodeBuilder::new("n-a").zone("a").not_ready().build(),
            NodeBuilder::new("n-b").zone("b").build(),
            NodeBuilder::new("n-c").zone("c").unschedulable().build(),
        ],
        vec![],
        vec![],
        vec![],
    );
    let (mut index, scope) = setup(&snap);
    assert_eq!(place(&mut index, scope, &["w1", "w2"]), vec!["b", "b"]);
}

#[test]
fn a_pod_that_pins_its_zone_is_left_alone() {
    let (index, scope) = setup(&three_zones());
    let pod = PodBuilder::new("tools", "j").deployment("j").pending().node_selector(ZONE, "c").build();
    let d = decide_zone(&index, &Ledger::new(), scope, &zone_scope_key("tools", "b"), &[], &pod);
    assert_eq!(d.zone, None);
    assert!(d.reason.contains("already pins zone c"));
}
