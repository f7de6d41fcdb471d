//! Target tracking of traffic weights (`docs/semantics.md#5-target-tracking-traffic-weights`), the Route53
//! rebalancer done right: a metric compared with a target gives a weight by an exact law; schedules raise
//! it in time windows; cooldown, deadband and scale-in protection decide whether a change is applied now.
//! Time is a parameter, state (the last change) goes in and out explicitly, and every step says why it
//! did what it did.

pub mod access;
pub mod law;
pub mod policy;
pub mod schedule;
pub mod step;

pub use law::{desired_weight, metric_from_f64, parse_metric};
pub use policy::{CompiledPolicy, TrackingPolicy, WeightRange};
pub use schedule::{CompiledSchedule, Schedule};
pub use step::{TrackingDecision, TrackingState, step};

/// An invalid tracking input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackingError {
    #[error("metric value {value:?} is not a finite number")]
    NotANumber { value: String },
    #[error("metric value {value:?} is too large")]
    OutOfRange { value: String },
    #[error("targetValue must be greater than 0, got {0}")]
    TargetNotPositive(String),
    #[error("range: min {min} is above max {max}")]
    BadRange { min: u32, max: u32 },
    #[error("schedules[{index}].{field}: {message}")]
    Schedule { index: usize, field: &'static str, message: String },
}
