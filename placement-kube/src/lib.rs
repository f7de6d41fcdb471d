//! # placement-kube
//!
//! Everything between the Kubernetes API and `placement-core`:
//!
//! * [`crd`]: the custom resources (`placement.dev/v1alpha1`), derived with kube's `CustomResource`;
//! * [`convert`]: Kubernetes objects (k8s-openapi types) into core snapshots, with errors that name the
//!   object and the field;
//! * [`live`]: live indexes fed by watchers, O(1) work per watch event, with a readiness signal;
//! * [`testkit`] (feature `testkit`): an in-process fake API server that speaks the real REST and watch
//!   protocol, so the real kube client, watchers and controllers can be tested without a cluster.
#![forbid(unsafe_code)]

pub mod convert;
pub mod crd;
pub mod live;
pub mod quantity;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use placement_core as core;
