//! The part of a ZoneBalancer's status this controller owns, and how it is written: server-side apply
//! with field manager `placement-operator` of exactly `observedGeneration`, the `Ready` and `Balanced`
//! conditions, `zones`, `workloads` and `lastMoves`. The webhook's strict-mode fields (`reservations`,
//! `confirmed`) are never sent, so they are never overwritten. A write happens only when one of those
//! fields would change (a condition's `lastTransitionTime` moves only when its status does), so a
//! steady state costs no writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use placement_core::zone_plan::Plan;
use placement_kube::crd::conditions::{Condition, ConditionStatus, READY, StatusConditions};
use placement_kube::crd::zone_balancer::{ZoneCount, ZoneMove};
use placement_kube::crd::{CrdError, ZoneBalancerStatus, set_condition};
use serde_json::{Value, json};

/// The condition saying whether every in-scope workload is placed in a live zone.
pub const BALANCED: &str = "Balanced";
/// At most this many moves are kept in `status.lastMoves`.
pub const KEPT_MOVES: usize = 10;
/// At most this many issues are listed in the `Balanced` message.
const LISTED_ISSUES: usize = 5;

/// Our fields of the status.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnStatus {
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
    /// `None` for an invalid spec (nothing is counted then).
    pub zones: Option<Vec<ZoneCount>>,
    pub workloads: Option<u32>,
    pub last_moves: Vec<ZoneMove>,
}

impl OwnStatus {
    /// An invalid spec: `Ready=False` naming the field; the move history is kept.
    pub fn invalid(
        error: &CrdError,
        generation: Option<i64>,
        current: Option<&ZoneBalancerStatus>,
        now: jiff::Timestamp,
    ) -> Self {
        let mut status = current.cloned().unwrap_or_default();
        status.record_invalid_spec(error, generation, now);
        OwnStatus {
            observed_generation: generation,
            // Only the condition this controller owns (`Ready`), as the spec made it.
            conditions: status.conditions.into_iter().filter(|c| c.type_ == READY).collect(),
            zones: None,
            workloads: None,
            last_moves: status.last_moves,
        }
    }

    /// The status after `plan`, with `new_move` (if any) in front of the kept history.
    pub fn from_plan(
        plan: &Plan,
        workloads: u32,
        new_move: Option<ZoneMove>,
        generation: Option<i64>,
        current: Option<&ZoneBalancerStatus>,
        now: jiff::Timestamp,
    ) -> Self {
        let zones: Vec<ZoneCount> = plan
            .zones
            .iter()
            .map(|z| ZoneCount { zone: z.zone.clone(), pods: z.pods, workloads: Some(z.workloads) })
            .collect();
        let spread = plan.zones.iter().map(|z| format!("{} {}", z.zone, z.workloads)).collect::<Vec<_>>().join(", ");
        let ready = Condition::ready(
            format!("operator mode: {workloads} single-replica workloads in scope over {} zones", plan.zones.len()),
            generation,
            now,
        );
        let balanced = if plan.issues.is_empty() {
            let mut message = format!("workloads per zone: {spread}");
            if let Some(at) = plan.next_move_at {
                message.push_str(&format!("; a move is due, not before {at}"));
            }
            Condition::new(BALANCED, ConditionStatus::True, "Placed", message, generation, now)
        } else {
            let mut listed: Vec<String> = plan.issues.iter().take(LISTED_ISSUES).cloned().collect();
            if plan.issues.len() > LISTED_ISSUES {
                listed.push(format!("and {} more", plan.issues.len() - LISTED_ISSUES));
            }
            let message = format!("workloads per zone: {spread}; {}", listed.join("; "));
            Condition::new(BALANCED, ConditionStatus::False, "NotPlaced", message, generation, now)
        };
        let mut last_moves: Vec<ZoneMove> = new_move.into_iter().collect();
        last_moves.extend(current.map(|s| s.last_moves.clone()).unwrap_or_default());
        last_moves.truncate(KEPT_MOVES);
        OwnStatus {
            observed_generation: generation,
            conditions: vec![ready, balanced],
            zones: Some(zones),
            workloads: Some(workloads),
            last_moves,
        }
        .settled(current)
    }

    /// Keeps each condition's transition time when its status did not change.
    fn settled(mut self, current: Option<&ZoneBalancerStatus>) -> Self {
        let mut existing = current.map(|s| s.conditions.clone()).unwrap_or_default();
        for c in &mut self.conditions {
            set_condition(&mut existing, c.clone());
            if let Some(kept) = existing.iter().find(|e| e.type_ == c.type_) {
                *c = kept.clone();
            }
        }
        self
    }

    /// Whether writing would change anything in `current`.
    pub fn differs(&self, current: Option<&ZoneBalancerStatus>) -> bool {
        let Some(cur) = current else { return true };
        cur.observed_generation != self.observed_generation
            || self.conditions.iter().any(|c| cur.conditions.iter().find(|e| e.type_ == c.type_) != Some(c))
            || self.zones.as_ref().is_some_and(|z| *z != cur.zones)
            || self.workloads.is_some_and(|w| w != cur.workloads)
            || self.last_moves != cur.last_moves
    }

    /// The server-side apply body: our fields only.
    pub fn apply_body(&self, name: &str) -> Value {
        let mut status = json!({"conditions": self.conditions, "lastMoves": self.last_moves});
        if let Some(g) = self.observed_generation {
            status["observedGeneration"] = json!(g);
        }
        if let Some(z) = &self.zones {
            status["zones"] = json!(z);
        }
        if let Some(w) = self.workloads {
            status["workloads"] = json!(w);
        }
        json!({"apiVersion": "placement.dev/v1alpha1", "kind": "ZoneBalancer", "metadata": {"name": name}, "status": status})
    }

    pub fn ready(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == READY)
    }
}

/// The record of a move.
pub fn zone_move(workload: String, from: String, to: String, reason: String, now: jiff::Timestamp) -> ZoneMove {
    ZoneMove { workload, from, to, reason, time: Time(now) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use placement_core::zone_plan::ZoneTally;

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    fn plan(issues: Vec<String>) -> Plan {
        Plan {
            zones: vec![
                ZoneTally { zone: "a".into(), workloads: 2, pods: 1, domain: true },
                ZoneTally { zone: "b".into(), workloads: 1, pods: 1, domain: true },
            ],
            issues,
            ..Plan::default()
        }
    }

    fn as_status(s: &OwnStatus) -> ZoneBalancerStatus {
        let body = s.apply_body("zb");
        serde_json::from_value(body["status"].clone()).unwrap()
    }

    #[test]
    fn steady_state_writes_nothing_and_times_only_move_on_change() {
        let first = OwnStatus::from_plan(&plan(vec![]), 3, None, Some(1), None, ts(10));
        assert!(first.differs(None));
        let written = as_status(&first);
        assert_eq!(written.zones[0], ZoneCount { zone: "a".into(), pods: 1, workloads: Some(2) });
        assert!(written.reservations.is_empty(), "strict-mode fields are not sent");
        let body = first.apply_body("zb");
        assert!(body["status"].get("reservations").is_none() && body["status"].get("confirmed").is_none());

        let again = OwnStatus::from_plan(&plan(vec![]), 3, None, Some(1), Some(&written), ts(20));
        assert!(!again.differs(Some(&written)), "nothing changed: {again:?}");

        let broken = OwnStatus::from_plan(
            &plan(vec!["Deployment/x: not pinned".into()]),
            3,
            None,
            Some(1),
            Some(&written),
            ts(30),
        );
        assert!(broken.differs(Some(&written)));
        let b = broken.conditions.iter().find(|c| c.type_ == BALANCED).unwrap();
        assert_eq!(b.status, ConditionStatus::False);
        assert_eq!(b.message, "workloads per zone: a 2, b 1; Deployment/x: not pinned");
        assert_eq!(b.last_transition_time, Time(ts(30)));
        assert_eq!(broken.ready().unwrap().last_transition_time, Time(ts(10)), "Ready did not change");
    }

    #[test]
    fn moves_are_kept_newest_first_and_bounded() {
        let mut current = ZoneBalancerStatus::default();
        for i in 0..KEPT_MOVES {
            current.last_moves.push(zone_move(
                format!("Deployment/w{i}"),
                "a".into(),
                "b".into(),
                String::new(),
                ts(i as i64),
            ));
        }
        let mv = zone_move("Deployment/new".into(), "a".into(), "c".into(), "why".into(), ts(99));
        let s = OwnStatus::from_plan(&plan(vec![]), 3, Some(mv.clone()), Some(1), Some(&current), ts(99));
        assert_eq!(s.last_moves.len(), KEPT_MOVES);
        assert_eq!(s.last_moves[0], mv);
        assert_eq!(s.last_moves[1].workload, "Deployment/w0");
    }

    #[test]
    fn an_invalid_spec_names_the_field_and_counts_nothing() {
        let spec: placement_kube::crd::ZoneBalancerSpec =
            serde_json::from_value(json!({"selector": {}, "zones": ["a", "a"], "mode": "operator"})).unwrap();
        let e = spec.to_core().unwrap_err();
        let s = OwnStatus::invalid(&e, Some(2), None, ts(5));
        let ready = s.ready().unwrap();
        assert_eq!(ready.status, ConditionStatus::False);
        assert!(ready.message.contains("spec.zones[1]"), "{}", ready.message);
        let body = s.apply_body("zb");
        assert!(body["status"].get("zones").is_none());
    }
}
