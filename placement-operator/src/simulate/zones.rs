//! Scenario section `zoneBalancer`: single-replica Deployments created one at a time, each pod placed
//! in the least-loaded zone (placement-core's `decide_zone`) and then bound by the stand-in scheduler.

use super::quantity::ResourceSpec;
use super::render;
use super::selectors::ValidSelector;
use super::world::World;
use jiff::Timestamp;
use placement_core::Labels;
use placement_core::admission::{decide_zone, zone_scope_key};
use placement_core::index::{CountIndex, ZoneScope};
use placement_core::ledger::{Ledger, Reservation};
use placement_core::model::PodBuilder;
use placement_core::taints::Toleration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZoneBalancerSpec {
    pub namespace: String,
    #[serde(default = "zone_key")]
    pub topology_key: String,
    #[serde(default)]
    pub declared_zones: Vec<String>,
    /// Pods in scope, by label; the created pods get the selector's matchLabels.
    pub selector: ValidSelector,
    pub create: Vec<SingleReplica>,
}

fn zone_key() -> String {
    placement_core::ZONE_LABEL.to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SingleReplica {
    pub name: String,
    #[serde(default)]
    pub requests: ResourceSpec,
    #[serde(default)]
    pub node_selector: Labels,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneReport {
    pub decisions: Vec<ZonePlacement>,
    /// Pods in scope per zone after the section.
    pub counts: BTreeMap<String, u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZonePlacement {
    pub workload: String,
    pub zone: Option<String>,
    pub node: Option<String>,
    pub reason: String,
}

pub fn run(spec: &ZoneBalancerSpec, world: &mut World, now: Timestamp) -> ZoneReport {
    let mut index = CountIndex::new();
    let scope = ZoneScope {
        namespace: spec.namespace.clone(),
        selector: spec.selector.0.clone(),
        topology_key: spec.topology_key.clone(),
    };
    let scope = index.add_zone_scope(scope, []).expect("a new index has room for a zone scope");
    index.reset(&world.snapshot);
    let key = zone_scope_key(&spec.namespace, "simulate");
    let mut ledger = Ledger::new();
    let mut decisions = Vec::new();
    for (i, item) in spec.create.iter().enumerate() {
        let mut builder = PodBuilder::new(&spec.namespace, format!("{}-0", item.name))
            .deployment(&item.name)
            .revision("1")
            .pending()
            .requests(item.requests.cpu.0, item.requests.memory.0);
        for (k, v) in &spec.selector.0.match_labels {
            builder = builder.label(k, v);
        }
        for (k, v) in &item.node_selector {
            builder = builder.node_selector(k, v);
        }
        for t in &item.tolerations {
            builder = builder.toleration(t.clone());
        }
        let mut pod = builder.build();
        pod.usage = Some(pod.requests);
        let decision = decide_zone(&index, &ledger, scope, &key, &spec.declared_zones, &pod);
        if let Some(zone) = &decision.zone {
            pod.node_selector.insert(spec.topology_key.clone(), zone.clone());
            ledger.add(Reservation {
                id: format!("zone-{i}"),
                workload: key.clone(),
                revision: None,
                group: zone.clone(),
                pod: Some(pod.key()),
                expires: now + jiff::SignedDuration::from_secs(30),
            });
        }
        let placed = world.schedule(pod.clone());
        if let Some(bound) = world.snapshot.pods.last() {
            index.apply_pod(bound);
        }
        ledger.confirm(&format!("zone-{i}"), now);
        let node = placed.as_ref().ok().cloned();
        let mut reason = decision.reason;
        if let Err(why) = placed {
            reason.push_str(&format!(" (stays pending: {why})"));
        }
        decisions.push(ZonePlacement { workload: item.name.clone(), zone: decision.zone, node, reason });
    }
    ZoneReport { decisions, counts: index.zone_counts(scope).cloned().unwrap_or_default() }
}

impl ZoneReport {
    pub fn render(&self, out: &mut String) {
        out.push_str(&render::heading("Zone balancing (single-replica workloads)"));
        let mut t = render::table(["workload", "zone", "node", "reason"]);
        for d in &self.decisions {
            t.add_row(vec![
                d.workload.clone(),
                d.zone.clone().unwrap_or_else(|| "-".into()),
                d.node.clone().unwrap_or_else(|| "pending".into()),
                d.reason.clone(),
            ]);
        }
        out.push_str(&format!("{t}\n"));
        let counts: Vec<String> = self.counts.iter().map(|(z, n)| format!("{z}: {n}")).collect();
        out.push_str(&format!("pods per zone after: {}\n", counts.join(", ")));
    }
}
