//! Target-tracking traffic weights (`TrafficWeight`, the Route53 rebalancer done right): every
//! `interval`, a Prometheus query gives a load, and the weight of a Route53 weighted record or of an
//! HTTPRoute backend follows it by the core tracking law
//! (`docs/semantics.md#5-target-tracking-traffic-weights`: `ceil(base × max(0, metric/target − 1))`, then
//! the minimum, schedules, range; increases at once, decreases after a cooldown and outside a deadband).
//!
//! The parts, each deciding one thing:
//! - [`prometheus`]: the metric, one instant query read as an exact decimal, or a typed error.
//! - [`actuator`]: the trait every target implements (read managed and base weights, write one weight),
//!   with [`route53`] (AWS SDK) and [`http_route`] (kube client, dynamic object).
//! - [`connect`]: from a spec and the Secrets of its namespace to a query client and an actuator, after
//!   the admin's access policy ([`args`], decided by `placement_core::tracking::access`) allowed the
//!   addresses, Secrets and credentials it names; [`egress`] checks every resolved address before
//!   connecting.
//! - [`controller`]: one evaluation, turning every failure into a condition, a count and an Event, never
//!   into a weight change; [`status`] builds the status from plain values; [`metrics`].
//!
//! Why a kube-runtime `Controller`: it gives one evaluation at a time per TrafficWeight, a requeue per
//! object (the interval), and triggers on spec changes. Every change of the object triggers it, our own
//! status write (one per evaluation) included; an evaluation therefore runs only when it is due
//! (`status.lastEvaluated` one interval ago, or a new generation) and otherwise just requeues for the
//! moment it will be.

pub mod actuator;
pub mod args;
pub mod connect;
pub mod controller;
pub mod egress;
pub mod http_route;
pub mod metrics;
pub mod prometheus;
pub mod route53;
pub mod status;

use crate::Context;
use controller::{State, error_policy, reconcile};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{Controller, watcher};
use placement_kube::crd::TrafficWeight;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use args::TrafficArgs;
pub use metrics::TrafficMetrics;

/// Settings of the TrafficWeight controller that are not in the resource.
#[derive(Clone, Debug)]
pub struct Options {
    /// The wait after a failed status write.
    pub error_backoff: Duration,
    /// Route53 retries and timeouts.
    pub connect: connect::ConnectOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options { error_backoff: Duration::from_secs(15), connect: connect::ConnectOptions::default() }
    }
}

/// The TrafficWeight controller with default [`Options`]; its metrics are registered in `registry`.
pub fn controller(ctx: Context, registry: &mut Registry) -> impl Future<Output = ()> + Send + 'static {
    controller_with(ctx, registry, Options::default())
}

/// The TrafficWeight controller; runs until dropped (or its watch ends).
pub fn controller_with(
    ctx: Context,
    registry: &mut Registry,
    options: Options,
) -> impl Future<Output = ()> + Send + 'static {
    let metrics = TrafficMetrics::register(registry);
    let allowed: Vec<String> = options.connect.access.rules().iter().map(ToString::to_string).collect();
    tracing::info!(allowed_endpoints = ?allowed, "traffic weights: addresses TrafficWeights may use");
    let client = ctx.client.clone();
    let leadership = ctx.leadership.gained();
    let state = Arc::new(State::new(ctx, metrics, options));
    async move {
        let controller = Controller::new(Api::<TrafficWeight>::all(client), watcher::Config::default());
        let _ = state.store.set(controller.store());
        controller
            .reconcile_all_on(leadership)
            .run(reconcile, error_policy, state)
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "traffic weight controller");
                }
            })
            .await;
    }
}
