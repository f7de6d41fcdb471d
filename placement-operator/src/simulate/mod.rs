//! `simulate`: the project's main job without a cluster. A scenario (the embedded demo or a user's
//! file) describes a small cluster and what to place in it; each section runs the same placement-core
//! calls the webhook and operator make, and the report shows every decision with its reason.

mod distribution;
pub mod html;
mod quantity;
pub(crate) mod rebalance;
pub(crate) mod render;
mod scenario;
mod selectors;
pub(crate) mod traffic;
mod world;
mod zones;

pub use scenario::{Scenario, ScenarioError};

use placement_core::rebalance::Plan;
use serde::Serialize;
use world::World;

/// The embedded demo scenario (`examples/scenarios/demo.yaml`).
pub const DEMO: &str = include_str!("../../../examples/scenarios/demo.yaml");

impl Scenario {
    pub fn demo() -> Result<Scenario, ScenarioError> {
        Scenario::parse("examples/scenarios/demo.yaml (embedded)", DEMO)
    }
}

/// Everything a scenario run produced.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub scenario: String,
    pub description: String,
    pub nodes: Vec<NodeRow>,
    pub zones: Option<zones::ZoneReport>,
    pub distribution: Vec<distribution::DistributionReport>,
    pub rebalance: Option<Plan>,
    pub traffic: Vec<traffic::TrafficReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub name: String,
    pub labels: String,
    pub ready: bool,
    pub pods: u32,
    pub requested_cpu_millis: u64,
    pub allocatable_cpu_millis: u64,
    pub usage_cpu_millis: Option<u64>,
}

/// Run every section of a scenario in order: zones, distributions, rebalance, traffic weights.
pub fn run(scenario: &Scenario) -> Report {
    let mut world = World::new(scenario.cluster.snapshot());
    let nodes = world
        .snapshot
        .nodes
        .iter()
        .map(|n| NodeRow {
            name: n.name.clone(),
            labels: n
                .labels
                .iter()
                .map(|(k, v)| format!("{}={v}", k.rsplit('/').next().unwrap_or(k)))
                .collect::<Vec<_>>()
                .join(","),
            ready: n.ready && !n.unschedulable,
            pods: n.pod_count,
            requested_cpu_millis: n.requested.cpu_millis,
            allocatable_cpu_millis: n.allocatable.cpu_millis,
            usage_cpu_millis: n.usage.map(|u| u.cpu_millis),
        })
        .collect();
    let zones = scenario.zone_balancer.as_ref().map(|z| zones::run(z, &mut world, scenario.now));
    let distribution = scenario.distributions.iter().map(|d| distribution::run(d, &mut world, scenario.now)).collect();
    let rebalance = scenario.rebalance.as_ref().map(|r| rebalance::run(r, &world, scenario.now));
    let traffic = scenario.traffic_weights.iter().map(traffic::run).collect();
    Report {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        nodes,
        zones,
        distribution,
        rebalance,
        traffic,
    }
}

impl Report {
    /// The report as text tables.
    pub fn render(&self) -> String {
        let mut out = format!("scenario: {}\n{}\n", self.scenario, self.description);
        out.push_str(&render::heading("Cluster (before)"));
        let mut t = render::table(["node", "labels", "schedulable", "pods", "cpu requested", "cpu used"]);
        for n in &self.nodes {
            t.add_row(vec![
                n.name.clone(),
                n.labels.clone(),
                if n.ready { "yes" } else { "no" }.to_string(),
                n.pods.to_string(),
                format!("{}/{}m", n.requested_cpu_millis, n.allocatable_cpu_millis),
                n.usage_cpu_millis.map_or("no metrics".into(), |u| format!("{u}m")),
            ]);
        }
        out.push_str(&format!("{t}\n"));
        if let Some(z) = &self.zones {
            z.render(&mut out);
        }
        for d in &self.distribution {
            d.render(&mut out);
        }
        if let Some(plan) = &self.rebalance {
            rebalance::render(plan, &mut out);
        }
        for t in &self.traffic {
            t.render(&mut out);
        }
        out
    }
}
