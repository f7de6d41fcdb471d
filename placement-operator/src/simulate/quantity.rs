//! Quantity fields of scenario files (`cpu: 500m`, `memory: 1.5Gi`), parsed exactly by
//! `placement_kube::quantity` while the file is read, so a bad value is reported at its own line.

use placement_core::resources::Resources;
use placement_kube::quantity;
use serde::{Deserialize, Deserializer, de};

/// A quantity written as a string (`"500m"`) or a plain number (`2`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Text(String),
    Int(u64),
    Float(f64),
}

fn raw_text(raw: Raw) -> String {
    match raw {
        Raw::Text(s) => s,
        Raw::Int(i) => i.to_string(),
        Raw::Float(f) => f.to_string(),
    }
}

/// CPU in millicores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu(pub u64);

impl<'de> Deserialize<'de> for Cpu {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = raw_text(Raw::deserialize(d)?);
        quantity::cpu_millis(&text).map(Cpu).map_err(de::Error::custom)
    }
}

/// Memory in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = raw_text(Raw::deserialize(d)?);
        quantity::bytes(&text).map(Bytes).map_err(de::Error::custom)
    }
}

/// `{cpu: 500m, memory: 1Gi}`; both default to zero.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    #[serde(default)]
    pub cpu: Cpu,
    #[serde(default)]
    pub memory: Bytes,
}

impl From<ResourceSpec> for Resources {
    fn from(r: ResourceSpec) -> Resources {
        Resources::new(r.cpu.0, r.memory.0)
    }
}
