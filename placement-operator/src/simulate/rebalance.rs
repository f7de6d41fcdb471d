//! Scenario section `rebalance`: observe the cluster (after the earlier sections placed their pods) as
//! many times as the policy needs to call a node hot, then plan — the same core calls the operator makes.

use super::render;
use super::world::World;
use jiff::Timestamp;
use placement_core::rebalance::{
    NodeClass, Plan, PlanInput, RebalancePolicy, RebalanceState, WorkloadSlo, observe, plan,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRebalance {
    #[serde(default)]
    observations: Option<u32>,
    #[serde(default)]
    policy: ValidPolicy,
    #[serde(default)]
    workload_slos: Vec<WorkloadSlo>,
    #[serde(default)]
    node_classes: Vec<NodeClass>,
}

/// A validated `rebalance` section.
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawRebalance")]
pub struct RebalanceSpec {
    pub observations: u32,
    pub policy: RebalancePolicy,
    pub workload_slos: Vec<WorkloadSlo>,
    pub node_classes: Vec<NodeClass>,
}

/// A rebalance policy, validated where it is written.
#[derive(Debug, Default, Deserialize)]
#[serde(try_from = "RebalancePolicy")]
struct ValidPolicy(RebalancePolicy);

impl TryFrom<RebalancePolicy> for ValidPolicy {
    type Error = placement_core::rebalance::PolicyError;
    fn try_from(p: RebalancePolicy) -> Result<Self, Self::Error> {
        p.validate().map(|()| ValidPolicy(p))
    }
}

impl TryFrom<RawRebalance> for RebalanceSpec {
    type Error = String;
    fn try_from(raw: RawRebalance) -> Result<Self, String> {
        for (i, slo) in raw.workload_slos.iter().enumerate() {
            slo.selector.validate().map_err(|e| format!("workloadSlos[{i}].selector: {e}"))?;
        }
        for (i, class) in raw.node_classes.iter().enumerate() {
            class.selector.validate_for_nodes().map_err(|e| format!("nodeClasses[{i}].selector: {e}"))?;
            if class.weight > 100 {
                return Err(format!("nodeClasses[{i}].weight: {} is above 100", class.weight));
            }
        }
        Ok(RebalanceSpec {
            observations: raw.observations.unwrap_or(raw.policy.0.observations_to_enter).max(1),
            policy: raw.policy.0,
            workload_slos: raw.workload_slos,
            node_classes: raw.node_classes,
        })
    }
}

pub fn run(spec: &RebalanceSpec, world: &World, now: Timestamp) -> Plan {
    let mut state = RebalanceState::default();
    for _ in 0..spec.observations {
        state = observe(&spec.policy, &state, &world.snapshot, now);
    }
    plan(&PlanInput {
        snapshot: &world.snapshot,
        policy: &spec.policy,
        state: &state,
        slos: &spec.workload_slos,
        classes: &spec.node_classes,
        now,
    })
}

/// Each node's score before and after the plan, and whether it is hot or cold (`headers` name the
/// columns).
pub(crate) fn node_scores(plan: &Plan, headers: [&str; 4]) -> comfy_table::Table {
    let mut t = render::table(headers);
    for n in &plan.nodes {
        let state = match (n.hot, n.cold) {
            (true, _) => "HOT",
            (_, true) => "cold",
            _ => "",
        };
        t.add_row(vec![n.node.clone(), format!("{:.3}", n.before), format!("{:.3}", n.after), state.into()]);
    }
    t
}

pub fn render(plan: &Plan, out: &mut String) {
    out.push_str(&render::heading("Rebalancer: node scores"));
    let t = node_scores(plan, ["node", "score before", "score after", "state"]);
    out.push_str(&format!("{t}\n"));
    out.push_str(&render::heading(&format!("Eviction plan{}", if plan.dry_run { " (dry run)" } else { "" })));
    out.push_str(&format!(
        "sigma {:.4} -> {:.4}; {} eviction(s); stopped: {}\n",
        plan.sigma_before,
        plan.sigma_after,
        plan.evictions.len(),
        plan.stop
    ));
    let mut t = render::table(["pod", "from", "to", "reason"]);
    for e in &plan.evictions {
        t.add_row(vec![e.pod.to_string(), e.from.clone(), e.to.clone(), e.reason.clone()]);
    }
    out.push_str(&format!("{t}\n\nblocked or skipped candidates on hot nodes:\n"));
    let mut t = render::table(["pod", "node", "stopped by", "why"]);
    for s in &plan.skipped {
        t.add_row(vec![s.pod.to_string(), s.node.clone(), s.reason.metric_label().into(), s.why.clone()]);
    }
    out.push_str(&format!("{t}\n"));
}
