//! # placement-webhook
//!
//! The mutating admission server. It arrives with its own issue; today this crate only re-exports the
//! core so that the workspace layout of DESIGN §2 holds from the start.
#![forbid(unsafe_code)]

pub use placement_core as core;
