//! The operator-mode zone plan: which unpinned workloads get which zone, and whether one pinned
//! workload moves. Pure: no I/O, no clock (`now` is an input), so every decision is a value with its
//! reason and can be tested without a cluster.
//!
//! **Counting** (`docs/semantics.md#3-least-loaded-zone` with the pin as the reservation). Every in-scope
//! single-replica workload is counted once: in the zone its template pins when it is pinned (whatever its pod is doing during the
//! rollout the pin started, so a pin made a moment ago counts before its pod exists, as an in-flight
//! reservation does in webhook mode), otherwise where its counted pods are. A zone's load is that number
//! of workloads; the zone chosen for a new pin is the feasible domain with the fewest, ties to the lowest
//! name ([`crate::zone::choose_zone`]). Each pin of the same plan counts for the next.
//!
//! **Pinned once.** Only [`Placement::Unpinned`] workloads get a pin. A workload whose template already
//! names a zone (our pin, the user's, another balancer's) or constrains the topology key otherwise is
//! left alone; so is a workload this operator pinned once whose pin was later removed by someone else
//! (`Released`): pinning it again would fight that someone in a loop.
//!
//! **Moves.** With a `rebalanceThreshold`, when nothing is left to pin, at most one workload moves per
//! plan: one this balancer pinned, from the busiest zone (a zone that is no longer a domain first), to the
//! least-loaded feasible zone, when the busiest has at least `max(threshold, 2)` more workloads than the
//! target (a difference of 1 only swaps which zone is ahead, so it would move back and forth), and only
//! once the minimum interval since the last move has passed; otherwise the plan says when a move may
//! happen. The workload pinned longest ago moves first.

use crate::group::Feasibility;
use crate::zone::{ZoneLoad, choose_zone};
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet};

/// Who put a workload's zone pin in its template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinnedBy {
    /// This balancer (its decision annotation names the same zone).
    Balancer,
    /// The user, or another balancer.
    Other,
}

/// A workload's zone placement, as read from its template and our decision annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// No zone in the template and never decided: to be pinned.
    Unpinned,
    /// The template pins one zone.
    Pinned { zone: String, by: PinnedBy },
    /// The template constrains the topology key in another way (several zones, `NotIn`, ...): left
    /// alone, counted where its pods run.
    Constrained(String),
    /// This operator pinned it once (to the zone given) and the pin has been removed since: left alone,
    /// counted where its pods run.
    Released(String),
}

/// One in-scope workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadInput {
    /// `Deployment/web`.
    pub id: String,
    pub placement: Placement,
    /// Counted pods per zone (bound node's zone, or a pending pod's own zone selector).
    pub pods: BTreeMap<String, u32>,
    /// Per domain, whether the workload's pod (its template without our zone pin) fits there. Only
    /// needed for workloads the plan may pin or move.
    pub feasibility: BTreeMap<String, Feasibility>,
    /// When this balancer last pinned or moved it.
    pub decided_at: Option<Timestamp>,
}

/// Rebalancing settings and memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebalance {
    /// `spec.rebalanceThreshold`.
    pub threshold: u32,
    /// The minimum time between two moves of one balancer.
    pub min_interval: SignedDuration,
    /// The last move (from the status and the workloads' decision annotations).
    pub last_move: Option<Timestamp>,
}

/// Everything a plan reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanInput {
    /// Zones of Ready, schedulable nodes plus declared zones.
    pub domains: BTreeSet<String>,
    /// In the order pins are given (creation order).
    pub workloads: Vec<WorkloadInput>,
    pub rebalance: Option<Rebalance>,
    pub now: Timestamp,
}

/// A new pin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinDecision {
    /// Index into [`PlanInput::workloads`].
    pub workload: usize,
    pub zone: String,
    pub reason: String,
}

/// A re-pin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveDecision {
    pub workload: usize,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// Workloads and pods counted in one zone after the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneTally {
    pub zone: String,
    pub workloads: u32,
    pub pods: u32,
    /// Whether the zone is a domain (a Ready node or declared).
    pub domain: bool,
}

/// What to do, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub pins: Vec<PinDecision>,
    /// Unpinned workloads no zone can take, with the reason.
    pub unplaced: Vec<(usize, String)>,
    pub moved: Option<MoveDecision>,
    /// A move is due but the minimum interval has not passed: when it may happen.
    pub next_move_at: Option<Timestamp>,
    /// Problems to report (a pin to a zone that is no domain, unplaced workloads), one line each.
    pub issues: Vec<String>,
    /// Every domain and every zone something is counted in, by name.
    pub zones: Vec<ZoneTally>,
}

/// Where a workload is counted.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Counted {
    Zone(String),
    Pods,
}

fn counted_as(w: &WorkloadInput) -> Counted {
    match &w.placement {
        Placement::Pinned { zone, .. } => Counted::Zone(zone.clone()),
        _ => Counted::Pods,
    }
}

/// Workload load per zone, leaving out workload `skip`.
fn loads(workloads: &[WorkloadInput], counted: &[Counted], skip: Option<usize>) -> BTreeMap<String, u32> {
    let mut out: BTreeMap<String, u32> = BTreeMap::new();
    for (i, (w, c)) in workloads.iter().zip(counted).enumerate() {
        if Some(i) == skip {
            continue;
        }
        match c {
            Counted::Zone(z) => *out.entry(z.clone()).or_default() += 1,
            Counted::Pods => {
                for (z, n) in &w.pods {
                    *out.entry(z.clone()).or_default() += n;
                }
            }
        }
    }
    out
}

fn zone_loads(domains: &BTreeSet<String>, load: &BTreeMap<String, u32>, w: &WorkloadInput) -> Vec<ZoneLoad> {
    domains
        .iter()
        .map(|z| ZoneLoad {
            zone: z.clone(),
            pods: load.get(z).copied().unwrap_or(0),
            reserved: 0,
            feasibility: w
                .feasibility
                .get(z)
                .cloned()
                .unwrap_or(Feasibility { why_not: Some("feasibility unknown".into()), ..Feasibility::none() }),
        })
        .collect()
}

fn describe(l: &ZoneLoad) -> String {
    if l.feasibility.feasible() {
        format!("{} has {}", l.zone, l.pods)
    } else {
        format!("{} {}", l.zone, l.feasibility)
    }
}

/// `zone b: fewest workloads (2); a has 3, c no node fits (...)`.
fn pin_reason(chosen: &str, loads: &[ZoneLoad]) -> String {
    let Some(best) = loads.iter().find(|l| l.zone == chosen) else { return format!("zone {chosen}") };
    let mut reason = format!("zone {chosen}: fewest workloads ({})", best.pods);
    if best.feasibility.nodes == 0 {
        reason.push_str(", no node yet (declared zone, assumed autoscaled)");
    }
    let others: Vec<String> = loads.iter().filter(|l| l.zone != chosen).map(describe).collect();
    if !others.is_empty() {
        reason.push_str("; ");
        reason.push_str(&others.join(", "));
    }
    reason
}

fn no_zone_reason(loads: &[ZoneLoad]) -> String {
    if loads.is_empty() {
        "no zone: no Ready node carries the topology key and spec.zones is empty".into()
    } else {
        format!("no feasible zone: {}", loads.iter().map(describe).collect::<Vec<_>>().join(", "))
    }
}

/// Decides the pins and at most one move.
pub fn plan(input: &PlanInput) -> Plan {
    let ws = &input.workloads;
    let mut counted: Vec<Counted> = ws.iter().map(counted_as).collect();
    let mut out = Plan::default();

    for (i, w) in ws.iter().enumerate() {
        match &w.placement {
            Placement::Pinned { zone, by } if !input.domains.contains(zone) => {
                let whose = if *by == PinnedBy::Balancer { "this balancer's pin" } else { "pinned by its template" };
                out.issues.push(format!(
                    "{}: {whose} to zone {zone}, which has no Ready node and is not in spec.zones: left alone",
                    w.id
                ));
            }
            Placement::Unpinned => {
                let load = loads(ws, &counted, Some(i));
                let zl = zone_loads(&input.domains, &load, w);
                match choose_zone(&zl).zone {
                    Some(zone) => {
                        let reason = pin_reason(&zone, &zl);
                        counted[i] = Counted::Zone(zone.clone());
                        out.pins.push(PinDecision { workload: i, zone, reason });
                    }
                    None => {
                        let reason = no_zone_reason(&zl);
                        out.issues.push(format!("{}: not pinned, {reason}", w.id));
                        out.unplaced.push((i, reason));
                    }
                }
            }
            _ => {}
        }
    }

    if let Some(rb) = &input.rebalance
        && out.pins.is_empty()
        && let Some(m) = choose_move(input, &counted, rb.threshold)
    {
        let due = rb.last_move.and_then(|t| t.checked_add(rb.min_interval).ok());
        match due {
            Some(due) if due > input.now => out.next_move_at = Some(due),
            _ => {
                counted[m.workload] = Counted::Zone(m.to.clone());
                out.moved = Some(m);
            }
        }
    }

    let load = loads(ws, &counted, None);
    let mut pods: BTreeMap<String, u32> = BTreeMap::new();
    for w in ws {
        for (z, n) in &w.pods {
            *pods.entry(z.clone()).or_default() += n;
        }
    }
    let zones: BTreeSet<&String> = input.domains.iter().chain(load.keys()).chain(pods.keys()).collect();
    out.zones = zones
        .into_iter()
        .map(|z| ZoneTally {
            zone: z.clone(),
            workloads: load.get(z).copied().unwrap_or(0),
            pods: pods.get(z).copied().unwrap_or(0),
            domain: input.domains.contains(z),
        })
        .collect();
    out
}

/// The one move worth making now (ignoring the interval), if any.
fn choose_move(input: &PlanInput, counted: &[Counted], threshold: u32) -> Option<MoveDecision> {
    let ws = &input.workloads;
    let load = loads(ws, counted, None);
    let needed = threshold.max(2);
    // Zones holding a workload this balancer pinned: gone zones first, then the busiest, then by name.
    let mut from_zones: Vec<(bool, u32, &String)> = load
        .iter()
        .filter(|(z, _)| {
            ws.iter().any(|w| matches!(&w.placement, Placement::Pinned { zone, by: PinnedBy::Balancer } if zone == *z))
        })
        .map(|(z, n)| (input.domains.contains(z), *n, z))
        .collect();
    from_zones.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
    for (is_domain, from_load, from) in from_zones {
        let mut movable: Vec<usize> = (0..ws.len())
            .filter(|&i| matches!(&ws[i].placement, Placement::Pinned { zone, by: PinnedBy::Balancer } if zone == from))
            .collect();
        movable.sort_by(|&a, &b| ws[a].decided_at.cmp(&ws[b].decided_at).then_with(|| ws[a].id.cmp(&ws[b].id)));
        for i in movable {
            let w = &ws[i];
            let others = loads(ws, counted, Some(i));
            let zl: Vec<ZoneLoad> =
                zone_loads(&input.domains, &others, w).into_iter().filter(|l| l.zone != *from).collect();
            let Some(to) = choose_zone(&zl).zone else { continue };
            let to_load = others.get(&to).copied().unwrap_or(0);
            let gap = from_load.saturating_sub(to_load);
            let reason = if !is_domain {
                format!(
                    "zone {from} has no Ready node and is not in spec.zones; {}",
                    pin_reason(&to, &zl).replacen("zone ", "moving to zone ", 1)
                )
            } else if gap >= needed {
                format!(
                    "zone {from} has {from_load} workloads, {to} has {to_load}: a difference of {gap} reaches the \
                     threshold {needed}; moving {} (pinned longest ago)",
                    w.id
                )
            } else {
                continue;
            };
            return Some(MoveDecision { workload: i, from: from.clone(), to, reason });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fits(zone: &str) -> Feasibility {
        Feasibility { node: Some(format!("{zone}-1")), nodes: 1, why_not: None, new_node: false }
    }

    fn all_fit(zones: &[&str]) -> BTreeMap<String, Feasibility> {
        zones.iter().map(|z| (z.to_string(), fits(z))).collect()
    }

    fn unpinned(id: &str, zones: &[&str]) -> WorkloadInput {
        WorkloadInput {
            id: id.into(),
            placement: Placement::Unpinned,
            pods: BTreeMap::new(),
            feasibility: all_fit(zones),
            decided_at: None,
        }
    }

    fn pinned(id: &str, zone: &str, by: PinnedBy, zones: &[&str], at: i64) -> WorkloadInput {
        WorkloadInput {
            placement: Placement::Pinned { zone: zone.into(), by },
            pods: BTreeMap::from([(zone.to_string(), 1)]),
            decided_at: Some(ts(at)),
            ..unpinned(id, zones)
        }
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn domains(zones: &[&str]) -> BTreeSet<String> {
        zones.iter().map(|z| z.to_string()).collect()
    }

    fn input(zones: &[&str], workloads: Vec<WorkloadInput>) -> PlanInput {
        PlanInput { domains: domains(zones), workloads, rebalance: None, now: ts(1000) }
    }

    fn tally(p: &Plan) -> Vec<(String, u32)> {
        p.zones.iter().map(|z| (z.zone.clone(), z.workloads)).collect()
    }

    const ABC: &[&str] = &["a", "b", "c"];

    #[test]
    fn six_new_workloads_spread_two_per_zone_with_reasons() {
        let ws = (0..6).map(|i| unpinned(&format!("Deployment/w{i}"), ABC)).collect();
        let p = plan(&input(ABC, ws));
        let zones: Vec<&str> = p.pins.iter().map(|d| d.zone.as_str()).collect();
        assert_eq!(zones, vec!["a", "b", "c", "a", "b", "c"]);
        assert_eq!(p.pins[0].reason, "zone a: fewest workloads (0); b has 0, c has 0");
        assert_eq!(p.pins[4].reason, "zone b: fewest workloads (1); a has 2, c has 1");
        assert_eq!(tally(&p), vec![("a".into(), 2), ("b".into(), 2), ("c".into(), 2)]);
        assert!(p.issues.is_empty());
    }

    #[test]
    fn user_pins_count_and_are_left_alone() {
        let ws = vec![
            pinned("Deployment/u1", "a", PinnedBy::Other, ABC, 0),
            pinned("Deployment/u2", "a", PinnedBy::Other, ABC, 0),
            pinned("Deployment/u3", "b", PinnedBy::Other, ABC, 0),
            unpinned("Deployment/new", ABC),
        ];
        let p = plan(&input(ABC, ws));
        assert_eq!(p.pins.len(), 1);
        assert_eq!(p.pins[0].workload, 3);
        assert_eq!(p.pins[0].reason, "zone c: fewest workloads (0); a has 2, b has 1");
    }

    #[test]
    fn unpinned_workloads_count_where_their_pods_run_but_not_against_themselves() {
        let mut running = unpinned("Deployment/old", ABC);
        running.placement = Placement::Released("c".into());
        running.pods = BTreeMap::from([("a".to_string(), 1)]);
        let mut me = unpinned("Deployment/me", ABC);
        me.pods = BTreeMap::from([("b".to_string(), 1)]);
        let p = plan(&input(ABC, vec![running, me]));
        assert_eq!(p.pins.len(), 1, "a released workload is never pinned again");
        assert_eq!(p.pins[0].zone, "b", "its own pod in b does not count against b");
        assert_eq!(p.pins[0].reason, "zone b: fewest workloads (0); a has 1, c has 0");
    }

    #[test]
    fn infeasible_zones_are_skipped_and_no_zone_is_reported() {
        let mut w = unpinned("Deployment/big", ABC);
        w.feasibility.insert(
            "a".into(),
            Feasibility { node: None, nodes: 2, why_not: Some("a-1: cpu".into()), new_node: false },
        );
        let p = plan(&input(ABC, vec![w.clone()]));
        assert_eq!(p.pins[0].zone, "b");
        assert_eq!(p.pins[0].reason, "zone b: fewest workloads (0); a no node fits (2 nodes; e.g. a-1: cpu), c has 0");

        for z in ["b", "c"] {
            w.feasibility.insert(z.into(), Feasibility { node: None, nodes: 1, why_not: None, new_node: false });
        }
        let p = plan(&input(ABC, vec![w]));
        assert!(p.pins.is_empty());
        assert_eq!(
            p.unplaced[0].1,
            "no feasible zone: a no node fits (2 nodes; e.g. a-1: cpu), b no node fits (1 nodes), c no node fits (1 nodes)"
        );
        assert_eq!(p.issues.len(), 1);
        let p = plan(&input(&[], vec![unpinned("Deployment/x", &[])]));
        assert!(p.unplaced[0].1.starts_with("no zone: "));
    }

    #[test]
    fn a_declared_zone_without_nodes_says_so() {
        let mut w = unpinned("Deployment/x", &["a"]);
        w.feasibility.insert("d".into(), Feasibility::assumed());
        let ws = vec![pinned("Deployment/u", "a", PinnedBy::Other, &["a"], 0), w];
        let p = plan(&input(&["a", "d"], ws));
        assert_eq!(
            p.pins[0].reason,
            "zone d: fewest workloads (0), no node yet (declared zone, assumed autoscaled); a has 1"
        );
    }

    #[test]
    fn a_pin_outside_the_domains_is_an_issue_and_still_tallied() {
        let ws = vec![pinned("Deployment/u", "z", PinnedBy::Other, ABC, 0)];
        let p = plan(&input(ABC, ws));
        assert_eq!(
            p.issues,
            vec![
                "Deployment/u: pinned by its template to zone z, which has no Ready node and is not in spec.zones: left alone"
            ]
        );
        assert_eq!(p.zones.last().map(|z| (z.zone.as_str(), z.workloads, z.domain)), Some(("z", 1, false)));
    }

    fn rebalance(threshold: u32, last: Option<i64>) -> Option<Rebalance> {
        Some(Rebalance { threshold, min_interval: SignedDuration::from_secs(600), last_move: last.map(ts) })
    }

    #[test]
    fn one_move_from_the_busiest_to_the_least_busy_then_the_interval() {
        let mut ws: Vec<WorkloadInput> = Vec::new();
        for (i, z) in ["a", "a", "a", "b", "b", "b"].iter().enumerate() {
            ws.push(pinned(&format!("Deployment/w{i}"), z, PinnedBy::Balancer, ABC, 100 - i as i64));
        }
        let mut inp = input(ABC, ws);
        inp.rebalance = rebalance(2, None);
        let p = plan(&inp);
        let m = p.moved.clone().expect("a move");
        assert_eq!((m.workload, m.from.as_str(), m.to.as_str()), (2, "a", "c"), "pinned longest ago moves first");
        assert_eq!(
            m.reason,
            "zone a has 3 workloads, c has 0: a difference of 3 reaches the threshold 2; moving Deployment/w2 (pinned longest ago)"
        );
        assert_eq!(tally(&p), vec![("a".into(), 2), ("b".into(), 3), ("c".into(), 1)]);

        // Within the interval: nothing moves, and the plan says when it may.
        inp.rebalance = rebalance(2, Some(900));
        let p = plan(&inp);
        assert_eq!(p.moved, None);
        assert_eq!(p.next_move_at, Some(ts(1500)));
        inp.rebalance = rebalance(2, Some(400));
        assert!(plan(&inp).moved.is_some(), "the interval has passed");
    }

    #[test]
    fn below_the_threshold_or_only_user_pins_nothing_moves() {
        let ws = vec![
            pinned("Deployment/a1", "a", PinnedBy::Balancer, ABC, 1),
            pinned("Deployment/a2", "a", PinnedBy::Balancer, ABC, 1),
            pinned("Deployment/b1", "b", PinnedBy::Balancer, ABC, 1),
        ];
        let mut inp = input(ABC, ws);
        inp.rebalance = rebalance(3, None);
        assert_eq!(plan(&inp).moved, None, "2 - 0 < 3");
        inp.rebalance = rebalance(1, None);
        let m = plan(&inp).moved.expect("2 - 0 reaches max(1, 2)");
        assert_eq!((m.from.as_str(), m.to.as_str()), ("a", "c"));

        // A difference of one never moves, whatever the threshold: it would only swap.
        let ws = vec![
            pinned("Deployment/a1", "a", PinnedBy::Balancer, &["a", "b"], 1),
            pinned("Deployment/a2", "a", PinnedBy::Balancer, &["a", "b"], 1),
            pinned("Deployment/b1", "b", PinnedBy::Balancer, &["a", "b"], 1),
        ];
        let mut inp = input(&["a", "b"], ws);
        inp.rebalance = rebalance(1, None);
        assert_eq!(plan(&inp).moved, None);

        let ws = (0..4).map(|i| pinned(&format!("Deployment/u{i}"), "a", PinnedBy::Other, ABC, 1)).collect();
        let mut inp = input(ABC, ws);
        inp.rebalance = rebalance(1, None);
        assert_eq!(plan(&inp).moved, None, "user pins never move");
    }

    #[test]
    fn no_move_while_something_is_being_pinned() {
        let mut ws: Vec<WorkloadInput> =
            (0..3).map(|i| pinned(&format!("Deployment/w{i}"), "a", PinnedBy::Balancer, ABC, 1)).collect();
        ws.push(unpinned("Deployment/new", ABC));
        let mut inp = input(ABC, ws);
        inp.rebalance = rebalance(2, None);
        let p = plan(&inp);
        assert_eq!(p.pins.len(), 1);
        assert_eq!(p.moved, None);
    }

    #[test]
    fn a_pin_to_a_zone_that_disappeared_moves_first() {
        let ws = vec![
            pinned("Deployment/gone", "z", PinnedBy::Balancer, ABC, 1),
            pinned("Deployment/a1", "a", PinnedBy::Balancer, ABC, 1),
        ];
        let mut inp = input(ABC, ws);
        inp.rebalance = rebalance(5, None);
        let m = plan(&inp).moved.expect("moved off the dead zone regardless of the threshold");
        assert_eq!((m.workload, m.from.as_str(), m.to.as_str()), (0, "z", "b"));
        assert_eq!(
            m.reason,
            "zone z has no Ready node and is not in spec.zones; moving to zone b: fewest workloads (0); a has 1, c has 0"
        );
    }
}
