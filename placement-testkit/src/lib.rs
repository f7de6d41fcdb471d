//! # placement-testkit
//!
//! A fake Kubernetes API server for tests, and its `fake-apiserver` binary. Test infrastructure only:
//! no production crate depends on it.
//!
//! No real kube-apiserver runs on the machines this project is tested on, so the integration tests run
//! the **real** kube client, watchers, reflectors, controllers and kubectl against this in-process server
//! on 127.0.0.1. It speaks the REST and watch protocol those clients use:
//!
//! * discovery (`/api`, `/apis`, `/apis/{group}/{version}`, `/version`) from a registry of built-in types,
//!   extended by every `CustomResourceDefinition` created through it ([`resources`]);
//! * list with label and field selectors, `limit`/`continue` paging, and watch with resourceVersion
//!   replay, bookmarks, streaming lists (`sendInitialEvents`) and `410 Gone` after compaction ([`store`]);
//! * create with `generateName`, update with `409 Conflict` on a stale resourceVersion, JSON / merge /
//!   strategic-merge / apply patches ([`patch`]), the status subresource, delete with finalizers and
//!   preconditions, `dryRun`;
//! * the `pods/eviction` subresource with PodDisruptionBudget accounting and `429` ([`eviction`]);
//! * mutating admission on CREATE through the stored `MutatingWebhookConfiguration`s, over HTTPS
//!   ([`admission`]);
//! * fault injection: errors, latency, forced conflicts ([`faults`]), dropped watches and compaction;
//! * log capture for tests that check what is logged under which span ([`logs`]);
//! * on request, the Deployment and ReplicaSet controllers, the scheduler and the kubelet, reduced to
//!   what end-to-end tests observe ([`workloads`]), and a node autoscaler that makes a node of a pool for
//!   pods that stay unschedulable, whose capacity a test can make unavailable ([`autoscaler`]).
//!
//! What it does not do: authentication and authorization (every request is allowed), OpenAPI schema
//! and CEL validation of custom resources, a webhook's `matchConditions` (not evaluated: treated as
//! matching), NetworkPolicies, garbage collection by owner references, field managers of server-side
//! apply, and protobuf. Tests that depend on those belong on a real cluster.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use placement_testkit::FakeApiServer;
//! let server = FakeApiServer::start().await?;
//! let client = server.client(); // a real kube::Client
//! # Ok(()) }
//! ```

pub mod admission;
pub mod autoscaler;
pub mod events;
pub mod eviction;
pub mod faults;
pub mod logs;
pub mod objects;
pub mod patch;
pub mod resources;
pub mod selectors;
mod server;
pub mod status;
pub mod store;
pub mod table;
pub mod uids;
pub mod workloads;

pub use faults::{Fault, FaultAction, Faults, Verb};
pub use server::{FakeApiServer, FakeConfig};
pub use status::ApiError;
