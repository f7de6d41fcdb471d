//! Live indexes: the cluster state the webhook and the operator decide on, fed by watches.
//!
//! [`LiveIndex`] applies watch events (O(1) each, no rescans on the admission path) to a core
//! `CountIndex` plus lean core values; [`spawn`] runs one kube watcher per kind into a [`SharedIndex`]
//! that reports readiness once every initial list is synced. [`Reflected`] keeps small kinds (our custom
//! resources) whole in a kube reflector store, without `managedFields`. [`WatchHealth`] says how each
//! watch is doing (failures, relists, the age of its last event), for metrics and readiness.

mod health;
mod index;
mod lean;
mod resources;
mod watch;

pub use health::{RECOVERED_AFTER, WatchHealth, WatchHealthCollector, WatchReport};
pub use index::{Kind, LiveIndex};
pub use resources::Reflected;
pub use watch::{SharedIndex, WatchOptions, Watchers, spawn};
