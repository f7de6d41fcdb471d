//! What a PodDistribution's status should say, computed without I/O: per group the pods counted, the
//! reservations still in flight, the target for the current number of pods and the drift from it, plus
//! the `Ready` and `OnTarget` conditions.
//!
//! * **Counted pods** follow `docs/semantics.md#counting` (owner chain, not terminal, not terminating, the newest
//!   revision when `revisionScoped`, group by the bound node's labels or a pending pod's own selector).
//! * **Reserved** (strict mode only): shared reservations of the same workload and revision that have
//!   neither expired nor been confirmed. A confirmed reservation's pod has been seen, so it is already
//!   among the pods; counting it again would count one pod twice. Without strict mode each webhook
//!   replica keeps its reservations in memory and the operator cannot see them: `reserved` is 0.
//! * **Target** is `target(n)` of the core apportionment for `n` = pods + reservations in groups: a
//!   reservation is a pod on its way to its group, so the webhook already counts it, and so does the
//!   target. **Drift** is `pods + reserved - target`: positive above target, negative below.
//! * `OnTarget` is `True` when every group's drift is 0; otherwise `False`, and its message names each
//!   group off target with its numbers. Pods in no group (their node matches no group) are reported
//!   in the message; they count toward no group, as at admission.

use placement_core::apportion::Apportionment;
use placement_core::ledger::LedgerState;
use placement_core::model::WorkloadRef;
use placement_kube::crd::conditions::{Condition, ConditionStatus};
use placement_kube::crd::pod_distribution::GroupStatus;

/// The condition saying whether every group holds its target.
pub const ON_TARGET: &str = "OnTarget";
/// `OnTarget=True`.
pub const REASON_ON_TARGET: &str = "OnTarget";
/// `OnTarget=False`: at least one group is above or below its target.
pub const REASON_OFF_TARGET: &str = "OffTarget";
/// `OnTarget=Unknown`: the target workload does not exist.
pub const REASON_WORKLOAD_NOT_FOUND: &str = "WorkloadNotFound";

/// One group's numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRow {
    pub name: String,
    pub pods: u32,
    pub reserved: u32,
    pub target: u32,
    /// `pods + reserved - target`.
    pub drift: i64,
}

impl GroupRow {
    pub fn to_status(&self) -> GroupStatus {
        GroupStatus {
            name: self.name.clone(),
            pods: self.pods,
            reserved: self.reserved,
            target: self.target,
            drift: self.drift,
        }
    }
}

/// Rows for `pods` and `reserved` per group (in group order).
pub fn rows(apportionment: &Apportionment, pods: &[u32], reserved: &[u32]) -> Vec<GroupRow> {
    let held: Vec<u32> = pods.iter().zip(reserved).map(|(p, r)| p.saturating_add(*r)).collect();
    let n = held.iter().fold(0u32, |a, b| a.saturating_add(*b));
    let target = apportionment.target(n);
    apportionment
        .names()
        .iter()
        .enumerate()
        .map(|(i, name)| GroupRow {
            name: name.clone(),
            pods: pods[i],
            reserved: reserved[i],
            target: target[i],
            drift: i64::from(held[i]) - i64::from(target[i]),
        })
        .collect()
}

/// Shared reservations per group (in `names` order) that still count for `workload` (and `revision`,
/// when given): not expired at `now`, not confirmed.
pub fn reserved_by_group(
    state: &LedgerState,
    workload: &WorkloadRef,
    revision: Option<&str>,
    names: &[String],
    now: jiff::Timestamp,
) -> Vec<u32> {
    let mut out = vec![0u32; names.len()];
    for r in &state.reservations {
        if r.workload != *workload || r.expires <= now || state.confirmed.contains_key(&r.id) {
            continue;
        }
        if revision.is_some() && r.revision.as_deref() != revision {
            continue;
        }
        if let Some(i) = names.iter().position(|n| *n == r.group) {
            out[i] += 1;
        }
    }
    out
}

/// Groups whose drift is not 0.
pub fn off_target(rows: &[GroupRow]) -> impl Iterator<Item = &GroupRow> {
    rows.iter().filter(|r| r.drift != 0)
}

/// The `OnTarget` condition for `rows`. `workload` is `None` when the target workload is missing.
pub fn on_target_condition(
    rows: &[GroupRow],
    in_no_group: u32,
    workload: Option<&str>,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Condition {
    let Some(workload) = workload else {
        return Condition::new(
            ON_TARGET,
            ConditionStatus::Unknown,
            REASON_WORKLOAD_NOT_FOUND,
            "the target workload does not exist (yet): nothing to count",
            generation,
            now,
        );
    };
    let n: u32 = rows.iter().map(|r| r.pods + r.reserved).sum();
    let stray = match in_no_group {
        0 => String::new(),
        1 => "; 1 pod is in no group (its node matches no group's selector)".to_string(),
        k => format!("; {k} pods are in no group (their nodes match no group's selector)"),
    };
    let off: Vec<String> = off_target(rows)
        .map(|r| {
            let reserved = if r.reserved > 0 { format!(" + {} reserved", r.reserved) } else { String::new() };
            format!("{}: {} pods{reserved}, target {} ({:+})", r.name, r.pods, r.target, r.drift)
        })
        .collect();
    if off.is_empty() {
        Condition::new(
            ON_TARGET,
            ConditionStatus::True,
            REASON_ON_TARGET,
            format!("every group of {workload} holds its target for {n} pods{stray}"),
            generation,
            now,
        )
    } else {
        Condition::new(
            ON_TARGET,
            ConditionStatus::False,
            REASON_OFF_TARGET,
            format!("{} of {} groups off target for {n} pods: {}{stray}", off.len(), rows.len(), off.join("; ")),
            generation,
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use placement_core::ledger::Reservation;

    fn ap() -> Apportionment {
        Apportionment::new(vec![("on-demand".into(), 80), ("spot".into(), 20)], None).unwrap()
    }

    #[test]
    fn rows_give_target_and_drift() {
        let r = rows(&ap(), &[5, 5], &[0, 0]);
        // target(10) for 80/20 is (8, 2).
        assert_eq!((r[0].target, r[0].drift), (8, -3));
        assert_eq!((r[1].target, r[1].drift), (2, 3));
        let on = rows(&ap(), &[7, 2], &[1, 0]);
        assert!(off_target(&on).next().is_none(), "{on:?}");
    }

    #[test]
    fn conditions_name_the_groups_off_target() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let r = rows(&ap(), &[5, 5], &[0, 0]);
        let c = on_target_condition(&r, 1, Some("Deployment/shop/web"), Some(2), now);
        assert_eq!((c.status, c.reason.as_str()), (ConditionStatus::False, REASON_OFF_TARGET));
        assert!(c.message.contains("on-demand: 5 pods, target 8 (-3)"), "{}", c.message);
        assert!(c.message.contains("spot: 5 pods, target 2 (+3)"), "{}", c.message);
        assert!(c.message.contains("1 pod is in no group"), "{}", c.message);
        let c = on_target_condition(&rows(&ap(), &[8, 2], &[0, 0]), 0, Some("w"), None, now);
        assert_eq!(c.status, ConditionStatus::True);
        let c = on_target_condition(&[], 0, None, None, now);
        assert_eq!((c.status, c.reason.as_str()), (ConditionStatus::Unknown, REASON_WORKLOAD_NOT_FOUND));
    }

    #[test]
    fn only_live_unconfirmed_reservations_of_the_revision_count() {
        let now = jiff::Timestamp::from_second(1_000).unwrap();
        let w = WorkloadRef::deployment("shop", "web");
        let res = |id: &str, rev: &str, group: &str, expires: i64| Reservation {
            id: id.into(),
            workload: w.clone(),
            revision: Some(rev.into()),
            group: group.into(),
            pod: None,
            expires: jiff::Timestamp::from_second(expires).unwrap(),
        };
        let mut state = LedgerState {
            reservations: vec![
                res("a", "h2", "spot", 2_000),
                res("b", "h2", "spot", 500),
                res("c", "h1", "spot", 2_000),
                res("d", "h2", "on-demand", 2_000),
                res("e", "h2", "elsewhere", 2_000),
            ],
            confirmed: Default::default(),
        };
        state.confirmed.insert("d".into(), jiff::Timestamp::from_second(1_500).unwrap());
        let names = vec!["on-demand".to_string(), "spot".to_string()];
        assert_eq!(reserved_by_group(&state, &w, Some("h2"), &names, now), vec![0, 1]);
        assert_eq!(reserved_by_group(&state, &w, None, &names, now), vec![0, 2]);
        let other = WorkloadRef::deployment("shop", "api");
        assert_eq!(reserved_by_group(&state, &other, None, &names, now), vec![0, 0]);
    }
}
