//! Metrics of PodDistribution upkeep. Every label has a fixed, small set of values (an error class
//! from [`crate::Error::metric_label`], a patch outcome): a distribution's name is never a label, so a
//! cluster with thousands of distributions still has a handful of series. Which distributions are off
//! target is in their status and Events, not in metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// How one `pod-deletion-cost` patch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchOutcome {
    Patched,
    /// The pod was gone by the time it was patched (nothing to do).
    Gone,
    Failed,
}

impl PatchOutcome {
    fn as_str(self) -> &'static str {
        match self {
            PatchOutcome::Patched => "patched",
            PatchOutcome::Gone => "gone",
            PatchOutcome::Failed => "failed",
        }
    }
}

/// The metric families of the distribution controller.
#[derive(Clone)]
pub struct DistributionMetrics {
    groups_off_target: Gauge,
    reconcile_errors: Family<ReasonLabels, Counter>,
    reconcile_duration: Histogram,
    deletion_cost_patches: Family<OutcomeLabels, Counter>,
    reservations_expired: Counter,
}

impl DistributionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = DistributionMetrics {
            groups_off_target: Gauge::default(),
            reconcile_errors: Family::default(),
            // 1 ms .. ~16 s, doubling.
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            deletion_cost_patches: Family::default(),
            reservations_expired: Counter::default(),
        };
        registry.register(
            "placement_operator_distribution_groups_off_target",
            "Groups, over all PodDistributions this instance leads, whose pods differ from their target",
            m.groups_off_target.clone(),
        );
        registry.register(
            "placement_operator_distribution_reconcile_errors",
            "Failed PodDistribution reconciles, by error class",
            m.reconcile_errors.clone(),
        );
        registry.register_with_unit(
            "placement_operator_distribution_reconcile_duration",
            "Time to reconcile one PodDistribution",
            Unit::Seconds,
            m.reconcile_duration.clone(),
        );
        registry.register(
            "placement_operator_distribution_deletion_cost_patches",
            "Patches of controller.kubernetes.io/pod-deletion-cost on pods, by outcome",
            m.deletion_cost_patches.clone(),
        );
        registry.register(
            "placement_operator_distribution_reservations_expired",
            "Strict mode: stale webhook reservations removed from PodDistribution statuses",
            m.reservations_expired.clone(),
        );
        m
    }

    pub(crate) fn set_groups_off_target(&self, n: u64) {
        self.groups_off_target.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub(crate) fn reconcile_error(&self, reason: &'static str) {
        self.reconcile_errors.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(crate) fn reconcile_took(&self, seconds: f64) {
        self.reconcile_duration.observe(seconds);
    }

    pub(crate) fn deletion_cost_patch(&self, outcome: PatchOutcome) {
        self.deletion_cost_patches.get_or_create(&OutcomeLabels { outcome: outcome.as_str() }).inc();
    }

    pub(crate) fn reservations_expired(&self, n: usize) {
        self.reservations_expired.inc_by(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_registered_with_bounded_labels() {
        let mut registry = Registry::default();
        let m = DistributionMetrics::register(&mut registry);
        m.set_groups_off_target(3);
        m.reconcile_error("conflict");
        m.reconcile_took(0.01);
        m.deletion_cost_patch(PatchOutcome::Patched);
        m.reservations_expired(2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for want in [
            "placement_operator_distribution_groups_off_target 3",
            "placement_operator_distribution_reconcile_errors_total{reason=\"conflict\"} 1",
            "placement_operator_distribution_reconcile_duration_seconds_count 1",
            "placement_operator_distribution_deletion_cost_patches_total{outcome=\"patched\"} 1",
            "placement_operator_distribution_reservations_expired_total 2",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
