//! Which rule places a pod at CREATE (`docs/semantics.md#which-rule-applies`), decided once, here, for
//! every caller: the webhook's local decision and its strict mode both ask [`resolve`], so they can never
//! disagree on the rule.
//!
//! First match wins:
//! 1. a `PodDistribution` in the pod's namespace whose target is the pod's workload (several: the oldest,
//!    then the first by name; the caller passes them in that order);
//! 2. the strategy annotation on the pod's workload;
//! 3. a `ZoneBalancer` in webhook mode whose selector matches the pod, for a workload of at most one
//!    replica (several: the first the caller lists);
//! 4. none: the pod is left alone, with the reason.
//!
//! Only pods of workloads the webhook places (Deployment, ReplicaSet, StatefulSet) get a rule: a
//! DaemonSet's pod belongs on its own node, a Job's pods are not spread. The caller converts its objects
//! into the small views below; nothing here reads a cluster or a clock.

use crate::model::{WorkloadKind, WorkloadRef};

/// A PodDistribution as the resolver sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistributionView {
    /// The workload its `targetRef` names, in the distribution's namespace.
    pub target: WorkloadRef,
    /// Whether its reservations are shared between webhook replicas (strict mode).
    pub strict: bool,
}

/// A ZoneBalancer as the resolver sees it, for one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneBalancerView {
    /// Mode `webhook` (the operator mode pins templates instead).
    pub webhook_mode: bool,
    /// Its selector matches the pod's labels.
    pub selects_pod: bool,
    pub strict: bool,
}

/// What the resolver needs to know about the pod's workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadView<'a> {
    pub workload: &'a WorkloadRef,
    /// The strategy annotation is set on the workload.
    pub has_strategy: bool,
    /// Its `spec.replicas`, when the workload is known.
    pub replicas: Option<u32>,
}

/// The rule that applies to a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppliedRule {
    /// The distribution at this index of the caller's list.
    Distribution { index: usize, strict: bool },
    /// The workload's strategy annotation (never strict: it has no status to share a ledger in).
    Strategy,
    /// The zone balancer at this index of the caller's list.
    ZoneBalancer { index: usize, strict: bool },
    /// No rule: the pod is left alone.
    None(NoRule),
}

/// Why no rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRule {
    /// The workload's pods are never placed (a DaemonSet's, a Job's, an unknown kind's).
    NotPlaced,
    /// Nothing names or selects the pod.
    NoneApplies,
}

impl AppliedRule {
    /// Whether the decision must go through the ledger shared in the rule's status.
    pub fn strict(&self) -> bool {
        matches!(self, AppliedRule::Distribution { strict: true, .. } | AppliedRule::ZoneBalancer { strict: true, .. })
    }
}

impl std::fmt::Display for NoRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NoRule::NotPlaced => "pods of this kind are not placed: left alone",
            NoRule::NoneApplies => "no PodDistribution, strategy annotation or ZoneBalancer applies",
        })
    }
}

/// Workload kinds whose pods are placed.
pub fn placeable(kind: &WorkloadKind) -> bool {
    matches!(kind, WorkloadKind::Deployment | WorkloadKind::ReplicaSet | WorkloadKind::StatefulSet)
}

/// The rule that applies to a pod of `workload` (see the module doc for the order).
pub fn resolve(
    workload: &WorkloadView<'_>,
    distributions: &[DistributionView],
    zone_balancers: &[ZoneBalancerView],
) -> AppliedRule {
    if !placeable(&workload.workload.kind) {
        return AppliedRule::None(NoRule::NotPlaced);
    }
    if let Some(index) = distributions.iter().position(|d| d.target == *workload.workload) {
        return AppliedRule::Distribution { index, strict: distributions[index].strict };
    }
    if workload.has_strategy {
        return AppliedRule::Strategy;
    }
    if workload.replicas.is_none_or(|r| r <= 1)
        && let Some(index) = zone_balancers.iter().position(|z| z.webhook_mode && z.selects_pod)
    {
        return AppliedRule::ZoneBalancer { index, strict: zone_balancers[index].strict };
    }
    AppliedRule::None(NoRule::NoneApplies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> WorkloadRef {
        WorkloadRef::new(WorkloadKind::Deployment, "shop", "web")
    }

    fn view(workload: &WorkloadRef, has_strategy: bool, replicas: Option<u32>) -> WorkloadView<'_> {
        WorkloadView { workload, has_strategy, replicas }
    }

    fn dist(name: &str, strict: bool) -> DistributionView {
        DistributionView { target: WorkloadRef::new(WorkloadKind::Deployment, "shop", name), strict }
    }

    fn zb(webhook_mode: bool, selects_pod: bool, strict: bool) -> ZoneBalancerView {
        ZoneBalancerView { webhook_mode, selects_pod, strict }
    }

    #[test]
    fn a_distribution_naming_the_workload_wins_over_everything_else() {
        let w = web();
        let rule =
            resolve(&view(&w, true, Some(1)), &[dist("api", false), dist("web", true)], &[zb(true, true, false)]);
        assert_eq!(rule, AppliedRule::Distribution { index: 1, strict: true });
        assert!(rule.strict());
    }

    #[test]
    fn the_first_of_several_distributions_in_the_callers_order_applies() {
        let w = web();
        let rule = resolve(&view(&w, false, None), &[dist("web", false), dist("web", true)], &[]);
        assert_eq!(rule, AppliedRule::Distribution { index: 0, strict: false });
    }

    #[test]
    fn the_annotation_comes_before_a_zone_balancer_and_is_never_strict() {
        let w = web();
        let rule = resolve(&view(&w, true, Some(1)), &[dist("api", true)], &[zb(true, true, true)]);
        assert_eq!(rule, AppliedRule::Strategy);
        assert!(!rule.strict());
    }

    #[test]
    fn a_zone_balancer_needs_webhook_mode_its_selector_and_one_replica_at_most() {
        let w = web();
        let zones = [zb(false, true, true), zb(true, false, true), zb(true, true, true), zb(true, true, false)];
        assert_eq!(
            resolve(&view(&w, false, Some(1)), &[], &zones),
            AppliedRule::ZoneBalancer { index: 2, strict: true }
        );
        assert_eq!(resolve(&view(&w, false, None), &[], &zones), AppliedRule::ZoneBalancer { index: 2, strict: true });
        assert_eq!(
            resolve(&view(&w, false, Some(0)), &[], &zones[3..]),
            AppliedRule::ZoneBalancer { index: 0, strict: false }
        );
        assert_eq!(resolve(&view(&w, false, Some(2)), &[], &zones), AppliedRule::None(NoRule::NoneApplies));
        assert_eq!(resolve(&view(&w, false, Some(1)), &[], &zones[..2]), AppliedRule::None(NoRule::NoneApplies));
    }

    #[test]
    fn pods_of_kinds_that_are_not_placed_get_no_rule_whatever_names_them() {
        for kind in [WorkloadKind::DaemonSet, WorkloadKind::Job, WorkloadKind::Other("Workflow".into())] {
            let w = WorkloadRef::new(kind, "shop", "web");
            let d = DistributionView { target: w.clone(), strict: false };
            assert_eq!(
                resolve(&view(&w, true, Some(1)), &[d], &[zb(true, true, false)]),
                AppliedRule::None(NoRule::NotPlaced)
            );
        }
        let w = WorkloadRef::new(WorkloadKind::StatefulSet, "shop", "db");
        let d = DistributionView { target: w.clone(), strict: false };
        assert_eq!(resolve(&view(&w, false, None), &[d], &[]), AppliedRule::Distribution { index: 0, strict: false });
    }
}
