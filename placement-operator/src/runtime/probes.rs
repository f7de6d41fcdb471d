//! The operator's plain-HTTP probe and metrics listener: `/healthz`, `/readyz`, `/metrics`.
//!
//! - `/healthz` answers `200 ok` while the process serves at all. Liveness never depends on the API
//!   server: a slow or unreachable API server must not get the pod restarted in a loop.
//! - `/readyz` answers `200` once the placement CRDs were found and the live index has completed its
//!   first list of every watched kind; otherwise `503` with what is missing. Leadership is **not**
//!   required: a standby is ready (its caches are warm), so a rolling update can proceed and a
//!   PodDisruptionBudget counts it as available.
//! - `/metrics` is OpenMetrics text from the `prometheus-client` [`Registry`] the runtime built (the
//!   controllers register theirs in it), plus `placement_operator_leader` (1 on the leader, 0 on a
//!   standby), read from the [`Leadership`] flag at scrape time so it can never be stale.
//!
//! Served by `warp::serve` on a listener the caller bound, and drained gracefully on shutdown.

use crate::context::Leadership;
use placement_kube::live::SharedIndex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use warp::http::{StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

/// The OpenMetrics text content type.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

    /// What is not ready yet (empty when ready).
    pub fn missing(&self) -> Vec<&'static str> {
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

    pub fn is_ready(&self) -> bool {
        self.missing().is_empty()
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

/// `/healthz`, `/readyz` and `/metrics` (GET).
pub fn routes(
    readiness: Readiness,
    registry: Arc<Registry>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok\n".into_response());
    let readyz = warp::path!("readyz").and(warp::get()).map(move || ready_reply(&readiness));
    let metrics = warp::path!("metrics").and(warp::get()).map(move || metrics_reply(&registry));
    healthz.or(readyz).unify().or(metrics).unify()
}

/// Serves the probe routes on `listener` until `shutdown` completes, then drains open connections.
pub async fn serve(
    listener: tokio::net::TcpListener,
    readiness: Readiness,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(routes(readiness, registry)).incoming(listener).graceful(shutdown).run().await;
}

fn ready_reply(readiness: &Readiness) -> Response {
    let missing = readiness.missing();
    if missing.is_empty() {
        "ready\n".into_response()
    } else {
        let body = format!("not ready: {}\n", missing.join(", "));
        warp::reply::with_status(body, StatusCode::SERVICE_UNAVAILABLE).into_response()
    }
}

fn metrics_reply(registry: &Registry) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => warp::reply::with_header(text, header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
