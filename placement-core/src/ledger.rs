//! The in-flight reservation ledger (`docs/semantics.md#in-flight-reservations`). The API server calls
//! the webhook for a whole ReplicaSet burst before any of those pods reaches the watch cache, so every
//! decision is recorded as a reservation and counted until the pod is seen (confirmed) or the reservation
//! expires.
//!
//! A pod is never counted twice: a confirmed id leaves a tombstone until its expiry, so a late or
//! repeated `add` of the same id (a peer replica's ledger, a reinvoked webhook) is ignored. Counts are
//! kept as aggregates, so reading them is O(1) per group. The serializable form is what strict mode
//! shares between webhook replicas through a CR status; [`Ledger::merge`] folds a peer's ledger in.
//!
//! Expiry is in time order: reservations and tombstones are also indexed by `(expiry, id)`, so
//! [`Ledger::expire`] takes only what is due, O(log n) each, and never looks at the rest. The webhook
//! runs it every 500 ms under the index write lock, with hundreds of thousands of entries in flight.

use crate::model::{PodKey, WorkloadRef};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The annotation a placed pod carries, holding its reservation id.
pub const RESERVATION_ANNOTATION: &str = "placement.dev/reservation";

/// Longest reservation id, in bytes: an AdmissionReview uid is a UUID (36).
pub const RESERVATION_ID_MAX: usize = 64;

/// Whether `id` has the shape of a reservation id: a UUID (`8-4-4-4-12` hexadecimal digits), as the API
/// server gives every AdmissionReview. Only such ids are reserved, and only such values of a pod's
/// `placement.dev/reservation` leave a tombstone: a forged review's uid or a tenant's annotation of any
/// other shape or size is never stored (`docs/security.md#who-can-reach-the-webhook-and-what-a-forged-review-can-do`).
pub fn is_reservation_id(id: &str) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    id.len() <= RESERVATION_ID_MAX
        && id.split('-').map(str::len).eq(GROUPS)
        && id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
}

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

impl LedgerState {
    /// Whether `r`, read from this shared state, still counts at `now`
    /// (`docs/semantics.md#shared-reservations`): it has not expired, and if some replica saw its pod and
    /// marked it confirmed, that confirmation's listing time is not over. The one liveness rule of a
    /// shared ledger: the webhook's replicas and the operator's pruning both use it.
    pub fn counts(&self, r: &Reservation, now: Timestamp) -> bool {
        r.expires > now && self.confirmed.get(&r.id).is_none_or(|until| *until > now)
    }

    /// This state without what no longer counts at `now`: reservations that fail [`Self::counts`] and
    /// confirmations whose listing time is over.
    pub fn pruned(&self, now: Timestamp) -> LedgerState {
        LedgerState {
            reservations: self.reservations.iter().filter(|r| self.counts(r, now)).cloned().collect(),
            confirmed: self.confirmed.iter().filter(|(_, until)| **until > now).map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }
}

type Totals = HashMap<WorkloadRef, HashMap<Option<String>, BTreeMap<String, u32>>>;

/// Reservations in flight, with per-workload, per-revision, per-group totals.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    active: BTreeMap<String, Reservation>,
    confirmed: BTreeMap<String, Timestamp>,
    /// `(expires, id)` of every entry of `active`, in expiry order.
    active_by_expiry: BTreeSet<(Timestamp, String)>,
    /// `(until, id)` of every entry of `confirmed`, in expiry order.
    confirmed_by_expiry: BTreeSet<(Timestamp, String)>,
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
        self.count(&r);
        self.active_by_expiry.insert((r.expires, r.id.clone()));
        self.active.insert(r.id.clone(), r);
        true
    }

    /// The pod of reservation `id` was seen: stop counting it, and remember the id until `keep_until`
    /// (or the reservation's own expiry, if later) so that it is never counted again. Confirming an
    /// unknown id only records the tombstone; confirming an id again keeps the later of the two times.
    pub fn confirm(&mut self, id: &str, keep_until: Timestamp) -> Option<Reservation> {
        let removed = self.release(id);
        let until = removed.as_ref().map_or(keep_until, |r| r.expires.max(keep_until));
        match self.confirmed.get_mut(id) {
            Some(kept) if *kept >= until => {}
            Some(kept) => {
                let mut key = (*kept, id.to_string());
                let indexed = self.confirmed_by_expiry.remove(&key);
                debug_assert!(indexed, "tombstone {id} not in the expiry index");
                *kept = until;
                key.0 = until;
                self.confirmed_by_expiry.insert(key);
            }
            None => {
                self.confirmed.insert(id.to_string(), until);
                self.confirmed_by_expiry.insert((until, id.to_string()));
            }
        }
        removed
    }

    /// Drop a reservation without a tombstone (the admission was abandoned).
    pub fn release(&mut self, id: &str) -> Option<Reservation> {
        let (key, r) = self.active.remove_entry(id)?;
        let indexed = self.active_by_expiry.remove(&(r.expires, key));
        debug_assert!(indexed, "reservation {id} not in the expiry index");
        self.uncount(&r);
        Some(r)
    }

    /// Drop reservations and tombstones whose time is up (`expires <= now`); returns the reservations,
    /// earliest expiry first (ties by id). Costs O(log n) per entry dropped: nothing else is looked at.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Reservation> {
        let mut dropped = Vec::new();
        while let Some(id) = pop_due(&mut self.active_by_expiry, now) {
            let r = self.active.remove(&id);
            debug_assert!(r.is_some(), "indexed reservation {id} not active");
            if let Some(r) = r {
                self.uncount(&r);
                dropped.push(r);
            }
        }
        while let Some(id) = pop_due(&mut self.confirmed_by_expiry, now) {
            let kept = self.confirmed.remove(&id);
            debug_assert!(kept.is_some(), "indexed tombstone {id} not kept");
        }
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

    /// Every reservation and tombstone is in its expiry index and nothing else is (tests only: O(n)).
    #[cfg(test)]
    fn check_indexes(&self) {
        let active: BTreeSet<(Timestamp, String)> = self.active.iter().map(|(id, r)| (r.expires, id.clone())).collect();
        assert!(self.active.iter().all(|(id, r)| *id == r.id), "active keyed by id");
        assert_eq!(active, self.active_by_expiry, "active reservations by expiry");
        let confirmed: BTreeSet<(Timestamp, String)> =
            self.confirmed.iter().map(|(id, until)| (*until, id.clone())).collect();
        assert_eq!(confirmed, self.confirmed_by_expiry, "tombstones by expiry");
    }

    fn count(&mut self, r: &Reservation) {
        let groups = self.totals.entry(r.workload.clone()).or_default().entry(r.revision.clone()).or_default();
        let n = groups.entry(r.group.clone()).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// Stops counting `r`, dropping totals that reach zero. Allocates nothing: expiry calls it for every
    /// reservation it drops, under the index write lock.
    fn uncount(&mut self, r: &Reservation) {
        let Some(by_rev) = self.totals.get_mut(&r.workload) else { return };
        let Some(groups) = by_rev.get_mut(&r.revision) else { return };
        let Some(n) = groups.get_mut(&r.group) else { return };
        *n = n.saturating_sub(1);
        if *n == 0 {
            groups.remove(&r.group);
            if groups.is_empty() {
                by_rev.remove(&r.revision);
                if by_rev.is_empty() {
                    self.totals.remove(&r.workload);
                }
            }
        }
    }
}

/// Takes the id of the earliest entry of `index` if its time is up (`time <= now`).
fn pop_due(index: &mut BTreeSet<(Timestamp, String)>, now: Timestamp) -> Option<String> {
    if index.first().is_some_and(|(time, _)| *time <= now) { index.pop_first().map(|(_, id)| id) } else { None }
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
    fn reservation_ids_are_uuid_shaped() {
        for id in ["00000000-0000-4000-9000-000000000000", "7C9E6679-7425-40DE-944B-E07FC1F90AE7"] {
            assert!(is_reservation_id(id), "{id}");
        }
        let long = "a".repeat(RESERVATION_ID_MAX + 1);
        for id in [
            "",
            "burst-0",
            "00000000-0000-4000-9000-00000000000",
            "00000000-0000-4000-9000-0000000000000",
            "00000000-0000-4000-9000-00000000000g",
            "00000000-0000-4000-9000-000000000000-",
            "00000000000040009000000000000000",
            "0000000-00000-4000-9000-000000000000",
            long.as_str(),
        ] {
            assert!(!is_reservation_id(id), "{id}");
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

    fn ids(rs: &[Reservation]) -> Vec<&str> {
        rs.iter().map(|r| r.id.as_str()).collect()
    }

    /// One step of a table-driven case.
    enum Step {
        Add(&'static str, i64, bool),
        Confirm(&'static str, i64, Option<&'static str>),
        Release(&'static str, bool),
        /// Expire at a time: the ids dropped, in order.
        Expire(i64, &'static [&'static str]),
        /// Ids active and ids remembered as confirmed, in id order.
        Holds(&'static [&'static str], &'static [&'static str]),
    }

    fn run(name: &str, steps: &[Step]) {
        use Step::*;
        let mut l = Ledger::new();
        for (i, step) in steps.iter().enumerate() {
            let at = format!("{name}, step {i}");
            match *step {
                Add(id, expires, added) => assert_eq!(l.add(res(id, "spot", expires)), added, "{at}"),
                Confirm(id, until, was) => {
                    assert_eq!(l.confirm(id, ts(until)).as_ref().map(|r| r.id.as_str()), was, "{at}")
                }
                Release(id, was) => assert_eq!(l.release(id).is_some(), was, "{at}"),
                Expire(now, want) => assert_eq!(ids(&l.expire(ts(now))), want, "{at}"),
                Holds(active, confirmed) => {
                    let state = l.state();
                    assert_eq!(ids(&state.reservations), active, "{at}: active");
                    let kept: Vec<&str> = state.confirmed.keys().map(String::as_str).collect();
                    assert_eq!(kept, confirmed, "{at}: confirmed");
                    assert_eq!(l.len(), active.len(), "{at}");
                }
            }
            l.check_indexes();
        }
    }

    #[test]
    fn a_shared_reservation_counts_until_it_expires_or_its_confirmation_is_over() {
        let mut state = LedgerState {
            reservations: vec![res("open", "spot", 10), res("seen", "spot", 10), res("seen-long-ago", "spot", 10)],
            confirmed: BTreeMap::new(),
        };
        state.confirmed.insert("seen".into(), ts(5));
        state.confirmed.insert("seen-long-ago".into(), ts(3));
        let counting = |now: i64| -> Vec<&str> {
            state.reservations.iter().filter(|r| state.counts(r, ts(now))).map(|r| r.id.as_str()).collect()
        };
        assert_eq!(counting(2), ["open", "seen", "seen-long-ago"]);
        assert_eq!(counting(3), ["open", "seen"], "a confirmation's listing time ends at its instant");
        assert_eq!(counting(5), ["open"]);
        assert_eq!(counting(9), ["open"]);
        assert!(counting(10).is_empty(), "expired at its instant");
        let pruned = state.pruned(ts(4));
        assert_eq!(ids(&pruned.reservations), ["open", "seen"]);
        assert_eq!(pruned.confirmed.keys().map(String::as_str).collect::<Vec<_>>(), ["seen"]);
    }

    #[test]
    fn expiry_cases() {
        use Step::*;
        let cases: &[(&str, &[Step])] = &[
            ("nothing due", &[Add("a", 10, true), Expire(9, &[]), Holds(&["a"], &[])]),
            ("due at its expiry, not before", &[Add("a", 10, true), Expire(10, &["a"]), Holds(&[], &[])]),
            (
                "earliest first, ties by id",
                &[
                    Add("c", 5, true),
                    Add("b", 7, true),
                    Add("a", 7, true),
                    Add("d", 3, true),
                    Add("e", 9, true),
                    Expire(7, &["d", "c", "a", "b"]),
                    Holds(&["e"], &[]),
                ],
            ),
            ("expiring twice drops once", &[Add("a", 5, true), Expire(6, &["a"]), Expire(6, &[]), Expire(100, &[])]),
            ("an expired id can be added again", &[Add("a", 5, true), Expire(5, &["a"]), Add("a", 9, true)]),
            (
                "a released reservation never expires",
                &[Add("a", 5, true), Release("a", true), Expire(5, &[]), Holds(&[], &[])],
            ),
            ("releasing an unknown id changes nothing", &[Add("a", 5, true), Release("x", false), Holds(&["a"], &[])]),
            ("releasing twice", &[Add("a", 5, true), Release("a", true), Release("a", false), Add("a", 8, true)]),
            ("a released id can be added again", &[Add("a", 5, true), Release("a", true), Add("a", 3, true)]),
            (
                "confirm keeps the tombstone until the reservation's expiry if later",
                &[
                    Add("a", 20, true),
                    Confirm("a", 10, Some("a")),
                    Expire(15, &[]),
                    Holds(&[], &["a"]),
                    Expire(20, &[]),
                    Holds(&[], &[]),
                    Add("a", 30, true),
                ],
            ),
            (
                "confirm keeps the tombstone until keep_until if later",
                &[Add("a", 10, true), Confirm("a", 20, Some("a")), Expire(19, &[]), Add("a", 30, false)],
            ),
            (
                "re-confirming extends a tombstone",
                &[
                    Confirm("a", 10, None),
                    Confirm("a", 30, None),
                    Expire(10, &[]),
                    Holds(&[], &["a"]),
                    Add("a", 40, false),
                    Expire(30, &[]),
                    Holds(&[], &[]),
                    Add("a", 40, true),
                ],
            ),
            (
                "re-confirming earlier does not shorten a tombstone",
                &[Confirm("a", 30, None), Confirm("a", 10, None), Expire(10, &[]), Holds(&[], &["a"])],
            ),
            (
                "confirming an unknown id leaves only a tombstone",
                &[Confirm("x", 10, None), Holds(&[], &["x"]), Add("x", 5, false), Expire(10, &[]), Holds(&[], &[])],
            ),
            (
                "a confirmed reservation is not returned by expire",
                &[Add("a", 5, true), Add("b", 5, true), Confirm("a", 1, Some("a")), Expire(5, &["b"])],
            ),
            (
                "expire with a time in the past",
                &[Add("a", 5, true), Confirm("b", 5, None), Expire(-100, &[]), Holds(&["a"], &["b"])],
            ),
        ];
        for (name, steps) in cases {
            run(name, steps);
        }
    }

    #[test]
    fn expire_leaves_counts_of_what_is_not_due() {
        let w = WorkloadRef::deployment("ns", "web");
        let mut l = Ledger::new();
        for i in 0..100 {
            l.add(res(&format!("r{i:03}"), if i % 4 == 0 { "ondemand" } else { "spot" }, i));
        }
        let gone = l.expire(ts(49));
        assert_eq!(gone.len(), 50);
        assert!(gone.windows(2).all(|p| p[0].expires <= p[1].expires), "in time order");
        assert_eq!(l.reserved(&w, None, "ondemand"), 12);
        assert_eq!(l.reserved(&w, None, "spot"), 38);
        l.check_indexes();
        l.expire(ts(99));
        assert!(l.is_empty());
        assert!(l.reserved_by_group(&w, None).is_empty());
        l.check_indexes();
    }

    #[test]
    fn merge_and_from_state_index_what_they_fold_in() {
        let mut peer = Ledger::new();
        peer.add(res("p1", "spot", 10));
        peer.add(res("p2", "spot", 20));
        peer.confirm("c1", ts(15));
        let mut l = Ledger::new();
        l.add(res("p1", "spot", 10));
        l.confirm("c1", ts(5));
        l.merge(&peer.state());
        l.check_indexes();
        assert_eq!(ids(&l.expire(ts(10))), ["p1"]);
        assert!(l.is_confirmed("c1"), "the peer's later tombstone wins");
        assert_eq!(ids(&l.expire(ts(20))), ["p2"]);
        assert!(!l.is_confirmed("c1"));

        let mut back = Ledger::from_state(peer.state());
        back.check_indexes();
        assert_eq!(ids(&back.expire(ts(20))), ["p1", "p2"]);
        assert!(back.state().confirmed.is_empty());
    }

    #[test]
    fn clones_are_independent() {
        let mut a = Ledger::new();
        a.add(res("a", "spot", 5));
        a.confirm("b", ts(5));
        let mut b = a.clone();
        assert_eq!(ids(&b.expire(ts(5))), ["a"]);
        assert_eq!(a.len(), 1);
        assert!(a.is_confirmed("b") && !b.is_confirmed("b"));
        a.check_indexes();
        b.check_indexes();
    }

    proptest::proptest! {
        /// The expiry indexes stay in step with the maps under any sequence of operations.
        #[test]
        fn indexes_stay_in_step(ops in proptest::collection::vec((0u8..5, 0u8..8, 0i64..40), 0..100)) {
            let mut l = Ledger::new();
            for (op, id, t) in ops {
                let id = format!("r{id}");
                match op {
                    0 => drop(l.add(res(&id, "spot", t))),
                    1 => drop(l.confirm(&id, ts(t))),
                    2 => drop(l.release(&id)),
                    3 => drop(l.expire(ts(t))),
                    _ => {
                        let mut peer = Ledger::new();
                        peer.add(res(&format!("r{}", t % 8), "spot", t));
                        peer.confirm(&id, ts(t));
                        l.merge(&peer.state());
                    }
                }
                l.check_indexes();
            }
        }
    }
}
