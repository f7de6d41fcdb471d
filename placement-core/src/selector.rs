//! Label selectors, as Kubernetes evaluates them: `matchLabels` plus `matchExpressions` with `In`,
//! `NotIn`, `Exists`, `DoesNotExist`, and (node affinity only) `Gt`/`Lt` on integer label values; and
//! required node affinity (`nodeSelectorTerms`, ORed, each term's expressions ANDed).
//!
//! Selectors are validated once ([`LabelSelector::validate`]) so that a malformed one is an error naming
//! the expression at fault, rather than a selector that silently matches nothing.

use crate::Labels;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A selector operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// Node affinity only: the label value, parsed as an integer, is greater than the single value.
    Gt,
    /// Node affinity only: the label value, parsed as an integer, is less than the single value.
    Lt,
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
            Operator::Gt => "Gt",
            Operator::Lt => "Lt",
        };
        f.write_str(s)
    }
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default)]
    pub values: Vec<String>,
}

/// Why a selector is malformed. `index` is the position of the expression in `matchExpressions`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("matchExpressions[{index}] (key {key:?}): operator {operator} needs at least one value")]
    MissingValues { index: usize, key: String, operator: Operator },
    #[error("matchExpressions[{index}] (key {key:?}): operator {operator} takes no values")]
    UnexpectedValues { index: usize, key: String, operator: Operator },
    #[error(
        "matchExpressions[{index}] (key {key:?}): operator {operator} needs exactly one integer value, got {values:?}"
    )]
    NotOneInteger { index: usize, key: String, operator: Operator, values: Vec<String> },
    #[error("matchExpressions[{index}] (key {key:?}): operator {operator} is only allowed in node affinity")]
    NodeOnlyOperator { index: usize, key: String, operator: Operator },
    #[error("matchExpressions[{index}]: empty key")]
    EmptyKey { index: usize },
}

impl Requirement {
    pub fn new(key: impl Into<String>, operator: Operator, values: &[&str]) -> Self {
        Requirement { key: key.into(), operator, values: values.iter().map(|v| v.to_string()).collect() }
    }

    /// Does this requirement hold for `labels`? A malformed requirement (see `validate`) never matches.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt | Operator::Lt => {
                let (Some(v), [bound]) = (value, self.values.as_slice()) else {
                    return false;
                };
                match (v.parse::<i64>(), bound.parse::<i64>()) {
                    (Ok(v), Ok(b)) => {
                        if self.operator == Operator::Gt {
                            v > b
                        } else {
                            v < b
                        }
                    }
                    _ => false,
                }
            }
        }
    }

    fn validate(&self, index: usize, allow_numeric: bool) -> Result<(), SelectorError> {
        let key = self.key.clone();
        let operator = self.operator;
        if self.key.is_empty() {
            return Err(SelectorError::EmptyKey { index });
        }
        match self.operator {
            Operator::In | Operator::NotIn if self.values.is_empty() => {
                Err(SelectorError::MissingValues { index, key, operator })
            }
            Operator::Exists | Operator::DoesNotExist if !self.values.is_empty() => {
                Err(SelectorError::UnexpectedValues { index, key, operator })
            }
            Operator::Gt | Operator::Lt if !allow_numeric => {
                Err(SelectorError::NodeOnlyOperator { index, key, operator })
            }
            Operator::Gt | Operator::Lt if self.values.len() != 1 || self.values[0].parse::<i64>().is_err() => {
                Err(SelectorError::NotOneInteger { index, key, operator, values: self.values.clone() })
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operator {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Operator::Gt => write!(f, "{} > {}", self.key, self.values.join(",")),
            Operator::Lt => write!(f, "{} < {}", self.key, self.values.join(",")),
        }
    }
}

/// `matchLabels` + `matchExpressions`, ANDed. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: Labels,
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    /// A selector of `key=value` pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        LabelSelector {
            match_labels: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            match_expressions: Vec::new(),
        }
    }

    pub fn with_expression(mut self, requirement: Requirement) -> Self {
        self.match_expressions.push(requirement);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// Validate a selector over pod or workload labels (no `Gt`/`Lt`).
    pub fn validate(&self) -> Result<(), SelectorError> {
        self.validate_with(false)
    }

    /// Validate a selector over node labels (`Gt`/`Lt` allowed).
    pub fn validate_for_nodes(&self) -> Result<(), SelectorError> {
        self.validate_with(true)
    }

    fn validate_with(&self, allow_numeric: bool) -> Result<(), SelectorError> {
        if self.match_labels.keys().any(String::is_empty) {
            return Err(SelectorError::EmptyKey { index: 0 });
        }
        self.match_expressions.iter().enumerate().try_for_each(|(i, r)| r.validate(i, allow_numeric))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("<all>");
        }
        let parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain(self.match_expressions.iter().map(|r| r.to_string()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Required node affinity: `nodeSelectorTerms`. Terms are ORed; a term's expressions are ANDed; an
/// empty term matches no node, and so does an empty list of terms (as in Kubernetes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAffinity {
    pub terms: Vec<NodeSelectorTerm>,
}

/// One `nodeSelectorTerm`: label expressions plus `matchFields` on `metadata.name`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorTerm {
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
    /// `matchFields`; only the key `metadata.name` exists in Kubernetes.
    #[serde(default)]
    pub match_fields: Vec<Requirement>,
}

impl NodeSelectorTerm {
    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        if self.match_expressions.is_empty() && self.match_fields.is_empty() {
            return false;
        }
        self.match_expressions.iter().all(|r| r.matches(labels))
            && self.match_fields.iter().all(|r| {
                r.key == "metadata.name" && {
                    let mut fields = Labels::new();
                    fields.insert(r.key.clone(), node_name.to_string());
                    r.matches(&fields)
                }
            })
    }
}

impl NodeAffinity {
    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        self.terms.iter().any(|t| t.matches(node_name, labels))
    }

    /// Whether a node not made yet, of which only `known` labels are known, could satisfy this
    /// affinity: some term holds on every expression whose key is known (an expression on another key
    /// may or may not hold: the autoscaler decides) and has no `matchFields` (a new node's name is not
    /// known, so a term naming nodes cannot be counted on).
    pub fn could_match(&self, known: &Labels) -> bool {
        self.terms.iter().any(|t| {
            !t.match_expressions.is_empty()
                && t.match_fields.is_empty()
                && t.match_expressions.iter().filter(|r| known.contains_key(&r.key)).all(|r| r.matches(known))
        })
    }

    /// Labels every node satisfying this affinity must carry: the `In` expressions with a single value,
    /// when there is exactly one term. Used to decide the group of a pending pod.
    pub fn implied_labels(&self) -> Labels {
        let mut out = Labels::new();
        if let [term] = self.terms.as_slice() {
            for r in &term.match_expressions {
                if let (Operator::In, [v]) = (r.operator, r.values.as_slice()) {
                    out.insert(r.key.clone(), v.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn requirement_table() {
        let l = labels(&[("zone", "a"), ("gen", "5"), ("spot", "true")]);
        let cases: &[(Requirement, bool)] = &[
            (Requirement::new("zone", Operator::In, &["a", "b"]), true),
            (Requirement::new("zone", Operator::In, &["b"]), false),
            (Requirement::new("missing", Operator::In, &["a"]), false),
            (Requirement::new("zone", Operator::NotIn, &["b"]), true),
            (Requirement::new("zone", Operator::NotIn, &["a"]), false),
            (Requirement::new("missing", Operator::NotIn, &["a"]), true),
            (Requirement::new("spot", Operator::Exists, &[]), true),
            (Requirement::new("missing", Operator::Exists, &[]), false),
            (Requirement::new("missing", Operator::DoesNotExist, &[]), true),
            (Requirement::new("spot", Operator::DoesNotExist, &[]), false),
            (Requirement::new("gen", Operator::Gt, &["4"]), true),
            (Requirement::new("gen", Operator::Gt, &["5"]), false),
            (Requirement::new("gen", Operator::Lt, &["6"]), true),
            (Requirement::new("gen", Operator::Lt, &["-1"]), false),
            (Requirement::new("spot", Operator::Gt, &["1"]), false),
            (Requirement::new("missing", Operator::Lt, &["1"]), false),
        ];
        for (req, want) in cases {
            assert_eq!(req.matches(&l), *want, "{req}");
        }
    }

    #[test]
    fn selector_ands_labels_and_expressions() {
        let l = labels(&[("zone", "a"), ("type", "spot")]);
        let s = LabelSelector::from_pairs([("zone", "a")]).with_expression(Requirement::new(
            "type",
            Operator::In,
            &["spot"],
        ));
        assert!(s.matches(&l));
        let s = LabelSelector::from_pairs([("zone", "b")]);
        assert!(!s.matches(&l));
        assert!(LabelSelector::default().matches(&l), "empty selector matches everything");
    }

    #[test]
    fn validation_names_the_expression() {
        let s = LabelSelector::default()
            .with_expression(Requirement::new("a", Operator::Exists, &[]))
            .with_expression(Requirement::new("b", Operator::In, &[]));
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "matchExpressions[1] (key \"b\"): operator In needs at least one value"
        );
        let s = LabelSelector::default().with_expression(Requirement::new("gen", Operator::Gt, &["x"]));
        assert!(matches!(s.validate_for_nodes(), Err(SelectorError::NotOneInteger { index: 0, .. })));
        assert!(matches!(s.validate(), Err(SelectorError::NodeOnlyOperator { .. })));
        let s = LabelSelector::default().with_expression(Requirement::new("x", Operator::DoesNotExist, &["v"]));
        assert!(matches!(s.validate(), Err(SelectorError::UnexpectedValues { .. })));
        let ok = LabelSelector::default().with_expression(Requirement::new("gen", Operator::Lt, &["3"]));
        assert!(ok.validate_for_nodes().is_ok());
    }

    #[test]
    fn node_affinity_terms_are_ored_and_empty_terms_match_nothing() {
        let l = labels(&[("zone", "a")]);
        let aff = NodeAffinity {
            terms: vec![
                NodeSelectorTerm {
                    match_expressions: vec![Requirement::new("zone", Operator::In, &["b"])],
                    match_fields: vec![],
                },
                NodeSelectorTerm {
                    match_expressions: vec![],
                    match_fields: vec![Requirement::new("metadata.name", Operator::In, &["n1"])],
                },
            ],
        };
        assert!(aff.matches("n1", &l));
        assert!(!aff.matches("n2", &l));
        assert!(!NodeAffinity::default().matches("n1", &l));
        assert!(!NodeAffinity { terms: vec![NodeSelectorTerm::default()] }.matches("n1", &l));
    }

    #[test]
    fn implied_labels_only_from_a_single_term() {
        let term = NodeSelectorTerm {
            match_expressions: vec![
                Requirement::new("zone", Operator::In, &["a"]),
                Requirement::new("type", Operator::In, &["spot", "od"]),
            ],
            match_fields: vec![],
        };
        let one = NodeAffinity { terms: vec![term.clone()] };
        assert_eq!(one.implied_labels(), labels(&[("zone", "a")]));
        let two = NodeAffinity { terms: vec![term.clone(), term] };
        assert!(two.implied_labels().is_empty());
    }
}
