//! One control step: the law gives a desired weight, then `minimum`, active schedules and the range
//! shape it; increases apply at once, decreases only after the cooldown, outside the deadband, and never
//! with scale-in disabled.

use super::law::desired_weight;
use super::policy::CompiledPolicy;
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// What persists between steps (kept in the resource's status).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackingState {
    /// When the weight was last changed.
    #[serde(default)]
    pub last_change: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackingDecision {
    /// The law's weight, before minimum, schedules and range.
    pub law: u32,
    /// The weight the policy wants now.
    pub desired: u32,
    /// The weight to write now; `None` holds the actual weight.
    pub apply: Option<u32>,
    /// Index of the schedule that raised the weight, if any.
    pub schedule: Option<usize>,
    pub reason: String,
    pub state: TrackingState,
}

/// Decide the weight for `current` (the metric) when the target's weight is `actual`.
pub fn step(
    policy: &CompiledPolicy,
    state: &TrackingState,
    current: Decimal,
    actual: u32,
    now: Timestamp,
) -> TrackingDecision {
    let p = &policy.policy;
    let law = desired_weight(p.base_value, p.target_value, current, p.range.max);
    let mut desired = law.max(p.minimum);
    let mut why = format!("metric {current} vs target {}: law gives {law}", p.target_value);
    if p.minimum > law {
        why.push_str(&format!(", minimum {}", p.minimum));
    }
    let mut schedule = None;
    for (i, s) in policy.schedules.iter().enumerate() {
        if s.active_at(now) && s.value > desired {
            desired = s.value;
            schedule = Some(i);
        }
    }
    if let Some(i) = schedule {
        why.push_str(&format!(", schedule {i} raises it to {desired}"));
    }
    let clamped = p.range.clamp(desired);
    if clamped != desired {
        why.push_str(&format!(", clamped to {clamped} (range {}..{})", p.range.min, p.range.max));
    }
    let desired = clamped;
    let hold = |reason: String| TrackingDecision {
        law,
        desired,
        apply: None,
        schedule,
        reason: format!("{why}; {reason}"),
        state: state.clone(),
    };
    let apply = |reason: String| TrackingDecision {
        law,
        desired,
        apply: Some(desired),
        schedule,
        reason: format!("{why}; {reason}"),
        state: TrackingState { last_change: Some(now) },
    };
    if desired == actual {
        return hold(format!("weight {actual} already desired"));
    }
    if desired > actual {
        return apply(format!("increase {actual} -> {desired} applied"));
    }
    if p.disable_scale_in {
        return hold(format!("decrease {actual} -> {desired} held: scale-in disabled"));
    }
    if actual - desired <= p.deadband {
        return hold(format!("decrease {actual} -> {desired} held: within deadband {}", p.deadband));
    }
    let cooldown = SignedDuration::from_secs(i64::try_from(p.cooldown_seconds).unwrap_or(i64::MAX));
    if let Some(last) = state.last_change {
        let until = last.checked_add(cooldown).unwrap_or(Timestamp::MAX);
        if now < until {
            return hold(format!("decrease {actual} -> {desired} held: cooldown until {until}"));
        }
    }
    apply(format!("decrease {actual} -> {desired} applied"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::{Schedule, TrackingPolicy, WeightRange};

    fn policy() -> TrackingPolicy {
        TrackingPolicy {
            target_value: Decimal::from(1000),
            base_value: 8,
            minimum: 0,
            range: WeightRange::default(),
            cooldown_seconds: 180,
            deadband: 0,
            disable_scale_in: false,
            schedules: vec![],
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn increases_apply_at_once_decreases_wait_for_cooldown() {
        let p = policy().compile().unwrap();
        let d = step(&p, &TrackingState::default(), Decimal::from(3000), 8, at("2026-11-24T12:00:00Z"));
        assert_eq!(d.apply, Some(16));
        assert_eq!(d.reason, "metric 3000 vs target 1000: law gives 16; increase 8 -> 16 applied");
        let s = d.state;
        let d = step(&p, &s, Decimal::from(1200), 16, at("2026-11-24T12:01:00Z"));
        assert_eq!((d.desired, d.apply), (2, None));
        assert!(d.reason.ends_with("held: cooldown until 2026-11-24T12:03:00Z"), "{}", d.reason);
        let d = step(&p, &s, Decimal::from(1200), 16, at("2026-11-24T12:03:00Z"));
        assert_eq!(d.apply, Some(2));
    }

    #[test]
    fn deadband_scale_in_minimum_range() {
        let mut raw = policy();
        raw.deadband = 2;
        let p = raw.compile().unwrap();
        let d = step(&p, &TrackingState::default(), Decimal::from(1250), 4, at("2026-11-24T12:00:00Z"));
        assert_eq!((d.desired, d.apply), (2, None), "4 -> 2 is within the deadband");
        raw.deadband = 0;
        raw.disable_scale_in = true;
        let p = raw.compile().unwrap();
        let d = step(&p, &TrackingState::default(), Decimal::from(0), 40, at("2026-11-24T12:00:00Z"));
        assert_eq!(d.apply, None);
        assert!(d.reason.contains("scale-in disabled"));
        raw.disable_scale_in = false;
        raw.minimum = 3;
        raw.range = WeightRange { min: 0, max: 10 };
        let p = raw.compile().unwrap();
        let d = step(&p, &TrackingState::default(), Decimal::from(0), 0, at("2026-11-24T12:00:00Z"));
        assert_eq!(d.apply, Some(3));
        let d = step(&p, &TrackingState::default(), Decimal::from(100_000), 0, at("2026-11-24T12:00:00Z"));
        assert_eq!(d.apply, Some(10));
    }

    #[test]
    fn schedule_raises_the_weight() {
        let mut raw = policy();
        raw.schedules.push(Schedule {
            time_zone: "Asia/Tokyo".into(),
            start: "22:00".into(),
            end: "06:00".into(),
            days: vec![],
            value: 5,
        });
        let p = raw.compile().unwrap();
        let night = step(&p, &TrackingState::default(), Decimal::from(900), 0, at("2026-11-24T14:00:00Z"));
        assert_eq!((night.desired, night.schedule), (5, Some(0)));
        let day = step(&p, &TrackingState::default(), Decimal::from(900), 0, at("2026-11-24T03:00:00Z"));
        assert_eq!((day.desired, day.apply), (0, None));
    }

    #[test]
    fn validation() {
        let mut raw = policy();
        raw.target_value = Decimal::ZERO;
        assert_eq!(raw.compile().unwrap_err().to_string(), "targetValue must be greater than 0, got 0");
        let mut raw = policy();
        raw.range = WeightRange { min: 5, max: 1 };
        assert!(raw.compile().is_err());
    }
}
