//! Scenario section `distributions`: a workload scaled up in ReplicaSet-style bursts under a weighted
//! (and optionally base) rule. Every pod of a burst is decided before any of them reaches the index —
//! exactly what the API server does — so only the reservation ledger keeps the burst on target. The
//! same bursts are replayed without the ledger to show what a cache-only webhook would have done.

use super::quantity::ResourceSpec;
use super::render;
use super::selectors::ValidNodeSelector;
use super::world::World;
use jiff::Timestamp;
use placement_core::admission::{DistributionRule, decide_distribution};
use placement_core::apportion::{Base, Fallback};
use placement_core::group::NodeGroup;
use placement_core::index::CountIndex;
use placement_core::ledger::{Ledger, Reservation};
use placement_core::model::{PodBuilder, WorkloadRef};
use placement_core::strategy::Strategy;
use placement_core::taints::Toleration;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDistribution {
    workload: WorkloadName,
    #[serde(default = "first_revision")]
    revision: String,
    #[serde(default)]
    groups: Vec<GroupSpec>,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    fallback: Fallback,
    #[serde(default)]
    requests: ResourceSpec,
    #[serde(default)]
    tolerations: Vec<Toleration>,
    bursts: Vec<u32>,
}

fn first_revision() -> String {
    "1".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadName {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GroupSpec {
    name: String,
    node_selector: ValidNodeSelector,
    weight: u32,
    #[serde(default)]
    base: Option<u32>,
}

/// A validated `distributions[]` entry.
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawDistribution")]
pub struct DistributionSpec {
    pub workload: WorkloadName,
    pub revision: String,
    pub rule: DistributionRule,
    /// The annotation, when the rule came from one.
    pub strategy: Option<String>,
    pub requests: ResourceSpec,
    pub tolerations: Vec<Toleration>,
    pub bursts: Vec<u32>,
}

impl TryFrom<RawDistribution> for DistributionSpec {
    type Error = String;

    fn try_from(raw: RawDistribution) -> Result<Self, String> {
        let rule = match (&raw.strategy, raw.groups.is_empty()) {
            (Some(_), false) => return Err("give either `groups` or `strategy`, not both".into()),
            (None, true) => return Err("give `groups` or `strategy`".into()),
            (Some(s), true) => {
                let strategy: Strategy =
                    s.parse().map_err(|e: placement_core::strategy::StrategyError| e.to_string())?;
                DistributionRule::from_strategy(&strategy, raw.fallback).map_err(|e| e.to_string())?
            }
            (None, false) => {
                let bases: Vec<(usize, u32)> =
                    raw.groups.iter().enumerate().filter_map(|(i, g)| g.base.map(|b| (i, b))).collect();
                if bases.len() > 1 {
                    return Err(format!("groups: only one group may have a base, found {}", bases.len()));
                }
                let base = bases.first().map(|&(group, count)| Base { group, count });
                let groups =
                    raw.groups.into_iter().map(|g| (NodeGroup::new(g.name, g.node_selector.0), g.weight)).collect();
                DistributionRule::new(groups, base, raw.fallback).map_err(|e| format!("groups: {e}"))?
            }
        };
        if raw.bursts.is_empty() || raw.bursts.contains(&0) {
            return Err("bursts: give one or more positive burst sizes".into());
        }
        Ok(DistributionSpec {
            workload: raw.workload,
            revision: raw.revision,
            rule,
            strategy: raw.strategy,
            requests: raw.requests,
            tolerations: raw.tolerations,
            bursts: raw.bursts,
        })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DistributionReport {
    pub workload: String,
    pub rule: String,
    pub groups: Vec<String>,
    pub bursts: Vec<BurstRow>,
    pub decisions: Vec<PodDecision>,
    /// Final counts per group with the reservation ledger, and the target.
    pub counts: Vec<u32>,
    pub target: Vec<u32>,
    /// Final counts per group had the webhook counted only the watch cache.
    pub without_reservations: Vec<u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BurstRow {
    pub size: u32,
    pub total: u32,
    pub counts: Vec<u32>,
    pub target: Vec<u32>,
    /// Counts had the webhook counted only its cache.
    pub without_reservations: Vec<u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodDecision {
    pub pod: String,
    pub burst: usize,
    pub group: Option<String>,
    pub node: Option<String>,
    pub reason: String,
}

/// Scale the workload burst by burst; `use_ledger: false` replays the originals' cache-only counting.
fn scale(
    spec: &DistributionSpec,
    world: &mut World,
    now: Timestamp,
    use_ledger: bool,
) -> (Vec<BurstRow>, Vec<PodDecision>, Vec<u32>) {
    let mut index = CountIndex::from_snapshot(&world.snapshot);
    let mut ledger = Ledger::new();
    let workload = WorkloadRef::deployment(&spec.workload.namespace, &spec.workload.name);
    let (mut rows, mut decisions, mut n) = (Vec::new(), Vec::new(), 0u32);
    for (b, &size) in spec.bursts.iter().enumerate() {
        let mut admitted = Vec::new();
        for _ in 0..size {
            let mut builder =
                PodBuilder::new(&spec.workload.namespace, format!("{}-{}-{n}", spec.workload.name, spec.revision))
                    .deployment(&spec.workload.name)
                    .revision(&spec.revision)
                    .pending()
                    .requests(spec.requests.cpu.0, spec.requests.memory.0);
            for t in &spec.tolerations {
                builder = builder.toleration(t.clone());
            }
            let mut pod = builder.build();
            pod.usage = Some(pod.requests);
            n += 1;
            let d = match decide_distribution(&index, &ledger, &spec.rule, &pod) {
                Ok(d) => d,
                Err(e) => {
                    decisions.push(PodDecision {
                        pod: pod.name.clone(),
                        burst: b + 1,
                        group: None,
                        node: None,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            if let Some(group) = &d.group_name
                && use_ledger
            {
                ledger.add(Reservation {
                    id: pod.name.clone(),
                    workload: workload.clone(),
                    revision: Some(spec.revision.clone()),
                    group: group.clone(),
                    pod: Some(pod.key()),
                    expires: now + jiff::SignedDuration::from_secs(30),
                });
            }
            pod.node_selector.extend(d.node_selector.clone());
            decisions.push(PodDecision {
                pod: pod.name.clone(),
                burst: b + 1,
                group: d.group_name,
                node: None,
                reason: d.reason,
            });
            admitted.push(pod);
        }
        // The burst reaches the scheduler and the watch cache.
        for pod in admitted {
            let name = pod.name.clone();
            let node = world.schedule(pod).ok();
            if let Some(bound) = world.snapshot.pods.last() {
                index.apply_pod(bound);
            }
            ledger.confirm(&name, now);
            if let Some(d) = decisions.iter_mut().rev().find(|d| d.pod == name) {
                d.node = node;
            }
        }
        let counts = spec.rule.counts(&index, &ledger, &workload, Some(&spec.revision));
        rows.push(BurstRow {
            size,
            total: n,
            counts,
            target: spec.rule.apportionment.target(n),
            without_reservations: vec![],
        });
    }
    let counts = spec.rule.counts(&index, &ledger, &workload, Some(&spec.revision));
    (rows, decisions, counts)
}

pub fn run(spec: &DistributionSpec, world: &mut World, now: Timestamp) -> DistributionReport {
    let mut naive_world = World::new(world.snapshot.clone());
    let (naive_rows, _, without_reservations) = scale(spec, &mut naive_world, now, false);
    let (mut bursts, decisions, counts) = scale(spec, world, now, true);
    for (row, naive) in bursts.iter_mut().zip(naive_rows) {
        row.without_reservations = naive.counts;
    }
    let total = spec.bursts.iter().sum();
    let weights = spec.rule.apportionment.weights();
    let rule = match &spec.strategy {
        Some(s) => format!("strategy {s:?}"),
        None => spec
            .rule
            .groups
            .iter()
            .zip(weights)
            .map(|(g, w)| format!("{} ({}) weight {w}", g.name, g.selector))
            .collect::<Vec<_>>()
            .join(", "),
    };
    DistributionReport {
        workload: format!("{}/{}", spec.workload.namespace, spec.workload.name),
        rule,
        groups: spec.rule.groups.iter().map(|g| g.name.clone()).collect(),
        bursts,
        decisions,
        counts,
        target: spec.rule.apportionment.target(total),
        without_reservations,
    }
}

impl DistributionReport {
    pub fn render(&self, out: &mut String) {
        out.push_str(&render::heading(&format!("Distribution of {}", self.workload)));
        out.push_str(&format!("rule: {}\n", self.rule));
        let fmt = |v: &[u32]| self.groups.iter().zip(v).map(|(g, n)| format!("{g} {n}")).collect::<Vec<_>>().join(", ");
        let mut t = render::table(["burst", "pods", "total", "counts per group", "target", "", "cache-only webhook"]);
        for (i, r) in self.bursts.iter().enumerate() {
            let ok = if r.counts == r.target { "on target" } else { "OFF TARGET" };
            t.add_row(vec![
                (i + 1).to_string(),
                r.size.to_string(),
                r.total.to_string(),
                fmt(&r.counts),
                fmt(&r.target),
                ok.into(),
                fmt(&r.without_reservations),
            ]);
        }
        out.push_str(&format!("{t}\n"));
        out.push_str(&format!(
            "final: {} (target {}); a webhook counting only its cache would end at {}\n\n",
            fmt(&self.counts),
            fmt(&self.target),
            fmt(&self.without_reservations)
        ));
        let mut t = render::table(["pod", "burst", "group", "node", "reason"]);
        for d in &self.decisions {
            t.add_row(vec![
                d.pod.clone(),
                d.burst.to_string(),
                d.group.clone().unwrap_or_else(|| "-".into()),
                d.node.clone().unwrap_or_else(|| "pending".into()),
                d.reason.clone(),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
}
