//! `PodDistribution` (namespaced, short name `pdist`): spreads one workload's pods over ordered node
//! groups by weight or percent, with an optional base count on one group
//! (`docs/semantics.md#2-weighted-distribution-with-base`; it replaces Versprei and SmartScheduler). The
//! webhook decides each pod's group at CREATE; in strict mode several webhook replicas share
//! their in-flight reservations through this resource's status.

use super::CrdError;
use super::common::{NodeGroupSelector, WorkloadTarget, at_most, check_label_value};
use super::conditions::{Condition, impl_status_conditions};
use super::shared_ledger::{self, SharedLedger};
pub use super::shared_ledger::{ConfirmedEntry, PodRef, ReservationEntry, ReservedWorkload};
use kube::{CustomResource, KubeSchema};
use placement_core::admission::DistributionRule;
use placement_core::apportion::{Base, Fallback};
use placement_core::group::NodeGroup;
use placement_core::ledger::LedgerState;
use placement_core::model::WorkloadRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest weight of one group.
pub const MAX_WEIGHT: u32 = 10_000;
/// Largest `maxPods` of a group.
pub const MAX_PODS: u32 = 100_000;
/// Most groups in one distribution.
pub const MAX_GROUPS: usize = 16;

fn default_true() -> bool {
    true
}

/// What to do when the best group has no node that fits the pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FallbackMode {
    #[default]
    Next,
    None,
}

impl FallbackMode {
    pub fn to_core(self) -> Fallback {
        match self {
            FallbackMode::Next => Fallback::Next,
            FallbackMode::None => Fallback::None,
        }
    }
}

/// How the chosen group is written into the pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Enforcement {
    #[default]
    Required,
    Preferred,
}

/// One node group: its nodes, and its share of the pods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.weight) != has(self.percent)").message("set exactly one of weight or percent"))]
pub struct DistributionGroup {
    /// Name of the group, unique in the list (shown in status and in decisions).
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// The group's nodes, by label. A node matching several groups belongs to the first.
    pub node_selector: NodeGroupSelector,
    /// Relative share of the pods beyond the base (0 = never). Exclusive with `percent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub weight: Option<u32>,
    /// Share of the pods beyond the base, in percent; when used, every group uses it and they sum to
    /// 100. Exclusive with `weight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<u32>,
    /// The first `base` pods go to this group before any weighting (at most one group has a base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub base: Option<u32>,
    /// Never place more than this many pods in the group: when it is full, the group is treated as
    /// infeasible (see `fallback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_pods: Option<u32>,
}

/// Distribute one workload's pods over ordered node groups.
// Printer columns repeat `type_ = ...` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "placement.dev",
    version = "v1alpha1",
    kind = "PodDistribution",
    plural = "poddistributions",
    namespaced,
    status = "PodDistributionStatus",
    shortname = "pdist",
    category = "placement",
    doc = "Spreads one workload's pods over ordered node groups by weight or percent, with an optional base.",
    printcolumn(
        name = "Kind",
        type_ = "string",
        json_path = ".spec.targetRef.kind",
        description = "Kind of the target workload"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.targetRef.name",
        description = "Name of the target workload"
    ),
    printcolumn(
        name = "Groups",
        type_ = "string",
        json_path = ".spec.groups[*].name",
        description = "Group names, in order"
    ),
    printcolumn(
        name = "Strict",
        type_ = "boolean",
        json_path = ".spec.strict",
        description = "Reservations shared through status",
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
#[x_kube(
    validation = kube::core::Rule::new("self.groups.filter(g, has(g.base)).size() <= 1").message("at most one group may have a base").field_path(".groups"),
    validation = kube::core::Rule::new("self.groups.exists(g, (has(g.weight) && g.weight > 0) || (has(g.percent) && g.percent > 0))").message("weights must sum to more than 0").field_path(".groups"),
    validation = kube::core::Rule::new("self.groups.all(g, has(g.percent)) || self.groups.all(g, !has(g.percent))").message("use percent on every group or on none").field_path(".groups"),
    validation = kube::core::Rule::new("!self.groups.all(g, has(g.percent)) || self.groups.map(g, g.percent).sum() == 100").message("percents must sum to 100").field_path(".groups")
)]
#[serde(rename_all = "camelCase")]
pub struct PodDistributionSpec {
    /// The Deployment or StatefulSet whose pods are distributed (same namespace).
    pub target_ref: WorkloadTarget,
    /// Node groups in order: earlier groups win ties and take a node matching several groups.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub groups: Vec<DistributionGroup>,
    /// When the best group has no node that fits: `next` tries the next best group, `none` leaves the
    /// pod to the scheduler unchanged and reports why.
    #[serde(default)]
    pub fallback: FallbackMode,
    /// `required`: the group's labels go into the pod's nodeSelector (expressions into required node
    /// affinity). `preferred`: a preferred node-affinity term, so the scheduler may deviate.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// Count only pods of the incoming pod's revision, so a rollout does not skew the new revision.
    #[serde(default = "default_true")]
    pub revision_scoped: bool,
    /// Share in-flight reservations between webhook replicas through this resource's status (an
    /// optimistic update per decision; needed only with several webhook replicas).
    #[serde(default)]
    pub strict: bool,
}

/// A validated `PodDistribution` spec in core terms.
#[derive(Clone, Debug)]
pub struct DistributionConfig {
    /// The workload whose pods are distributed.
    pub target: WorkloadRef,
    /// Groups, apportionment and fallback; `all_revisions` is the opposite of `revisionScoped`.
    pub rule: DistributionRule,
    /// How the chosen group is written into the pod.
    pub enforcement: Enforcement,
    /// `maxPods` per group, in group order.
    pub max_pods: Vec<Option<u32>>,
    /// Reservations are shared through the status.
    pub strict: bool,
}

impl PodDistributionSpec {
    /// Check every field and build the core rule for a resource in `namespace`; errors name the field
    /// (`spec.groups[1].weight: ...`).
    pub fn to_core(&self, namespace: &str) -> Result<DistributionConfig, CrdError> {
        let target = self.target_ref.to_core("spec.targetRef", namespace)?;
        if self.groups.is_empty() {
            return Err(CrdError::Missing { path: "spec.groups".into() });
        }
        if self.groups.len() > MAX_GROUPS {
            return Err(CrdError::out_of_range("spec.groups", format!("at most {MAX_GROUPS} groups")));
        }
        let uses_percent = self.groups[0].percent.is_some();
        let mut groups = Vec::with_capacity(self.groups.len());
        let mut base: Option<Base> = None;
        for (i, g) in self.groups.iter().enumerate() {
            let path = format!("spec.groups[{i}]");
            if g.name.is_empty() {
                return Err(CrdError::Missing { path: format!("{path}.name") });
            }
            check_label_value(&format!("{path}.name"), &g.name)?;
            if let Some(j) = self.groups[..i].iter().position(|h| h.name == g.name) {
                return Err(CrdError::conflict(
                    format!("{path}.name"),
                    format!("{:?} is also the name of groups[{j}]", g.name),
                ));
            }
            let selector = g.node_selector.to_core(&format!("{path}.nodeSelector"))?;
            let weight = match (g.weight, g.percent) {
                (Some(_), Some(_)) => {
                    return Err(CrdError::conflict(format!("{path}.percent"), "set exactly one of weight or percent"));
                }
                (None, None) => return Err(CrdError::Missing { path: format!("{path}.weight") }),
                (Some(w), None) => {
                    if uses_percent {
                        return Err(CrdError::conflict(
                            format!("{path}.weight"),
                            "use percent on every group or on none",
                        ));
                    }
                    if w > MAX_WEIGHT {
                        return Err(CrdError::out_of_range(
                            format!("{path}.weight"),
                            format!("{w} is above {MAX_WEIGHT}"),
                        ));
                    }
                    w
                }
                (None, Some(p)) => {
                    if !uses_percent {
                        return Err(CrdError::conflict(
                            format!("{path}.percent"),
                            "use percent on every group or on none",
                        ));
                    }
                    if p > 100 {
                        return Err(CrdError::out_of_range(format!("{path}.percent"), format!("{p} is above 100")));
                    }
                    p
                }
            };
            if let Some(max) = g.max_pods {
                at_most(format!("{path}.maxPods"), max, MAX_PODS)?;
            }
            if let Some(count) = g.base {
                at_most(format!("{path}.base"), count, MAX_WEIGHT)?;
                if let Some(b) = base {
                    return Err(CrdError::conflict(
                        format!("{path}.base"),
                        format!("only one group may have a base (groups[{}] has one)", b.group),
                    ));
                }
                base = Some(Base { group: i, count });
            }
            groups.push((NodeGroup::new(g.name.clone(), selector), weight));
        }
        let total: u64 = groups.iter().map(|(_, w)| u64::from(*w)).sum();
        if uses_percent && total != 100 {
            return Err(CrdError::out_of_range("spec.groups", format!("percents sum to {total}, not 100")));
        }
        if total == 0 {
            return Err(CrdError::out_of_range("spec.groups", "weights must sum to more than 0"));
        }
        let mut rule = DistributionRule::new(groups, base, self.fallback.to_core())
            .map_err(|e| CrdError::conflict("spec.groups", e.to_string()))?;
        rule.all_revisions = !self.revision_scoped;
        Ok(DistributionConfig {
            target,
            rule,
            enforcement: self.enforcement,
            max_pods: self.groups.iter().map(|g| g.max_pods).collect(),
            strict: self.strict,
        })
    }
}

/// One group's pods, as last counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// The group's name.
    pub name: String,
    /// Pods of the workload (and revision) running or pending in the group.
    #[serde(default)]
    pub pods: u32,
    /// Decisions for the group not yet seen as pods.
    #[serde(default)]
    pub reserved: u32,
    /// What the group should hold for the current number of pods.
    #[serde(default)]
    pub target: u32,
    /// `pods + reserved - target`: above zero the group holds too many, below too few.
    #[serde(default)]
    pub drift: i64,
}

/// Counts per group and, in strict mode, the shared reservation ledger.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodDistributionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the spec is valid and in effect (otherwise the message names the bad field).
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The revision the counts are for (with `revisionScoped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Pods, reservations and target per group, in spec order.
    #[serde(default)]
    pub groups: Vec<GroupStatus>,
    /// Strict mode: in-flight reservations shared by the webhook replicas.
    #[serde(default)]
    pub reservations: Vec<ReservationEntry>,
    /// Strict mode: reservations some replica has seen as pods, and until when they stay listed (so a
    /// replica whose watch is behind still counts them).
    #[serde(default)]
    pub confirmed: Vec<ConfirmedEntry>,
}

impl_status_conditions!(PodDistributionStatus);

impl PodDistributionStatus {
    /// The shared ledger held in this status.
    pub fn ledger_state(&self) -> LedgerState {
        shared_ledger::to_state(&self.reservations, &self.confirmed)
    }

    /// Store a ledger in this status (reservations in id order).
    pub fn set_ledger_state(&mut self, state: &LedgerState) {
        (self.reservations, self.confirmed) = shared_ledger::from_state(state);
    }
}

impl SharedLedger for PodDistribution {
    fn shared_ledger(&self) -> LedgerState {
        self.status.as_ref().map(PodDistributionStatus::ledger_state).unwrap_or_default()
    }

    fn set_shared_ledger(&mut self, state: &LedgerState) {
        self.status.get_or_insert_with(Default::default).set_ledger_state(state);
    }
}
