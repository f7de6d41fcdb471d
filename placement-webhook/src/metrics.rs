//! The webhook's admission metrics. Every label takes a value from a fixed list (rule kinds, outcomes,
//! error classes), never from a pod, namespace or workload name, so the series count is bounded.

use crate::decide::RuleKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// How an admission ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// A placement was patched in.
    Placed,
    /// No rule applied, or the rule chose to leave the pod alone.
    Unchanged,
    /// The pod already pins a different value: left alone, with a warning.
    Conflict,
    /// An error or the deadline: allowed unmutated, with a warning.
    FailOpen,
    /// The request itself was malformed (answered with its uid: allowed unmutated, with a warning).
    Malformed,
    /// Malformed without a readable `request.uid`: the API server cannot match the answer to its call and
    /// applies the webhook's failurePolicy.
    NoUid,
    /// Not a pod CREATE (another operation, a subresource, another kind): allowed unmutated, with a
    /// warning that the webhook configuration sends what it should not.
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Placed => "placed",
            Outcome::Unchanged => "unchanged",
            Outcome::Conflict => "conflict",
            Outcome::FailOpen => "fail_open",
            Outcome::Malformed => "malformed",
            Outcome::NoUid => "no_uid",
            Outcome::Ignored => "ignored",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    rule: &'static str,
    outcome: &'static str,
    dry_run: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The admission metric families.
#[derive(Clone)]
pub struct AdmissionMetrics {
    admissions: Family<AdmissionLabels, Counter>,
    duration: Histogram,
    fail_open: Family<ReasonLabels, Counter>,
    reservations: Gauge,
    strict_writes: Family<ResultLabels, Counter>,
    /// What the serving layer and strict mode shed (see [`crate::shed`]).
    shed: crate::shed::ShedMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// How one strict-mode status write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrictWrite {
    /// The shared ledger was written.
    Written,
    /// Another replica wrote first (409): re-read and decide again.
    Conflict,
    /// Reading or writing the status failed otherwise: the batch fails open.
    Error,
}

impl AdmissionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = AdmissionMetrics {
            admissions: Family::default(),
            // 50 µs .. ~1.6 s, doubling.
            duration: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 16)),
            fail_open: Family::default(),
            reservations: Gauge::default(),
            strict_writes: Family::default(),
            shed: crate::shed::ShedMetrics::register(registry),
        };
        registry.register(
            "placement_webhook_admissions",
            "Admission requests by the rule that applied and how they ended",
            m.admissions.clone(),
        );
        registry.register_with_unit(
            "placement_webhook_admission_duration",
            "Time to answer one admission request",
            Unit::Seconds,
            m.duration.clone(),
        );
        registry.register(
            "placement_webhook_fail_open",
            "Admissions allowed unmutated because of an error or the deadline, by error class",
            m.fail_open.clone(),
        );
        registry.register(
            "placement_webhook_reservations",
            "Placement decisions whose pods the watch has not shown yet",
            m.reservations.clone(),
        );
        registry.register(
            "placement_webhook_strict_writes",
            "Strict mode: writes of the shared reservation ledger to a resource's status, by result",
            m.strict_writes.clone(),
        );
        m
    }

    pub fn observe(&self, rule: RuleKind, outcome: Outcome, dry_run: bool, seconds: f64) {
        self.admissions
            .get_or_create(&AdmissionLabels { rule: rule.as_str(), outcome: outcome.as_str(), dry_run })
            .inc();
        self.duration.observe(seconds);
    }

    pub fn fail_open(&self, reason: &'static str) {
        self.fail_open.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn set_reservations(&self, n: usize) {
        self.reservations.set(n as i64);
    }

    /// The shed counters and load gauges, registered with these metrics.
    pub fn shed(&self) -> &crate::shed::ShedMetrics {
        &self.shed
    }

    pub fn strict_write(&self, result: StrictWrite) {
        let result = match result {
            StrictWrite::Written => "written",
            StrictWrite::Conflict => "conflict",
            StrictWrite::Error => "error",
        };
        self.strict_writes.get_or_create(&ResultLabels { result }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_bounded_labels() {
        let mut registry = Registry::default();
        let m = AdmissionMetrics::register(&mut registry);
        m.observe(RuleKind::Strategy, Outcome::Placed, false, 0.0002);
        m.fail_open("deadline");
        m.set_reservations(3);
        m.strict_write(StrictWrite::Conflict);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"placement_webhook_admissions_total{rule="strategy",outcome="placed",dry_run="false"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"placement_webhook_fail_open_total{reason="deadline"} 1"#), "{text}");
        assert!(text.contains("placement_webhook_reservations 3"), "{text}");
        assert!(text.contains(r#"placement_webhook_strict_writes_total{result="conflict"} 1"#), "{text}");
        assert!(text.contains("placement_webhook_admission_duration_seconds_count 1"), "{text}");
    }
}
