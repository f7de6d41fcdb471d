//! The in-flight reservation ledger (DESIGN §3.1). The API server calls the webhook for a whole
//! ReplicaSet burst before any of those pods reaches the watch cache, so every decision is recorded as a
//! reservation and counted until the pod is seen (confirmed) or the reservation expires.
//!
//! A pod is never counted twice: a confirmed id leaves a tombstone until its expiry, so a late or
//! repeated `add` of the same id (a peer replica's ledger, a reinvoked webhook) is ignored. Counts are
//! kept as aggregates, so reading them is O(1) per group. The serializable form is what strict mode
//! shares between webhook replicas through a CR status; [`Ledger::merge`] folds a peer's ledger in.

use crate::model::{PodKey, WorkloadRef};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The annotation a placed pod carries, holding its reservation id.
pub const RESERVATION_ANNOTATION: &str = "placement.dev/reservation";

/// One decision not yet seen in the watch cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// Unique per admission (the webhook uses the AdmissionReview uid).
    pub id: String,
    pub workload: WorkloadRef,
    #[serde(default)]
    pub revision: Option<String>,
    /// Group name or zone.
    pub group: String,
    #[serde(default)]
    pub pod: Option<PodKey>,
    pub expires: Timestamp,
}

/// Serializable form of a ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerState {
    #[serde(default)]
    pub reservations: Vec<Reservation>,
    /// Confirmed ids and until when they are remembered.
    #[serde(default)]
    pub confirmed: BTreeMap<String, Timestamp>,
}

type Totals = HashMap<WorkloadRef, HashMap<Option<String>, BTreeMap<String, u32>>>;

/// Reservations in flight, with per-workload, per-revision, per-group totals.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    active: BTreeMap<String, Reservation>,
    confirmed: BTreeMap<String, Timestamp>,
    totals: Totals,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a reservation. Returns `false` (and changes nothing) when the id is already active or was
    /// already confirmed.
    pub fn add(&mut self, r: Reservation) -> bool {
        if self.active.contains_key(&r.id) || self.confirmed.contains_key(&r.id) {
            return false;
        }
        self.bump(&r, 1);
        self.active.insert(r.id.clone(), r);
        true
    }

    /// The pod of reservation `id` was seen: stop counting it, and remember the id until `keep_until`
    /// (or the reservation's own expiry, if later) so that it is never counted again. Confirming an
    /// unknown id only records the tombstone.
    pub fn confirm(&mut self, id: &str, keep_until: Timestamp) -> Option<Reservation> {
        let removed = self.active.remove(id);
        let until = removed.as_ref().map_or(keep_until, |r| r.expires.max(keep_until));
        if let Some(r) = &removed {
            self.bump(r, -1);
        }
        let entry = self.confirmed.entry(id.to_string()).or_insert(until);
        *entry = (*entry).max(until);
        removed
    }

    /// Drop a reservation without a tombstone (the admission was abandoned).
    pub fn release(&mut self, id: &str) -> Option<Reservation> {
        let removed = self.active.remove(id);
        if let Some(r) = &removed {
            self.bump(r, -1);
        }
        removed
    }

    /// Drop reservations and tombstones whose time is up (`expires <= now`); returns the reservations.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Reservation> {
        let gone: Vec<String> = self.active.values().filter(|r| r.expires <= now).map(|r| r.id.clone()).collect();
        let dropped: Vec<Reservation> = gone.iter().filter_map(|id| self.release(id)).collect();
        self.confirmed.retain(|_, until| *until > now);
        dropped
    }

    /// Reservations counted for one workload and group; `revision: None` sums over revisions.
    pub fn reserved(&self, workload: &WorkloadRef, revision: Option<&str>, group: &str) -> u32 {
        self.for_workload(workload, revision).map(|groups| groups.get(group).copied().unwrap_or(0)).sum()
    }

    /// Reservations per group for one workload; `revision: None` sums over revisions.
    pub fn reserved_by_group(&self, workload: &WorkloadRef, revision: Option<&str>) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for groups in self.for_workload(workload, revision) {
            for (g, n) in groups {
                *out.entry(g.clone()).or_insert(0) += n;
            }
        }
        out
    }

    fn for_workload<'a>(
        &'a self,
        workload: &WorkloadRef,
        revision: Option<&'a str>,
    ) -> impl Iterator<Item = &'a BTreeMap<String, u32>> + 'a {
        self.totals
            .get(workload)
            .into_iter()
            .flat_map(|by_rev| by_rev.iter())
            .filter(move |(rev, _)| revision.is_none() || rev.as_deref() == revision)
            .map(|(_, groups)| groups)
    }

    /// Active reservations.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Reservation> {
        self.active.get(id)
    }

    pub fn is_confirmed(&self, id: &str) -> bool {
        self.confirmed.contains_key(id)
    }

    /// Fold in a peer's ledger (strict mode): its tombstones confirm, its reservations add; nothing is
    /// counted twice.
    pub fn merge(&mut self, peer: &LedgerState) {
        for (id, until) in &peer.confirmed {
            self.confirm(id, *until);
        }
        for r in &peer.reservations {
            self.add(r.clone());
        }
    }

    pub fn state(&self) -> LedgerState {
        LedgerState { reservations: self.active.values().cloned().collect(), confirmed: self.confirmed.clone() }
    }

    pub fn from_state(state: LedgerState) -> Self {
        let mut l = Ledger::new();
        l.merge(&state);
        l
    }

    fn bump(&mut self, r: &Reservation, delta: i64) {
        let groups = self.totals.entry(r.workload.clone()).or_default().entry(r.revision.clone()).or_default();
        let n = groups.entry(r.group.clone()).or_insert(0);
        *n = u32::try_from((i64::from(*n) + delta).max(0)).unwrap_or(u32::MAX);
        if *n == 0 {
            groups.remove(&r.group);
            if groups.is_empty() {
                let by_rev = self.totals.get_mut(&r.workload).expect("just inserted");
                by_rev.remove(&r.revision);
                if by_rev.is_empty() {
                    self.totals.remove(&r.workload);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn res(id: &str, group: &str, expires: i64) -> Reservation {
        Reservation {
            id: id.into(),
            workload: WorkloadRef::deployment("ns", "web"),
            revision: Some("r1".into()),
            group: group.into(),
            pod: None,
            expires: ts(expires),
        }
    }

    #[test]
    fn lifecycle() {
        let w = WorkloadRef::deployment("ns", "web");
        let mut l = Ledger::new();
        assert!(l.add(res("a", "spot", 100)));
        assert!(!l.add(res("a", "spot", 100)), "idempotent");
        assert!(l.add(res("b", "spot", 50)));
        assert!(l.add(res("c", "ondemand", 100)));
        assert_eq!(l.reserved(&w, Some("r1"), "spot"), 2);
        assert_eq!(l.reserved(&w, Some("r2"), "spot"), 0, "other revision");
        assert_eq!(l.reserved(&w, None, "spot"), 2);
        assert!(l.confirm("a", ts(10)).is_some());
        assert_eq!(l.reserved(&w, Some("r1"), "spot"), 1);
        assert!(!l.add(res("a", "spot", 100)), "confirmed ids never count again");
        assert_eq!(l.expire(ts(50)).len(), 1, "b expires at 50");
        assert_eq!(l.reserved_by_group(&w, Some("r1")), BTreeMap::from([("ondemand".to_string(), 1)]));
        assert!(l.release("c").is_some());
        assert!(l.is_empty());
        assert!(l.is_confirmed("a"));
        l.expire(ts(100));
        assert!(!l.is_confirmed("a"), "tombstones expire with the reservation");
    }

    #[test]
    fn confirm_before_add_is_remembered() {
        let w = WorkloadRef::deployment("ns", "web");
        let mut l = Ledger::new();
        assert!(l.confirm("x", ts(30)).is_none());
        assert!(!l.add(res("x", "spot", 20)));
        assert_eq!(l.reserved(&w, None, "spot"), 0);
    }

    #[test]
    fn merge_and_state_round_trip() {
        let w = WorkloadRef::deployment("ns", "web");
        let mut a = Ledger::new();
        a.add(res("1", "spot", 100));
        a.add(res("2", "spot", 100));
        let mut b = Ledger::new();
        b.add(res("2", "spot", 100));
        b.confirm("1", ts(100));
        a.merge(&b.state());
        assert_eq!(a.reserved(&w, None, "spot"), 1, "1 confirmed by the peer, 2 not doubled");
        let json = serde_json::to_string(&a.state()).unwrap();
        let back = Ledger::from_state(serde_json::from_str(&json).unwrap());
        assert_eq!(back.state(), a.state());
    }
}
