//! Taints and tolerations. A pod may run on a node when every `NoSchedule` and `NoExecute` taint is
//! tolerated; `PreferNoSchedule` never makes a node infeasible. A toleration with an empty key and
//! operator `Exists` tolerates every taint (of its effect, or of all effects when the effect is empty).

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Effect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: Effect,
}

impl Taint {
    pub fn new(key: impl Into<String>, value: impl Into<String>, effect: Effect) -> Self {
        Taint { key: key.into(), value: value.into(), effect }
    }
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{:?}", self.key, self.effect)
        } else {
            write!(f, "{}={}:{:?}", self.key, self.value, self.effect)
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TolerationOperator {
    #[default]
    Equal,
    Exists,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Toleration {
    /// Empty with `Exists` means every key.
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub operator: TolerationOperator,
    #[serde(default)]
    pub value: String,
    /// `None` means every effect.
    #[serde(default)]
    pub effect: Option<Effect>,
}

impl Toleration {
    /// `key=value:effect` with operator `Equal`.
    pub fn equal(key: impl Into<String>, value: impl Into<String>, effect: Option<Effect>) -> Self {
        Toleration { key: key.into(), operator: TolerationOperator::Equal, value: value.into(), effect }
    }

    /// `key` with operator `Exists`; an empty key tolerates every taint.
    pub fn exists(key: impl Into<String>, effect: Option<Effect>) -> Self {
        Toleration { key: key.into(), operator: TolerationOperator::Exists, value: String::new(), effect }
    }

    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => self.key.is_empty() || self.key == taint.key,
            TolerationOperator::Equal => self.key == taint.key && self.value == taint.value,
        }
    }
}

/// The first `NoSchedule`/`NoExecute` taint that no toleration tolerates, if any.
pub fn untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| t.effect != Effect::PreferNoSchedule)
        .find(|t| !tolerations.iter().any(|tol| tol.tolerates(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toleration_table() {
        let spot = Taint::new("spot", "true", Effect::NoSchedule);
        let cases: &[(Toleration, bool, &str)] = &[
            (Toleration::equal("spot", "true", Some(Effect::NoSchedule)), true, "exact"),
            (Toleration::equal("spot", "true", None), true, "any effect"),
            (Toleration::equal("spot", "false", None), false, "wrong value"),
            (Toleration::equal("spot", "true", Some(Effect::NoExecute)), false, "wrong effect"),
            (Toleration::exists("spot", None), true, "exists key"),
            (Toleration::exists("other", None), false, "exists other key"),
            (Toleration::exists("", None), true, "wildcard"),
            (Toleration::exists("", Some(Effect::NoSchedule)), true, "wildcard same effect"),
            (Toleration::exists("", Some(Effect::NoExecute)), false, "wildcard other effect"),
            (Toleration::equal("", "", None), false, "empty key with Equal is not a wildcard"),
        ];
        for (tol, want, name) in cases {
            assert_eq!(tol.tolerates(&spot), *want, "{name}");
        }
    }

    #[test]
    fn prefer_no_schedule_never_blocks() {
        let taints = vec![Taint::new("soft", "", Effect::PreferNoSchedule), Taint::new("hard", "", Effect::NoExecute)];
        assert_eq!(untolerated(&taints, &[]).map(|t| t.key.as_str()), Some("hard"));
        assert_eq!(untolerated(&taints, &[Toleration::exists("hard", None)]), None);
    }
}
