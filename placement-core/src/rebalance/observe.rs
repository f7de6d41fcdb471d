//! Observation with memory: an EWMA of each node's score and the K/M hysteresis state machine. A node
//! becomes hot after `K` consecutive smoothed scores at or above `hot`, and stops being hot only after
//! `M` consecutive scores below `hot - hysteresis`; cold is the mirror image around `cold`.

use super::policy::RebalancePolicy;
use super::score::node_score;
use crate::model::{PodKey, Snapshot, WorkloadRef};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One node's remembered state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    /// Smoothed score.
    pub score: f64,
    pub hot: bool,
    pub cold: bool,
    /// Consecutive observations at or above `hot`.
    pub hot_streak: u32,
    /// Consecutive observations below `hot - hysteresis`.
    pub cool_streak: u32,
    /// Consecutive observations at or below `cold`.
    pub cold_streak: u32,
    /// Consecutive observations above `cold + hysteresis`.
    pub warm_streak: u32,
}

/// An eviction done (or, in dry-run, that would have been done), kept for budgets and backoff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvictionRecord {
    pub at: Timestamp,
    pub pod: PodKey,
    pub workload: Option<WorkloadRef>,
    pub from: String,
    pub to: String,
    /// The WorkloadSLO that covered the pod, if any.
    #[serde(default)]
    pub slo: Option<String>,
}

/// Everything the rebalancer remembers between passes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceState {
    pub nodes: BTreeMap<String, NodeState>,
    pub history: Vec<EvictionRecord>,
    pub last_observed: Option<Timestamp>,
}

impl RebalanceState {
    /// Record evictions that were carried out.
    pub fn record(&mut self, evictions: impl IntoIterator<Item = EvictionRecord>) {
        self.history.extend(evictions);
    }
}

/// Take one observation of every node. Nodes without a score (no metrics) keep their state unchanged;
/// nodes gone from the snapshot are forgotten; history older than every window is pruned.
pub fn observe(
    policy: &RebalancePolicy,
    state: &RebalanceState,
    snapshot: &Snapshot,
    now: Timestamp,
) -> RebalanceState {
    let mut next = RebalanceState { nodes: BTreeMap::new(), history: Vec::new(), last_observed: Some(now) };
    for node in &snapshot.nodes {
        let previous = state.nodes.get(&node.name);
        let Some(raw) = node_score(policy, node) else {
            if let Some(p) = previous {
                next.nodes.insert(node.name.clone(), p.clone());
            }
            continue;
        };
        let mut s = previous.cloned().unwrap_or_default();
        s.score = match previous {
            Some(p) => policy.ewma_alpha * raw + (1.0 - policy.ewma_alpha) * p.score,
            None => raw,
        };
        step_hysteresis(policy, &mut s);
        next.nodes.insert(node.name.clone(), s);
    }
    let keep = policy.workload_backoff_seconds.max(policy.node_backoff_seconds).max(3600);
    let keep = jiff::SignedDuration::from_secs(i64::try_from(keep).unwrap_or(i64::MAX));
    let horizon = now.checked_sub(keep).unwrap_or(Timestamp::MIN);
    next.history = state.history.iter().filter(|r| r.at > horizon).cloned().collect();
    next
}

fn streak(counter: &mut u32, condition: bool) {
    *counter = if condition { counter.saturating_add(1) } else { 0 };
}

fn step_hysteresis(p: &RebalancePolicy, s: &mut NodeState) {
    streak(&mut s.hot_streak, s.score >= p.hot_threshold);
    streak(&mut s.cool_streak, s.score < p.hot_threshold - p.hysteresis);
    streak(&mut s.cold_streak, s.score <= p.cold_threshold);
    streak(&mut s.warm_streak, s.score > p.cold_threshold + p.hysteresis);
    if !s.hot && s.hot_streak >= p.observations_to_enter {
        s.hot = true;
    } else if s.hot && s.cool_streak >= p.observations_to_leave {
        s.hot = false;
    }
    if !s.cold && s.cold_streak >= p.observations_to_enter {
        s.cold = true;
    } else if s.cold && s.warm_streak >= p.observations_to_leave {
        s.cold = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeBuilder;

    fn policy() -> RebalancePolicy {
        RebalancePolicy {
            ewma_alpha: 1.0,
            observations_to_enter: 2,
            observations_to_leave: 3,
            hysteresis: 0.1,
            ..RebalancePolicy::default()
        }
    }

    fn run(scores: &[u64], p: &RebalancePolicy) -> Vec<(bool, bool)> {
        let mut state = RebalanceState::default();
        let t = Timestamp::from_second(0).unwrap();
        scores
            .iter()
            .map(|s| {
                let snap = Snapshot::new(
                    vec![NodeBuilder::new("n").allocatable(100, 100).usage(*s, *s).build()],
                    vec![],
                    vec![],
                    vec![],
                );
                state = observe(p, &state, &snap, t);
                let n = &state.nodes["n"];
                (n.hot, n.cold)
            })
            .collect()
    }

    #[test]
    fn hot_needs_k_in_a_row_and_m_to_leave() {
        let hot: Vec<bool> = run(&[90, 50, 90, 90, 75, 75, 60, 60, 60], &policy()).iter().map(|x| x.0).collect();
        // 90 (1), 50 resets, 90 90 -> hot; 75 is inside the band (not < 0.7): stays hot and does not count;
        // three times 60 -> not hot.
        assert_eq!(hot, vec![false, false, false, true, true, true, true, true, false]);
    }

    #[test]
    fn cold_is_mirrored() {
        let cold: Vec<bool> = run(&[10, 20, 35, 45, 45, 45], &policy()).iter().map(|x| x.1).collect();
        assert_eq!(cold, vec![false, true, true, true, true, false]);
    }

    #[test]
    fn ewma_smooths_a_spike() {
        let p = RebalancePolicy { ewma_alpha: 0.5, observations_to_enter: 1, ..policy() };
        // 20, then one spike to 100: smoothed 60, not hot.
        let hot: Vec<bool> = run(&[20, 100], &p).iter().map(|x| x.0).collect();
        assert_eq!(hot, vec![false, false]);
    }

    #[test]
    fn nodes_without_metrics_keep_state_and_history_is_pruned() {
        let p = policy();
        let mut state = RebalanceState::default();
        state.nodes.insert("n".into(), NodeState { score: 0.9, hot: true, ..NodeState::default() });
        state.history.push(EvictionRecord {
            at: Timestamp::from_second(0).unwrap(),
            pod: PodKey { namespace: "a".into(), name: "b".into() },
            workload: None,
            from: "n".into(),
            to: "m".into(),
            slo: None,
        });
        let snap = Snapshot::new(vec![NodeBuilder::new("n").build()], vec![], vec![], vec![]);
        let next = observe(&p, &state, &snap, Timestamp::from_second(7200).unwrap());
        assert!(next.nodes["n"].hot);
        assert!(next.history.is_empty());
    }
}
