//! Under any interleaving of add, confirm, release and expire — duplicates and confirms before adds
//! included — the ledger counts exactly the reservations a plain reference model says are in flight.

use jiff::Timestamp;
use placement_core::ledger::{Ledger, Reservation};
use placement_core::model::WorkloadRef;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
enum Op {
    Add { id: u8, group: u8, ttl: i64 },
    Confirm { id: u8, keep: i64 },
    Release { id: u8 },
    Tick { by: i64 },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..12, 0u8..3, 1i64..30).prop_map(|(id, group, ttl)| Op::Add { id, group, ttl }),
        (0u8..12, 0i64..30).prop_map(|(id, keep)| Op::Confirm { id, keep }),
        (0u8..12).prop_map(|id| Op::Release { id }),
        (0i64..15).prop_map(|by| Op::Tick { by }),
    ]
}

/// The reference: a set of in-flight ids (with group and expiry) and a set of confirmed ids.
#[derive(Default)]
struct Model {
    live: BTreeMap<u8, (u8, i64)>,
    confirmed: BTreeMap<u8, i64>,
}

proptest! {
    #[test]
    fn ledger_matches_reference(ops in prop::collection::vec(arb_op(), 0..80)) {
        let w = WorkloadRef::deployment("ns", "web");
        let mut ledger = Ledger::new();
        let mut model = Model::default();
        let mut now = 0i64;
        let ts = |s: i64| Timestamp::from_second(s).unwrap();
        for op in ops {
            match op {
                Op::Add { id, group, ttl } => {
                    let fresh = !model.live.contains_key(&id) && !model.confirmed.contains_key(&id);
                    if fresh { model.live.insert(id, (group, now + ttl)); }
                    let added = ledger.add(Reservation {
                        id: id.to_string(), workload: w.clone(), revision: None,
                        group: group.to_string(), pod: None, expires: ts(now + ttl),
                    });
                    prop_assert_eq!(added, fresh);
                }
                Op::Confirm { id, keep } => {
                    let until = model.live.remove(&id).map_or(now + keep, |(_, e)| e.max(now + keep));
                    let e = model.confirmed.entry(id).or_insert(until);
                    *e = (*e).max(until);
                    ledger.confirm(&id.to_string(), ts(now + keep));
                }
                Op::Release { id } => {
                    prop_assert_eq!(ledger.release(&id.to_string()).is_some(), model.live.remove(&id).is_some());
                }
                Op::Tick { by } => {
                    now += by;
                    model.live.retain(|_, (_, e)| *e > now);
                    model.confirmed.retain(|_, u| *u > now);
                    ledger.expire(ts(now));
                }
            }
            for g in 0u8..3 {
                let want = model.live.values().filter(|(group, _)| *group == g).count() as u32;
                prop_assert_eq!(ledger.reserved(&w, None, &g.to_string()), want, "group {}", g);
            }
            prop_assert_eq!(ledger.len(), model.live.len());
            let ids: BTreeSet<String> = ledger.state().reservations.iter().map(|r| r.id.clone()).collect();
            let want: BTreeSet<String> = model.live.keys().map(|k| k.to_string()).collect();
            prop_assert_eq!(ids, want);
        }
    }
}
