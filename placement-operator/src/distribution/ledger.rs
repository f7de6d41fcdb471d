//! Strict mode: removing stale entries from the reservation ledger that the webhook replicas share in
//! a PodDistribution's status.
//!
//! The webhook drops stale entries only when it next writes the ledger, which happens only when a pod
//! of that workload is admitted. A workload that stops scaling would keep stale entries forever, and
//! every replica would re-read them on its next decision. The operator removes them:
//!
//! * a reservation whose `expires` has passed (its pod never appeared);
//! * a confirmed entry whose `until` has passed, together with its reservation (the pod has been
//!   seen, and every replica's watch has had `until` to catch up).
//!
//! Everything else stays, in particular every live reservation: removing one would let the next
//! admission ignore a pod that is on its way. The write is a `replace_status` of the object as read,
//! so the API server checks its `resourceVersion`: if a webhook replica wrote in between (409), the
//! object is read again and the pruning is redone on what the replica wrote, a bounded number of
//! times. A write never carries an entry the operator invented, and never loses one the webhook added.

use crate::error::{Error, Result};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::Lookup;
use placement_core::ledger::LedgerState;
use placement_kube::crd::{PodDistribution, SharedLedger};

/// The ledger without its stale entries, and how many reservations were removed; `None` when nothing
/// is stale.
pub fn prune(state: &LedgerState, now: jiff::Timestamp) -> Option<(LedgerState, usize)> {
    let pruned = state.pruned(now);
    let removed = state.reservations.len() - pruned.reservations.len();
    if removed == 0 && pruned.confirmed.len() == state.confirmed.len() {
        return None;
    }
    Some((pruned, removed))
}

/// What [`expire`] did.
#[derive(Debug)]
pub struct Expired {
    /// The resource as last read or written: its status holds the current ledger.
    pub object: PodDistribution,
    /// Reservations removed.
    pub removed: usize,
    /// 409s met before the write went through.
    pub conflicts: u32,
}

/// Removes the stale entries of `object`'s shared ledger, re-reading and retrying on 409 up to
/// `attempts` writes in all.
pub async fn expire(
    api: &Api<PodDistribution>,
    mut object: PodDistribution,
    attempts: u32,
    now: impl Fn() -> jiff::Timestamp,
) -> Result<Expired> {
    let name = object.name().unwrap_or_default().into_owned();
    let what = || format!("expiring stale reservations in the status of PodDistribution {name}");
    let mut conflicts = 0;
    loop {
        let Some((pruned, removed)) = prune(&object.shared_ledger(), now()) else {
            return Ok(Expired { object, removed: 0, conflicts });
        };
        object.set_shared_ledger(&pruned);
        match api.replace_status(&name, &PostParams::default(), &object).await {
            Ok(written) => return Ok(Expired { object: written, removed, conflicts }),
            Err(kube::Error::Api(s)) if s.code == 409 && conflicts + 1 < attempts => {
                conflicts += 1;
                tracing::debug!(%name, conflicts, "status changed under the reservation expiry; reading it again");
                object = api.get_status(&name).await.map_err(|e| Error::kube(what(), e))?;
            }
            Err(e) => return Err(Error::kube(what(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use placement_core::ledger::Reservation;
    use placement_core::model::WorkloadRef;

    fn t(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    fn res(id: &str, expires: i64) -> Reservation {
        Reservation {
            id: id.into(),
            workload: WorkloadRef::deployment("shop", "web"),
            revision: None,
            group: "spot".into(),
            pod: None,
            expires: t(expires),
        }
    }

    #[test]
    fn prunes_expired_and_old_confirmations_keeps_live_ones() {
        let mut state = LedgerState {
            reservations: vec![res("expired", 100), res("live", 300), res("seen-old", 300), res("seen-new", 300)],
            confirmed: Default::default(),
        };
        state.confirmed.insert("seen-old".into(), t(150));
        state.confirmed.insert("seen-new".into(), t(250));
        state.confirmed.insert("dangling-old".into(), t(100));
        let (pruned, removed) = prune(&state, t(200)).expect("something is stale");
        let ids: Vec<&str> = pruned.reservations.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["live", "seen-new"]);
        assert_eq!(removed, 2);
        assert_eq!(pruned.confirmed.keys().map(String::as_str).collect::<Vec<_>>(), ["seen-new"]);
        assert!(prune(&pruned, t(200)).is_none(), "nothing stale left");
        // Exactly at `expires` a reservation no longer counts (as in the core ledger).
        assert_eq!(
            prune(&LedgerState { reservations: vec![res("x", 200)], ..Default::default() }, t(200)).unwrap().1,
            1
        );
    }
}
