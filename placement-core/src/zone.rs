//! Least-loaded zone for single-replica workloads (`docs/semantics.md#3-least-loaded-zone`): the Single
//! Pod AZ Balancer, done right.
//!
//! Domains are the zones of Ready, schedulable nodes — learned from nodes, never from pods — plus the
//! zones a `ZoneBalancer` declares, so that an autoscaled zone with no node yet still counts. A declared
//! zone without any node is feasible when a new node in it could run the pod (the autoscaler can add
//! one; the pod's own nodeSelector and required affinity must allow the zone, see
//! [`crate::fit::check_new_node`]); any other zone needs a node that fits the pod. The pod goes to the feasible zone with the fewest pods (seen plus reserved); ties
//! go to the lowest zone name. A pod that already pins a zone is left alone.

use crate::Labels;
use crate::group::{Feasibility, NodeGroup, first_fit, or_new_node};
use crate::model::{Node, Pod};
use serde::Serialize;
use std::collections::BTreeMap;

/// The zone a pod already pins through its nodeSelector or a single-term required affinity.
pub fn pinned_zone(pod: &Pod, topology_key: &str) -> Option<String> {
    pod.implied_node_labels().remove(topology_key)
}

/// The domains and their feasibility for `pod`, given each zone's nodes (`zones`, as the index keeps
/// them, by `topology_key`). A zone is a domain when one of its nodes is Ready and schedulable, or when
/// it is declared; a declared zone without any node is feasible when a new node in it could run the pod
/// (the autoscaler can add one). Within a zone the search stops at the first node that fits.
pub fn zone_feasibility<'a, N>(
    zones: impl IntoIterator<Item = (&'a str, N)>,
    declared: &[String],
    topology_key: &str,
    pod: &Pod,
) -> BTreeMap<String, Feasibility>
where
    N: Iterator<Item = &'a Node> + Clone,
{
    let mut out = BTreeMap::new();
    for (zone, nodes) in zones {
        let has_ready = nodes.clone().any(|n| n.ready && !n.unschedulable);
        if has_ready {
            out.insert(zone.to_string(), first_fit(nodes, pod));
        } else if declared.iter().any(|d| d == zone) {
            let why_not = Some("no Ready, schedulable node".to_string());
            out.insert(zone.to_string(), Feasibility { node: None, nodes: nodes.count(), why_not, new_node: false });
        }
    }
    for zone in declared {
        out.entry(zone.clone()).or_insert_with(|| {
            let autoscaled = NodeGroup::label(topology_key, zone).autoscaled(Vec::new());
            or_new_node(Feasibility::none(), &autoscaled, pod)
        });
    }
    out
}

/// One zone's load and feasibility.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneLoad {
    pub zone: String,
    /// Pods seen in the zone.
    pub pods: u32,
    /// Reservations in flight for the zone.
    pub reserved: u32,
    pub feasibility: Feasibility,
}

impl ZoneLoad {
    pub fn total(&self) -> u32 {
        self.pods.saturating_add(self.reserved)
    }
}

/// The chosen zone and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneChoice {
    /// `None`: no zone is feasible; leave the pod to the scheduler.
    pub zone: Option<String>,
    pub reason: String,
}

/// The feasible zone with the fewest pods; ties to the lowest name.
pub fn choose_zone(loads: &[ZoneLoad]) -> ZoneChoice {
    let best = loads
        .iter()
        .filter(|l| l.feasibility.feasible())
        .min_by(|a, b| a.total().cmp(&b.total()).then_with(|| a.zone.cmp(&b.zone)));
    let describe = |l: &ZoneLoad| {
        if !l.feasibility.feasible() {
            format!("{} {}", l.zone, l.feasibility)
        } else if l.reserved > 0 {
            format!("{} has {} ({} in flight)", l.zone, l.total(), l.reserved)
        } else {
            format!("{} has {}", l.zone, l.total())
        }
    };
    match best {
        Some(b) => {
            let others: Vec<String> = loads.iter().filter(|l| l.zone != b.zone).map(describe).collect();
            let mut reason = format!("zone {}: fewest pods ({})", b.zone, b.total());
            if !b.feasibility.feasible() || b.feasibility.nodes == 0 {
                reason.push_str(", no node yet (declared zone, assumed autoscaled)");
            }
            if !others.is_empty() {
                reason.push_str(&format!("; {}", others.join(", ")));
            }
            ZoneChoice { zone: Some(b.zone.clone()), reason }
        }
        None if loads.is_empty() => {
            ZoneChoice { zone: None, reason: "no zones: no Ready node carries the topology key".into() }
        }
        None => ZoneChoice {
            zone: None,
            reason: format!("no feasible zone: {}", loads.iter().map(describe).collect::<Vec<_>>().join(", ")),
        },
    }
}

/// The labels that put a pod in `zone`.
pub fn zone_labels(topology_key: &str, zone: &str) -> Labels {
    Labels::from([(topology_key.to_string(), zone.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeBuilder, PodBuilder};

    fn load(zone: &str, pods: u32, reserved: u32, feasible: bool) -> ZoneLoad {
        ZoneLoad {
            zone: zone.into(),
            pods,
            reserved,
            feasibility: if feasible {
                Feasibility { node: Some(format!("{zone}-1")), nodes: 1, why_not: None, new_node: false }
            } else {
                Feasibility::none()
            },
        }
    }

    #[test]
    fn choose_table() {
        let cases: &[(&[ZoneLoad], Option<&str>, &str)] = &[
            (
                &[load("a", 3, 0, true), load("b", 2, 0, true), load("c", 0, 0, false)],
                Some("b"),
                "zone b: fewest pods (2); a has 3, c no node",
            ),
            (&[load("b", 1, 0, true), load("a", 1, 0, true)], Some("a"), "zone a: fewest pods (1); b has 1"),
            (
                &[load("a", 0, 2, true), load("b", 1, 0, true)],
                Some("b"),
                "zone b: fewest pods (1); a has 2 (2 in flight)",
            ),
            (&[load("a", 0, 0, false)], None, "no feasible zone: a no node"),
            (&[], None, "no zones: no Ready node carries the topology key"),
        ];
        for (loads, zone, reason) in cases {
            let c = choose_zone(loads);
            assert_eq!(c.zone.as_deref(), *zone);
            assert_eq!(c.reason, *reason);
        }
    }

    #[test]
    fn domains_and_feasibility_per_zone() {
        let nodes = [
            NodeBuilder::new("a1").zone("a").not_ready().build(),
            NodeBuilder::new("b1").zone("b").build(),
            NodeBuilder::new("b2").zone("b").build(),
            NodeBuilder::new("c1").zone("c").unschedulable().build(),
            NodeBuilder::new("f1").zone("f").not_ready().build(),
        ];
        let by_zone = |z: &'static str| (z, nodes.iter().filter(move |n| n.label(crate::ZONE_LABEL) == Some(z)));
        let zones = vec![by_zone("a"), by_zone("b"), by_zone("c"), by_zone("f")];
        let pod = PodBuilder::new("ns", "p").deployment("w").pending().build();
        let declared = vec!["d".to_string(), "f".to_string()];
        let f = zone_feasibility(zones.clone(), &declared, crate::ZONE_LABEL, &pod);
        assert_eq!(f.keys().collect::<Vec<_>>(), vec!["b", "d", "f"], "zones from Ready nodes plus declared ones");
        assert_eq!(f["b"].node.as_deref(), Some("b1"));
        assert!(f["d"].feasible(), "declared, no node: assumed autoscaled");
        assert_eq!(f["d"].to_string(), "no node yet; autoscaled, and a new node could run the pod");
        // A pod whose own required affinity rules the declared zone out is not sent there.
        let not_d = crate::selector::NodeAffinity {
            terms: vec![crate::selector::NodeSelectorTerm {
                match_expressions: vec![crate::selector::Requirement::new(
                    crate::ZONE_LABEL,
                    crate::selector::Operator::NotIn,
                    &["d"],
                )],
                match_fields: vec![],
            }],
        };
        let picky = PodBuilder::new("ns", "p").deployment("w").pending().affinity(not_d).build();
        let f = zone_feasibility(zones, &declared, crate::ZONE_LABEL, &picky);
        assert!(!f["d"].feasible(), "{:?}", f["d"]);
        assert!(f["d"].to_string().contains("required node affinity not matched"), "{}", f["d"]);
        assert!(!f["f"].feasible(), "declared, but its only node is not Ready");
        assert_eq!(f["f"].to_string(), "no node fits (1 nodes; e.g. no Ready, schedulable node)");
    }

    #[test]
    fn pinned_zone_from_selector() {
        let p = PodBuilder::new("ns", "p").pending().node_selector(crate::ZONE_LABEL, "b").build();
        assert_eq!(pinned_zone(&p, crate::ZONE_LABEL).as_deref(), Some("b"));
        let p = PodBuilder::new("ns", "p").pending().build();
        assert_eq!(pinned_zone(&p, crate::ZONE_LABEL), None);
    }
}
