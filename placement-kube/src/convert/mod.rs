//! Kubernetes objects (k8s-openapi 0.29 types) into placement-core values.
//!
//! Adapters never decide; they translate, exactly and without panicking:
//!
//! * **Quantities** are parsed exactly by [`crate::quantity`] (`500m`, `1.5Gi`, `1e3`), rounding up
//!   like the API server. Only CPU and memory are read.
//! * **Errors** name the object and the field path ([`ConvertError`]:
//!   `Pod default/web-1: spec.containers[1].resources.requests.cpu: quantity "5x": ...`).
//! * **Workloads** come from owner chains, never from labels ([`owners`]); a ReplicaSet not yet in
//!   the cache resolves to its Deployment by the `pod-template-hash` naming rule.
//! * **Requests** follow the scheduler: requests default to limits, sidecar init containers run next
//!   to the app, pod-level resources and overhead count (module `requests`).
//! * **Snapshots** skip and report malformed objects instead of failing ([`SnapshotBuilder`]).
//!
//! | module | converts |
//! |---|---|
//! | [`node`](mod@node) | Node → `model::Node` (taints, allocatable, Ready, cordon) |
//! | [`pod`](mod@pod) | Pod → `model::Pod` |
//! | [`owners`] | owner references → workload, controller kind, revision |
//! | [`workload`] | Deployment, StatefulSet → `model::Workload`; a ReplicaSet's owner |
//! | [`pdb`](mod@pdb) | PodDisruptionBudget → `model::Pdb` |
//! | [`metrics`] | metrics.k8s.io NodeMetrics / PodMetrics types and usage |
//! | [`volumes`] | PersistentVolumeClaim + PersistentVolume → whether a pod's claim is node-local |
//! | [`snapshot`] | all of the above → `model::Snapshot` plus errors |

mod error;
pub mod metrics;
pub mod node;
pub mod owners;
pub mod pdb;
pub mod pod;
mod quantities;
mod requests;
mod selector;
pub mod snapshot;
pub mod taints;
pub mod volumes;
pub mod workload;

pub use error::ConvertError;
pub use metrics::{ContainerMetrics, NodeMetrics, PodMetrics, node_usage, pod_usage};
pub use node::node;
pub use owners::{NoOwners, OwnerLookup, Ownership, ReplicaSetOwners, ownership, replicaset_owner};
pub use pdb::pdb;
pub use pod::pod;
pub use snapshot::SnapshotBuilder;
pub use workload::{deployment, statefulset};
