//! # placement-operator
//!
//! The operator's controllers (zone balancing in operator mode, PodDistribution upkeep, the utilization
//! rebalancer, target-tracking traffic weights), their runtime (leader election, probes, Events), and `simulate`, the project's main job
//! without a cluster: it runs a scenario through every placement-core decision and prints the result.
#![forbid(unsafe_code)]

pub mod context;
pub mod crdgen;
pub mod distribution;
pub mod error;
pub mod plan;
pub mod rebalancer;
pub mod runtime;
pub mod simulate;
pub mod traffic;
pub mod zone_balancer;

pub use context::{Context, Leadership};
pub use error::{Error, Result};

/// Every controller `placement-operator run` starts. Add each new controller here: it gets the shared
/// [`Context`], registers its metrics in the registry served on `/metrics`, and writes only while
/// `ctx.leadership.is_leader()`.
pub fn controllers(ctx: Context, registry: &mut prometheus_client::registry::Registry) -> Vec<runtime::Controller> {
    controllers_with(traffic::Options::default())(ctx, registry)
}

/// [`controllers`] with the TrafficWeight controller's options (the admin's flags, [`traffic::TrafficArgs`]).
pub fn controllers_with(
    traffic: traffic::Options,
) -> impl FnOnce(Context, &mut prometheus_client::registry::Registry) -> Vec<runtime::Controller> {
    move |ctx, registry| {
        vec![
            runtime::Controller::new("zonebalancer", zone_balancer::controller(ctx.clone(), registry)),
            runtime::Controller::new("poddistribution", distribution::controller(ctx.clone(), registry)),
            runtime::Controller::new("rebalancer", rebalancer::controller(ctx.clone(), registry)),
            runtime::Controller::new("trafficweight", traffic::controller_with(ctx, registry, traffic)),
        ]
    }
}
