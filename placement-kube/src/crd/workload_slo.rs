//! `WorkloadSLO` (namespaced, short name `wslo`): disruption guard rails the rebalancer respects for
//! one workload's pods — evictions per hour, whether StatefulSet pods may be evicted at all, and how
//! many pods must stay available (`docs/semantics.md#4-rebalancer`; as in the Rebalancer Operator).

use super::CrdError;
use super::common::{WorkloadTarget, at_most, label_selector_to_core};
use super::conditions::{Condition, impl_status_conditions};
use super::rebalance_policy::{KIND_PATTERN, check_kind};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as KubeLabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use placement_core::model::WorkloadRef;
use placement_core::rebalance::WorkloadSlo;
use placement_core::selector::{LabelSelector, Operator, Requirement};
use serde::{Deserialize, Serialize};

fn d_per_hour() -> u32 {
    1
}

/// Disruption guard rails for one workload's pods.
// Printer columns repeat `type_ = ...` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "placement.dev",
    version = "v1alpha1",
    kind = "WorkloadSLO",
    plural = "workloadslos",
    singular = "workloadslo",
    namespaced,
    status = "WorkloadSLOStatus",
    shortname = "wslo",
    category = "placement",
    doc = "Disruption guard rails the rebalancer respects for one workload's pods.",
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.targetRef.name",
        description = "Target workload"
    ),
    printcolumn(
        name = "PerHour",
        type_ = "integer",
        json_path = ".spec.maxEvictionsPerHour",
        description = "Evictions allowed in any hour"
    ),
    printcolumn(
        name = "Used",
        type_ = "integer",
        json_path = ".status.evictionsLastHour",
        description = "Evictions in the last hour"
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
#[x_kube(validation = kube::core::Rule::new("has(self.targetRef) || has(self.selector)").message("give targetRef, selector or both"))]
#[serde(rename_all = "camelCase")]
#[allow(clippy::upper_case_acronyms)]
pub struct WorkloadSLOSpec {
    /// The workload whose pods are covered (same namespace). With `selector` too, pods must match both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<WorkloadTarget>,
    /// Pods covered, by label (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<KubeLabelSelector>,
    /// Evictions of covered pods in any hour (0 = never evict them).
    #[serde(default = "d_per_hour")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_evictions_per_hour: u32,
    /// StatefulSet pods may be evicted (they never are otherwise).
    #[serde(default)]
    pub allow_stateful_set: bool,
    /// Covered pods of these controller kinds (owner reference `kind`, e.g. `Rollout`) may be evicted.
    /// Pods of controllers placement does not know are never evicted otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 63), regex(pattern = KIND_PATTERN)))]
    pub allow_controller_kinds: Vec<String>,
    /// The covered pods' `emptyDir` volumes are expendable scratch: they may be evicted and the
    /// volumes' contents lost. Pods with any emptyDir are never evicted otherwise.
    #[serde(default)]
    pub empty_dir_is_scratch: bool,
    /// Pods that must stay available after an eviction: a count (`2`) or a percentage of the desired
    /// replicas (`"50%"`). Checked by the operator before each eviction, next to PodDisruptionBudgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrString>,
}

/// `minAvailable`, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinAvailable {
    Count(u32),
    Percent(u32),
}

impl MinAvailable {
    /// Pods that must stay available out of `replicas` (a percentage rounds up, as in PDBs).
    pub fn resolve(self, replicas: u32) -> u32 {
        match self {
            MinAvailable::Count(n) => n,
            MinAvailable::Percent(p) => {
                let v = (u64::from(replicas) * u64::from(p)).div_ceil(100);
                u32::try_from(v).unwrap_or(u32::MAX)
            }
        }
    }
}

impl WorkloadSLOSpec {
    /// The core SLO for a resource `namespace/name`. Needs `selector`; a spec with only `targetRef`
    /// must be resolved first with [`WorkloadSLOSpec::to_core_with_target`].
    pub fn to_core(&self, namespace: &str, name: &str) -> Result<WorkloadSlo, CrdError> {
        self.to_core_with_target(namespace, name, None)
    }

    /// The core SLO, `target_selector` being the pod selector of the `targetRef` workload (looked up by
    /// the caller); pods must match it and `selector`.
    pub fn to_core_with_target(
        &self,
        namespace: &str,
        name: &str,
        target_selector: Option<&LabelSelector>,
    ) -> Result<WorkloadSlo, CrdError> {
        self.min_available()?;
        at_most("spec.maxEvictionsPerHour", self.max_evictions_per_hour, 1_000)?;
        for (i, kind) in self.allow_controller_kinds.iter().enumerate() {
            check_kind(&format!("spec.allowControllerKinds[{i}]"), kind)?;
        }
        let own = self.selector.as_ref().map(|s| label_selector_to_core("spec.selector", s)).transpose()?;
        if let Some(t) = &self.target_ref {
            t.to_core("spec.targetRef", namespace)?;
        }
        let selector = match (&self.target_ref, target_selector, own) {
            (None, _, None) => return Err(CrdError::Missing { path: "spec.selector".into() }),
            (Some(_), None, None) => {
                return Err(CrdError::Unresolved {
                    path: "spec.targetRef".into(),
                    message: "the workload's pod selector must be looked up first".into(),
                });
            }
            (Some(_), Some(t), Some(own)) => and_selectors(t, &own),
            (Some(_), Some(t), None) => t.clone(),
            (_, _, Some(own)) => own,
        };
        Ok(WorkloadSlo {
            name: name.to_string(),
            namespace: namespace.to_string(),
            selector,
            max_disruptions_per_hour: self.max_evictions_per_hour,
            allow_stateful: self.allow_stateful_set,
            allow_controller_kinds: self.allow_controller_kinds.clone(),
            empty_dir_is_scratch: self.empty_dir_is_scratch,
        })
    }

    /// The workload of `targetRef`, in `namespace`.
    pub fn target(&self, namespace: &str) -> Result<Option<WorkloadRef>, CrdError> {
        self.target_ref.as_ref().map(|t| t.to_core("spec.targetRef", namespace)).transpose()
    }

    /// `minAvailable`, checked: a count, or a whole percentage from 0% to 100%.
    pub fn min_available(&self) -> Result<Option<MinAvailable>, CrdError> {
        let path = "spec.minAvailable";
        match &self.min_available {
            None => Ok(None),
            Some(IntOrString::Int(n)) => u32::try_from(*n)
                .map(|n| Some(MinAvailable::Count(n)))
                .map_err(|_| CrdError::out_of_range(path, format!("{n} is negative"))),
            Some(IntOrString::String(s)) => {
                let p = s.strip_suffix('%').and_then(|n| n.parse::<u32>().ok()).ok_or_else(|| {
                    CrdError::format(path, format!("{s:?} is not a count or a percentage like \"50%\""))
                })?;
                if p > 100 {
                    return Err(CrdError::out_of_range(path, format!("{s:?} is above 100%")));
                }
                Ok(Some(MinAvailable::Percent(p)))
            }
        }
    }
}

/// Both selectors at once.
fn and_selectors(a: &LabelSelector, b: &LabelSelector) -> LabelSelector {
    let mut out = a.clone();
    for (k, v) in &b.match_labels {
        match out.match_labels.get(k) {
            Some(existing) if existing != v => out.match_expressions.push(Requirement {
                key: k.clone(),
                operator: Operator::In,
                values: vec![v.clone()],
            }),
            _ => {
                out.match_labels.insert(k.clone(), v.clone());
            }
        }
    }
    out.match_expressions.extend(b.match_expressions.iter().cloned());
    out
}

/// Budget use of the covered pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[allow(clippy::upper_case_acronyms)]
pub struct WorkloadSLOStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the spec is valid and in effect (otherwise the message names the bad field).
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Pods covered at the last pass.
    #[serde(default)]
    pub pods: u32,
    /// Evictions of covered pods in the last hour.
    #[serde(default)]
    pub evictions_last_hour: u32,
}

impl_status_conditions!(WorkloadSLOStatus);
