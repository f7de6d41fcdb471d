//! Custom resources of group `placement.dev`, version `v1alpha1`.
