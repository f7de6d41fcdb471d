//! The plain-HTTP probe routes both binaries serve: `/healthz`, `/readyz` and `/metrics` (GET), as warp
//! filters. What is the same in the webhook and the operator lives here; each binary keeps only what
//! differs: what it waits for before it is ready (its [`Readiness`]) and what it measures (the metrics
//! it registers in the [`Registry`]).
//!
//! - `/healthz` answers `200 ok` whenever the process can serve at all: liveness must not depend on the
//!   API server (or certificates), or a slow start would get the pod restarted in a loop.
//! - `/readyz` answers `200 ready` when nothing is missing; otherwise `503` with a plain-text list of
//!   what is, so `kubectl describe pod` shows why.
//! - `/metrics` is OpenMetrics text from a `prometheus-client` registry (there is no global one), with
//!   the OpenMetrics content type; an encoding failure is a `500`, logged, never a panic.

use std::future::Future;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use warp::http::{StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

/// The OpenMetrics text content type.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a binary's `/readyz` waits for.
pub trait Readiness: Clone + Send + Sync + 'static {
    /// What is not ready yet, in words (empty when ready).
    fn missing(&self) -> Vec<&'static str>;

    /// Nothing is missing.
    fn is_ready(&self) -> bool {
        self.missing().is_empty()
    }
}

/// `/healthz`, `/readyz` and `/metrics` (GET); anything else is rejected (404).
pub fn routes<R: Readiness>(
    readiness: R,
    registry: Arc<Registry>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok\n".into_response());
    let readyz = warp::path!("readyz").and(warp::get()).map(move || ready_reply(&readiness.missing()));
    let metrics = warp::path!("metrics").and(warp::get()).map(move || metrics_reply(&registry));
    healthz.or(readyz).unify().or(metrics).unify()
}

/// Serves [`routes`] on `listener` until `shutdown` completes, then drains open connections.
pub async fn serve<R: Readiness>(
    listener: tokio::net::TcpListener,
    readiness: R,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(routes(readiness, registry)).incoming(listener).graceful(shutdown).run().await;
}

/// `200 ready`, or `503` listing what is missing.
fn ready_reply(missing: &[&str]) -> Response {
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
    use prometheus_client::metrics::counter::Counter;
    use std::sync::Mutex;

    /// Readiness whose missing list the test sets.
    #[derive(Clone, Default)]
    struct Flags(Arc<Mutex<Vec<&'static str>>>);

    impl Readiness for Flags {
        fn missing(&self) -> Vec<&'static str> {
            self.0.lock().map(|m| m.clone()).unwrap_or_default()
        }
    }

    async fn get<F>(routes: &F, path: &str) -> (StatusCode, Option<String>, String)
    where
        F: Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static,
    {
        let response = warp::test::request().method("GET").path(path).reply(routes).await;
        let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(String::from);
        (response.status(), content_type, String::from_utf8_lossy(response.body()).into_owned())
    }

    #[tokio::test]
    async fn healthz_is_ok_even_when_not_ready() {
        let flags = Flags::default();
        flags.0.lock().unwrap().push("index not synced");
        let routes = routes(flags, Arc::new(Registry::default()));
        let (status, _, body) = get(&routes, "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    }

    #[tokio::test]
    async fn readyz_lists_what_is_missing_until_nothing_is() {
        let flags = Flags::default();
        *flags.0.lock().unwrap() = vec!["certificates not loaded", "indexes not synced"];
        let routes = routes(flags.clone(), Arc::new(Registry::default()));
        let (status, _, body) = get(&routes, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not ready: certificates not loaded, indexes not synced\n");
        assert!(!flags.is_ready());
        flags.0.lock().unwrap().clear();
        assert!(flags.is_ready());
        let (status, _, body) = get(&routes, "/readyz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text_of_the_registry() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("placement_test_events", "Events seen by the test", counter.clone());
        counter.inc();
        let routes = routes(Flags::default(), Arc::new(registry));
        let (status, content_type, body) = get(&routes, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some(OPENMETRICS_CONTENT_TYPE));
        assert!(body.contains("placement_test_events_total 1\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[tokio::test]
    async fn other_paths_and_methods_are_not_served() {
        let routes = routes(Flags::default(), Arc::new(Registry::default()));
        assert_eq!(get(&routes, "/nope").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get(&routes, "/healthz/x").await.0, StatusCode::NOT_FOUND);
        let post = warp::test::request().method("POST").path("/healthz").reply(&routes).await;
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
