//! Scenario section `trafficWeights`: a series of metric samples fed through the tracking law, step by
//! step, starting from the target's current weight — what the TrafficWeight controller does each
//! interval.

use super::render;
use jiff::Timestamp;
use placement_core::tracking::{CompiledPolicy, TrackingPolicy, TrackingState, parse_metric, step};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, de};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTraffic {
    name: String,
    #[serde(default)]
    target: String,
    initial_weight: u32,
    policy: ValidPolicy,
    samples: Vec<Sample>,
}

/// A tracking policy, validated where it is written.
#[derive(Debug, Deserialize)]
#[serde(try_from = "TrackingPolicy")]
struct ValidPolicy(CompiledPolicy);

impl TryFrom<TrackingPolicy> for ValidPolicy {
    type Error = placement_core::tracking::TrackingError;
    fn try_from(p: TrackingPolicy) -> Result<Self, Self::Error> {
        p.compile().map(ValidPolicy)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub at: Timestamp,
    pub value: Metric,
}

/// A metric value written as a string or a number, parsed exactly.
#[derive(Debug, Clone, Copy)]
pub struct Metric(pub Decimal);

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(i64),
            Float(f64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
        };
        parse_metric(&text).map(Metric).map_err(de::Error::custom)
    }
}

/// A validated `trafficWeights[]` entry.
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawTraffic")]
pub struct TrafficSpec {
    pub name: String,
    pub target: String,
    pub initial_weight: u32,
    pub policy: CompiledPolicy,
    pub samples: Vec<Sample>,
}

impl TryFrom<RawTraffic> for TrafficSpec {
    type Error = String;
    fn try_from(raw: RawTraffic) -> Result<Self, String> {
        let policy = raw.policy.0;
        if raw.samples.windows(2).any(|w| w[1].at < w[0].at) {
            return Err("samples: times must not go backwards".into());
        }
        Ok(TrafficSpec {
            name: raw.name,
            target: raw.target,
            initial_weight: raw.initial_weight,
            policy,
            samples: raw.samples,
        })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficReport {
    pub name: String,
    pub target: String,
    pub steps: Vec<TrafficStep>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficStep {
    pub at: Timestamp,
    pub metric: Decimal,
    pub desired: u32,
    pub weight: u32,
    pub changed: bool,
    pub reason: String,
}

pub fn run(spec: &TrafficSpec) -> TrafficReport {
    let mut state = TrackingState::default();
    let mut weight = spec.initial_weight;
    let steps = spec
        .samples
        .iter()
        .map(|s| {
            let d = step(&spec.policy, &state, s.value.0, weight, s.at);
            let changed = d.apply.is_some();
            weight = d.apply.unwrap_or(weight);
            state = d.state;
            TrafficStep { at: s.at, metric: s.value.0, desired: d.desired, weight, changed, reason: d.reason }
        })
        .collect();
    TrafficReport { name: spec.name.clone(), target: spec.target.clone(), steps }
}

impl TrafficReport {
    pub fn render(&self, out: &mut String) {
        out.push_str(&render::heading(&format!("Traffic weight {} ({})", self.name, self.target)));
        let mut t = render::table(["time", "metric", "desired", "weight", "reason"]);
        for s in &self.steps {
            let weight = if s.changed { format!("{} *", s.weight) } else { s.weight.to_string() };
            t.add_row(vec![s.at.to_string(), s.metric.to_string(), s.desired.to_string(), weight, s.reason.clone()]);
        }
        out.push_str(&format!("{t}\n(* = written this step)\n"));
    }
}
