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
//!
//! The limits are a PodDistribution's (`placement-kube`'s CRD): at most [`MAX_RULES`] rules, weights and
//! base at most [`MAX_WEIGHT`] and [`MAX_BASE`], nodeSelector keys and values of Kubernetes label syntax,
//! and at most [`MAX_LENGTH`] bytes in all, so that parsing, the webhook's rule cache and the rule's
//! sequence ([`crate::apportion`]) stay bounded for any annotation.

use crate::apportion::{Apportionment, Base};
use crate::group::NodeGroup;
use crate::names::{is_label_key, is_label_value};
use crate::selector::LabelSelector;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The annotation key.
pub const STRATEGY_ANNOTATION: &str = "placement.dev/strategy";
/// SmartScheduler's key, accepted too.
pub const LEGACY_STRATEGY_ANNOTATION: &str = "smart-scheduler.io/schedule-strategy";

/// Most rules in one strategy: a PodDistribution's most groups.
pub const MAX_RULES: usize = 16;
/// Largest weight: a PodDistribution's.
pub const MAX_WEIGHT: u32 = 10_000;
/// Largest base: a PodDistribution's (`spec.groups[].base`).
pub const MAX_BASE: u32 = 10_000;
/// Longest strategy, in bytes. Sixteen rules with two long well-known pairs each
/// (`topology.kubernetes.io/zone:eu-central-1a,node.kubernetes.io/instance-type:m6i.12xlarge`, base and
/// weight) take about 2.1 KiB; twice that leaves room without letting one annotation cost the parser,
/// the rule cache and the logs (which quote it) up to the 256 KiB an object's annotations may hold.
pub const MAX_LENGTH: usize = 4096;

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
    #[error("the strategy is {length} bytes long, over the limit of {max}")]
    TooLong { length: usize, max: usize },
    #[error("more than {max} rules")]
    TooManyRules { max: usize },
    #[error("{name}={value} is over the limit of {max}")]
    OverLimit { name: String, value: String, max: u32 },
    #[error(
        "nodeSelector key {0:?} is not a label key (an optional DNS subdomain of at most 253 characters \
         and '/', then at most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit)"
    )]
    BadLabelKey(String),
    #[error(
        "nodeSelector value {0:?} is not a label value (at most 63 letters, digits, '-', '_' or '.', \
         beginning and ending with a letter or digit, or empty)"
    )]
    BadLabelValue(String),
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
        if s.len() > MAX_LENGTH {
            // Reported at the first byte past the limit.
            let rule = s.as_bytes()[..MAX_LENGTH].iter().filter(|&&b| b == b';').count() + 1;
            let kind = StrategyErrorKind::TooLong { length: s.len(), max: MAX_LENGTH };
            return Err(StrategyError { offset: MAX_LENGTH, rule, kind });
        }
        let mut rules = Vec::new();
        let mut offset = 0;
        let pieces: Vec<&str> = s.split(';').collect();
        let last = pieces.len() - 1;
        for (index, piece) in pieces.iter().enumerate() {
            // A trailing `;` is tolerated.
            if index == last && index > 0 && piece.trim().is_empty() {
                break;
            }
            if index == MAX_RULES {
                let kind = StrategyErrorKind::TooManyRules { max: MAX_RULES };
                return Err(StrategyError { offset, rule: index + 1, kind });
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

/// A whole number from 0 to `max`.
fn parse_number(name: &str, value: &str, max: u32, offset: usize, rule: usize) -> Result<u32, StrategyError> {
    let err = |kind| StrategyError { offset, rule, kind };
    if value.starts_with('-') {
        return Err(err(StrategyErrorKind::Negative { name: name.into(), value: value.into() }));
    }
    let over = || err(StrategyErrorKind::OverLimit { name: name.into(), value: value.into(), max });
    match value.parse::<u32>() {
        Ok(number) if number <= max => Ok(number),
        Ok(_) => Err(over()),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Err(over()),
        Err(_) => Err(err(StrategyErrorKind::NotANumber { name: name.into(), value: value.into() })),
    }
}

/// `key:value`, both of Kubernetes label syntax (the value may be empty).
fn parse_pair(item: &str, offset: usize, rule: usize) -> Result<(String, String), StrategyError> {
    let err = |kind| StrategyError { offset, rule, kind };
    let Some((key, value)) = item.split_once(':').map(|(k, v)| (k.trim(), v.trim())) else {
        return Err(err(StrategyErrorKind::BadPair(item.trim().to_string())));
    };
    if key.is_empty() || value.contains(':') {
        return Err(err(StrategyErrorKind::BadPair(item.trim().to_string())));
    }
    if !is_label_key(key) {
        return Err(err(StrategyErrorKind::BadLabelKey(key.to_string())));
    }
    if !is_label_value(value) {
        return Err(err(StrategyErrorKind::BadLabelValue(value.to_string())));
    }
    Ok((key.to_string(), value.to_string()))
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
                if base.replace(parse_number(name, value, MAX_BASE, at, rule)?).is_some() {
                    return Err(duplicate());
                }
            }
            "weight" => {
                if weight.replace(parse_number(name, value, MAX_WEIGHT, at, rule)?).is_some() {
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

    fn rule(i: usize) -> String {
        format!("weight=1,nodeSelector=n:g{i}")
    }

    /// Each limit at the limit and one past it; past it, the error names the limit and the position.
    #[test]
    fn limits_at_and_past() {
        let rules = |n: usize| (0..n).map(rule).collect::<Vec<_>>().join(";");
        assert_eq!(rules(MAX_RULES).parse::<Strategy>().unwrap().rules.len(), 16);
        let text = rules(MAX_RULES + 1);
        let e = text.parse::<Strategy>().unwrap_err();
        let seventeenth = text.match_indices(';').nth(MAX_RULES - 1).unwrap().0 + 1;
        assert_eq!((e.offset, e.rule, &e.kind), (seventeenth, 17, &StrategyErrorKind::TooManyRules { max: 16 }));
        assert_eq!(e.to_string(), format!("strategy: at byte {seventeenth} (rule 17): more than 16 rules"));
        // A trailing `;` after 16 rules is not a 17th.
        assert!(format!("{};", rules(MAX_RULES)).parse::<Strategy>().is_ok());

        assert_eq!("weight=10000,nodeSelector=a:b".parse::<Strategy>().unwrap().rules[0].weight, 10_000);
        let e = "weight=1,nodeSelector=a:b;weight=10001,nodeSelector=a:c".parse::<Strategy>().unwrap_err();
        let over = StrategyErrorKind::OverLimit { name: "weight".into(), value: "10001".into(), max: 10_000 };
        assert_eq!((e.offset, e.rule, &e.kind), (26, 2, &over));
        assert_eq!(e.to_string(), "strategy: at byte 26 (rule 2): weight=10001 is over the limit of 10000");
        let e = "weight=99999999999,nodeSelector=a:b".parse::<Strategy>().unwrap_err();
        assert!(matches!(e.kind, StrategyErrorKind::OverLimit { .. }), "{e}");

        assert_eq!("base=10000,weight=1,nodeSelector=a:b".parse::<Strategy>().unwrap().rules[0].base, Some(10_000));
        let e = "base=10001,weight=1,nodeSelector=a:b".parse::<Strategy>().unwrap_err();
        let over = StrategyErrorKind::OverLimit { name: "base".into(), value: "10001".into(), max: 10_000 };
        assert_eq!((e.offset, e.rule, &e.kind), (0, 1, &over));

        // The length: padded with spaces inside the value (trimmed), to exactly the limit, then one more.
        let head = "weight=1;weight=1,nodeSelector=a:b";
        let pad = |total: usize| format!("weight=1,nodeSelector=a:{}b", " ".repeat(total - 25));
        assert_eq!(pad(MAX_LENGTH).len(), MAX_LENGTH);
        assert!(pad(MAX_LENGTH).parse::<Strategy>().is_ok());
        let e = pad(MAX_LENGTH + 1).parse::<Strategy>().unwrap_err();
        let too_long = StrategyErrorKind::TooLong { length: MAX_LENGTH + 1, max: MAX_LENGTH };
        assert_eq!((e.offset, e.rule, &e.kind), (MAX_LENGTH, 1, &too_long));
        assert_eq!(
            e.to_string(),
            "strategy: at byte 4096 (rule 1): the strategy is 4097 bytes long, over the limit of 4096"
        );
        let e = format!("{};{}", &head[..8], pad(MAX_LENGTH)).parse::<Strategy>().unwrap_err();
        assert_eq!((e.offset, e.rule), (MAX_LENGTH, 2), "the rule holding the first byte past the limit");
    }

    /// nodeSelector keys and values: Kubernetes label syntax, at each length limit and one past it.
    #[test]
    fn label_syntax_of_keys_and_values() {
        let with = |pair: &str| format!("weight=1,nodeSelector={pair}").parse::<Strategy>();
        let name63 = format!("a{}z", "-".repeat(61));
        let name64 = format!("a{}z", "-".repeat(62));
        let prefix253 = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        let prefix254 = format!("{prefix253}e");
        assert_eq!(prefix253.len(), 253);
        for ok in [
            format!("{name63}:{name63}"),
            format!("{prefix253}/{name63}:v"),
            "topology.kubernetes.io/zone:eu-west-1a".into(),
            "node.kubernetes.io/instance-type:m5.xlarge".into(),
            "a_b.c-d:A_b.C-9".into(),
            "empty-value:".into(),
        ] {
            assert!(with(&ok).is_ok(), "{ok}: {:?}", with(&ok));
        }
        let bad_key = |k: &str| StrategyErrorKind::BadLabelKey(k.into());
        let bad_value = |v: &str| StrategyErrorKind::BadLabelValue(v.into());
        for (pair, kind) in [
            (format!("{name64}:v"), bad_key(&name64)),
            (format!("{prefix254}/k:v"), bad_key(&format!("{prefix254}/k"))),
            (format!("{prefix253}/{name64}:v"), bad_key(&format!("{prefix253}/{name64}"))),
            ("Example.com/k:v".into(), bad_key("Example.com/k")),
            ("/k:v".into(), bad_key("/k")),
            ("a/b/c:v".into(), bad_key("a/b/c")),
            ("-k:v".into(), bad_key("-k")),
            ("k k:v".into(), bad_key("k k")),
            (format!("k:{name64}"), bad_value(&name64)),
            ("k:v-".into(), bad_value("v-")),
            ("k:a/b".into(), bad_value("a/b")),
            ("k:ü".into(), bad_value("ü")),
        ] {
            let e = with(&pair).unwrap_err();
            assert_eq!((e.offset, e.rule, &e.kind), (22, 1, &kind), "{pair}: {e}");
        }
        // A continuation pair is checked too, at its own position.
        let e = "weight=1,nodeSelector=a:b,c:d!".parse::<Strategy>().unwrap_err();
        assert_eq!((e.offset, &e.kind), (26, &bad_value("d!")));
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
