//! Kubernetes objects into placement-core values.
