//! The zone balancer's metrics. Labels take values from fixed lists ([`crate::Error::metric_label`]),
//! never a namespace, balancer or workload name, so the series count stays bounded; which workload was
//! pinned or moved is in the Events and the status, not in metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

/// Counters and the reconcile-duration histogram of the zone balancer controller.
#[derive(Clone)]
pub struct ZoneBalancerMetrics {
    pins: Counter,
    moves: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
}

impl ZoneBalancerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = ZoneBalancerMetrics {
            pins: Counter::default(),
            moves: Counter::default(),
            errors: Family::default(),
            // 1 ms .. ~16 s, doubling.
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
        };
        registry.register(
            "placement_zone_balancer_pins",
            "Workload templates pinned to a zone for the first time (operator mode)",
            m.pins.clone(),
        );
        registry.register(
            "placement_zone_balancer_moves",
            "Workloads re-pinned to another zone by rebalancing (operator mode)",
            m.moves.clone(),
        );
        registry.register(
            "placement_zone_balancer_reconcile_errors",
            "Zone balancer reconciles that failed, by error class",
            m.errors.clone(),
        );
        registry.register_with_unit(
            "placement_zone_balancer_reconcile_duration",
            "Time to reconcile one ZoneBalancer",
            Unit::Seconds,
            m.duration.clone(),
        );
        m
    }

    pub fn pinned(&self) {
        self.pins.inc();
    }

    pub fn moved(&self) {
        self.moves.inc();
    }

    pub fn error(&self, label: &'static str) {
        self.errors.get_or_create(&ErrorLabels { error: label }).inc();
    }

    pub fn observe(&self, seconds: f64) {
        self.duration.observe(seconds);
    }

    pub fn pins_total(&self) -> u64 {
        self.pins.get()
    }

    pub fn moves_total(&self) -> u64 {
        self.moves.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exposed() {
        let mut registry = Registry::default();
        let m = ZoneBalancerMetrics::register(&mut registry);
        m.pinned();
        m.moved();
        m.error("conflict");
        m.observe(0.01);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "placement_zone_balancer_pins_total 1",
            "placement_zone_balancer_moves_total 1",
            "placement_zone_balancer_reconcile_errors_total{error=\"conflict\"} 1",
            "placement_zone_balancer_reconcile_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
