//! One error type for every conversion: which object (kind and `namespace/name`), which field (the
//! JSON path as `kubectl explain` spells it, with list indexes), and what is wrong with it. A malformed
//! object is reported with this error and skipped by the snapshot builder; it never aborts a whole
//! snapshot and never panics.

use std::fmt;

/// A Kubernetes object that could not be converted, and why.
///
/// Displays as `Pod default/web-1: spec.containers[1].resources.requests.cpu: quantity "5x": ...`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {object}: {field}: {problem}")]
pub struct ConvertError {
    /// The object's kind: `Pod`, `Node`, `Deployment`, `NodeMetrics`, ...
    pub kind: &'static str,
    /// `namespace/name`, or `name` for cluster-scoped objects.
    pub object: String,
    /// Path of the offending field, e.g. `spec.containers[1].resources.requests.cpu`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConvertError {
    /// A label value for an error counter (`kind="Pod"`): the object kind only, so its cardinality is
    /// bounded by the number of kinds. The object name and the problem text are unbounded and belong in
    /// logs, never in metric labels.
    pub fn metric_label(&self) -> &'static str {
        self.kind
    }
}

/// The object being converted: builds errors that name it.
#[derive(Clone, Debug)]
pub(crate) struct Obj {
    pub(crate) kind: &'static str,
    pub(crate) object: String,
}

impl Obj {
    /// A namespaced object (`namespace/name`).
    pub(crate) fn namespaced(kind: &'static str, namespace: &str, name: &str) -> Self {
        Obj { kind, object: format!("{namespace}/{name}") }
    }

    /// A cluster-scoped object (`name`).
    pub(crate) fn cluster(kind: &'static str, name: &str) -> Self {
        Obj { kind, object: name.to_string() }
    }

    pub(crate) fn err(&self, field: impl Into<String>, problem: impl fmt::Display) -> ConvertError {
        ConvertError { kind: self.kind, object: self.object.clone(), field: field.into(), problem: problem.to_string() }
    }
}

/// `metadata.name`, or an error naming the kind when it is missing or empty.
pub(crate) fn required_name(
    kind: &'static str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<String, ConvertError> {
    match meta.name.as_deref() {
        Some(n) if !n.is_empty() => Ok(n.to_string()),
        _ => {
            let shown = match meta.namespace.as_deref() {
                Some(ns) if !ns.is_empty() => format!("{ns}/<unnamed>"),
                _ => "<unnamed>".to_string(),
            };
            Err(ConvertError { kind, object: shown, field: "metadata.name".into(), problem: "missing".into() })
        }
    }
}

/// `metadata.namespace` of a namespaced object, or an error when it is missing or empty.
pub(crate) fn required_namespace(
    kind: &'static str,
    name: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<String, ConvertError> {
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => Ok(ns.to_string()),
        _ => Err(Obj::cluster(kind, name).err("metadata.namespace", "missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_object_and_field() {
        let e = Obj::namespaced("Pod", "default", "web-1").err("spec.containers[1].resources.requests.cpu", "bad");
        assert_eq!(e.to_string(), "Pod default/web-1: spec.containers[1].resources.requests.cpu: bad");
        assert_eq!(e.metric_label(), "Pod");
    }
}
