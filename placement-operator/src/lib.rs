//! # placement-operator
//!
//! Controllers and executors. Today: `simulate`, the project's main job without a cluster.
#![forbid(unsafe_code)]
