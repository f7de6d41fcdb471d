//! Status conditions shared by every placement resource, shaped like `metav1.Condition`, and the
//! helper that sets one by type: the transition time only moves when the status actually changes, so
//! `kubectl get -o yaml` shows when a resource became (un)ready, not when it was last reconciled.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The condition every placement resource reports: the spec is valid and the controller acts on it.
pub const READY: &str = "Ready";

/// Reason: the spec was accepted and is in effect.
pub const REASON_ACCEPTED: &str = "Accepted";
/// Reason: the spec failed validation (the message names the field).
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";

/// The status of a condition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(ok: bool) -> Self {
        if ok { ConditionStatus::True } else { ConditionStatus::False }
    }
}

/// One aspect of a resource's current state (as `metav1.Condition`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The aspect this condition describes, in CamelCase (e.g. `Ready`).
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 316))]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase word saying why the condition has its status (e.g. `InvalidSpec`).
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// Human-readable details; for an invalid spec it names the field at fault.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub message: String,
    /// When the status last changed (not when the condition was last written).
    #[serde(deserialize_with = "crate::crd::lenient::time_or_epoch")]
    pub last_transition_time: Time,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn new(
        type_: impl Into<String>,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
        observed_generation: Option<i64>,
        now: Timestamp,
    ) -> Self {
        Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Time(now),
            observed_generation,
        }
    }

    /// `Ready=True` with reason `Accepted`.
    pub fn ready(message: impl Into<String>, observed_generation: Option<i64>, now: Timestamp) -> Self {
        Condition::new(READY, ConditionStatus::True, REASON_ACCEPTED, message, observed_generation, now)
    }

    /// `Ready=False` for an invalid spec; the error names the field.
    pub fn invalid(error: &super::CrdError, observed_generation: Option<i64>, now: Timestamp) -> Self {
        Condition::new(READY, ConditionStatus::False, REASON_INVALID_SPEC, error.to_string(), observed_generation, now)
    }
}

/// Set `new` in `conditions`, replacing the condition of the same type. When the status is unchanged
/// the old `lastTransitionTime` is kept. Returns whether anything changed (so a controller can skip
/// a status write).
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            if *old == new {
                return false;
            }
            *old = new;
            true
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// The condition of `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// What every placement status has: the generation it describes and its conditions.
pub trait StatusConditions {
    fn observed_generation(&self) -> Option<i64>;
    fn set_observed_generation(&mut self, generation: Option<i64>);
    fn conditions(&self) -> &[Condition];
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;

    /// [`set_condition`] on this status.
    fn set_condition(&mut self, condition: Condition) -> bool {
        set_condition(self.conditions_mut(), condition)
    }

    /// Records that the spec of `generation` is invalid, the way every controller reports it:
    /// `observedGeneration` is `generation`, and `Ready` is `False` with reason `InvalidSpec` and the error
    /// (which names the field) as its message. Other conditions and fields are left as they are.
    ///
    /// Returns whether this is news: `Ready` was not already `False` for this same problem. A controller
    /// publishes an Event on news only, so an unchanged invalid spec costs one Event, not one per
    /// reconcile (whether to write the status is a separate question: compare it with what was read).
    fn record_invalid_spec(&mut self, error: &super::CrdError, generation: Option<i64>, now: Timestamp) -> bool {
        let invalid = Condition::invalid(error, generation, now);
        let news = find_condition(self.conditions(), READY).is_none_or(|c| {
            c.status != ConditionStatus::False || c.reason != REASON_INVALID_SPEC || c.message != invalid.message
        });
        self.set_observed_generation(generation);
        self.set_condition(invalid);
        news
    }

    /// Is `Ready` true?
    fn is_ready(&self) -> bool {
        find_condition(self.conditions(), READY).is_some_and(|c| c.status == ConditionStatus::True)
    }
}

/// Implement [`StatusConditions`] for a status struct with `observed_generation` and `conditions`.
macro_rules! impl_status_conditions {
    ($t:ty) => {
        impl $crate::crd::conditions::StatusConditions for $t {
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
            fn conditions(&self) -> &[$crate::crd::conditions::Condition] {
                &self.conditions
            }
            fn conditions_mut(&mut self) -> &mut Vec<$crate::crd::conditions::Condition> {
                &mut self.conditions
            }
        }
    };
}
pub(crate) use impl_status_conditions;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::CrdError;

    /// A status of the usual shape, for the trait's own methods.
    #[derive(Default)]
    struct Status {
        observed_generation: Option<i64>,
        conditions: Vec<Condition>,
    }
    impl_status_conditions!(Status);

    #[test]
    fn an_invalid_spec_is_recorded_once_as_news() {
        let mut status = Status::default();
        status.set_condition(Condition::ready("ok", Some(1), at(10)));
        status.set_condition(Condition::new("Balanced", ConditionStatus::True, "OnTarget", "", Some(1), at(10)));
        let missing = CrdError::Missing { path: "spec.selector".into() };

        assert!(status.record_invalid_spec(&missing, Some(2), at(20)), "Ready was True: news");
        assert_eq!(status.observed_generation, Some(2));
        let ready = find_condition(&status.conditions, READY).unwrap();
        assert_eq!((ready.status, ready.reason.as_str()), (ConditionStatus::False, REASON_INVALID_SPEC));
        assert_eq!(
            (ready.message.as_str(), ready.last_transition_time.clone()),
            ("spec.selector: required", Time(at(20)))
        );
        assert_eq!(find_condition(&status.conditions, "Balanced").unwrap().status, ConditionStatus::True, "kept");
        assert!(!status.is_ready());

        // The same problem again (a new generation with the same mistake): not news, time kept.
        assert!(!status.record_invalid_spec(&missing, Some(3), at(30)));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(find_condition(&status.conditions, READY).unwrap().last_transition_time, Time(at(20)));

        // Another field at fault is news again; so is False for another reason turning into InvalidSpec.
        let other = CrdError::Missing { path: "spec.groups".into() };
        assert!(status.record_invalid_spec(&other, Some(4), at(40)));
        status.set_condition(Condition::new(
            READY,
            ConditionStatus::False,
            "TargetNotFound",
            "spec.groups: required",
            Some(4),
            at(50),
        ));
        assert!(status.record_invalid_spec(&other, Some(4), at(60)));
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let mut cs = Vec::new();
        assert!(set_condition(&mut cs, Condition::ready("ok", Some(1), at(10))));
        assert!(!set_condition(&mut cs, Condition::ready("ok", Some(1), at(20))), "nothing changed");
        assert!(set_condition(&mut cs, Condition::ready("still ok", Some(2), at(30))));
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time, Time(at(10)), "same status keeps the time");
        assert_eq!(cs[0].message, "still ok");
        assert_eq!(cs[0].observed_generation, Some(2));
        let err = super::super::CrdError::Missing { path: "spec.selector".into() };
        assert!(set_condition(&mut cs, Condition::invalid(&err, Some(3), at(40))));
        assert_eq!(cs[0].status, ConditionStatus::False);
        assert_eq!(cs[0].last_transition_time, Time(at(40)));
        assert_eq!(cs[0].message, "spec.selector: required");
        assert!(set_condition(
            &mut cs,
            Condition::new("Degraded", ConditionStatus::Unknown, "Probing", "", None, at(50))
        ));
        assert_eq!(cs.len(), 2);
        assert_eq!(find_condition(&cs, "Degraded").map(|c| c.reason.as_str()), Some("Probing"));
    }
}
