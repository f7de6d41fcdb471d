//! The reservation ledger as it is shared in a resource's `status` (strict mode): several webhook
//! replicas write their in-flight decisions there, with a `resourceVersion` precondition, so each
//! counts the others' before their pods reach its watch.
//!
//! `PodDistribution` shares the reservations of its target workload, `ZoneBalancer` those of its zone
//! scope. The entries are the core [`LedgerState`] in API form (camelCase, RFC 3339 times).

use super::common::kind_from_str;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use placement_core::ledger::{LedgerState, Reservation};
use placement_core::model::{PodKey, WorkloadRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A resource whose status carries a shared reservation ledger.
pub trait SharedLedger {
    /// The ledger in the status (empty without a status).
    fn shared_ledger(&self) -> LedgerState;
    /// Replaces the ledger in the status, creating the status if needed.
    fn set_shared_ledger(&mut self, state: &LedgerState);
}

/// The workload a reservation counts for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservedWorkload {
    /// Workload kind (`Deployment`, `StatefulSet`, ...; `ZoneBalancer` for a ZoneBalancer's zone scope).
    pub kind: String,
    /// Workload namespace.
    pub namespace: String,
    /// Workload name.
    pub name: String,
}

/// A pod by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
}

/// One in-flight decision: counted until its pod is seen or it expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationEntry {
    /// Unique id of the admission (the AdmissionReview uid).
    pub id: String,
    /// The workload the pod belongs to.
    pub workload: ReservedWorkload,
    /// The pod's revision (`pod-template-hash` or `controller-revision-hash`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The group (or zone) the pod was sent to.
    pub group: String,
    /// The pod, when its name was known at admission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    /// When the reservation stops counting.
    #[serde(deserialize_with = "crate::crd::lenient::time_or_epoch")]
    pub expires: Time,
}

/// A reservation whose pod some replica has seen, and until when it stays listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmedEntry {
    /// The reservation id.
    pub id: String,
    /// Until when the reservation stays in the shared list.
    #[serde(deserialize_with = "crate::crd::lenient::time_or_epoch")]
    pub until: Time,
}

/// The core ledger state of status entries.
pub fn to_state(reservations: &[ReservationEntry], confirmed: &[ConfirmedEntry]) -> LedgerState {
    LedgerState {
        reservations: reservations
            .iter()
            .map(|r| Reservation {
                id: r.id.clone(),
                workload: WorkloadRef::new(
                    kind_from_str(&r.workload.kind),
                    r.workload.namespace.clone(),
                    r.workload.name.clone(),
                ),
                revision: r.revision.clone(),
                group: r.group.clone(),
                pod: r.pod.as_ref().map(|p| PodKey { namespace: p.namespace.clone(), name: p.name.clone() }),
                expires: r.expires.0,
            })
            .collect(),
        confirmed: confirmed.iter().map(|c| (c.id.clone(), c.until.0)).collect(),
    }
}

/// Status entries for a core ledger state (reservations in the state's order).
pub fn from_state(state: &LedgerState) -> (Vec<ReservationEntry>, Vec<ConfirmedEntry>) {
    let reservations = state
        .reservations
        .iter()
        .map(|r| ReservationEntry {
            id: r.id.clone(),
            workload: ReservedWorkload {
                kind: r.workload.kind.to_string(),
                namespace: r.workload.namespace.clone(),
                name: r.workload.name.clone(),
            },
            revision: r.revision.clone(),
            group: r.group.clone(),
            pod: r.pod.as_ref().map(|p| PodRef { namespace: p.namespace.clone(), name: p.name.clone() }),
            expires: Time(r.expires),
        })
        .collect();
    let confirmed =
        state.confirmed.iter().map(|(id, until)| ConfirmedEntry { id: id.clone(), until: Time(*until) }).collect();
    (reservations, confirmed)
}
