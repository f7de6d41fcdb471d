//! Shortage of an autoscaled group (issue 17): when the autoscaler cannot make a node (the cloud has
//! no capacity of that kind), pods pinned to the group wait. The rules, decided here once for the
//! operator that marks a group and the webhook that reads the mark:
//!
//! * **When a group is short.** A pod pinned to an autoscaled group that has been unschedulable for
//!   longer than the group's `fallbackAfter` ([`ShortagePolicy::fallback_after`], 3 minutes by
//!   default: Karpenter launches a node in about one) marks the group short ([`waited_too_long`]).
//! * **For how long.** Until `retryAfter` from now (10 minutes by default), doubled for each shortage
//!   that starts within `retryAfter` of the previous one's end, and never more than
//!   [`ShortagePolicy::max_retry_after`] ([`mark`]).
//! * **What it changes.** While short, the group takes a pod only on a node that has room now: no new
//!   node is counted on, so the decision falls back (`fallback: next`) instead of pinning another pod
//!   to wait ([`apply`]). As soon as a node of the group has room again, the group takes pods as usual
//!   (the mark need not be cleared for that).
//!
//! Times are inputs (no clock here); every sum saturates, so no duration or date overflows.

use crate::group::{Feasibility, NodeGroup, group_of_labels};
use crate::model::{Pod, PodKey};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// `fallbackAfter` when a group does not say.
pub const DEFAULT_FALLBACK_AFTER_SECS: u64 = 180;
/// `retryAfter` when a group does not say.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 600;
/// The longest a shortage lasts, however often it repeats.
pub const MAX_RETRY_AFTER_SECS: u64 = 4 * 3600;

/// How a group's shortages are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShortagePolicy {
    /// A pinned pod unschedulable for longer than this marks the group short, in seconds.
    pub fallback_after: u64,
    /// How long a first shortage lasts, in seconds.
    pub retry_after: u64,
    /// The bound of a repeated shortage's doubling, in seconds.
    pub max_retry_after: u64,
}

impl Default for ShortagePolicy {
    fn default() -> Self {
        ShortagePolicy {
            fallback_after: DEFAULT_FALLBACK_AFTER_SECS,
            retry_after: DEFAULT_RETRY_AFTER_SECS,
            max_retry_after: MAX_RETRY_AFTER_SECS,
        }
    }
}

/// A group marked short.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shortage {
    /// When it was marked.
    pub since: Timestamp,
    /// When it ends (unless a node of the group has room before).
    pub until: Timestamp,
    /// Shortages in a row before this one (0 for a first), each starting within `retryAfter` of the
    /// previous one's end.
    pub streak: u32,
    /// Why: which pod waited, for how long.
    pub reason: String,
}

impl Shortage {
    /// Whether the mark holds at `now`.
    pub fn holds(&self, now: Timestamp) -> bool {
        now < self.until
    }
}

fn plus(t: Timestamp, secs: u64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX))).unwrap_or(Timestamp::MAX)
}

/// Whether a pod unschedulable since `since` has waited longer than the policy allows, at `now`.
pub fn waited_too_long(since: Timestamp, now: Timestamp, policy: &ShortagePolicy) -> bool {
    now > plus(since, policy.fallback_after)
}

/// The shortage to mark at `now`, after `previous` (the group's last one, if any): `retryAfter`
/// doubled once per shortage in the streak, bounded.
pub fn mark(previous: Option<&Shortage>, now: Timestamp, policy: &ShortagePolicy, reason: String) -> Shortage {
    let streak = match previous {
        Some(p) if now <= plus(p.until, policy.retry_after) => p.streak.saturating_add(1),
        _ => 0,
    };
    let doubled = policy.retry_after.checked_shl(streak.min(63)).filter(|d| d >> streak.min(63) == policy.retry_after);
    let lasts = doubled.unwrap_or(u64::MAX).min(policy.max_retry_after.max(policy.retry_after));
    Shortage { since: now, until: plus(now, lasts), streak, reason }
}

/// What a shortage does to a group's feasibility at `now`: a group short and with no node that fits
/// now is not feasible by a new node, and says why.
pub fn apply(feasibility: &mut Feasibility, shortage: Option<&Shortage>, now: Timestamp) {
    let Some(s) = shortage.filter(|s| s.holds(now)) else { return };
    if feasibility.node.is_some() || !feasibility.new_node {
        return;
    }
    feasibility.new_node = false;
    let why = format!("short until {}: {}", s.until, s.reason);
    feasibility.why_not = Some(match feasibility.why_not.take() {
        Some(w) => format!("{w}; {why}"),
        None => why,
    });
}

/// A pending pod that marks its group short.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overdue {
    /// The group, by index.
    pub group: usize,
    pub pod: PodKey,
    /// The pod's uid, for a delete that cannot hit its successor.
    pub uid: Option<String>,
    /// Since when it has been unschedulable.
    pub since: Timestamp,
}

impl Overdue {
    /// Why the group is short, for status and Events.
    pub fn reason(&self, group: &str, now: Timestamp) -> String {
        let waited = now.duration_since(self.since).as_secs().max(0);
        format!("{} waited {waited}s for a node of autoscaled group {group}", self.pod)
    }
}

/// The pods among `pods` that mark their group short at `now`: not bound, still counting, pinned by
/// their own nodeSelector or required affinity to an autoscaled group of `groups`, and unschedulable
/// for longer than that group's policy (`policies`, one per group) allows.
pub fn overdue<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    groups: &[NodeGroup],
    policies: &[ShortagePolicy],
    now: Timestamp,
) -> Vec<Overdue> {
    pods.into_iter()
        .filter(|p| p.node_name.is_none() && p.counts())
        .filter_map(|p| {
            let since = p.unschedulable_since?;
            let group = group_of_labels(groups, &p.implied_node_labels())?;
            let policy = policies.get(group)?;
            (groups[group].autoscaled.is_some() && waited_too_long(since, now, policy)).then(|| Overdue {
                group,
                pod: p.key(),
                uid: p.uid.clone(),
                since,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PodBuilder;
    use crate::selector::LabelSelector;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_pod_marks_the_group_only_past_fallback_after() {
        let policy = ShortagePolicy::default();
        assert!(!waited_too_long(at(0), at(180), &policy), "at the limit: not yet");
        assert!(waited_too_long(at(0), at(181), &policy), "one past it");
        assert!(!waited_too_long(Timestamp::MAX, at(0), &policy), "a date far ahead never overflows");
    }

    #[test]
    fn repeated_shortages_double_up_to_the_bound() {
        let policy = ShortagePolicy::default();
        let first = mark(None, at(0), &policy, "web-1 waited 181s".into());
        assert_eq!((first.streak, first.until), (0, at(600)));
        // Starting again within retryAfter of the end: doubled.
        let second = mark(Some(&first), at(600 + 600), &policy, String::new());
        assert_eq!((second.streak, second.until), (1, at(1200 + 1200)));
        // Starting later than that: a new streak.
        let fresh = mark(Some(&first), at(600 + 601), &policy, String::new());
        assert_eq!((fresh.streak, fresh.until), (0, at(1201 + 600)));
        // Many in a row: never more than the bound, and no overflow at any streak.
        let mut s = first;
        for _ in 0..100 {
            s = mark(Some(&s), s.until, &policy, String::new());
            assert!(s.until.duration_since(s.since) <= SignedDuration::from_secs(MAX_RETRY_AFTER_SECS as i64));
        }
        assert_eq!(s.until.duration_since(s.since), SignedDuration::from_secs(MAX_RETRY_AFTER_SECS as i64));
        let huge = ShortagePolicy { fallback_after: u64::MAX, retry_after: u64::MAX, max_retry_after: u64::MAX };
        assert_eq!(mark(None, at(0), &huge, String::new()).until, Timestamp::MAX, "saturates");
    }

    #[test]
    fn only_pods_pinned_to_an_autoscaled_group_and_waiting_too_long_are_overdue() {
        let groups = [
            NodeGroup::new("on-demand", LabelSelector::from_pairs([("capacity", "on-demand")])),
            NodeGroup::new("spot", LabelSelector::from_pairs([("capacity", "spot")])).autoscaled(vec![]),
        ];
        let policies = [ShortagePolicy::default(); 2];
        let waiting = |name: &str, capacity: &str, since: Option<i64>| {
            let mut p =
                PodBuilder::new("shop", name).deployment("web").pending().node_selector("capacity", capacity).build();
            p.unschedulable_since = since.map(at);
            p
        };
        let bound = {
            let mut p = PodBuilder::new("shop", "bound").deployment("web").on_node("spot-1").build();
            p.unschedulable_since = Some(at(0));
            p
        };
        let pods = [
            waiting("late", "spot", Some(0)),
            waiting("in-time", "spot", Some(100)),
            waiting("not-autoscaled", "on-demand", Some(0)),
            waiting("scheduled-soon", "spot", None),
            waiting("no-group", "gpu", Some(0)),
            bound,
        ];
        let found = overdue(&pods, &groups, &policies, at(200));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].group, found[0].pod.name.as_str(), found[0].since), (1, "late", at(0)));
        assert_eq!(found[0].reason("spot", at(200)), "shop/late waited 200s for a node of autoscaled group spot");
    }

    #[test]
    fn a_short_group_takes_pods_only_where_a_node_has_room() {
        let short = mark(None, at(0), &ShortagePolicy::default(), "web-1 waited 181s for a node".into());
        let by_new_node = || Feasibility { new_node: true, ..Feasibility::none() };
        let mut f = by_new_node();
        apply(&mut f, Some(&short), at(10));
        assert!(!f.feasible(), "no new node counted on while short");
        assert_eq!(
            f.why_not.as_deref(),
            Some(format!("short until {}: web-1 waited 181s for a node", at(600)).as_str())
        );
        // A node with room: feasible as usual.
        let mut room = Feasibility { node: Some("spot-1".into()), nodes: 1, ..Feasibility::none() };
        apply(&mut room, Some(&short), at(10));
        assert_eq!(room.node.as_deref(), Some("spot-1"));
        // Once the mark has ended, or with none: unchanged.
        for (shortage, now) in [(Some(&short), at(600)), (None, at(10))] {
            let mut f = by_new_node();
            apply(&mut f, shortage, now);
            assert!(f.feasible());
        }
    }
}
