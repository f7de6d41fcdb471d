//! The crate's error type: every way a core input can be invalid, each with a bounded
//! [`Error::metric_label`] for metrics. Module errors (a strategy parse error with its position, a
//! selector error with its expression index, ...) are wrapped here unchanged.

/// An invalid input to a core decision.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Selector(#[from] crate::selector::SelectorError),
    #[error(transparent)]
    Apportion(#[from] crate::apportion::ApportionError),
    #[error(transparent)]
    Strategy(#[from] crate::strategy::StrategyError),
    #[error(transparent)]
    Rebalance(#[from] crate::rebalance::PolicyError),
    #[error(transparent)]
    Tracking(#[from] crate::tracking::TrackingError),
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Selector(_) => "invalid_selector",
            Error::Apportion(_) => "invalid_apportionment",
            Error::Strategy(_) => "invalid_strategy",
            Error::Rebalance(_) => "invalid_rebalance_policy",
            Error::Tracking(_) => "invalid_tracking",
        }
    }
}
