//! The incremental index answers exactly like an index rebuilt from the final state, and like a naive
//! count over the pods, for any sequence of node and pod events.

use placement_core::group::{NodeGroup, group_of_pod};
use placement_core::index::{CountIndex, ZoneScope};
use placement_core::model::{Node, NodeBuilder, Pod, PodBuilder, PodPhase, Snapshot, WorkloadRef};
use placement_core::selector::LabelSelector;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Event {
    Node { id: u8, spot: bool, zone: u8 },
    DeleteNode { id: u8 },
    Pod { id: u8, workload: u8, revision: u8, node: Option<u8>, pending_spot: bool, phase: u8, tools: bool },
    DeletePod { id: u8 },
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0u8..5, any::<bool>(), 0u8..3).prop_map(|(id, spot, zone)| Event::Node { id, spot, zone }),
        (0u8..5).prop_map(|id| Event::DeleteNode { id }),
        (0u8..20, 0u8..3, 0u8..2, prop::option::of(0u8..6), any::<bool>(), 0u8..6, any::<bool>()).prop_map(
            |(id, workload, revision, node, pending_spot, phase, tools)| Event::Pod {
                id,
                workload,
                revision,
                node,
                pending_spot,
                phase,
                tools
            }
        ),
        (0u8..20).prop_map(|id| Event::DeletePod { id }),
    ]
}

fn node(id: u8, spot: bool, zone: u8) -> Node {
    NodeBuilder::new(format!("n{id}"))
        .label("type", if spot { "spot" } else { "ondemand" })
        .zone(format!("z{zone}"))
        .build()
}

#[allow(clippy::too_many_arguments)]
fn pod(id: u8, workload: u8, revision: u8, node: Option<u8>, pending_spot: bool, phase: u8, tools: bool) -> Pod {
    let mut b =
        PodBuilder::new("tools", format!("p{id}")).deployment(format!("w{workload}")).revision(format!("r{revision}"));
    b = match node {
        Some(n) => b.on_node(format!("n{n}")),
        None => b.pending().node_selector("type", if pending_spot { "spot" } else { "ondemand" }),
    };
    b = match phase {
        0 => b.phase(PodPhase::Succeeded),
        1 => b.terminating(),
        _ => b,
    };
    if tools {
        b = b.label("tier", "tools");
    }
    b.build()
}

proptest! {
    #[test]
    fn incremental_equals_rebuilt(events in prop::collection::vec(arb_event(), 0..60)) {
        let scope = ZoneScope { namespace: "tools".into(), selector: LabelSelector::from_pairs([("tier", "tools")]), topology_key: placement_core::ZONE_LABEL.into() };
        let mut inc = CountIndex::new();
        let sid = inc.add_zone_scope(scope.clone(), []).unwrap();
        let mut nodes: BTreeMap<u8, Node> = BTreeMap::new();
        let mut pods: BTreeMap<u8, Pod> = BTreeMap::new();
        for e in events {
            match e {
                Event::Node { id, spot, zone } => { let n = node(id, spot, zone); inc.apply_node(&n); nodes.insert(id, n); }
                Event::DeleteNode { id } => { inc.delete_node(&format!("n{id}")); nodes.remove(&id); }
                Event::Pod { id, workload, revision, node, pending_spot, phase, tools } => {
                    let p = pod(id, workload, revision, node, pending_spot, phase, tools);
                    inc.apply_pod(&p); pods.insert(id, p);
                }
                Event::DeletePod { id } => { inc.delete_pod("tools", &format!("p{id}")); pods.remove(&id); }
            }
        }
        let snap = Snapshot::new(nodes.values().cloned().collect(), pods.values().cloned().collect(), vec![], vec![]);
        let mut rebuilt = CountIndex::new();
        // A second scope, over every pod of the namespace: registered before the events in `rebuilt`,
        // after them in `inc` (told which pods it covers).
        let everything = ZoneScope { selector: LabelSelector::default(), ..scope.clone() };
        let rid = rebuilt.add_zone_scope(scope.clone(), []).unwrap();
        let rid_all = rebuilt.add_zone_scope(everything.clone(), []).unwrap();
        rebuilt.reset(&snap);
        let covered: Vec<_> = snap.pods.iter().filter(|p| everything.covers(p)).map(|p| p.key()).collect();
        let sid_all = inc.add_zone_scope(everything, &covered).unwrap();
        let groups = vec![NodeGroup::label("type", "ondemand"), NodeGroup::label("type", "spot")];
        let lookup = |n: &str| snap.nodes.iter().find(|x| x.name == n).map(|x| &x.labels);
        for w in 0..3 {
            let wr = WorkloadRef::deployment("tools", format!("w{w}"));
            for rev in [Some("r0"), Some("r1"), None] {
                let mut naive = vec![0u32; 2];
                let mut total = 0u32;
                for p in snap.pods.iter().filter(|p| p.counts() && p.workload.as_ref() == Some(&wr) && (rev.is_none() || p.revision.as_deref() == rev)) {
                    total += 1;
                    if let Some(g) = group_of_pod(&groups, p, lookup) { naive[g] += 1; }
                }
                // In a group or not: the bound a table is sized by.
                prop_assert_eq!(inc.workload_pods(&wr, rev), total);
                prop_assert_eq!(rebuilt.workload_pods(&wr, rev), total);
                prop_assert_eq!(inc.group_counts(&wr, rev, &groups), naive.clone());
                let membership = inc.group_membership(&groups);
                prop_assert_eq!(inc.group_counts_with(&wr, rev, &groups, &membership), naive.clone());
                prop_assert_eq!(rebuilt.group_counts(&wr, rev, &groups), naive);
            }
        }
        prop_assert_eq!(inc.zone_counts(sid), rebuilt.zone_counts(rid));
        prop_assert_eq!(inc.zone_counts(sid_all), rebuilt.zone_counts(rid_all));
        // Nothing outlives its users: what the index holds is what one built from the final state holds.
        prop_assert_eq!(inc.interned_counts(), rebuilt.interned_counts());
        inc.remove_zone_scope(sid);
        prop_assert_eq!(inc.zone_counts(sid), None);
        prop_assert_eq!(inc.zone_counts(sid_all), rebuilt.zone_counts(rid_all));
        for n in &snap.nodes {
            let a = inc.node(&n.name).unwrap();
            prop_assert_eq!((a.requested, a.pod_count), (n.requested, n.pod_count), "node {}", n.name);
        }
        prop_assert_eq!(inc.nodes().count(), snap.nodes.len());
    }
}
