//! Strict mode: several webhook replicas share one reservation ledger through the `status` of the
//! `PodDistribution` (`spec.strict: true`), as OpenKruise's WorkloadSpread does.
//!
//! Each admission reads the resource, folds the shared ledger into its own, decides, and writes the
//! ledger back with the resource's `resourceVersion` as a precondition. A 409 means another replica
//! wrote first: the local reservation is dropped and the whole round is done again with the fresh
//! status, until the deadline. A replica's decision therefore always counts every reservation another
//! replica has made, even before any of those pods reaches a watch.

use crate::decide::{Candidate, DecideError, Decider, Decision};
use kube::api::{Api, PostParams};
use placement_kube::crd::PodDistribution;
use std::time::Instant;

/// Decides for a pod of a strict PodDistribution's workload, sharing the ledger through its status.
pub async fn decide(
    client: &kube::Client,
    decider: &Decider,
    c: &Candidate<'_>,
    pd: &PodDistribution,
    deadline: Instant,
) -> Result<(Decision, u32), DecideError> {
    let name = pd.metadata.name.clone().unwrap_or_default();
    let api: Api<PodDistribution> = Api::namespaced(client.clone(), c.namespace);
    let target = pd.spec.to_core(c.namespace).map_err(|e| DecideError::Rule(e.to_string()))?.target;
    let mut conflicts = 0;
    loop {
        if Instant::now() > deadline {
            return Err(DecideError::Strict(format!(
                "{conflicts} conflicting writes to {name}'s status before the deadline"
            )));
        }
        let current = api.get_status(&name).await.map_err(|e| DecideError::Strict(format!("reading {name}: {e}")))?;
        let previous = current.status.as_ref().map(|s| s.ledger_state()).unwrap_or_default();
        decider.merge_peer_ledger(&previous);
        let decision = decider.decide(c)?;
        let Some(id) = decision.reservation.clone() else { return Ok((decision, conflicts)) };
        let shared = decider.shared_state(&target, &previous);
        let mut next = current.clone();
        next.status.get_or_insert_with(Default::default).set_ledger_state(&shared);
        next.metadata.managed_fields = None;
        match api.replace_status(&name, &PostParams::default(), &next).await {
            Ok(_) => return Ok((decision, conflicts)),
            Err(e) if is_conflict(&e) => {
                decider.release(&id);
                conflicts += 1;
            }
            Err(e) => {
                decider.release(&id);
                return Err(DecideError::Strict(format!("writing {name}'s status: {e}")));
            }
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
