//! Node scores and sigma. A node's score is `(wc × cpu + wm × mem) / (wc + wm)` over its utilization
//! (usage or requests, divided by allocatable); sigma is the population standard deviation of the
//! scores of the nodes that have one.

use super::policy::{RebalancePolicy, UtilizationSource};
use crate::model::Node;
use crate::resources::Resources;

fn ratio(used: u64, total: u64) -> f64 {
    if total == 0 { 0.0 } else { used as f64 / total as f64 }
}

/// The score `amount` contributes on a node with `allocatable` under the policy's weights.
pub(crate) fn weighted(policy: &RebalancePolicy, amount: Resources, allocatable: Resources) -> f64 {
    let (wc, wm) = (policy.cpu_weight, policy.memory_weight);
    (wc * ratio(amount.cpu_millis, allocatable.cpu_millis) + wm * ratio(amount.memory_bytes, allocatable.memory_bytes))
        / (wc + wm)
}

/// The raw (unsmoothed) score of a node, or `None` when it has no metrics (metrics source).
pub fn node_score(policy: &RebalancePolicy, node: &Node) -> Option<f64> {
    let used = match policy.source {
        UtilizationSource::Metrics => node.usage?,
        UtilizationSource::Requests => node.requested,
    };
    Some(weighted(policy, used, node.allocatable))
}

/// Population standard deviation; 0 for fewer than two values.
pub fn sigma(scores: &[f64]) -> f64 {
    if scores.len() < 2 {
        return 0.0;
    }
    let n = scores.len() as f64;
    let mean = scores.iter().sum::<f64>() / n;
    (scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / n).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeBuilder;

    #[test]
    fn score_table() {
        let p = RebalancePolicy::default();
        let n = NodeBuilder::new("n").allocatable(1000, 1000).usage(800, 400).requested(100, 100).build();
        assert!((node_score(&p, &n).unwrap() - 0.6).abs() < 1e-12);
        let cpu_only = RebalancePolicy { memory_weight: 0.0, ..RebalancePolicy::default() };
        assert!((node_score(&cpu_only, &n).unwrap() - 0.8).abs() < 1e-12);
        let requests = RebalancePolicy { source: UtilizationSource::Requests, ..RebalancePolicy::default() };
        assert!((node_score(&requests, &n).unwrap() - 0.1).abs() < 1e-12);
        let no_metrics = NodeBuilder::new("m").build();
        assert_eq!(node_score(&p, &no_metrics), None);
    }

    #[test]
    fn sigma_table() {
        assert_eq!(sigma(&[]), 0.0);
        assert_eq!(sigma(&[0.7]), 0.0);
        assert!((sigma(&[0.2, 0.4]) - 0.1).abs() < 1e-12);
        assert!((sigma(&[1.0, 1.0, 1.0]) - 0.0).abs() < 1e-12);
    }
}
