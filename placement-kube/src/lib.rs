//! # placement-kube
//!
//! Everything between the Kubernetes API and `placement-core`: CRD types, conversion of Kubernetes
//! objects into core snapshots, live indexes fed by watchers, and (feature `testkit`) a fake API server.
//! The Kubernetes pieces arrive with their own issue; today this crate holds the exact quantity parser
//! that every adapter (and the scenario files of `simulate`) needs.
#![forbid(unsafe_code)]

pub mod quantity;

pub use placement_core as core;
