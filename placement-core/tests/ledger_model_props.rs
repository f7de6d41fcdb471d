//! The ledger, whose expiry takes entries in time order from its indexes, behaves exactly like a naive
//! ledger that scans everything, over any sequence of add, confirm, release, merge and expire: the same
//! answer from every operation (the reservations `expire` drops, in time order), and afterwards the same
//! state, counts, lookups and tombstones. Ids repeat often, so duplicate adds, re-confirms that extend
//! (or fail to shorten) a tombstone, confirms and releases of unknown ids and re-adds after expiry all
//! happen; times are not monotonic, so expiry in the past and ties at the same instant are covered.

use jiff::Timestamp;
use placement_core::ledger::{Ledger, LedgerState, Reservation};
use placement_core::model::{PodKey, WorkloadRef};
use proptest::prelude::*;
use std::collections::BTreeMap;

const IDS: u8 = 10;

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap()
}

fn workload(w: u8) -> WorkloadRef {
    WorkloadRef::deployment("ns", format!("w{w}"))
}

fn revision(r: u8) -> Option<String> {
    (r > 0).then(|| format!("rev{r}"))
}

#[derive(Clone, Debug)]
struct Draft {
    id: u8,
    workload: u8,
    revision: u8,
    group: u8,
    pod: bool,
    expires: i64,
}

impl Draft {
    fn reservation(&self) -> Reservation {
        Reservation {
            id: format!("id-{}", self.id),
            workload: workload(self.workload),
            revision: revision(self.revision),
            group: format!("g{}", self.group),
            pod: self.pod.then(|| PodKey { namespace: "ns".into(), name: format!("pod-{}", self.id) }),
            expires: ts(self.expires),
        }
    }
}

fn arb_draft() -> impl Strategy<Value = Draft> {
    (0..IDS, 0u8..2, 0u8..3, 0u8..3, any::<bool>(), 0i64..40)
        .prop_map(|(id, workload, revision, group, pod, expires)| Draft { id, workload, revision, group, pod, expires })
}

#[derive(Clone, Debug)]
enum Op {
    Add(Draft),
    Confirm { id: u8, keep_until: i64 },
    Release { id: u8 },
    Merge { reservations: Vec<Draft>, confirmed: Vec<(u8, i64)> },
    Expire { now: i64 },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => arb_draft().prop_map(Op::Add),
        2 => (0..IDS, 0i64..40).prop_map(|(id, keep_until)| Op::Confirm { id, keep_until }),
        // Ids up to IDS + 2: some are never added.
        1 => (0..IDS + 2).prop_map(|id| Op::Release { id }),
        1 => (prop::collection::vec(arb_draft(), 0..4), prop::collection::vec((0..IDS, 0i64..40), 0..4))
            .prop_map(|(reservations, confirmed)| Op::Merge { reservations, confirmed }),
        2 => (-5i64..45).prop_map(|now| Op::Expire { now }),
    ]
}

/// The ledger as plainly as it can be written: two maps, and expiry scans both.
#[derive(Default)]
struct Naive {
    active: BTreeMap<String, Reservation>,
    confirmed: BTreeMap<String, Timestamp>,
}

impl Naive {
    fn add(&mut self, r: Reservation) -> bool {
        if self.active.contains_key(&r.id) || self.confirmed.contains_key(&r.id) {
            return false;
        }
        self.active.insert(r.id.clone(), r);
        true
    }

    fn confirm(&mut self, id: &str, keep_until: Timestamp) -> Option<Reservation> {
        let removed = self.active.remove(id);
        let mut until = removed.as_ref().map_or(keep_until, |r| r.expires.max(keep_until));
        if let Some(kept) = self.confirmed.get(id) {
            until = until.max(*kept);
        }
        self.confirmed.insert(id.to_string(), until);
        removed
    }

    fn release(&mut self, id: &str) -> Option<Reservation> {
        self.active.remove(id)
    }

    fn merge(&mut self, peer: &LedgerState) {
        for (id, until) in &peer.confirmed {
            self.confirm(id, *until);
        }
        for r in &peer.reservations {
            self.add(r.clone());
        }
    }

    /// Everything due, earliest expiry first, ties by id.
    fn expire(&mut self, now: Timestamp) -> Vec<Reservation> {
        let mut gone: Vec<Reservation> = self.active.values().filter(|r| r.expires <= now).cloned().collect();
        gone.sort_by(|a, b| (a.expires, &a.id).cmp(&(b.expires, &b.id)));
        self.active.retain(|_, r| r.expires > now);
        self.confirmed.retain(|_, until| *until > now);
        gone
    }

    fn state(&self) -> LedgerState {
        LedgerState { reservations: self.active.values().cloned().collect(), confirmed: self.confirmed.clone() }
    }

    fn reserved_by_group(&self, w: &WorkloadRef, revision: Option<&str>) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for r in self.active.values() {
            if r.workload == *w && (revision.is_none() || r.revision.as_deref() == revision) {
                *out.entry(r.group.clone()).or_insert(0) += 1;
            }
        }
        out
    }
}

fn same(ledger: &Ledger, naive: &Naive) -> Result<(), TestCaseError> {
    prop_assert_eq!(ledger.state(), naive.state());
    prop_assert_eq!(ledger.len(), naive.active.len());
    prop_assert_eq!(ledger.is_empty(), naive.active.is_empty());
    for id in 0..IDS + 2 {
        let id = format!("id-{id}");
        prop_assert_eq!(ledger.get(&id), naive.active.get(&id), "get {}", id);
        prop_assert_eq!(ledger.is_confirmed(&id), naive.confirmed.contains_key(&id), "is_confirmed {}", id);
    }
    for w in 0u8..2 {
        let w = workload(w);
        for rev in [None, Some("rev1"), Some("rev2"), Some("other")] {
            let want = naive.reserved_by_group(&w, rev);
            prop_assert_eq!(ledger.reserved_by_group(&w, rev), want.clone(), "{:?} {:?}", w, rev);
            for g in 0u8..3 {
                let g = format!("g{g}");
                prop_assert_eq!(ledger.reserved(&w, rev, &g), want.get(&g).copied().unwrap_or(0));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn indexed_ledger_matches_naive_ledger(ops in prop::collection::vec(arb_op(), 0..120)) {
        let mut ledger = Ledger::new();
        let mut naive = Naive::default();
        for op in ops {
            match op {
                Op::Add(d) => prop_assert_eq!(ledger.add(d.reservation()), naive.add(d.reservation())),
                Op::Confirm { id, keep_until } => {
                    let id = format!("id-{id}");
                    prop_assert_eq!(ledger.confirm(&id, ts(keep_until)), naive.confirm(&id, ts(keep_until)));
                }
                Op::Release { id } => {
                    let id = format!("id-{id}");
                    prop_assert_eq!(ledger.release(&id), naive.release(&id));
                }
                Op::Merge { reservations, confirmed } => {
                    let peer = LedgerState {
                        reservations: reservations.iter().map(Draft::reservation).collect(),
                        confirmed: confirmed.iter().map(|(id, until)| (format!("id-{id}"), ts(*until))).collect(),
                    };
                    ledger.merge(&peer);
                    naive.merge(&peer);
                }
                Op::Expire { now } => prop_assert_eq!(ledger.expire(ts(now)), naive.expire(ts(now))),
            }
            same(&ledger, &naive)?;
        }
        // A ledger rebuilt from the state expires the same way as the one it came from.
        let mut back = Ledger::from_state(ledger.state());
        for now in [10, 20, 30, 45] {
            prop_assert_eq!(back.expire(ts(now)), naive.expire(ts(now)));
            prop_assert_eq!(back.state(), naive.state());
        }
    }
}
