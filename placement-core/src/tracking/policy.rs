//! The tracking policy (the core form of the `TrafficWeight` resource's policy), with defaults and
//! validation side by side.

use super::TrackingError;
use super::schedule::{CompiledSchedule, Schedule};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Weights the target accepts (Route53: 0..=255).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightRange {
    pub min: u32,
    pub max: u32,
}

impl Default for WeightRange {
    fn default() -> Self {
        WeightRange { min: 0, max: 255 }
    }
}

impl WeightRange {
    pub fn clamp(&self, w: u32) -> u32 {
        w.clamp(self.min, self.max)
    }
}

fn default_cooldown() -> u64 {
    300
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrackingPolicy {
    /// The metric value to hold (e.g. 1000 requests per minute). Must be positive.
    pub target_value: Decimal,
    /// The weight of the reference record; the law scales it.
    pub base_value: u32,
    /// Never go below this weight.
    #[serde(default)]
    pub minimum: u32,
    #[serde(default)]
    pub range: WeightRange,
    /// Seconds after a change before a decrease may apply (default 300).
    #[serde(default = "default_cooldown")]
    pub cooldown_seconds: u64,
    /// Decreases of at most this many weight units are ignored.
    #[serde(default)]
    pub deadband: u32,
    /// Never decrease.
    #[serde(default)]
    pub disable_scale_in: bool,
    #[serde(default)]
    pub schedules: Vec<Schedule>,
}

/// A validated policy with its schedules parsed.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    pub policy: TrackingPolicy,
    pub schedules: Vec<CompiledSchedule>,
}

impl TrackingPolicy {
    pub fn compile(&self) -> Result<CompiledPolicy, TrackingError> {
        if self.target_value <= Decimal::ZERO {
            return Err(TrackingError::TargetNotPositive(self.target_value.to_string()));
        }
        if self.range.min > self.range.max {
            return Err(TrackingError::BadRange { min: self.range.min, max: self.range.max });
        }
        let schedules = self.schedules.iter().enumerate().map(|(i, s)| s.compile(i)).collect::<Result<_, _>>()?;
        Ok(CompiledPolicy { policy: self.clone(), schedules })
    }
}
