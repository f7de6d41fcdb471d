//! What the webhook's `/readyz` waits for. The probe routes themselves (`/healthz`, `/readyz`, `/metrics`
//! with the OpenMetrics content type) are [`placement_kube::probes`], shared with the operator; the
//! certificate metrics are the serving certificate's, in [`crate::tls`].
//!
//! `/readyz` answers `200` only when the certificate is loaded **and** the indexes the decisions read
//! are synced **and** no watch feeding them has been failing for longer than `--watch-failing-seconds`;
//! otherwise `503` with what is missing. An unready webhook gets no traffic, which with
//! `failurePolicy: Fail` is what we want.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use placement_kube::probes;
pub use placement_kube::probes::{OPENMETRICS_CONTENT_TYPE, routes};

/// What `/readyz` waits for. Clones share the same flags.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    certificates_loaded: Arc<AtomicBool>,
    indexes_synced: Arc<AtomicBool>,
    watches_failing: Arc<AtomicBool>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_certificates_loaded(&self, loaded: bool) {
        self.certificates_loaded.store(loaded, Ordering::Release);
    }

    /// Set once every index the decisions read has synced.
    pub fn set_indexes_synced(&self, synced: bool) {
        self.indexes_synced.store(synced, Ordering::Release);
    }

    /// Set while a watch has been failing for longer than the limit: the index no longer follows the
    /// cluster.
    pub fn set_watches_failing(&self, failing: bool) {
        self.watches_failing.store(failing, Ordering::Release);
    }
}

impl probes::Readiness for Readiness {
    fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.certificates_loaded.load(Ordering::Acquire) {
            missing.push("certificates not loaded");
        }
        if !self.indexes_synced.load(Ordering::Acquire) {
            missing.push("indexes not synced");
        }
        if self.watches_failing.load(Ordering::Acquire) {
            missing.push("a watch has been failing for longer than --watch-failing-seconds (placement_webhook_watch_failing_seconds)");
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use placement_kube::probes::Readiness as _;

    #[test]
    fn readiness_lists_what_is_missing() {
        let readiness = Readiness::new();
        assert_eq!(readiness.missing(), ["certificates not loaded", "indexes not synced"]);
        readiness.clone().set_indexes_synced(true);
        assert_eq!(readiness.missing(), ["certificates not loaded"]);
        readiness.set_certificates_loaded(true);
        assert!(readiness.is_ready());
        readiness.set_watches_failing(true);
        assert_eq!(readiness.missing().len(), 1);
        assert!(readiness.missing()[0].starts_with("a watch has been failing"));
    }
}
