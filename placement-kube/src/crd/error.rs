//! Why a custom resource's spec cannot be turned into its placement-core form. Every error names the
//! field at fault as a path from the resource root (`spec.groups[1].weight`), so it can go verbatim into
//! a status condition or an event; [`CrdError::metric_label`] gives a bounded label for metrics.

use placement_core::selector::SelectorError;

/// An invalid custom resource field, or a failure to render a CRD.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CrdError {
    /// A field that must be set is missing.
    #[error("{path}: required")]
    Missing { path: String },
    /// A number is outside its allowed range.
    #[error("{path}: {message}")]
    OutOfRange { path: String, message: String },
    /// Fields that exclude or require one another.
    #[error("{path}: {message}")]
    Conflict { path: String, message: String },
    /// A string that does not have the expected form (duration, time of day, label key, URL, ...).
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    /// A malformed label selector.
    #[error("{path}: {source}")]
    Selector {
        path: String,
        #[source]
        source: SelectorError,
    },
    /// A reference that must be resolved against the cluster before the spec can be used.
    #[error("{path}: {message}")]
    Unresolved { path: String, message: String },
    /// A CRD could not be rendered (a bug, not a user error).
    #[error("cannot render CRD {name}: {message}")]
    Render { name: String, message: String },
}

impl CrdError {
    /// The field path the error is about (the CRD name for [`CrdError::Render`]).
    pub fn path(&self) -> &str {
        match self {
            CrdError::Missing { path }
            | CrdError::OutOfRange { path, .. }
            | CrdError::Conflict { path, .. }
            | CrdError::Format { path, .. }
            | CrdError::Selector { path, .. }
            | CrdError::Unresolved { path, .. } => path,
            CrdError::Render { name, .. } => name,
        }
    }

    /// A short, bounded label for metrics (never a field path or a user value).
    pub fn metric_label(&self) -> &'static str {
        match self {
            CrdError::Missing { .. } => "missing_field",
            CrdError::OutOfRange { .. } => "out_of_range",
            CrdError::Conflict { .. } => "conflicting_fields",
            CrdError::Format { .. } => "bad_format",
            CrdError::Selector { .. } => "invalid_selector",
            CrdError::Unresolved { .. } => "unresolved_reference",
            CrdError::Render { .. } => "render",
        }
    }

    pub(crate) fn out_of_range(path: impl Into<String>, message: impl Into<String>) -> Self {
        CrdError::OutOfRange { path: path.into(), message: message.into() }
    }

    pub(crate) fn conflict(path: impl Into<String>, message: impl Into<String>) -> Self {
        CrdError::Conflict { path: path.into(), message: message.into() }
    }

    pub(crate) fn format(path: impl Into<String>, message: impl Into<String>) -> Self {
        CrdError::Format { path: path.into(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_path_and_labels_are_bounded() {
        let e = CrdError::out_of_range("spec.groups[1].weight", "must be at most 10000");
        assert_eq!(e.to_string(), "spec.groups[1].weight: must be at most 10000");
        assert_eq!(e.path(), "spec.groups[1].weight");
        assert_eq!(e.metric_label(), "out_of_range");
        let e = CrdError::Missing { path: "spec.selector".into() };
        assert_eq!(e.to_string(), "spec.selector: required");
        assert_eq!(e.metric_label(), "missing_field");
    }
}
