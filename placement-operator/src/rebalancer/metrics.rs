//! The rebalancer's Prometheus metrics (prometheus-client, registered in the registry the runtime
//! serves). Every label has a bounded set of values: the policy name (cluster-scoped objects the
//! operator's users create), the node name (series are removed when a node leaves the plan), and fixed
//! vocabularies (`mode`, `outcome`, `budget`, `error`). Pod and namespace names are never labels.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `placement_rebalancer_node_score` | gauge | policy, node |
//! | `placement_rebalancer_sigma` | gauge | policy, when (`before`/`after`) |
//! | `placement_rebalancer_hot_nodes`, `placement_rebalancer_cold_nodes` | gauge | policy |
//! | `placement_rebalancer_evictions_total` | counter | policy, mode (`live`/`dry_run`), outcome |
//! | `placement_rebalancer_dry_run_evictions_total` | counter | policy |
//! | `placement_rebalancer_blocked_total` | counter | policy, mode, budget |
//! | `placement_rebalancer_budget_remaining` | gauge | policy, budget (`cluster_per_minute`, `plan`) |
//! | `placement_rebalancer_reconcile_duration_seconds` | histogram | policy |
//! | `placement_rebalancer_reconcile_errors_total` | counter | policy, error |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub policy: String,
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SigmaLabels {
    pub policy: String,
    pub when: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvictionLabels {
    pub policy: String,
    pub mode: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlockedLabels {
    pub policy: String,
    pub mode: String,
    pub budget: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    pub policy: String,
    pub budget: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub policy: String,
    pub error: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The rebalancer's metric families.
#[derive(Clone)]
pub struct Metrics {
    pub node_score: Family<NodeLabels, FloatGauge>,
    pub sigma: Family<SigmaLabels, FloatGauge>,
    pub hot_nodes: Family<PolicyLabels, Gauge>,
    pub cold_nodes: Family<PolicyLabels, Gauge>,
    pub evictions: Family<EvictionLabels, Counter>,
    pub dry_run_evictions: Family<PolicyLabels, Counter>,
    pub blocked: Family<BlockedLabels, Counter>,
    pub budget_remaining: Family<BudgetLabels, Gauge>,
    pub duration: Family<PolicyLabels, Histogram, fn() -> Histogram>,
    pub errors: Family<ErrorLabels, Counter>,
    /// Node series set per policy, to remove those of nodes that left.
    nodes: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            node_score: Family::default(),
            sigma: Family::default(),
            hot_nodes: Family::default(),
            cold_nodes: Family::default(),
            evictions: Family::default(),
            dry_run_evictions: Family::default(),
            blocked: Family::default(),
            budget_remaining: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            errors: Family::default(),
            nodes: Arc::default(),
        }
    }
}

impl Metrics {
    /// New families, registered under `placement_rebalancer_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("placement_rebalancer");
        r.register("node_score", "Smoothed utilization score of each scored node (0..1)", m.node_score.clone());
        r.register("sigma", "Standard deviation of node scores before and after the last plan", m.sigma.clone());
        r.register("hot_nodes", "Nodes that are hot (after hysteresis)", m.hot_nodes.clone());
        r.register("cold_nodes", "Nodes that are cold (after hysteresis)", m.cold_nodes.clone());
        r.register(
            "evictions",
            "Planned evictions by mode (live, dry_run) and outcome (evicted, refused, gone, unknown, would_evict)",
            m.evictions.clone(),
        );
        r.register("dry_run_evictions", "Evictions a dry-run plan would have made", m.dry_run_evictions.clone());
        r.register(
            "blocked",
            "Candidates stopped by a budget or backoff (and evictions refused by the API server, budget=eviction_refused)",
            m.blocked.clone(),
        );
        r.register(
            "budget_remaining",
            "Evictions the policy may still make now, per budget",
            m.budget_remaining.clone(),
        );
        r.register("reconcile_duration_seconds", "Time of one rebalance pass", m.duration.clone());
        r.register("reconcile_errors", "Failed passes by error kind", m.errors.clone());
        m
    }

    /// Sets the node score series of `policy` to `scores`, removing nodes no longer present.
    pub fn set_node_scores(&self, policy: &str, scores: &[(String, f64)]) {
        let mut known = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let now: BTreeSet<String> = scores.iter().map(|(n, _)| n.clone()).collect();
        if let Some(before) = known.get(policy) {
            for gone in before.difference(&now) {
                self.node_score.remove(&NodeLabels { policy: policy.into(), node: gone.clone() });
            }
        }
        for (node, score) in scores {
            self.node_score.get_or_create(&NodeLabels { policy: policy.into(), node: node.clone() }).set(*score);
        }
        known.insert(policy.to_string(), now);
    }

    /// Removes the gauges of a policy that no longer exists (its counters stay, as counters do).
    pub fn forget(&self, policy: &str) {
        self.set_node_scores(policy, &[]);
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).remove(policy);
        for when in ["before", "after"] {
            self.sigma.remove(&SigmaLabels { policy: policy.into(), when: when.into() });
        }
        self.hot_nodes.remove(&PolicyLabels { policy: policy.into() });
        self.cold_nodes.remove(&PolicyLabels { policy: policy.into() });
        for budget in ["cluster_per_minute", "plan"] {
            self.budget_remaining.remove(&BudgetLabels { policy: policy.into(), budget: budget.into() });
        }
    }

    pub fn error(&self, policy: &str, label: &str) {
        self.errors.get_or_create(&ErrorLabels { policy: policy.into(), error: label.into() }).inc();
    }
}

/// `live` or `dry_run`.
pub fn mode(dry_run: bool) -> &'static str {
    if dry_run { "dry_run" } else { "live" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn node_series_follow_the_nodes_and_a_deleted_policy_leaves_no_gauge() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.set_node_scores("p", &[("a".into(), 0.5), ("b".into(), 0.25)]);
        m.set_node_scores("q", &[("a".into(), 0.75)]);
        m.set_node_scores("p", &[("b".into(), 0.5)]);
        let t = text(&registry);
        assert!(!t.contains(r#"placement_rebalancer_node_score{policy="p",node="a"}"#), "{t}");
        assert!(t.contains(r#"placement_rebalancer_node_score{policy="p",node="b"} 0.5"#), "{t}");
        assert!(t.contains(r#"placement_rebalancer_node_score{policy="q",node="a"} 0.75"#), "{t}");
        m.hot_nodes.get_or_create(&PolicyLabels { policy: "p".into() }).set(2);
        m.forget("p");
        let t = text(&registry);
        assert!(!t.contains(r#"policy="p""#), "{t}");
        assert!(t.contains(r#"policy="q""#));
    }
}
