//! # placement-kube
//!
//! Everything between the Kubernetes API and `placement-core`:
//!
//! * [`crd`]: the custom resources (`placement.dev/v1alpha1`), derived with kube's `CustomResource`;
//! * [`convert`]: Kubernetes objects (k8s-openapi types) into core snapshots, with errors that name the
//!   object and the field;
//! * [`live`]: live indexes fed by watchers, O(1) work per watch event, with a readiness signal;
//! * the Kubernetes glue the webhook and the operator share: [`secrets`] (reading a key of a Secret),
//!   [`patch`] (JSON Patch operations with escaped pointers), [`field_manager`] (the names writes carry)
//!   and [`probes`] (the `/healthz`, `/readyz` and `/metrics` routes).
//!
//! Production code only: the fake API server the tests run against is its own crate, `placement-testkit`.
#![forbid(unsafe_code)]

pub mod convert;
pub mod crd;
pub mod field_manager;
pub mod live;
pub mod patch;
pub mod probes;
pub mod quantity;
pub mod secrets;

pub use placement_core as core;
