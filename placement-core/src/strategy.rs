//! The strategy annotation parser. TO BE WRITTEN.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid strategy")]
pub struct StrategyError;
