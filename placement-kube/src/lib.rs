//! # placement-kube
//!
//! Everything between the Kubernetes API and `placement-core`: CRD types, conversion of Kubernetes
//! objects into core snapshots, live indexes fed by watchers, and (feature `testkit`) a fake API server.
//! The Kubernetes pieces arrive with their own issue; today this crate only re-exports the core so that
//! the workspace layout of DESIGN §2 holds from the start.
#![forbid(unsafe_code)]

pub use placement_core as core;
