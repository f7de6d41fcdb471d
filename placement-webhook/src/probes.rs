//! The plain-HTTP probe listener's routes: `/healthz`, `/readyz`, `/metrics`.
//!
//! - `/healthz` answers `200 ok` whenever the process can serve at all: liveness must not depend on the
//!   API server or certificates, or a slow start would get the pod killed in a loop.
//! - `/readyz` answers `200` only when the certificate is loaded **and** the indexes the decisions read
//!   are synced; otherwise `503` with a plain-text list of what is missing, so `kubectl describe` shows
//!   why. An unready webhook gets no traffic, which with `failurePolicy: Fail` is what we want.
//! - `/metrics` is OpenMetrics text from a `prometheus-client` registry (there is no global one). The
//!   certificate metrics live here: `placement_webhook_certificate_not_after_seconds` and
//!   `placement_webhook_certificate_reload_failures_total{reason}`, whose `reason` takes only the fixed
//!   values of [`TlsError::metric_label`](crate::tls::TlsError::metric_label).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use warp::http::{StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::tls::TlsError;

/// The OpenMetrics text content type.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What `/readyz` waits for. Clones share the same flags.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    certificates_loaded: Arc<AtomicBool>,
    indexes_synced: Arc<AtomicBool>,
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

    /// What is not ready yet (empty when ready).
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.certificates_loaded.load(Ordering::Acquire) {
            missing.push("certificates not loaded");
        }
        if !self.indexes_synced.load(Ordering::Acquire) {
            missing.push("indexes not synced");
        }
        missing
    }

    pub fn is_ready(&self) -> bool {
        self.missing().is_empty()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The certificate metrics, updated by [`CertReloader`](crate::tls::CertReloader). Clones share values.
#[derive(Clone, Debug, Default)]
pub struct CertMetrics {
    not_after: Gauge,
    reload_failures: Family<ReasonLabel, Counter>,
}

impl CertMetrics {
    /// Creates the metrics and registers them in `registry`; every failure reason starts at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        for reason in TlsError::METRIC_LABELS {
            let _ = metrics.reload_failures.get_or_create(&ReasonLabel { reason });
        }
        registry.register_with_unit(
            "placement_webhook_certificate_not_after",
            "Expiry (notAfter) of the serving certificate in use, Unix time",
            Unit::Seconds,
            metrics.not_after.clone(),
        );
        registry.register(
            "placement_webhook_certificate_reload_failures",
            "Certificate reloads rejected (the previous certificate kept serving), by reason",
            metrics.reload_failures.clone(),
        );
        metrics
    }

    pub fn set_not_after(&self, unix_seconds: i64) {
        self.not_after.set(unix_seconds);
    }

    /// `reason` must be one of [`TlsError::METRIC_LABELS`].
    pub fn count_reload_failure(&self, reason: &'static str) {
        self.reload_failures.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Sum over reasons (for tests and logs).
    pub fn reload_failures_total(&self) -> u64 {
        TlsError::METRIC_LABELS
            .iter()
            .map(|&reason| self.reload_failures.get_or_create(&ReasonLabel { reason }).get())
            .sum()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lists_what_is_missing() {
        let readiness = Readiness::new();
        assert_eq!(readiness.missing(), ["certificates not loaded", "indexes not synced"]);
        readiness.clone().set_indexes_synced(true);
        assert_eq!(readiness.missing(), ["certificates not loaded"]);
        readiness.set_certificates_loaded(true);
        assert!(readiness.is_ready());
    }

    #[test]
    fn failure_counter_starts_at_zero_for_every_reason() {
        let mut registry = Registry::default();
        let metrics = CertMetrics::register(&mut registry);
        metrics.count_reload_failure("pem");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("placement_webhook_certificate_reload_failures_total{reason=\"pem\"} 1"), "{text}");
        assert!(text.contains("placement_webhook_certificate_reload_failures_total{reason=\"read\"} 0"), "{text}");
        assert!(text.contains("# UNIT placement_webhook_certificate_not_after_seconds seconds"), "{text}");
        assert_eq!(metrics.reload_failures_total(), 1);
    }
}
