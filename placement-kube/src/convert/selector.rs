//! Label selectors and required node affinity into their core forms, validated on the way in so that
//! a malformed expression is an error naming its exact path
//! (`spec.selector.matchExpressions[2]`) instead of a selector that silently matches nothing.
//!
//! `matchFields` of node selector terms are kept: Kubernetes only defines the key `metadata.name`,
//! and the core matches it against the node name; any other key matches no node, as in the scheduler.

use super::error::{ConvertError, Obj};
use k8s_openapi::api::core::v1 as core_v1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta_v1;
use placement_core::selector::{LabelSelector, NodeAffinity, NodeSelectorTerm, Operator, Requirement, SelectorError};

fn operator(obj: &Obj, field: &str, op: &str) -> Result<Operator, ConvertError> {
    Ok(match op {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::Gt,
        "Lt" => Operator::Lt,
        other => return Err(obj.err(field, format!("unknown operator {other:?}"))),
    })
}

fn requirement(
    obj: &Obj,
    path: &str,
    key: &str,
    op: &str,
    values: Option<&Vec<String>>,
) -> Result<Requirement, ConvertError> {
    Ok(Requirement {
        key: key.to_string(),
        operator: operator(obj, &format!("{path}.operator"), op)?,
        values: values.cloned().unwrap_or_default(),
    })
}

/// Turns a core validation error into one naming `{list_path}[index]` exactly.
fn validation(obj: &Obj, list_path: &str, e: SelectorError) -> ConvertError {
    let (index, problem) = match e {
        SelectorError::MissingValues { index, key, operator } => {
            (index, format!("key {key:?}: operator {operator} needs at least one value"))
        }
        SelectorError::UnexpectedValues { index, key, operator } => {
            (index, format!("key {key:?}: operator {operator} takes no values"))
        }
        SelectorError::NotOneInteger { index, key, operator, values } => {
            (index, format!("key {key:?}: operator {operator} needs exactly one integer value, got {values:?}"))
        }
        SelectorError::NodeOnlyOperator { index, key, operator } => {
            (index, format!("key {key:?}: operator {operator} is only allowed in node affinity"))
        }
        SelectorError::EmptyKey { index } => (index, "empty key".to_string()),
    };
    obj.err(format!("{list_path}[{index}]"), problem)
}

/// A `metav1.LabelSelector` at `path` (e.g. `spec.selector`) into a core selector over pod labels.
pub(crate) fn label_selector(obj: &Obj, path: &str, s: &meta_v1::LabelSelector) -> Result<LabelSelector, ConvertError> {
    let match_labels = s.match_labels.clone().unwrap_or_default();
    if match_labels.keys().any(String::is_empty) {
        return Err(obj.err(format!("{path}.matchLabels"), "empty key"));
    }
    let list = format!("{path}.matchExpressions");
    let match_expressions = s
        .match_expressions
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| requirement(obj, &format!("{list}[{i}]"), &r.key, &r.operator, r.values.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let selector = LabelSelector { match_labels, match_expressions };
    selector.validate().map_err(|e| validation(obj, &list, e))?;
    Ok(selector)
}

fn node_requirements(
    obj: &Obj,
    list: &str,
    reqs: Option<&Vec<core_v1::NodeSelectorRequirement>>,
) -> Result<Vec<Requirement>, ConvertError> {
    let out = reqs
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| requirement(obj, &format!("{list}[{i}]"), &r.key, &r.operator, r.values.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let as_selector = LabelSelector { match_expressions: out, ..LabelSelector::default() };
    as_selector.validate_for_nodes().map_err(|e| validation(obj, list, e))?;
    Ok(as_selector.match_expressions)
}

/// A required `NodeSelector` at `path` into core node affinity: every term, every operator (`Gt`/`Lt`
/// included), `matchFields` kept.
pub(crate) fn node_affinity(obj: &Obj, path: &str, s: &core_v1::NodeSelector) -> Result<NodeAffinity, ConvertError> {
    let terms = s
        .node_selector_terms
        .iter()
        .enumerate()
        .map(|(t, term)| {
            let term_path = format!("{path}.nodeSelectorTerms[{t}]");
            Ok(NodeSelectorTerm {
                match_expressions: node_requirements(
                    obj,
                    &format!("{term_path}.matchExpressions"),
                    term.match_expressions.as_ref(),
                )?,
                match_fields: node_requirements(obj, &format!("{term_path}.matchFields"), term.match_fields.as_ref())?,
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    Ok(NodeAffinity { terms })
}
