//! The greedy eviction plan. Each step takes the move — an evictable pod on a hot node, to a feasible
//! node that is not hot and does not become hot — that lowers sigma the most (scaled by the target's
//! NodeClass weight), and stops when sigma is at or below `targetSigma`, when no move lowers it by
//! `minImprovement`, or when a budget runs out. Among moves of exactly equal value the pod of lower
//! priority goes first, then the first by namespace and name, so the plan does not depend on the order
//! the candidates happen to be in.
//!
//! The search is exact and fast: moving a pod changes two scores only, and for one pod the change in
//! sigma grows with the target's current score among targets of the same allocatable, class weight and
//! taints (a "shape"). So each shape keeps its nodes ordered by score, and the best target of a shape is
//! the first feasible node in that order.

use super::budget::Budgets;
use super::filters::{SkipReason, never_evict};
use super::observe::{EvictionRecord, RebalanceState};
use super::policy::{NodeClass, RebalancePolicy, UtilizationSource, WorkloadSlo};
use super::score::{node_score, weighted};
use crate::fit;
use crate::model::{Node, Pod, PodKey, Snapshot, WorkloadRef};
use crate::resources::Resources;
use crate::taints::Taint;
use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// How far down a shape's score order the search looks for a feasible node.
const SHAPE_SEARCH_DEPTH: usize = 512;

/// Everything a plan reads.
pub struct PlanInput<'a> {
    pub snapshot: &'a Snapshot,
    pub policy: &'a RebalancePolicy,
    /// After [`super::observe`] for this pass.
    pub state: &'a RebalanceState,
    pub slos: &'a [WorkloadSlo],
    pub classes: &'a [NodeClass],
    pub now: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeScore {
    pub node: String,
    pub before: f64,
    pub after: f64,
    pub hot: bool,
    pub cold: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedEviction {
    pub pod: PodKey,
    /// The pod's uid, when known: the eviction's precondition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub workload: Option<WorkloadRef>,
    pub from: String,
    pub to: String,
    pub sigma_before: f64,
    pub sigma_after: f64,
    pub reason: String,
    pub record: EvictionRecord,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedCandidate {
    pub pod: PodKey,
    pub node: String,
    pub reason: SkipReason,
    /// `reason`, in words.
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum StopReason {
    NoHotNodes,
    NoCandidates,
    Balanced {
        sigma: f64,
        target: f64,
    },
    NoImprovingMove {
        min_improvement: f64,
    },
    /// Every remaining candidate was blocked or had no target (each is listed in `skipped`).
    CandidatesExhausted,
    Budget {
        reason: SkipReason,
    },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::NoHotNodes => f.write_str("no hot node"),
            StopReason::NoCandidates => f.write_str("no evictable candidate on a hot node"),
            StopReason::Balanced { sigma, target } => {
                write!(f, "sigma {sigma:.3} is at or below the target {target:.3}")
            }
            StopReason::NoImprovingMove { min_improvement } => {
                write!(f, "no move lowers n·sigma² by at least {min_improvement}")
            }
            StopReason::CandidatesExhausted => {
                f.write_str("every remaining candidate is blocked or has no target (see the skipped list)")
            }
            StopReason::Budget { reason } => write!(f, "{reason}"),
        }
    }
}

/// The result of one pass.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub dry_run: bool,
    pub sigma_before: f64,
    pub sigma_after: f64,
    pub nodes: Vec<NodeScore>,
    pub evictions: Vec<PlannedEviction>,
    pub skipped: Vec<SkippedCandidate>,
    pub stop: StopReason,
}

impl Plan {
    /// History records of the planned evictions, to add to the state once carried out.
    pub fn records(&self) -> Vec<EvictionRecord> {
        self.evictions.iter().map(|e| e.record.clone()).collect()
    }

    pub fn hot_nodes(&self) -> impl Iterator<Item = &NodeScore> {
        self.nodes.iter().filter(|n| n.hot)
    }

    pub fn cold_nodes(&self) -> impl Iterator<Item = &NodeScore> {
        self.nodes.iter().filter(|n| n.cold)
    }
}

/// A scored node during planning.
struct Slot<'a> {
    node: &'a Node,
    score: f64,
    requested: Resources,
    pods: u32,
    hot: bool,
    weight: u32,
    shape: usize,
}

fn key(score: f64) -> u64 {
    // Scores are >= 0, where the IEEE bit pattern orders like the value.
    score.max(0.0).to_bits()
}

struct Candidate<'a> {
    pod: &'a Pod,
    slot: usize,
    amount: Resources,
    /// Per shape, the first feasible slot in score order (`Some(None)`: none), once searched. Stays
    /// valid across moves except when the cached slot itself received a pod: every other slot before
    /// it in its shape only got fuller or hotter.
    first_feasible: Vec<Option<Option<usize>>>,
    /// Why the last search found nothing, for the report.
    why_not: String,
    /// PodDisruptionBudgets covering the pod.
    pdbs: Vec<usize>,
}

struct Search<'a> {
    policy: &'a RebalancePolicy,
    slots: Vec<Slot<'a>>,
    shapes: Vec<BTreeSet<(u64, usize)>>,
    /// The taints every node of a shape carries.
    shape_taints: Vec<Vec<Taint>>,
    sum: f64,
    sum_sq: f64,
}

impl<'a> Search<'a> {
    fn sigma(&self) -> f64 {
        let n = self.slots.len() as f64;
        if n < 2.0 {
            return 0.0;
        }
        (self.sum_sq / n - (self.sum / n) * (self.sum / n)).max(0.0).sqrt()
    }

    fn recompute_sums(&mut self) {
        self.sum = self.slots.iter().map(|s| s.score).sum();
        self.sum_sq = self.slots.iter().map(|s| s.score * s.score).sum();
    }

    /// Sigma after moving `da` off slot `a` and `db` onto slot `b`.
    fn sigma_after(&self, a: usize, da: f64, b: usize, db: f64) -> f64 {
        let (sa, sb) = (self.slots[a].score, self.slots[b].score);
        let n = self.slots.len() as f64;
        let sum = self.sum - da + db;
        let sum_sq = self.sum_sq - sa * sa + (sa - da) * (sa - da) - sb * sb + (sb + db) * (sb + db);
        (sum_sq / n - (sum / n) * (sum / n)).max(0.0).sqrt()
    }

    /// The first feasible target of `c` in `shape`, in score order.
    fn first_feasible(&self, c: &mut Candidate, shape: usize) -> Option<usize> {
        // All nodes of a shape share their taints: one check rules the whole shape out.
        if let Some(t) = crate::taints::untolerated(&self.shape_taints[shape], &c.pod.tolerations) {
            c.why_not = format!("untolerated taint {t}");
            return None;
        }
        for &(_, b) in self.shapes[shape].iter().take(SHAPE_SEARCH_DEPTH) {
            let to = &self.slots[b];
            if b == c.slot || to.hot || to.weight == 0 {
                continue;
            }
            let db = weighted(self.policy, c.amount, to.node.allocatable);
            if to.score + db >= self.policy.hot_threshold {
                c.why_not = format!("{} would become hot", to.node.name);
                continue;
            }
            if let Err(e) = fit::check_constraints(to.node, c.pod)
                .and_then(|()| fit::check_room(to.node, to.requested, to.pods, c.pod.requests))
            {
                c.why_not = format!("{}: {e}", to.node.name);
                continue;
            }
            return Some(b);
        }
        None
    }

    /// The best target for a candidate: `(ranking value, slot, sigma after)`, or `None`.
    fn best_target(&self, c: &mut Candidate) -> Option<(f64, usize, f64)> {
        let da = weighted(self.policy, c.amount, self.slots[c.slot].node.allocatable);
        let sigma = self.sigma();
        let mut best: Option<(f64, usize, f64)> = None;
        for shape in 0..self.shapes.len() {
            let b = match c.first_feasible[shape] {
                Some(cached) => cached,
                None => {
                    let found = self.first_feasible(c, shape);
                    c.first_feasible[shape] = Some(found);
                    found
                }
            };
            let Some(b) = b else { continue };
            let to = &self.slots[b];
            let db = weighted(self.policy, c.amount, to.node.allocatable);
            let after = self.sigma_after(c.slot, da, b, db);
            let value = (sigma - after) * f64::from(to.weight) / 100.0;
            if best.is_none_or(|(v, _, _)| value > v) {
                best = Some((value, b, after));
            }
        }
        best
    }

    fn apply(&mut self, c: &Candidate, b: usize) {
        let a = c.slot;
        let da = weighted(self.policy, c.amount, self.slots[a].node.allocatable);
        let db = weighted(self.policy, c.amount, self.slots[b].node.allocatable);
        for (i, delta, pods) in [(a, -da, -1i32), (b, db, 1)] {
            let shape = self.slots[i].shape;
            self.shapes[shape].remove(&(key(self.slots[i].score), i));
            let s = &mut self.slots[i];
            s.score = (s.score + delta).max(0.0);
            if pods > 0 {
                s.requested += c.pod.requests;
                s.pods += 1;
            } else {
                s.requested = s.requested.saturating_sub(c.pod.requests);
                s.pods = s.pods.saturating_sub(1);
            }
            self.shapes[shape].insert((key(self.slots[i].score), i));
        }
        self.recompute_sums();
    }
}

/// The order among moves of equal value: lower priority first (as the descheduler and the kubelet
/// evict), then namespace and name.
fn rank(pod: &Pod) -> (i32, &str, &str) {
    (pod.priority, &pod.namespace, &pod.name)
}

/// Plan one pass. See the module docs for the rules.
pub fn plan(input: &PlanInput) -> Plan {
    let policy = input.policy;
    // Scored nodes, grouped into shapes.
    let mut shape_ids: HashMap<(Resources, u32, Vec<Taint>), usize> = HashMap::new();
    let mut slots = Vec::new();
    for node in &input.snapshot.nodes {
        let Some(raw) = node_score(policy, node) else {
            continue;
        };
        let remembered = input.state.nodes.get(&node.name);
        let weight = NodeClass::weight_of(input.classes, &node.labels);
        let next = shape_ids.len();
        let shape = *shape_ids.entry((node.allocatable, weight, node.taints.clone())).or_insert(next);
        slots.push(Slot {
            node,
            score: remembered.map_or(raw, |r| r.score),
            requested: node.requested,
            pods: node.pod_count,
            hot: remembered.is_some_and(|r| r.hot),
            weight,
            shape,
        });
    }
    let mut shapes = vec![BTreeSet::new(); shape_ids.len()];
    let mut shape_taints = vec![Vec::new(); shape_ids.len()];
    for ((_, _, taints), &id) in &shape_ids {
        shape_taints[id] = taints.clone();
    }
    for (i, s) in slots.iter().enumerate() {
        shapes[s.shape].insert((key(s.score), i));
    }
    let mut search = Search { policy, slots, shapes, shape_taints, sum: 0.0, sum_sq: 0.0 };
    search.recompute_sums();
    let before: Vec<f64> = search.slots.iter().map(|s| s.score).collect();
    let sigma_before = search.sigma();

    let slot_of: HashMap<&str, usize> =
        search.slots.iter().enumerate().map(|(i, s)| (s.node.name.as_str(), i)).collect();
    let mut skipped = Vec::new();
    let skip = |skipped: &mut Vec<SkippedCandidate>, pod: &Pod, node: &str, reason: SkipReason| {
        skipped.push(SkippedCandidate { pod: pod.key(), node: node.to_string(), why: reason.to_string(), reason });
    };
    let mut candidates = Vec::new();
    for pod in &input.snapshot.pods {
        let Some(&slot) = pod.node_name.as_deref().and_then(|n| slot_of.get(n)) else {
            continue;
        };
        if !search.slots[slot].hot || !pod.holds_resources() {
            continue;
        }
        if let Some(reason) = never_evict(pod, policy, input.slos) {
            skip(&mut skipped, pod, &search.slots[slot].node.name, reason);
            continue;
        }
        let amount = match policy.source {
            UtilizationSource::Metrics => pod.usage.unwrap_or(pod.requests),
            UtilizationSource::Requests => pod.requests,
        };
        candidates.push(Candidate {
            pod,
            slot,
            amount,
            first_feasible: vec![None; search.shapes.len()],
            why_not: "no other node with metrics".into(),
            pdbs: Vec::new(),
        });
    }

    let mut budgets = Budgets::new(policy, input.slos, input.snapshot, &input.state.history, input.now);
    for c in &mut candidates {
        c.pdbs = budgets.covering_pdbs(c.pod);
    }
    let mut evictions = Vec::new();
    let stop = if !search.slots.iter().any(|s| s.hot) {
        StopReason::NoHotNodes
    } else if candidates.is_empty() {
        StopReason::NoCandidates
    } else {
        loop {
            let sigma = search.sigma();
            if sigma <= policy.target_sigma {
                break StopReason::Balanced { sigma, target: policy.target_sigma };
            }
            if let Err(reason) = budgets.plan_allows() {
                break StopReason::Budget { reason };
            }
            let mut best: Option<(f64, usize, usize, f64)> = None;
            let mut i = 0;
            while i < candidates.len() {
                let node = &search.slots[candidates[i].slot].node.name;
                if let Err(reason) = budgets.allows(candidates[i].pod, node, &candidates[i].pdbs) {
                    skip(&mut skipped, candidates[i].pod, node, reason);
                    candidates.swap_remove(i);
                    continue;
                }
                match search.best_target(&mut candidates[i]) {
                    Some((value, to, after)) => {
                        // Among equal moves, the lower priority first, then by namespace and name: the
                        // same plan whatever order the candidates are in.
                        let better = best.is_none_or(|(v, bi, ..)| {
                            value > v || (value == v && rank(candidates[i].pod) < rank(candidates[bi].pod))
                        });
                        if better {
                            best = Some((value, i, to, after));
                        }
                        i += 1;
                    }
                    None => {
                        let c = candidates.swap_remove(i);
                        let detail = c.why_not.clone();
                        skip(&mut skipped, c.pod, node, SkipReason::NoFeasibleTarget { detail });
                    }
                }
            }
            if candidates.is_empty() {
                break StopReason::CandidatesExhausted;
            }
            // The gain is measured as the drop of the sum of squared deviations, n * sigma^2: what one move
            // changes on the two nodes it touches, whatever the cluster's size (sigma itself moves by
            // ~1/n per eviction, so a fixed threshold on sigma stops a 5,000-node cluster at once).
            let n = search.slots.len() as f64;
            let gain = |after: f64| n * (sigma * sigma - after * after);
            let Some((_, ci, to, after)) = best.filter(|b| gain(b.3) >= policy.min_improvement) else {
                break StopReason::NoImprovingMove { min_improvement: policy.min_improvement };
            };
            let c = candidates.swap_remove(ci);
            // Searches that found the target just filled must look again.
            for other in candidates.iter_mut() {
                for cached in other.first_feasible.iter_mut() {
                    if *cached == Some(Some(to)) {
                        *cached = None;
                    }
                }
            }
            let (from_name, to_name) = (search.slots[c.slot].node.name.clone(), search.slots[to].node.name.clone());
            let (from_score, to_score) = (search.slots[c.slot].score, search.slots[to].score);
            search.apply(&c, to);
            let record = EvictionRecord {
                at: input.now,
                pod: c.pod.key(),
                workload: c.pod.workload.clone(),
                from: from_name.clone(),
                to: to_name.clone(),
                slo: budgets.slo_of(c.pod).map(|s| s.name.clone()),
            };
            budgets.consume(record.clone(), &c.pdbs);
            let reason = format!(
                "{} on hot node {from_name} ({from_score:.2} -> {:.2}) -> {to_name} ({to_score:.2} -> {:.2}): sigma {sigma:.3} -> {after:.3}{}",
                c.pod.name,
                search.slots[c.slot].score,
                search.slots[to].score,
                if search.slots[to].weight < 100 {
                    format!(" (class weight {})", search.slots[to].weight)
                } else {
                    String::new()
                },
            );
            evictions.push(PlannedEviction {
                pod: c.pod.key(),
                uid: c.pod.uid.clone(),
                workload: c.pod.workload.clone(),
                from: from_name,
                to: to_name,
                sigma_before: sigma,
                sigma_after: search.sigma(),
                reason,
                record,
            });
        }
    };
    // Candidates still standing when the plan stopped say why they were not taken.
    for c in &candidates {
        let reason = match &stop {
            StopReason::Budget { reason } => reason.clone(),
            other => SkipReason::NotNeeded { detail: other.to_string() },
        };
        skip(&mut skipped, c.pod, &search.slots[c.slot].node.name, reason);
    }
    let nodes = search
        .slots
        .iter()
        .zip(before)
        .map(|(s, before)| {
            let remembered = input.state.nodes.get(&s.node.name);
            NodeScore {
                node: s.node.name.clone(),
                before,
                after: s.score,
                hot: s.hot,
                cold: remembered.is_some_and(|r| r.cold),
            }
        })
        .collect();
    Plan { dry_run: policy.dry_run, sigma_before, sigma_after: search.sigma(), nodes, evictions, skipped, stop }
}
