//! The TrafficWeight controller's metrics.
//!
//! The desired and actual weights are per TrafficWeight (labels `namespace`, `name`): a weight is only
//! useful next to the resource it belongs to, and their number is the number of TrafficWeights, which
//! an administrator creates by hand. Series of a deleted TrafficWeight are removed ([`TrafficMetrics::forget`]).
//! Errors are counted by stage and class, from fixed lists, never by name.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    /// `spec`, `secret`, `metric`, `target`, `write`, `status`.
    stage: &'static str,
    /// The error's metric label (`empty`, `not_finite`, `throttled`, `not_found`, ...).
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    /// `increase` or `decrease`.
    direction: &'static str,
    /// `applied` or `dry_run`.
    mode: &'static str,
}

/// Gauges, counters and the evaluation-duration histogram of the TrafficWeight controller.
#[derive(Clone)]
pub struct TrafficMetrics {
    desired: Family<ObjectLabels, Gauge>,
    actual: Family<ObjectLabels, Gauge>,
    metric: Family<ObjectLabels, Gauge<f64, AtomicU64>>,
    changes: Family<ChangeLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
}

impl TrafficMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = TrafficMetrics {
            desired: Family::default(),
            actual: Family::default(),
            metric: Family::default(),
            changes: Family::default(),
            errors: Family::default(),
            // 1 ms .. ~16 s, doubling.
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
        };
        registry.register(
            "placement_traffic_weight_desired",
            "The weight the TrafficWeight's policy wants (after minimum, schedules and range)",
            m.desired.clone(),
        );
        registry.register(
            "placement_traffic_weight_actual",
            "The managed record's or backend's weight when last read or written",
            m.actual.clone(),
        );
        registry.register(
            "placement_traffic_weight_metric_value",
            "The last metric value the TrafficWeight's query returned",
            m.metric.clone(),
        );
        registry.register(
            "placement_traffic_weight_changes",
            "Weight changes, by direction and mode (applied, or dry_run: would have been applied)",
            m.changes.clone(),
        );
        registry.register(
            "placement_traffic_weight_errors",
            "Evaluations that stopped on an error, by stage and error class",
            m.errors.clone(),
        );
        registry.register_with_unit(
            "placement_traffic_weight_evaluation_duration",
            "Time to evaluate one TrafficWeight (query, read, decide, write)",
            Unit::Seconds,
            m.duration.clone(),
        );
        m
    }

    fn labels(namespace: &str, name: &str) -> ObjectLabels {
        ObjectLabels { namespace: namespace.to_string(), name: name.to_string() }
    }

    pub fn weights(&self, namespace: &str, name: &str, desired: u32, actual: u32) {
        let l = Self::labels(namespace, name);
        self.desired.get_or_create(&l).set(i64::from(desired));
        self.actual.get_or_create(&l).set(i64::from(actual));
    }

    pub fn metric_value(&self, namespace: &str, name: &str, value: f64) {
        self.metric.get_or_create(&Self::labels(namespace, name)).set(value);
    }

    pub fn changed(&self, increase: bool, dry_run: bool) {
        let direction = if increase { "increase" } else { "decrease" };
        let mode = if dry_run { "dry_run" } else { "applied" };
        self.changes.get_or_create(&ChangeLabels { direction, mode }).inc();
    }

    pub fn error(&self, stage: &'static str, class: &'static str) {
        self.errors.get_or_create(&ErrorLabels { stage, class }).inc();
    }

    pub fn observe(&self, seconds: f64) {
        self.duration.observe(seconds);
    }

    /// Drops the per-object series of a TrafficWeight that is gone.
    pub fn forget(&self, namespace: &str, name: &str) {
        let l = Self::labels(namespace, name);
        self.desired.remove(&l);
        self.actual.remove(&l);
        self.metric.remove(&l);
    }

    /// Errors counted so far for `stage` and `class` (tests).
    pub fn errors_total(&self, stage: &'static str, class: &'static str) -> u64 {
        self.errors.get_or_create(&ErrorLabels { stage, class }).get()
    }
}
