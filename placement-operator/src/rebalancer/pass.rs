//! One rebalance pass as a pure function, shared by the controller and `placement-operator plan` so
//! that both make exactly the same decision from the same inputs: convert the policy, observe (EWMA and
//! K/M hysteresis), then plan with the WorkloadSLOs and NodeClasses. No I/O and no clock: the caller
//! gives the state and the time. The plan counts the other policies' evictions
//! (`inputs.cluster_history`) in its budgets and backoffs next to this policy's own history; the state
//! returned, which is what gets persisted, holds only this policy's own.

use super::observe::Inputs;
use jiff::Timestamp;
use placement_core::rebalance::{Plan, PlanInput, RebalancePolicy, RebalanceState, observe, plan};

/// The result of a pass: the state after observing (history pruned, planned evictions not yet
/// recorded) and the plan.
#[derive(Clone, Debug)]
pub struct PassResult {
    pub observed: RebalanceState,
    pub plan: Plan,
}

/// Observes `observations` times (1 in the controller; `plan` on a saved snapshot without history
/// observes as many times as a node needs to become hot), then plans. Namespaces in
/// `inputs.excluded_namespaces` are left out of scope.
pub fn run(
    policy: &RebalancePolicy,
    state: &RebalanceState,
    inputs: &Inputs,
    now: Timestamp,
    observations: u32,
) -> PassResult {
    let mut policy = policy.clone();
    for ns in &inputs.excluded_namespaces {
        if !policy.exclude_namespaces.contains(ns) {
            policy.exclude_namespaces.push(ns.clone());
        }
    }
    let mut observed = state.clone();
    for _ in 0..observations.max(1) {
        observed = observe(&policy, &observed, &inputs.snapshot, now);
    }
    let mut counted = observed.clone();
    counted.history.extend(inputs.cluster_history.iter().cloned());
    let plan = plan(&PlanInput {
        snapshot: &inputs.snapshot,
        policy: &policy,
        state: &counted,
        slos: &inputs.slos,
        classes: &inputs.classes,
        now,
    });
    PassResult { observed, plan }
}

/// `now` truncated to the second: the precision of Kubernetes timestamps in status, so that the
/// budget windows computed now and after a restart (from status) are the same.
pub fn now_seconds(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}
