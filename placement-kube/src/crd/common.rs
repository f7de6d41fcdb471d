//! Types and checks shared by several resources: workload references, node-group selectors, secret
//! references, Kubernetes label selectors into core selectors, durations, label keys and values.

use super::CrdError;
use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as KubeLabelSelector;
use kube::KubeSchema;
use placement_core::Labels;
use placement_core::model::{WorkloadKind, WorkloadRef};
use placement_core::names::{is_dns_subdomain, is_label_name};
use placement_core::selector::{LabelSelector, Operator, Requirement};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;

/// Kinds of workload a resource may target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TargetKind {
    Deployment,
    StatefulSet,
}

impl TargetKind {
    pub fn to_core(self) -> WorkloadKind {
        match self {
            TargetKind::Deployment => WorkloadKind::Deployment,
            TargetKind::StatefulSet => WorkloadKind::StatefulSet,
        }
    }
}

/// A Deployment or StatefulSet in the resource's own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadTarget {
    /// Kind of the workload: `Deployment` or `StatefulSet`.
    pub kind: TargetKind,
    /// Name of the workload (in the same namespace as this resource).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl WorkloadTarget {
    /// The core reference, in `namespace`; checks the name.
    pub fn to_core(&self, path: &str, namespace: &str) -> Result<WorkloadRef, CrdError> {
        check_dns_subdomain(&format!("{path}.name"), &self.name)?;
        Ok(WorkloadRef::new(self.kind.to_core(), namespace, self.name.clone()))
    }
}

/// Nodes by label: `matchLabels` and `matchExpressions` (node-affinity operators, so `Gt`/`Lt` are
/// allowed), ANDed. At least one requirement is needed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("size(self.matchLabels) > 0 || size(self.matchExpressions) > 0").message("give at least one of matchLabels or matchExpressions"))]
pub struct NodeGroupSelector {
    /// Node labels that must all be present with these values.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 32))]
    pub match_labels: BTreeMap<String, String>,
    /// Node selector requirements (`In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`), ANDed.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub match_expressions: Vec<NodeSelectorRequirement>,
}

impl NodeGroupSelector {
    /// The core selector (node rules: `Gt`/`Lt` allowed); errors name `path.matchExpressions[i]`.
    pub fn to_core(&self, path: &str) -> Result<LabelSelector, CrdError> {
        if self.match_labels.is_empty() && self.match_expressions.is_empty() {
            return Err(CrdError::Missing { path: format!("{path}.matchLabels") });
        }
        let labels = labels_to_core(&format!("{path}.matchLabels"), &self.match_labels)?;
        let mut selector = LabelSelector { match_labels: labels, match_expressions: Vec::new() };
        for (i, r) in self.match_expressions.iter().enumerate() {
            let at = format!("{path}.matchExpressions[{i}]");
            selector.match_expressions.push(requirement(&at, &r.key, &r.operator, r.values.as_deref(), true)?);
        }
        selector.validate_for_nodes().map_err(|source| CrdError::Selector { path: path.to_string(), source })?;
        Ok(selector)
    }
}

/// A key of a Secret in the resource's own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace as this resource).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

impl SecretKeyRef {
    pub fn check(&self, path: &str) -> Result<(), CrdError> {
        check_dns_subdomain(&format!("{path}.name"), &self.name)?;
        if self.key.is_empty() || !self.key.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
            return Err(CrdError::format(
                format!("{path}.key"),
                format!("{:?} is not a valid Secret key (letters, digits, '-', '_' and '.')", self.key),
            ));
        }
        Ok(())
    }
}

/// A Kubernetes label selector (over pod or workload labels) as a core selector.
pub fn label_selector_to_core(path: &str, s: &KubeLabelSelector) -> Result<LabelSelector, CrdError> {
    let labels = match &s.match_labels {
        Some(m) => labels_to_core(&format!("{path}.matchLabels"), m)?,
        None => Labels::new(),
    };
    let mut selector = LabelSelector { match_labels: labels, match_expressions: Vec::new() };
    for (i, r) in s.match_expressions.iter().flatten().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        selector.match_expressions.push(requirement(&at, &r.key, &r.operator, r.values.as_deref(), false)?);
    }
    selector.validate().map_err(|source| CrdError::Selector { path: path.to_string(), source })?;
    Ok(selector)
}

fn labels_to_core(path: &str, m: &BTreeMap<String, String>) -> Result<Labels, CrdError> {
    for (k, v) in m {
        check_label_key(&format!("{path}[{k:?}]"), k)?;
        check_label_value(&format!("{path}[{k:?}]"), v)?;
    }
    Ok(m.clone())
}

fn requirement(
    path: &str,
    key: &str,
    operator: &str,
    values: Option<&[String]>,
    node_rules: bool,
) -> Result<Requirement, CrdError> {
    check_label_key(&format!("{path}.key"), key)?;
    let op = match operator {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" if node_rules => Operator::Gt,
        "Lt" if node_rules => Operator::Lt,
        other => {
            let allowed = if node_rules {
                "In, NotIn, Exists, DoesNotExist, Gt or Lt"
            } else {
                "In, NotIn, Exists or DoesNotExist"
            };
            return Err(CrdError::format(format!("{path}.operator"), format!("{other:?} is not one of {allowed}")));
        }
    };
    Ok(Requirement { key: key.to_string(), operator: op, values: values.map(<[String]>::to_vec).unwrap_or_default() })
}

/// A qualified name: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters of
/// letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
pub fn check_label_key(path: &str, key: &str) -> Result<(), CrdError> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty() || p.len() > 253 || !is_dns_subdomain(p))
    {
        return Err(CrdError::format(path, format!("{key:?}: the prefix must be a DNS subdomain")));
    }
    if name.is_empty() || name.len() > 63 || !is_label_name(name) {
        return Err(CrdError::format(
            path,
            format!(
                "{key:?} is not a valid label key (at most 63 letters, digits, '-', '_' or '.', \
                 beginning and ending with a letter or digit, after an optional DNS prefix and '/')"
            ),
        ));
    }
    Ok(())
}

/// Empty, or at most 63 letters, digits, `-`, `_` and `.`, beginning and ending with a letter or digit.
pub fn check_label_value(path: &str, value: &str) -> Result<(), CrdError> {
    if value.is_empty() || (value.len() <= 63 && is_label_name(value)) {
        Ok(())
    } else {
        Err(CrdError::format(path, format!("{value:?} is not a valid label value")))
    }
}

/// An object name: a lowercase DNS subdomain (at most 253 characters).
pub fn check_dns_subdomain(path: &str, name: &str) -> Result<(), CrdError> {
    if is_dns_subdomain(name) {
        Ok(())
    } else {
        Err(CrdError::format(
            path,
            format!("{name:?} is not a valid name (lowercase letters, digits, '-' and '.', at most 253 characters)"),
        ))
    }
}

/// A namespace name: a DNS label (at most 63 lowercase letters, digits and '-').
pub fn check_dns_label(path: &str, name: &str) -> Result<(), CrdError> {
    if !name.contains('.') && name.len() <= 63 && is_dns_subdomain(name) {
        Ok(())
    } else {
        Err(CrdError::format(
            path,
            format!("{name:?} is not a valid name (at most 63 lowercase letters, digits and '-')"),
        ))
    }
}

/// `value` at `path` is at most `max` (the schema's `maximum`, checked again for specs it did not see).
pub fn at_most(path: impl Into<String>, value: u32, max: u32) -> Result<u32, CrdError> {
    if value > max {
        return Err(CrdError::out_of_range(path, format!("{value} is above {max}, the most it may be")));
    }
    Ok(value)
}

/// Longest `interval` of any resource: a day.
pub const MAX_INTERVAL_SECONDS: u64 = 86_400;

/// Longest rebalancer backoff (`workloadBackoff`, `nodeBackoff`): a week.
pub const MAX_BACKOFF_SECONDS: u64 = 7 * 86_400;

/// Longest traffic-weight `cooldown`: a day.
pub const MAX_COOLDOWN_SECONDS: u64 = 86_400;

/// The CEL rule the schema gives a duration field: between `min` and `max` seconds, so that the API
/// server refuses what [`parse_duration`] would (a spec it accepted never overflows time arithmetic).
pub fn duration_rule(field: &str, min_seconds: u64, max_seconds: u64) -> kube::core::Rule {
    let (min, max) = (format_seconds(min_seconds), format_seconds(max_seconds));
    kube::core::Rule::new(format!("duration(self) >= duration('{min}') && duration(self) <= duration('{max}')"))
        .message(kube::core::Message::Message(format!("{field} must be between {min} and {max}")))
}

/// A Go-style duration (`30s`, `5m`, `1h30m`) of `min_seconds` to `max_seconds`.
pub fn parse_duration(
    path: &str,
    text: &str,
    min_seconds: u64,
    max_seconds: u64,
) -> Result<std::time::Duration, CrdError> {
    // kube's parser panics on a number too large for a Duration (found by fuzzing): bound the text first.
    let longest_number = text.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
    if text.len() > 64 || longest_number > 12 {
        return Err(CrdError::out_of_range(path, format!("{:?} is too long for a duration", short(text))));
    }
    let parsed = kube::core::Duration::from_str(text.trim())
        .map_err(|e| CrdError::format(path, format!("{text:?} is not a duration like 30s, 5m or 1h30m ({e})")))?;
    if parsed.is_negative() {
        return Err(CrdError::out_of_range(path, format!("{text:?} is negative")));
    }
    let d: std::time::Duration = parsed.into();
    if d.as_secs() < min_seconds {
        return Err(CrdError::out_of_range(path, format!("{text:?} is shorter than {min_seconds}s")));
    }
    if d > std::time::Duration::from_secs(max_seconds) {
        let max = format_seconds(max_seconds);
        return Err(CrdError::out_of_range(path, format!("{text:?} is longer than {max}, the most it may be")));
    }
    Ok(d)
}

fn short(text: &str) -> String {
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text.to_string()
    }
}

/// `600` -> `10m`, `7200` -> `2h`, `90` -> `90s`: the form defaults are written in.
pub fn format_seconds(seconds: u64) -> String {
    if seconds > 0 && seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else if seconds > 0 && seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// The schema pattern of a duration string.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$";

/// A workload kind as written in status (`Deployment`, or any other kind name).
pub fn kind_from_str(kind: &str) -> WorkloadKind {
    match kind {
        "Deployment" => WorkloadKind::Deployment,
        "StatefulSet" => WorkloadKind::StatefulSet,
        "ReplicaSet" => WorkloadKind::ReplicaSet,
        "DaemonSet" => WorkloadKind::DaemonSet,
        "Job" => WorkloadKind::Job,
        other => WorkloadKind::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn label_keys_and_values() {
        for ok in ["app", "node-type", "topology.kubernetes.io/zone", "a.b_c-d", "x/y"] {
            check_label_key("k", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "-a", "a-", "/a", "A_B/c", "a/", "a b", &"x".repeat(64)] {
            assert!(check_label_key("k", bad).is_err(), "{bad:?}");
        }
        assert!(check_label_value("v", "").is_ok());
        assert!(check_label_value("v", "us-east-1a").is_ok());
        assert!(check_label_value("v", "a/b").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("d", "1h30m", 0, 86_400).map(|d| d.as_secs()), Ok(5400));
        assert_eq!(parse_duration("d", "90s", 0, 86_400).map(|d| d.as_secs()), Ok(90));
        assert_eq!(
            parse_duration("spec.interval", "0s", 1, 86_400).map_err(|e| e.to_string()),
            Err("spec.interval: \"0s\" is shorter than 1s".to_string())
        );
        assert!(parse_duration("d", "-5s", 0, 86_400).is_err());
        assert!(
            parse_duration("d", "soon", 0, 86_400)
                .unwrap_err()
                .to_string()
                .starts_with("d: \"soon\" is not a duration")
        );
        // At the maximum and one past it; and the value of the issue's crash loop.
        assert_eq!(parse_duration("d", "24h", 0, 86_400).map(|d| d.as_secs()), Ok(86_400));
        assert_eq!(
            parse_duration("spec.interval", "24h0m0.001s", 0, 86_400).map_err(|e| e.to_string()),
            Err("spec.interval: \"24h0m0.001s\" is longer than 24h, the most it may be".to_string())
        );
        let e = parse_duration("spec.interval", "999999999999h", 10, 86_400).unwrap_err().to_string();
        assert!(e.contains("longer than 24h"), "{e}");
        assert_eq!(format_seconds(600), "10m");
        assert_eq!(format_seconds(7200), "2h");
        assert_eq!(format_seconds(90), "90s");
        assert_eq!(format_seconds(0), "0s");
    }

    #[test]
    fn selectors_convert_with_paths() {
        let s = KubeLabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["a".into()]),
            }]),
        };
        let core = label_selector_to_core("spec.selector", &s).unwrap_or_default();
        assert_eq!(core.to_string(), "app=web,tier in (a)");
        let bad = KubeLabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "Gt".into(),
                values: Some(vec!["1".into()]),
            }]),
        };
        assert_eq!(
            label_selector_to_core("spec.selector", &bad).unwrap_err().to_string(),
            "spec.selector.matchExpressions[0].operator: \"Gt\" is not one of In, NotIn, Exists or DoesNotExist"
        );
        let missing = KubeLabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: None,
            }]),
        };
        assert_eq!(
            label_selector_to_core("spec.selector", &missing).unwrap_err().to_string(),
            "spec.selector: matchExpressions[0] (key \"tier\"): operator In needs at least one value"
        );
        let nodes = NodeGroupSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![NodeSelectorRequirement {
                key: "cpu-count".into(),
                operator: "Gt".into(),
                values: Some(vec!["four".into()]),
            }],
        };
        assert!(nodes.to_core("spec.nodeSelector").unwrap_err().to_string().starts_with("spec.nodeSelector: "));
        assert_eq!(
            NodeGroupSelector::default().to_core("spec.groups[0].nodeSelector").unwrap_err().to_string(),
            "spec.groups[0].nodeSelector.matchLabels: required"
        );
    }
}
