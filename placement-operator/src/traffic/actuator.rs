//! Where a traffic weight is read and written: the [`Actuator`] trait and its error type.
//!
//! The TrafficWeight controller computes a weight (`docs/semantics.md#5-target-tracking-traffic-weights`)
//! and needs two things from the outside world: the weights in force now (the entry it manages and the
//! base entry it is compared with), and a way to set the managed entry's weight. Everything
//! target-specific (Route53 records, Gateway API `HTTPRoute` backendRefs, ...) sits behind this trait, so
//! the control law never knows which one it drives.
//!
//! Decisions:
//! - The base weight is always *read* from the target, never configured: a hand-typed copy goes stale the
//!   day someone edits the record.
//! - Weights are `u32` here and each actuator states its own range ([`Actuator::weight_range`]): Route53
//!   allows 0–255, Gateway API 0–1,000,000. The controller clamps into that range; an actuator still
//!   rejects anything outside it ([`ActuatorError::InvalidWeight`]) instead of clamping silently.
//! - Methods return boxed futures so actuators can be chosen at run time (`Box<dyn Actuator>`); a native
//!   `async fn` in a trait is not object-safe.
//! - Writes pass a [`WriteGate`] right before they are sent: the controller's gate is "this instance
//!   still leads", so an old leader after a failover sends nothing even if it lost the Lease in the
//!   middle of an evaluation.
//! - Errors carry a bounded class ([`ActuatorError::metric_label`]) for the errors-by-class metric, and a
//!   message naming the target precisely for conditions and events.
#![forbid(unsafe_code)]

use std::fmt;
use std::ops::RangeInclusive;
use std::sync::Arc;

use futures::future::BoxFuture;

/// Asked right before every write: `false` means "do not send".
#[derive(Clone)]
pub struct WriteGate(Arc<dyn Fn() -> bool + Send + Sync>);

impl WriteGate {
    /// A gate asking `open` each time.
    pub fn new(open: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        WriteGate(Arc::new(open))
    }

    /// Always open (an actuator used outside the controller).
    pub fn open() -> Self {
        WriteGate::new(|| true)
    }

    pub fn is_open(&self) -> bool {
        (self.0)()
    }
}

impl fmt::Debug for WriteGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriteGate(open: {})", self.is_open())
    }
}

/// The weights in force at the target now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    /// The weight of the entry the controller manages.
    pub managed: u32,
    /// The weight of the base entry the managed weight is derived from (read, never configured).
    pub base: u32,
}

/// What a [`Actuator::write`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The weight was changed from `from` to `to`.
    Changed { from: u32, to: u32 },
    /// The managed entry already had this weight: nothing was sent.
    Unchanged { weight: u32 },
    /// Dry run: the entry was found and would have changed from `from` to `to`; nothing was sent.
    DryRun { from: u32, to: u32 },
}

/// A place where a traffic weight is read and written.
pub trait Actuator: Send + Sync {
    /// Short, human-readable description of the target, for events and logs
    /// (e.g. `route53 zone Z1 record www.example.com. A set "canary"`).
    fn describe(&self) -> String;

    /// The weights this target accepts; [`Actuator::write`] rejects anything outside.
    fn weight_range(&self) -> RangeInclusive<u32>;

    /// The current weights of the managed entry and of the base entry, read from the target.
    fn read(&self) -> BoxFuture<'_, Result<Weights, ActuatorError>>;

    /// Set the managed entry's weight, keeping every other field of the entry as it is. With `dry_run`
    /// the entry is still looked up (so a missing entry is reported) but nothing is written.
    fn write(&self, weight: u32, dry_run: bool) -> BoxFuture<'_, Result<WriteOutcome, ActuatorError>>;
}

/// `weight` is in the actuator's range, or [`ActuatorError::InvalidWeight`] naming the target.
pub fn check_weight(actuator: &dyn Actuator, weight: u32) -> Result<(), ActuatorError> {
    let range = actuator.weight_range();
    if range.contains(&weight) {
        return Ok(());
    }
    Err(ActuatorError::InvalidWeight {
        target: actuator.describe(),
        weight: u64::from(weight),
        min: *range.start(),
        max: *range.end(),
    })
}

/// Why reading or writing a weight failed. Each variant's message names the target precisely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActuatorError {
    /// The API kept refusing because of rate or concurrency limits, after the retries allowed.
    #[error("{target}: throttled ({code}) after {attempts} attempts: {message}")]
    Throttled { target: String, code: String, attempts: u32, message: String },
    /// The zone, record, route or backend does not exist.
    #[error("{what} not found{detail}")]
    NotFound { what: String, detail: String },
    /// The entry exists but carries no weight (e.g. a simple, non-weighted Route53 record).
    #[error("{what} has no weight: it is not a weighted entry")]
    NotWeighted { what: String },
    /// Credentials missing, malformed, expired or not allowed.
    #[error("{target}: not authorized: {message}")]
    Auth { target: String, message: String },
    /// A weight outside the target's range.
    #[error("{target}: weight {weight} is outside {min}..={max}")]
    InvalidWeight { target: String, weight: u64, min: u32, max: u32 },
    /// The configuration or the request is invalid (bad zone id, record type, rejected change batch...).
    #[error("{target}: invalid: {message}")]
    Invalid { target: String, message: String },
    /// The API could not be reached or did not answer in time.
    #[error("{target}: transport error: {message}")]
    Transport { target: String, message: String },
    /// Any other error the API returned.
    #[error("{target}: API error {code}: {message}")]
    Api { target: String, code: String, message: String },
    /// A bound on one evaluation's work was reached (pages listed, time spent).
    #[error("{target}: {message}")]
    Limit { target: String, message: String },
    /// This instance no longer leads: nothing was sent.
    #[error("{target}: not written: this instance is no longer the leader")]
    NotLeader { target: String },
}

impl ActuatorError {
    /// A bounded label for the errors-by-class metric: one of `throttled`, `not_found`, `not_weighted`,
    /// `auth`, `invalid_weight`, `invalid`, `transport`, `api`, `limit`, `not_leader`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ActuatorError::Throttled { .. } => "throttled",
            ActuatorError::NotFound { .. } => "not_found",
            ActuatorError::NotWeighted { .. } => "not_weighted",
            ActuatorError::Auth { .. } => "auth",
            ActuatorError::InvalidWeight { .. } => "invalid_weight",
            ActuatorError::Invalid { .. } => "invalid",
            ActuatorError::Transport { .. } => "transport",
            ActuatorError::Api { .. } => "api",
            ActuatorError::Limit { .. } => "limit",
            ActuatorError::NotLeader { .. } => "not_leader",
        }
    }

    /// Every label [`ActuatorError::metric_label`] can return (to pre-register metric series).
    pub const METRIC_LABELS: [&'static str; 10] = [
        "throttled",
        "not_found",
        "not_weighted",
        "auth",
        "invalid_weight",
        "invalid",
        "transport",
        "api",
        "limit",
        "not_leader",
    ];

    /// Whether trying again later may succeed without anyone changing the configuration or the target.
    pub fn is_transient(&self) -> bool {
        matches!(self, ActuatorError::Throttled { .. } | ActuatorError::Transport { .. } | ActuatorError::Api { .. })
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "managed {} base {}", self.managed, self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_listed_label() {
        let t = || "t".to_string();
        let all = [
            ActuatorError::Throttled { target: t(), code: t(), attempts: 1, message: t() },
            ActuatorError::NotFound { what: t(), detail: String::new() },
            ActuatorError::NotWeighted { what: t() },
            ActuatorError::Auth { target: t(), message: t() },
            ActuatorError::InvalidWeight { target: t(), weight: 300, min: 0, max: 255 },
            ActuatorError::Invalid { target: t(), message: t() },
            ActuatorError::Transport { target: t(), message: t() },
            ActuatorError::Api { target: t(), code: t(), message: t() },
            ActuatorError::Limit { target: t(), message: t() },
            ActuatorError::NotLeader { target: t() },
        ];
        let labels: Vec<_> = all.iter().map(ActuatorError::metric_label).collect();
        assert_eq!(labels, ActuatorError::METRIC_LABELS);
    }

    #[test]
    fn invalid_weight_message_names_the_range() {
        let e = ActuatorError::InvalidWeight { target: "route53 x".into(), weight: 256, min: 0, max: 255 };
        assert_eq!(e.to_string(), "route53 x: weight 256 is outside 0..=255");
    }
}
