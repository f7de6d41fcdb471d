//! `ZoneBalancer` in operator mode (the Single Pod AZ Balancer's `AZBalancer` operator done right): each
//! selected single-replica Deployment or StatefulSet without a zone gets one, **once**, in its pod
//! template — the least-loaded feasible zone (`docs/semantics.md#3-least-loaded-zone`), counting
//! workloads pinned per zone plus the pods of unpinned ones — with
//! a `placement.dev/zone-decision` annotation saying why. Optional rebalancing re-pins one workload at a
//! time when the zones drift `rebalanceThreshold` apart, no more often than a minimum interval that is
//! persisted in status. Balancers in webhook mode are the webhook's and are ignored here.
//!
//! Why a kube-runtime [`Controller`] rather than a hand-written loop: it already gives one reconcile at
//! a time per balancer, deduplication of bursts of triggers (plus a short debounce), requeue with a
//! deadline (the next allowed move), and triggers from related objects. The balancer is the reconciled
//! object; a change to any Deployment or StatefulSet triggers every operator-mode balancer of its
//! namespace (all of them, not only those whose selector matches now: a workload whose labels stopped
//! matching must leave the counts too); gaining leadership triggers all balancers; a periodic resync
//! picks up node changes (a zone gaining its first Ready node). The reconcile itself reads workloads
//! fresh from the API server and nodes and pods from the shared live index (see [`controller`]).
//!
//! The plan itself (which workload gets which zone, and whether one moves) is pure and lives in the core,
//! `placement_core::zone_plan`; this module reads, converts, calls it and writes.
//!
//! Writes (workload patches, status, Events) happen only while this instance leads; a standby plans
//! the same way and writes nothing.

mod controller;
pub mod metrics;
pub mod status;
pub mod workload;

pub use metrics::ZoneBalancerMetrics;
pub use workload::{DECISION_ANNOTATION, ZoneDecision};

use crate::Context;
use controller::{State, error_policy, reconcile};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use placement_kube::crd::ZoneBalancer;
use placement_kube::crd::zone_balancer::ZoneMode;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Timings of the zone balancer controller.
#[derive(Clone, Debug)]
pub struct Options {
    /// The minimum time between two moves of one balancer (rebalancing only).
    pub min_move_interval: Duration,
    /// Every balancer is reconciled at least this often (node changes are not watched).
    pub resync: Duration,
    /// The wait after a failed reconcile.
    pub error_backoff: Duration,
    /// Triggers closer than this are merged into one reconcile.
    pub debounce: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            min_move_interval: Duration::from_secs(600),
            resync: Duration::from_secs(300),
            error_backoff: Duration::from_secs(15),
            debounce: Duration::from_millis(500),
        }
    }
}

/// The zone balancer controller with default [`Options`]; its metrics are registered in `registry`.
pub fn controller(ctx: Context, registry: &mut Registry) -> impl Future<Output = ()> + Send + 'static {
    controller_with(ctx, registry, Options::default())
}

/// The zone balancer controller; runs until dropped (or its watches end).
pub fn controller_with(
    ctx: Context,
    registry: &mut Registry,
    options: Options,
) -> impl Future<Output = ()> + Send + 'static {
    let metrics = ZoneBalancerMetrics::register(registry);
    let client = ctx.client.clone();
    let debounce = options.debounce;
    let leadership = ctx.leadership.gained();
    let state = Arc::new(State::new(ctx, metrics, options));
    async move {
        let config = kube::runtime::Config::default().debounce(debounce);
        let controller =
            Controller::new(Api::<ZoneBalancer>::all(client.clone()), watcher::Config::default()).with_config(config);
        let store = controller.store();
        let for_deployments = store.clone();
        controller
            .watches(
                Api::all(client.clone()),
                watcher::Config::default(),
                move |d: k8s_openapi::api::apps::v1::Deployment| balancers_in_namespace(&for_deployments, &d.metadata),
            )
            .watches(Api::all(client), watcher::Config::default(), move |s: k8s_openapi::api::apps::v1::StatefulSet| {
                balancers_in_namespace(&store, &s.metadata)
            })
            .reconcile_all_on(leadership)
            .run(reconcile, error_policy, state)
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "zone balancer controller");
                }
            })
            .await;
    }
}

/// The operator-mode balancers of the object's namespace.
fn balancers_in_namespace(store: &Store<ZoneBalancer>, meta: &ObjectMeta) -> Vec<ObjectRef<ZoneBalancer>> {
    store
        .state()
        .iter()
        .filter(|zb| zb.spec.mode == ZoneMode::Operator && zb.metadata.namespace == meta.namespace)
        .map(|zb| ObjectRef::from_obj(&**zb))
        .collect()
}
