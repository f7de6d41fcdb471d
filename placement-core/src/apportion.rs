//! Weighted distribution with base (DESIGN §3.2). TO BE WRITTEN.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApportionError {
    #[error("weights must sum to more than zero")]
    ZeroWeights,
}
