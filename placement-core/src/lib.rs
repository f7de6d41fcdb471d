//! # placement-core
//!
//! Every placement decision of the project as a pure function over plain values: no I/O, no async, no
//! clock (time is a parameter), no Kubernetes types. Adapters (`placement-kube`, `placement-webhook`,
//! `placement-operator`) turn cluster objects into the [`model`] snapshot, call in here, and act on the
//! returned decision, which always carries a human-readable reason.
//!
//! | module | decides |
//! |---|---|
//! | [`selector`], [`taints`], [`fit`], [`group`] | which nodes a pod may use; which group a node or pod is in |
//! | [`shortage`] | when an autoscaled group is short of capacity, for how long, and what that changes |
//! | [`apportion`], [`strategy`] | weighted/base distribution over groups (§2) and its annotation |
//! | [`resolve`] | which rule places a pod (§1, which rule applies) |
//! | [`names`] | the syntax of label keys and values and DNS names, as the API server checks it |
//! | [`zone`] | least-loaded zone for single-replica workloads (§3) |
//! | [`zone_plan`] | the ZoneBalancer operator mode's pins and moves (§3, operator mode) |
//! | [`ledger`], [`index`] | what counts: pods seen, plus in-flight reservations, never twice (§1) |
//! | [`rebalance`] | hot/cold nodes with memory, and a safe eviction plan within budgets (§4) |
//! | [`tracking`] | target-tracking traffic weights with schedules, cooldown and deadband (§5) |
//!
//! §N is section N of `docs/semantics.md`, which states every rule with worked examples (e.g.
//! `docs/semantics.md#2-weighted-distribution-with-base`); its section 6 is the do-no-harm rules every
//! change keeps (`docs/semantics.md#6-do-no-harm`).
//!
//! State that must survive restarts (hysteresis counters, eviction history, reservations, cooldowns)
//! goes in and out of these functions explicitly; adapters persist it.
#![forbid(unsafe_code)]

pub mod admission;
pub mod apportion;
pub mod error;
pub mod fit;
pub mod group;
pub mod index;
mod interned;
pub mod ledger;
pub mod model;
pub mod names;
pub mod rebalance;
pub mod resolve;
pub mod resources;
pub mod selector;
pub mod shortage;
pub mod strategy;
pub mod taints;
pub mod tracking;
pub mod zone;
pub mod zone_plan;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::Error;

/// Labels of a node or pod, ordered so that every output built from them is deterministic.
pub type Labels = std::collections::BTreeMap<String, String>;

/// The default topology key of a zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
