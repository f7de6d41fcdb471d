//! What differs in the operator's plain-HTTP probe and metrics listener; the routes (`/healthz`,
//! `/readyz`, `/metrics` with the OpenMetrics content type) and the server are
//! [`placement_kube::probes`], shared with the webhook.
//!
//! - `/readyz` answers `200` once the placement CRDs were found and the live index has completed its
//!   first list of every watched kind; otherwise `503` with what is missing. Leadership is **not**
//!   required: a standby is ready (its caches are warm), so a rolling update can proceed and a
//!   PodDisruptionBudget counts it as available.
//! - `/metrics` serves the `prometheus-client` [`Registry`] the runtime built (the controllers register
//!   theirs in it), plus `placement_operator_leader` (1 on the leader, 0 on a standby), read from the
//!   [`Leadership`] flag at scrape time so it can never be stale.

use crate::context::Leadership;
use placement_kube::live::SharedIndex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use placement_kube::probes::{self, Readiness as _};
pub use placement_kube::probes::{OPENMETRICS_CONTENT_TYPE, serve};

/// What `/readyz` waits for. Clones share state.
#[derive(Clone, Default)]
pub struct Readiness {
    crds_found: Arc<AtomicBool>,
    index: Arc<OnceLock<SharedIndex>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").field("missing", &self.missing()).finish()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// The startup check found every placement CRD.
    pub fn set_crds_found(&self) {
        self.crds_found.store(true, Ordering::Release);
    }

    /// The live index whose first lists readiness waits for (set once; later calls are ignored).
    pub fn set_index(&self, index: SharedIndex) {
        let _ = self.index.set(index);
    }
}

impl probes::Readiness for Readiness {
    fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.crds_found.load(Ordering::Acquire) {
            missing.push("placement CRDs not checked yet");
        }
        match self.index.get() {
            None => missing.push("live index not started"),
            Some(index) if !index.is_ready() => missing.push("live index has not listed every kind yet"),
            Some(_) => {}
        }
        missing
    }
}

/// Reports `placement_operator_leader` from the leadership flag at each scrape.
#[derive(Debug)]
struct LeaderCollector(Leadership);

impl Collector for LeaderCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(i64::from(self.0.is_leader()));
        let metric = encoder.encode_descriptor(
            "placement_operator_leader",
            "1 while this instance holds the leader Lease and may write, 0 on a standby",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

/// Registers the runtime's own metrics (`placement_operator_leader`) in `registry`.
pub fn register(registry: &mut Registry, leadership: Leadership) {
    registry.register_collector(Box::new(LeaderCollector(leadership)));
}
