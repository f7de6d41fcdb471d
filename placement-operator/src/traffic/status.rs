//! A TrafficWeight's status after one evaluation, built from plain values so it can be tested without
//! any server.
//!
//! Three conditions say where an evaluation stopped: `MetricAvailable` (the query gave a finite value),
//! `TargetAvailable` (the managed and base weights could be read and written) and `Ready` (the spec is
//! valid and the whole evaluation worked). A failed stage sets its condition to `False` with a reason
//! from a fixed list and a message naming what failed; the values of the last good evaluation
//! (metric, weights, last change) are kept, because nothing was changed. Every write is the whole
//! status, by server-side apply: the controller is its only writer.
//!
//! Every message is cut to [`MAX_MESSAGE_CHARS`]: much of it comes from outside (Prometheus error
//! bodies, AWS and DNS errors), and a status, like an Event or a log line, must not grow with what a
//! server chose to answer.

use super::actuator::{Weights, WriteOutcome};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use placement_core::tracking::TrackingDecision;
use placement_core::tracking::access::cut;
use placement_kube::crd::conditions::{Condition, ConditionStatus, READY, StatusConditions};
use placement_kube::crd::{CrdError, TrafficWeightStatus, set_condition};

/// The most characters of any message the TrafficWeight controller writes to a status condition,
/// `lastReason`, an Event note or a log line.
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// `text` cut to [`MAX_MESSAGE_CHARS`].
pub fn bounded(text: &str) -> String {
    cut(text, MAX_MESSAGE_CHARS)
}

/// The condition saying whether the last query gave a usable value.
pub const METRIC_AVAILABLE: &str = "MetricAvailable";
/// The condition saying whether the target's weights could be read (and written).
pub const TARGET_AVAILABLE: &str = "TargetAvailable";

/// Where an evaluation failed, for `Ready`'s reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// A referenced Secret (credentials, CA) could not be used.
    Secret,
    /// The Prometheus query gave no value.
    Metric,
    /// The target's weights could not be read.
    Target,
    /// The new weight could not be written.
    Write,
    /// The admin's policy or the Secret's owner does not allow what the spec asks for.
    NotAllowed,
}

impl Stage {
    /// The `stage` label of the errors metric.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Secret => "secret",
            Stage::Metric => "metric",
            Stage::Target => "target",
            Stage::Write => "write",
            Stage::NotAllowed => "access",
        }
    }

    fn ready_reason(self) -> &'static str {
        match self {
            Stage::Secret => "SecretUnavailable",
            Stage::Metric => "MetricUnavailable",
            Stage::Target => "TargetUnavailable",
            Stage::Write => "WriteFailed",
            Stage::NotAllowed => "NotAllowed",
        }
    }
}

/// `snake_case` metric label to a `CamelCase` condition reason (`not_found` → `NotFound`).
pub fn reason_of(label: &str) -> String {
    label
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn base(previous: Option<&TrafficWeightStatus>, generation: Option<i64>, now: Timestamp) -> TrafficWeightStatus {
    let mut s = previous.cloned().unwrap_or_default();
    s.observed_generation = generation;
    s.last_evaluated = Some(Time(now));
    s
}

fn set(s: &mut TrafficWeightStatus, type_: &str, ok: bool, reason: &str, message: String, now: Timestamp) {
    let status = if ok { ConditionStatus::True } else { ConditionStatus::False };
    let message = bounded(&message);
    set_condition(&mut s.conditions, Condition::new(type_, status, reason, message, s.observed_generation, now));
}

/// The spec is invalid: `Ready=False` naming the field; nothing else is evaluated, and `lastEvaluated`
/// stays as it was (so an unchanged invalid spec gives an unchanged status, and no write).
pub fn invalid(
    previous: Option<&TrafficWeightStatus>,
    error: &CrdError,
    generation: Option<i64>,
    now: Timestamp,
) -> TrafficWeightStatus {
    let mut s = previous.cloned().unwrap_or_default();
    s.record_invalid_spec(error, generation, now);
    s
}

/// The evaluation stopped at `stage` with `message`; `class` is the error's metric label (its reason).
pub fn failed(
    previous: Option<&TrafficWeightStatus>,
    stage: Stage,
    class: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> TrafficWeightStatus {
    let mut s = base(previous, generation, now);
    let reason = reason_of(class);
    match stage {
        Stage::Metric => set(&mut s, METRIC_AVAILABLE, false, &reason, message.to_string(), now),
        Stage::Target | Stage::Write => set(&mut s, TARGET_AVAILABLE, false, &reason, message.to_string(), now),
        Stage::Secret | Stage::NotAllowed => {}
    }
    let ready = format!("weight left unchanged: {message}");
    set(&mut s, READY, false, stage.ready_reason(), ready, now);
    s
}

/// What one complete evaluation saw and did.
#[derive(Clone, Debug)]
pub struct Evaluated<'a> {
    /// The metric value, as text.
    pub metric: &'a str,
    /// Where the metric came from, for the condition message.
    pub metric_origin: &'a str,
    pub weights: Weights,
    pub decision: &'a TrackingDecision,
    /// What the write did; `None` when the decision held the weight.
    pub outcome: Option<WriteOutcome>,
    /// The target, as the actuator describes it.
    pub target: &'a str,
}

/// The status after a complete evaluation.
pub fn evaluated(
    previous: Option<&TrafficWeightStatus>,
    e: &Evaluated<'_>,
    generation: Option<i64>,
    now: Timestamp,
) -> TrafficWeightStatus {
    let mut s = base(previous, generation, now);
    let d = e.decision;
    s.metric_value = Some(e.metric.to_string());
    s.base_weight = Some(e.weights.base);
    s.law_weight = Some(d.law);
    s.desired_weight = Some(d.desired);
    s.active_schedule = d.schedule.and_then(|i| u32::try_from(i).ok());
    let (current, summary) = match e.outcome {
        Some(WriteOutcome::Changed { from, to }) => {
            s.last_change = Some(Time(now));
            (to, format!("weight set {from} -> {to}"))
        }
        Some(WriteOutcome::DryRun { from, to }) => (from, format!("dry run: would set {from} -> {to}")),
        Some(WriteOutcome::Unchanged { weight }) => (weight, format!("weight {weight} already in place")),
        None => (e.weights.managed, format!("weight {} kept", e.weights.managed)),
    };
    s.current_weight = Some(current);
    s.last_reason = Some(bounded(&format!("{summary}: {}", d.reason)));
    set(&mut s, METRIC_AVAILABLE, true, "Read", format!("{} = {}", e.metric_origin, e.metric), now);
    let weights = format!("{}: weight {}, base weight {}", e.target, e.weights.managed, e.weights.base);
    set(&mut s, TARGET_AVAILABLE, true, "Read", weights, now);
    let reason = if matches!(e.outcome, Some(WriteOutcome::DryRun { .. })) { "DryRun" } else { "Tracking" };
    set(&mut s, READY, true, reason, format!("{summary}: {}", d.reason), now);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use placement_core::tracking::TrackingState;
    use placement_kube::crd::conditions::find_condition;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn decision(law: u32, desired: u32, apply: Option<u32>) -> TrackingDecision {
        TrackingDecision {
            law,
            desired,
            apply,
            schedule: None,
            reason: format!("law gives {law}"),
            state: TrackingState::default(),
        }
    }

    fn cond<'a>(s: &'a TrafficWeightStatus, t: &str) -> (&'a str, &'a str, &'a str) {
        let c = find_condition(&s.conditions, t).expect("condition");
        (c.status.as_str(), c.reason.as_str(), c.message.as_str())
    }

    #[test]
    fn messages_are_cut_at_the_limit() {
        let long = "x".repeat(100_000);
        let s = failed(None, Stage::Metric, "http_status", &long, Some(1), at("2026-11-25T12:00:00Z"));
        for c in &s.conditions {
            assert_eq!(c.message.chars().count().min(MAX_MESSAGE_CHARS + 1), c.message.chars().count());
            assert!(c.message.chars().count() <= MAX_MESSAGE_CHARS, "{} has {}", c.type_, c.message.len());
        }
        let exact = "y".repeat(MAX_MESSAGE_CHARS);
        assert_eq!(bounded(&exact), exact, "at the limit nothing is cut");
        assert!(bounded(&format!("{exact}y")).ends_with('…'));
        let n = failed(
            None,
            Stage::NotAllowed,
            "not_allowed",
            "Secret a/b is not labelled",
            Some(1),
            at("2026-11-25T12:00:00Z"),
        );
        assert_eq!(cond(&n, READY).1, "NotAllowed");
    }

    #[test]
    fn reasons_are_camel_case() {
        assert_eq!(reason_of("not_found"), "NotFound");
        assert_eq!(reason_of("empty"), "Empty");
        assert_eq!(reason_of("http_status"), "HttpStatus");
    }

    #[test]
    fn a_change_starts_the_cooldown_and_a_dry_run_does_not() {
        let d = decision(16, 16, Some(16));
        let mut e = Evaluated {
            metric: "3000",
            metric_origin: "Prometheus http://p, query `q`",
            weights: Weights { managed: 8, base: 8 },
            decision: &d,
            outcome: Some(WriteOutcome::Changed { from: 8, to: 16 }),
            target: "route53 x",
        };
        let now = at("2026-11-25T12:00:00Z");
        let s = evaluated(None, &e, Some(3), now);
        assert_eq!((s.current_weight, s.desired_weight, s.base_weight), (Some(16), Some(16), Some(8)));
        assert_eq!(s.last_change, Some(Time(now)));
        assert_eq!(cond(&s, READY), ("True", "Tracking", "weight set 8 -> 16: law gives 16"));
        e.outcome = Some(WriteOutcome::DryRun { from: 8, to: 16 });
        let s = evaluated(None, &e, Some(3), now);
        assert_eq!((s.current_weight, s.desired_weight, s.last_change.clone()), (Some(8), Some(16), None));
        assert_eq!(cond(&s, READY).1, "DryRun");
    }

    #[test]
    fn a_failure_keeps_the_last_good_values_and_names_the_stage() {
        let d = decision(16, 16, None);
        let e = Evaluated {
            metric: "3000",
            metric_origin: "Prometheus http://p, query `q`",
            weights: Weights { managed: 16, base: 8 },
            decision: &d,
            outcome: None,
            target: "route53 x",
        };
        let t0 = at("2026-11-25T12:00:00Z");
        let good = evaluated(None, &e, Some(1), t0);
        let t1 = at("2026-11-25T12:01:00Z");
        let bad = failed(Some(&good), Stage::Metric, "not_finite", "value NaN is not a finite number", Some(1), t1);
        assert_eq!((bad.metric_value.as_deref(), bad.current_weight), (Some("3000"), Some(16)));
        assert_eq!(cond(&bad, METRIC_AVAILABLE), ("False", "NotFinite", "value NaN is not a finite number"));
        assert_eq!(cond(&bad, READY).1, "MetricUnavailable");
        assert_eq!(cond(&bad, TARGET_AVAILABLE).0, "True", "the target was not touched");
        let c = find_condition(&bad.conditions, READY).unwrap();
        assert_eq!(c.last_transition_time, Time(t1), "Ready turned False at t1");
        let again = failed(Some(&bad), Stage::Target, "throttled", "throttled", Some(1), at("2026-11-25T12:02:00Z"));
        assert_eq!(cond(&again, READY).1, "TargetUnavailable");
        assert_eq!(find_condition(&again.conditions, READY).unwrap().last_transition_time, Time(t1));
    }
}
