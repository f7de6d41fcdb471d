//! The rebalancer's memory, kept in the `RebalancePolicy` status so that a restart or a failover never
//! exceeds a budget or repeats an eviction inside its backoff.
//!
//! Decisions made here, and why:
//!
//! * **Reserve, then evict, then release.** A pass writes the new status — observations, and every
//!   planned eviction already recorded in the history — with a resourceVersion precondition *before*
//!   the first eviction. Only when that write succeeds does it evict. Evictions the API refused (429) or
//!   whose pod was gone (404) did not happen, so a second write releases their records. A crash between
//!   the writes leaves the reservations in place: the budgets are over-counted, never under-counted.
//!   An eviction whose outcome is unknown (5xx, timeout) keeps its record for the same reason.
//! * **Dry-run history is separate.** Dry-run plans record what they would have evicted (marked
//!   `dryRun`), so a dry-run policy reports what it would really do over time instead of the same
//!   eviction every pass. Live plans ignore (and drop) dry-run records: they never happened. Dry-run
//!   plans count real evictions too.
//! * **Steering** entries (workload, planned node, expiry) are written with the reservation, live mode
//!   only, at most [`STEERING_LIMIT`], expired ones dropped.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use placement_core::model::PodKey;
use placement_core::rebalance::{Plan, RebalanceState};
use placement_kube::crd::rebalance_policy::{
    BlockedEntry, EvictionEntry, PersistedState, PlanSummary, STEERING_LIMIT, SteeringEntry, WorkloadEntry,
};
use placement_kube::crd::{Condition, RebalancePolicyStatus, set_condition};
use std::collections::BTreeSet;

/// How long a replacement pod is steered towards the planned node.
pub const STEERING_TTL: SignedDuration = SignedDuration::from_secs(120);

/// Identifies a history entry across conversions.
type EntryKey = (Timestamp, String, String, String);

fn entry_key(e: &EvictionEntry) -> EntryKey {
    (e.at.0, e.namespace.clone(), e.pod.clone(), e.from.clone())
}

/// The core state for a pass in `dry_run` mode: live passes see live evictions only; dry-run passes
/// see both.
pub fn load(persisted: &PersistedState, dry_run: bool) -> RebalanceState {
    let mut view = persisted.clone();
    view.history.retain(|e| dry_run || !e.dry_run);
    view.to_core()
}

/// The status to write before evicting: the observed state with the plan's evictions reserved, the
/// plan summary, steering entries and a Ready condition.
pub struct Reservation {
    pub status: RebalancePolicyStatus,
}

/// Builds the status for a pass. `observed` is the state after observing (history pruned), `plan` its
/// plan; `previous` the status read at the start of the pass.
pub fn reserve(
    previous: &RebalancePolicyStatus,
    observed: &RebalanceState,
    plan: &Plan,
    notes: &[String],
    generation: Option<i64>,
    now: Timestamp,
) -> Reservation {
    let dry_run = plan.dry_run;
    let dry_keys: BTreeSet<EntryKey> = previous.state.history.iter().filter(|e| e.dry_run).map(entry_key).collect();
    let mut with_plan = observed.clone();
    with_plan.record(plan.records());
    let mut state = PersistedState::from_core(&with_plan);
    let planned: BTreeSet<EntryKey> =
        PersistedState::from_core(&RebalanceState { history: plan.records(), ..RebalanceState::default() })
            .history
            .iter()
            .map(entry_key)
            .collect();
    for e in &mut state.history {
        let k = entry_key(e);
        e.dry_run = dry_keys.contains(&k) || (dry_run && planned.contains(&k));
    }
    let mut steering: Vec<SteeringEntry> = previous.steering.iter().filter(|s| s.expires.0 > now).cloned().collect();
    if !dry_run {
        for e in &plan.evictions {
            if let Some(w) = &e.workload {
                steering.push(SteeringEntry {
                    workload: WorkloadEntry::from_core(w),
                    node: e.to.clone(),
                    from: e.from.clone(),
                    expires: Time(now + STEERING_TTL),
                });
            }
        }
    }
    if steering.len() > STEERING_LIMIT {
        steering.drain(..steering.len() - STEERING_LIMIT);
    }
    let mut summary = PlanSummary::from_plan(plan, now);
    summary.notes = notes.to_vec();
    let mut status = RebalancePolicyStatus {
        observed_generation: generation,
        conditions: previous.conditions.clone(),
        state,
        last_plan: Some(summary),
        steering,
    };
    let message = if dry_run {
        "planning every interval in dry-run: nothing is evicted".to_string()
    } else {
        "planning every interval and evicting within the budgets".to_string()
    };
    set_condition(&mut status.conditions, Condition::ready(message, generation, now));
    Reservation { status }
}

/// What happened to one planned eviction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The API server accepted the eviction.
    Done,
    /// It did not happen (429 refused, 404 gone): release the reservation and report it blocked.
    Released { reason: &'static str, message: String },
    /// Unknown (5xx, timeout): keep the reservation, report it.
    Unknown { message: String },
}

/// Applies eviction outcomes to the reserved status: released records and their steering entries are
/// removed, the summary counts what was done and lists what was refused.
pub fn settle(status: &mut RebalancePolicyStatus, outcomes: &[(PodKey, String, Settled)], now: Timestamp) {
    let released: BTreeSet<(String, String)> = outcomes
        .iter()
        .filter(|(_, _, s)| matches!(s, Settled::Released { .. }))
        .map(|(p, _, _)| (p.namespace.clone(), p.name.clone()))
        .collect();
    let mut released_steering: Vec<(String, String)> = Vec::new();
    status.state.history.retain(|e| {
        let gone = e.at.0 == now && released.contains(&(e.namespace.clone(), e.pod.clone()));
        if gone && let Some(w) = &e.workload {
            released_steering.push((format!("{}/{}/{}", w.kind, w.namespace, w.name), e.to.clone()));
        }
        !gone
    });
    let expires = now + STEERING_TTL;
    status.steering.retain(|s| {
        let key = (format!("{}/{}/{}", s.workload.kind, s.workload.namespace, s.workload.name), s.node.clone());
        !(s.expires.0 == expires && released_steering.contains(&key))
    });
    if let Some(summary) = status.last_plan.as_mut() {
        summary.evictions_done = outcomes.iter().filter(|(_, _, s)| *s == Settled::Done).count() as u32;
        for (pod, node, s) in outcomes {
            let (reason, message) = match s {
                Settled::Done => continue,
                Settled::Released { reason, message } => (reason.to_string(), message.clone()),
                Settled::Unknown { message } => ("eviction_unknown".to_string(), message.clone()),
            };
            summary.evictions_blocked += 1;
            if summary.blocked.len() < placement_kube::crd::rebalance_policy::PLAN_LIST_LIMIT {
                summary.blocked.insert(
                    0,
                    BlockedEntry {
                        namespace: pod.namespace.clone(),
                        pod: pod.name.clone(),
                        node: node.clone(),
                        reason,
                        message,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use placement_core::model::{NodeBuilder, PodBuilder, Snapshot};
    use placement_core::rebalance::{PlanInput, RebalancePolicy, UtilizationSource, observe, plan};

    fn planned(dry_run: bool, now: Timestamp, previous: &RebalancePolicyStatus) -> (RebalanceState, Plan) {
        let policy = RebalancePolicy {
            observations_to_enter: 1,
            source: UtilizationSource::Requests,
            memory_weight: 0.0,
            dry_run,
            ..Default::default()
        };
        let pods = (0..6)
            .map(|i| {
                PodBuilder::new("shop", format!("web-{i}"))
                    .deployment(format!("web{i}"))
                    .on_node("hot")
                    .requests(1500, 0)
                    .build()
            })
            .collect();
        let nodes = vec![
            NodeBuilder::new("hot").allocatable(10_000, 1).build(),
            NodeBuilder::new("cold").allocatable(10_000, 1).build(),
        ];
        let snapshot = Snapshot::new(nodes, pods, vec![], vec![]);
        let state = observe(&policy, &load(&previous.state, dry_run), &snapshot, now);
        let p = plan(&PlanInput { snapshot: &snapshot, policy: &policy, state: &state, slos: &[], classes: &[], now });
        (state, p)
    }

    #[test]
    fn dry_run_records_are_marked_kept_for_dry_runs_and_ignored_live() {
        let t0: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        let (state, p) = planned(true, t0, &RebalancePolicyStatus::default());
        assert!(!p.evictions.is_empty());
        let r = reserve(&RebalancePolicyStatus::default(), &state, &p, &[], Some(1), t0);
        assert!(r.status.state.history.iter().all(|e| e.dry_run));
        assert!(r.status.steering.is_empty(), "dry-run steers nothing");
        assert_eq!(load(&r.status.state, true).history.len(), p.evictions.len());
        assert!(load(&r.status.state, false).history.is_empty());
        // A later dry-run pass keeps the dry-run marks of earlier records.
        let t1 = t0 + SignedDuration::from_secs(30);
        let (state, p2) = planned(true, t1, &r.status);
        let r2 = reserve(&r.status, &state, &p2, &[], Some(1), t1);
        assert!(r2.status.state.history.iter().all(|e| e.dry_run));
    }

    #[test]
    fn released_evictions_give_back_their_budget_and_steering() {
        let t0: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        let (state, p) = planned(false, t0, &RebalancePolicyStatus::default());
        assert!(p.evictions.len() >= 2, "{}", p.stop);
        let mut status = reserve(&RebalancePolicyStatus::default(), &state, &p, &[], None, t0).status;
        assert_eq!(status.state.history.len(), p.evictions.len());
        assert_eq!(status.steering.len(), p.evictions.len());
        let first = &p.evictions[0];
        let second = &p.evictions[1];
        let outcomes = vec![
            (first.pod.clone(), first.from.clone(), Settled::Done),
            (
                second.pod.clone(),
                second.from.clone(),
                Settled::Released { reason: "eviction_refused", message: "429".into() },
            ),
        ];
        settle(&mut status, &outcomes, t0);
        assert_eq!(status.state.history.len(), p.evictions.len() - 1);
        assert!(!status.state.history.iter().any(|e| e.pod == second.pod.name));
        assert_eq!(status.steering.len(), p.evictions.len() - 1);
        let summary = status.last_plan.unwrap();
        assert_eq!(summary.evictions_done, 1);
        assert_eq!(summary.blocked[0].reason, "eviction_refused");
    }
}
