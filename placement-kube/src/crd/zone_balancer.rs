//! `ZoneBalancer` (namespaced, short name `zb`): spreads single-replica workloads over zones, each new
//! pod going to the feasible zone with the fewest in-scope pods (`docs/semantics.md#3-least-loaded-zone`;
//! it replaces the Single Pod AZ Balancer). In `webhook` mode the pod gets the zone at CREATE; in
//! `operator` mode the workload's template is pinned to a zone.

use super::CrdError;
use super::common::{check_label_key, check_label_value, label_selector_to_core};
use super::conditions::{Condition, impl_status_conditions};
use super::shared_ledger::{self, ConfirmedEntry, ReservationEntry, SharedLedger};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as KubeLabelSelector;
use kube::{CustomResource, KubeSchema};
use placement_core::ledger::LedgerState;
use placement_core::selector::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn default_topology_key() -> String {
    placement_core::ZONE_LABEL.to_string()
}

/// Where the zone decision is applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ZoneMode {
    #[default]
    Webhook,
    Operator,
}

/// How hard the chosen zone is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ZoneAffinity {
    #[default]
    Required,
    Preferred,
}

/// Spread single-replica workloads over zones: each new pod goes to the feasible zone with the fewest
/// in-scope pods (ties to the lowest zone name).
// Printer columns repeat `type_ = ...` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "placement.dev",
    version = "v1alpha1",
    kind = "ZoneBalancer",
    plural = "zonebalancers",
    namespaced,
    status = "ZoneBalancerStatus",
    shortname = "zb",
    category = "placement",
    doc = "Spreads single-replica workloads of its namespace over zones (least-loaded zone first).",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode", description = "webhook or operator"),
    printcolumn(
        name = "Topology",
        type_ = "string",
        json_path = ".spec.topologyKey",
        description = "Node label that names a zone",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "The spec is valid and in effect"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since creation"
    )
)]
#[x_kube(validation = kube::core::Rule::new("!has(self.rebalanceThreshold) || self.mode == 'operator'").message("rebalanceThreshold applies only to mode operator").field_path(".rebalanceThreshold"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.strict) || !self.strict || self.mode != 'operator'").message("strict applies only to mode webhook").field_path(".strict"))]
#[serde(rename_all = "camelCase")]
pub struct ZoneBalancerSpec {
    /// Workloads (Deployments and StatefulSets of this namespace) in scope, by their labels; only those
    /// with one replica are balanced. Pods are counted by owner, not by label.
    pub selector: KubeLabelSelector,
    /// The node label whose value is a node's zone.
    #[serde(default = "default_topology_key")]
    #[schemars(length(min = 1, max = 316))]
    pub topology_key: String,
    /// Zones that count even with no Ready node yet (e.g. autoscaled to zero); a declared zone without
    /// any node is feasible for a pod whose own nodeSelector and required affinity allow the zone (an
    /// autoscaler can add a node there). Zones of Ready, schedulable nodes always count.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 63)))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub zones: Vec<String>,
    /// `webhook`: set the zone on each pod at creation. `operator`: pin each workload's pod template to a
    /// zone.
    #[serde(default)]
    pub mode: ZoneMode,
    /// `required`: the zone is a nodeSelector entry, added next to the pod's own keys. `preferred`: a
    /// preferred node-affinity term, so the scheduler may still use another zone when the chosen one is
    /// full.
    #[serde(default)]
    pub affinity: ZoneAffinity,
    /// Operator mode only: re-pin a workload when the busiest zone holds at least this many more
    /// in-scope workloads than the least busy one. Unset: only new or changed workloads are placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub rebalance_threshold: Option<u32>,
    /// Mode webhook: share in-flight zone reservations between webhook replicas through this
    /// resource's status (an optimistic update per batch of decisions; needed only with several webhook
    /// replicas).
    #[serde(default)]
    pub strict: bool,
}

/// Pods placed in one zone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneCount {
    /// The zone (value of the topology key).
    pub zone: String,
    /// In-scope pods counted in the zone (seen plus in-flight reservations).
    pub pods: u32,
    /// Operator mode: in-scope workloads counted in the zone (pinned to it, or running there unpinned);
    /// this is what the operator balances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<u32>,
}

/// Operator mode: one workload re-pinned to another zone by rebalancing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneMove {
    /// The workload, as `Deployment/web` or `StatefulSet/db` (in the balancer's namespace).
    #[schemars(length(max = 300))]
    pub workload: String,
    /// The zone it was pinned to.
    #[schemars(length(max = 63))]
    pub from: String,
    /// The zone it is pinned to now.
    #[schemars(length(max = 63))]
    pub to: String,
    /// Why, in words (the zone counts that made the move worth it).
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub reason: String,
    /// When the move was decided. It is recorded before the workload is patched, so an operator restart
    /// never moves again inside the minimum interval.
    pub time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// What the balancer last observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneBalancerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the spec is valid and in effect (otherwise the message names the bad field).
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// In-scope pods per zone, in zone order.
    #[serde(default)]
    pub zones: Vec<ZoneCount>,
    /// In-scope single-replica workloads.
    #[serde(default)]
    pub workloads: u32,
    /// Operator mode: the last re-pins made by rebalancing, newest first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub last_moves: Vec<ZoneMove>,
    /// Strict mode: in-flight zone reservations shared by the webhook replicas.
    #[serde(default)]
    pub reservations: Vec<ReservationEntry>,
    /// Strict mode: reservations some replica has seen as pods, and until when they stay listed (so a
    /// replica whose watch is behind still counts them).
    #[serde(default)]
    pub confirmed: Vec<ConfirmedEntry>,
}

impl SharedLedger for ZoneBalancer {
    fn shared_ledger(&self) -> LedgerState {
        self.status.as_ref().map(|s| shared_ledger::to_state(&s.reservations, &s.confirmed)).unwrap_or_default()
    }

    fn set_shared_ledger(&mut self, state: &LedgerState) {
        let status = self.status.get_or_insert_with(Default::default);
        (status.reservations, status.confirmed) = shared_ledger::from_state(state);
    }
}

impl_status_conditions!(ZoneBalancerStatus);

/// A validated `ZoneBalancer` spec in core terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneBalancerConfig {
    /// Workloads in scope, by label.
    pub selector: LabelSelector,
    /// The node label naming a zone.
    pub topology_key: String,
    /// Declared zones, sorted and without duplicates.
    pub zones: Vec<String>,
    /// Where the decision is applied.
    pub mode: ZoneMode,
    /// How hard the chosen zone is.
    pub affinity: ZoneAffinity,
    /// Operator mode: the imbalance that re-pins a workload.
    pub rebalance_threshold: Option<u32>,
}

impl ZoneBalancerSpec {
    /// Check every field and convert; errors name the field (`spec.zones[2]: ...`).
    pub fn to_core(&self) -> Result<ZoneBalancerConfig, CrdError> {
        let selector = label_selector_to_core("spec.selector", &self.selector)?;
        check_label_key("spec.topologyKey", &self.topology_key)?;
        let mut zones = Vec::with_capacity(self.zones.len());
        for (i, z) in self.zones.iter().enumerate() {
            let path = format!("spec.zones[{i}]");
            if z.is_empty() {
                return Err(CrdError::format(path, "empty zone name"));
            }
            check_label_value(&path, z)?;
            if zones.contains(z) {
                return Err(CrdError::conflict(path, format!("zone {z:?} is listed twice")));
            }
            zones.push(z.clone());
        }
        zones.sort();
        if let Some(t) = self.rebalance_threshold {
            if self.mode != ZoneMode::Operator {
                return Err(CrdError::conflict("spec.rebalanceThreshold", "applies only to mode operator"));
            }
            if t == 0 {
                return Err(CrdError::out_of_range("spec.rebalanceThreshold", "must be at least 1"));
            }
        }
        if self.strict && self.mode != ZoneMode::Webhook {
            return Err(CrdError::conflict("spec.strict", "applies only to mode webhook"));
        }
        Ok(ZoneBalancerConfig {
            selector,
            topology_key: self.topology_key.clone(),
            zones,
            mode: self.mode,
            affinity: self.affinity,
            rebalance_threshold: self.rebalance_threshold,
        })
    }
}
