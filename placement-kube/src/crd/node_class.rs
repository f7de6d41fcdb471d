//! `NodeClass` (cluster-scoped, short name `nclass`): a set of nodes by label with a preference as
//! eviction targets for the rebalancer (0 = never a target, 100 = full preference). A move's benefit is
//! scaled by the target's weight, so a less preferred class must improve balance more to be chosen.
//! Classes are matched in name order; a node in no class has weight 100.

use super::CrdError;
use super::common::NodeGroupSelector;
use super::conditions::{Condition, impl_status_conditions};
use kube::{CustomResource, KubeSchema};
use placement_core::rebalance::NodeClass as CoreNodeClass;
use serde::{Deserialize, Serialize};

/// Nodes by label, with a preference as rebalancer targets.
// Printer columns repeat `type_ = ...` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "placement.dev",
    version = "v1alpha1",
    kind = "NodeClass",
    plural = "nodeclasses",
    status = "NodeClassStatus",
    shortname = "nclass",
    category = "placement",
    doc = "A set of nodes by label with a preference (0..100) as rebalancer eviction targets.",
    printcolumn(
        name = "Weight",
        type_ = "integer",
        json_path = ".spec.weight",
        description = "Preference as a target (0..100)"
    ),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".status.nodes", description = "Nodes in the class"),
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
#[serde(rename_all = "camelCase")]
pub struct NodeClassSpec {
    /// The class's nodes, by label. Classes are matched in name order; the first match wins.
    pub node_selector: NodeGroupSelector,
    /// Preference as an eviction target: 0 never, 100 as good as a node in no class.
    #[schemars(range(min = 0, max = 100))]
    pub weight: u32,
}

impl NodeClassSpec {
    /// The core class for the resource named `name`; errors name the field.
    pub fn to_core(&self, name: &str) -> Result<CoreNodeClass, CrdError> {
        let selector = self.node_selector.to_core("spec.nodeSelector")?;
        if self.weight > 100 {
            return Err(CrdError::out_of_range("spec.weight", format!("{} is above 100", self.weight)));
        }
        Ok(CoreNodeClass { name: name.to_string(), selector, weight: self.weight })
    }
}

/// Nodes matched at the last pass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClassStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the spec is valid and in effect (otherwise the message names the bad field).
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Nodes in the class (matched by this class first).
    #[serde(default)]
    pub nodes: u32,
}

impl_status_conditions!(NodeClassStatus);
