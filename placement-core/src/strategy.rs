//! The strategy annotation on a Deployment or StatefulSet (`docs/semantics.md#the-strategy-annotation`),
//! SmartScheduler's grammar kept compatible and its bugs fixed:
//!
//! ```text
//! base=1,weight=1,nodeSelector=node-type:ondemand;weight=2,nodeSelector=zone:a,node-type:spot
//! ```
//!
//! `;` separates rules, `,` separates parameters, and a nodeSelector holds one or more `key:value` pairs
//! (an item without `=` continues the nodeSelector before it, so the second rule above has two pairs).
//! Every rule needs a `weight` and a `nodeSelector`; `base` is allowed on the first rule only. Errors give
//! the byte offset and rule of the problem. `Display` writes the canonical form, which parses back to
//! the same strategy.

use crate::apportion::{Apportionment, Base};
use crate::group::NodeGroup;
use crate::selector::LabelSelector;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The annotation key.
pub const STRATEGY_ANNOTATION: &str = "placement.dev/strategy";
/// SmartScheduler's key, accepted too.
pub const LEGACY_STRATEGY_ANNOTATION: &str = "smart-scheduler.io/schedule-strategy";

/// One rule: an optional base, a weight, and the node labels of its group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub base: Option<u32>,
    pub weight: u32,
    pub node_selector: Vec<(String, String)>,
}

/// A parsed strategy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Strategy {
    pub rules: Vec<Rule>,
}

/// What is wrong with a strategy string, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("strategy: at byte {offset} (rule {rule}): {kind}")]
pub struct StrategyError {
    /// Byte offset in the annotation value.
    pub offset: usize,
    /// 1-based rule number.
    pub rule: usize,
    pub kind: StrategyErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyErrorKind {
    #[error("empty strategy")]
    Empty,
    #[error("empty rule")]
    EmptyRule,
    #[error("empty parameter")]
    EmptyParameter,
    #[error("unknown parameter {0:?} (expected base, weight or nodeSelector)")]
    UnknownParameter(String),
    #[error("{0} is given twice")]
    DuplicateParameter(String),
    #[error("{name}={value:?} is negative")]
    Negative { name: String, value: String },
    #[error("{name}={value:?} is not a whole number")]
    NotANumber { name: String, value: String },
    #[error("base is only allowed in the first rule")]
    BaseNotFirst,
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{0:?} is not a key:value pair")]
    BadPair(String),
    #[error("nodeSelector key {0:?} is given twice")]
    DuplicateKey(String),
    #[error("{0:?} has no parameter name (write name=value)")]
    Dangling(String),
    #[error("every weight is 0")]
    AllWeightsZero,
}

impl Strategy {
    /// The strategy of a workload from its annotations (the new key first, then the legacy one).
    pub fn from_annotations(
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Option<Result<Strategy, StrategyError>> {
        annotations.get(STRATEGY_ANNOTATION).or_else(|| annotations.get(LEGACY_STRATEGY_ANNOTATION)).map(|s| s.parse())
    }

    /// The node groups, in rule order, named by their selector (`node-type=spot`).
    pub fn groups(&self) -> Vec<NodeGroup> {
        self.rules
            .iter()
            .map(|r| {
                let name = r.node_selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
                NodeGroup::new(name, LabelSelector::from_pairs(r.node_selector.iter().cloned()))
            })
            .collect()
    }

    /// The apportionment of these rules.
    pub fn apportionment(&self) -> Result<Apportionment, crate::apportion::ApportionError> {
        let groups = self.groups();
        let base = self.rules.first().and_then(|r| r.base).map(|count| Base { group: 0, count });
        Apportionment::new(groups.into_iter().zip(&self.rules).map(|(g, r)| (g.name, r.weight)).collect(), base)
    }
}

impl FromStr for Strategy {
    type Err = StrategyError;

    fn from_str(s: &str) -> Result<Self, StrategyError> {
        let mut rules = Vec::new();
        let mut offset = 0;
        let pieces: Vec<&str> = s.split(';').collect();
        let last = pieces.len() - 1;
        for (index, piece) in pieces.iter().enumerate() {
            // A trailing `;` is tolerated.
            if index == last && index > 0 && piece.trim().is_empty() {
                break;
            }
            rules.push(parse_rule(piece, offset, index + 1)?);
            offset += piece.len() + 1;
        }
        if rules.len() == 1 && rules[0].node_selector.is_empty() && s.trim().is_empty() {
            return Err(StrategyError { offset: 0, rule: 1, kind: StrategyErrorKind::Empty });
        }
        if rules.iter().all(|r| r.weight == 0) {
            return Err(StrategyError { offset: 0, rule: 1, kind: StrategyErrorKind::AllWeightsZero });
        }
        Ok(Strategy { rules })
    }
}

fn parse_number(name: &str, value: &str, offset: usize, rule: usize) -> Result<u32, StrategyError> {
    let err = |kind| StrategyError { offset, rule, kind };
    if value.starts_with('-') {
        return Err(err(StrategyErrorKind::Negative { name: name.into(), value: value.into() }));
    }
    value.parse().map_err(|_| err(StrategyErrorKind::NotANumber { name: name.into(), value: value.into() }))
}

fn parse_pair(item: &str, offset: usize, rule: usize) -> Result<(String, String), StrategyError> {
    match item.split_once(':') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() && !v.contains(':') => {
            Ok((k.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(StrategyError { offset, rule, kind: StrategyErrorKind::BadPair(item.trim().to_string()) }),
    }
}

fn parse_rule(text: &str, start: usize, rule: usize) -> Result<Rule, StrategyError> {
    let err = |offset, kind| StrategyError { offset, rule, kind };
    if text.trim().is_empty() {
        return Err(err(start, if rule == 1 { StrategyErrorKind::Empty } else { StrategyErrorKind::EmptyRule }));
    }
    let mut base: Option<u32> = None;
    let mut weight: Option<u32> = None;
    let mut selector: Option<Vec<(String, String)>> = None;
    let mut in_selector = false;
    let mut offset = start;
    for item in text.split(',') {
        let at = offset + (item.len() - item.trim_start().len());
        offset += item.len() + 1;
        let trimmed = item.trim();
        if trimmed.is_empty() {
            return Err(err(at, StrategyErrorKind::EmptyParameter));
        }
        let Some((name, value)) = trimmed.split_once('=') else {
            // A continuation pair of the nodeSelector before it.
            if in_selector && trimmed.contains(':') {
                let pair = parse_pair(trimmed, at, rule)?;
                let pairs = selector.get_or_insert_with(Vec::new);
                if pairs.iter().any(|(k, _)| *k == pair.0) {
                    return Err(err(at, StrategyErrorKind::DuplicateKey(pair.0)));
                }
                pairs.push(pair);
                continue;
            }
            return Err(err(at, StrategyErrorKind::Dangling(trimmed.to_string())));
        };
        let (name, value) = (name.trim(), value.trim());
        in_selector = false;
        let duplicate = || err(at, StrategyErrorKind::DuplicateParameter(name.to_string()));
        match name {
            "base" => {
                if rule != 1 {
                    return Err(err(at, StrategyErrorKind::BaseNotFirst));
                }
                if base.replace(parse_number(name, value, at, rule)?).is_some() {
                    return Err(duplicate());
                }
            }
            "weight" => {
                if weight.replace(parse_number(name, value, at, rule)?).is_some() {
                    return Err(duplicate());
                }
            }
            "nodeSelector" => {
                if selector.is_some() {
                    return Err(duplicate());
                }
                selector = Some(vec![parse_pair(value, at + trimmed.len() - value.len(), rule)?]);
                in_selector = true;
            }
            other => {
                return Err(err(at, StrategyErrorKind::UnknownParameter(other.to_string())));
            }
        }
    }
    Ok(Rule {
        base,
        weight: weight.ok_or_else(|| err(start, StrategyErrorKind::Missing("weight")))?,
        node_selector: selector.ok_or_else(|| err(start, StrategyErrorKind::Missing("nodeSelector")))?,
    })
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            if let Some(b) = r.base {
                write!(f, "base={b},")?;
            }
            write!(f, "weight={},nodeSelector=", r.weight)?;
            let pairs: Vec<String> = r.node_selector.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            f.write_str(&pairs.join(","))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_the_readme_examples() {
        let s: Strategy =
            "base=1,weight=1,nodeSelector=node-type:ondemand;weight=2,nodeSelector=node-type:spot".parse().unwrap();
        assert_eq!(
            s.rules,
            vec![
                Rule { base: Some(1), weight: 1, node_selector: pairs(&[("node-type", "ondemand")]) },
                Rule { base: None, weight: 2, node_selector: pairs(&[("node-type", "spot")]) },
            ]
        );
        // Example 2: two pairs in each nodeSelector (the original dropped the second).
        let s: Strategy = "base=1,weight=2,nodeSelector=zone:us-west-1a,node-type:ondemand;weight=1,nodeSelector=zone:us-west-1b,node-type:spot"
            .parse()
            .unwrap();
        assert_eq!(s.rules[0].node_selector, pairs(&[("zone", "us-west-1a"), ("node-type", "ondemand")]));
        assert_eq!(s.rules[1].node_selector, pairs(&[("zone", "us-west-1b"), ("node-type", "spot")]));
        assert_eq!(s.groups()[1].name, "zone=us-west-1b,node-type=spot");
    }

    #[test]
    fn tolerates_whitespace_and_a_trailing_semicolon() {
        let s: Strategy = " weight = 3 , nodeSelector = a:b ; weight=1,nodeSelector=a:c ;".parse().unwrap();
        assert_eq!(s.to_string(), "weight=3,nodeSelector=a:b;weight=1,nodeSelector=a:c");
    }

    #[test]
    fn errors_name_the_problem_and_position() {
        let cases: &[(&str, usize, usize, StrategyErrorKind)] = &[
            ("", 0, 1, StrategyErrorKind::Empty),
            ("weight=1,nodeSelector=a:b;;weight=1,nodeSelector=a:c", 26, 2, StrategyErrorKind::EmptyRule),
            ("weight=1,nodeSelector=a:b,color=red", 26, 1, StrategyErrorKind::UnknownParameter("color".into())),
            (
                "weight=-1,nodeSelector=a:b",
                0,
                1,
                StrategyErrorKind::Negative { name: "weight".into(), value: "-1".into() },
            ),
            (
                "weight=x,nodeSelector=a:b",
                0,
                1,
                StrategyErrorKind::NotANumber { name: "weight".into(), value: "x".into() },
            ),
            ("weight=1,nodeSelector=a:b;base=1,weight=1,nodeSelector=a:c", 26, 2, StrategyErrorKind::BaseNotFirst),
            ("weight=1,weight=2,nodeSelector=a:b", 9, 1, StrategyErrorKind::DuplicateParameter("weight".into())),
            ("weight=1,nodeSelector=a:b,a:c", 26, 1, StrategyErrorKind::DuplicateKey("a".into())),
            ("weight=1,nodeSelector=ab", 22, 1, StrategyErrorKind::BadPair("ab".into())),
            ("nodeSelector=a:b", 0, 1, StrategyErrorKind::Missing("weight")),
            ("weight=1", 0, 1, StrategyErrorKind::Missing("nodeSelector")),
            ("weight=1,junk,nodeSelector=a:b", 9, 1, StrategyErrorKind::Dangling("junk".into())),
            ("weight=1,,nodeSelector=a:b", 9, 1, StrategyErrorKind::EmptyParameter),
            ("weight=0,nodeSelector=a:b", 0, 1, StrategyErrorKind::AllWeightsZero),
        ];
        for (input, offset, rule, kind) in cases {
            let e = input.parse::<Strategy>().unwrap_err();
            assert_eq!((e.offset, e.rule, &e.kind), (*offset, *rule, kind), "{input:?}: {e}");
        }
        let e = "weight=1,nodeSelector=a:b,color=red".parse::<Strategy>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "strategy: at byte 26 (rule 1): unknown parameter \"color\" (expected base, weight or nodeSelector)"
        );
    }

    #[test]
    fn legacy_annotation_is_accepted() {
        let mut a = std::collections::BTreeMap::new();
        a.insert(LEGACY_STRATEGY_ANNOTATION.to_string(), "weight=1,nodeSelector=a:b".to_string());
        assert!(Strategy::from_annotations(&a).unwrap().is_ok());
        a.insert(STRATEGY_ANNOTATION.to_string(), "bogus".to_string());
        assert!(Strategy::from_annotations(&a).unwrap().is_err(), "the new key wins");
        assert!(Strategy::from_annotations(&Default::default()).is_none());
    }

    #[test]
    fn apportionment_of_the_readme_example() {
        let s: Strategy =
            "base=1,weight=1,nodeSelector=node-type:ondemand;weight=2,nodeSelector=node-type:spot".parse().unwrap();
        assert_eq!(s.apportionment().unwrap().target(6), vec![3, 3]);
    }
}
