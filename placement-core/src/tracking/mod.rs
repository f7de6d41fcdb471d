//! Target tracking (DESIGN §3.5). TO BE WRITTEN.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tracking input")]
pub struct TrackingError;
