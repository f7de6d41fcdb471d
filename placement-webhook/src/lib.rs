//! # placement-webhook
//!
//! The mutating admission server: AdmissionReview v1 over HTTPS in, a JSON Patch that places the pod
//! out. Serving (TLS with certificate reload, probes, metrics) is kept apart from deciding, which reads
//! the live indexes of `placement-kube` and asks `placement-core`.
#![forbid(unsafe_code)]

pub use placement_core as core;

pub mod admission;
pub mod certs;
pub mod decide;
pub mod metrics;
pub mod patch;
mod peers;
pub mod probes;
pub mod review;
pub mod serve;
pub mod server;
pub mod shed;
pub mod steer;
pub mod strict;
pub mod tls;
