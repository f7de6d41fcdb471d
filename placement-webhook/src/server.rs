//! The webhook process: watches (live index, PodDistributions, ZoneBalancers), the HTTPS admission
//! listener, the plain-HTTP probe listener, certificate reload, reservation expiry, and a graceful stop.

use crate::admission::Admission;
use crate::decide::{Decider, RuleSource};
use crate::metrics::AdmissionMetrics;
use crate::probes::{self, Readiness};
use crate::serve::{ServeLimits, serve_plain, serve_tls_metered};
use crate::tls::{CertMetrics, CertReloader};
use kube::Api;
use placement_kube::crd::{PodDistribution, RebalancePolicy, ZoneBalancer};
use placement_kube::live::{self, Reflected, WatchOptions};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warp::Filter;

/// Upkeep ticks (50 ms) between two passes over the registered zone scopes.
const FORGET_SCOPES_EVERY: u64 = 200;

/// Everything `placement-webhook serve` is configured with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub probe_listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// How often the certificate files are checked for rotation.
    pub cert_reload_interval: Duration,
    /// The time budget of one admission; past it the pod is admitted unmutated.
    pub deadline: Duration,
    /// How long a reservation counts if its pod never appears.
    pub reservation_ttl: Duration,
    /// A watch failing for longer makes `/readyz` fail (see `placement_kube::live::WatchHealth`).
    pub watch_failing_limit: Duration,
    /// Largest AdmissionReview accepted.
    pub max_body_bytes: u64,
    /// Timeouts and caps of the admission listener: connections, requests in flight, body deadline,
    /// HTTP/2 streams and pings, header sizes.
    pub limits: ServeLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            probe_listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            tls_cert: PathBuf::from("/etc/placement/tls/tls.crt"),
            tls_key: PathBuf::from("/etc/placement/tls/tls.key"),
            cert_reload_interval: crate::tls::DEFAULT_RELOAD_INTERVAL,
            deadline: Duration::from_millis(1_500),
            reservation_ttl: Duration::from_secs(30),
            watch_failing_limit: Duration::from_secs(120),
            max_body_bytes: 3 << 20,
            limits: ServeLimits::default(),
        }
    }
}

/// PodDistributions and ZoneBalancers from reflector stores.
pub struct ReflectedRules {
    distributions: Reflected<PodDistribution>,
    zone_balancers: Reflected<ZoneBalancer>,
    rebalance_policies: Reflected<RebalancePolicy>,
}

impl ReflectedRules {
    pub fn spawn(client: kube::Client) -> Self {
        ReflectedRules {
            distributions: Reflected::spawn(Api::all(client.clone())),
            zone_balancers: Reflected::spawn(Api::all(client.clone())),
            rebalance_policies: Reflected::spawn(Api::all(client)),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.distributions.is_ready() && self.zone_balancers.is_ready() && self.rebalance_policies.is_ready()
    }
}

impl RuleSource for ReflectedRules {
    fn distributions(&self, namespace: &str) -> Vec<Arc<PodDistribution>> {
        let ns = Some(namespace);
        self.distributions.store().state().into_iter().filter(|o| o.metadata.namespace.as_deref() == ns).collect()
    }

    fn zone_balancers(&self, namespace: &str) -> Vec<Arc<ZoneBalancer>> {
        let ns = Some(namespace);
        self.zone_balancers.store().state().into_iter().filter(|o| o.metadata.namespace.as_deref() == ns).collect()
    }

    fn rebalance_policies(&self) -> Vec<Arc<RebalancePolicy>> {
        self.rebalance_policies.store().state()
    }
}

/// A bound, running webhook (for tests and the binary): its addresses, and how to stop it.
pub struct RunningServer {
    pub address: SocketAddr,
    pub probe_address: SocketAddr,
    pub admission: Arc<Admission>,
    pub readiness: Readiness,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _reload: AbortOnDrop,
}

impl RunningServer {
    /// Stops accepting, drains in-flight requests, and waits for the listeners to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

/// Errors that stop the webhook from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
}

/// Starts everything on `client`'s cluster.
pub async fn start(config: ServerConfig, client: kube::Client) -> Result<RunningServer, StartError> {
    let mut registry = Registry::default();
    let cert_metrics = CertMetrics::register(&mut registry);
    let admission_metrics = AdmissionMetrics::register(&mut registry);
    let shed_metrics = admission_metrics.shed().clone();
    let certs = Arc::new(CertReloader::load(&config.tls_cert, &config.tls_key)?.with_metrics(cert_metrics));
    let readiness = Readiness::new();
    readiness.set_certificates_loaded(true);

    let (index, watchers) = live::spawn(client.clone(), WatchOptions::default());
    registry.register_collector(Box::new(live::WatchHealthCollector::new(index.health().clone(), "placement_webhook")));
    let watch_failing_limit = config.watch_failing_limit;
    let client_for_strict = client.clone();
    let rules = Arc::new(ReflectedRules::spawn(client));
    let decider = Arc::new(Decider::new(index.clone(), rules.clone(), config.reservation_ttl));
    let admission =
        Arc::new(Admission::new(decider.clone(), admission_metrics, config.deadline).with_client(client_for_strict));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen { address: config.listen, source })?;
    let probe_listener = tokio::net::TcpListener::bind(config.probe_listen)
        .await
        .map_err(|source| StartError::Listen { address: config.probe_listen, source })?;
    let address = listener.local_addr().map_err(|source| StartError::Listen { address: config.listen, source })?;
    let probe_address =
        probe_listener.local_addr().map_err(|source| StartError::Listen { address: config.probe_listen, source })?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = Vec::new();
    // Readiness follows the watches; reservations whose pods never came expire; every 10 s the zone
    // scopes of deleted ZoneBalancers are unregistered.
    {
        let readiness = readiness.clone();
        let stop = until_stopped();
        tasks.push(tokio::spawn(async move {
            let _watchers = watchers;
            let upkeep = async {
                // Small steps: expiry is in time order, so a tick costs what is due, and 50 ms keeps the
                // time it holds the index's write lock short under a sustained load (docs/performance.md).
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                let mut ticks: u64 = 0;
                loop {
                    tick.tick().await;
                    readiness.set_indexes_synced(index.is_ready() && rules.is_ready());
                    let failing = index.health().failing_longer_than(watch_failing_limit, std::time::Instant::now());
                    readiness.set_watches_failing(!failing.is_empty());
                    let expired = decider.expire_reservations();
                    if expired > 0 {
                        tracing::debug!(expired, "reservations expired: their pods never appeared");
                    }
                    ticks += 1;
                    if ticks.is_multiple_of(FORGET_SCOPES_EVERY) {
                        let forgotten = decider.forget_unused_scopes();
                        if forgotten > 0 {
                            tracing::debug!(forgotten, "zone scopes of deleted ZoneBalancers unregistered");
                        }
                    }
                }
            };
            tokio::select! {
                _ = upkeep => {}
                _ = stop => {}
            }
        }));
    }
    let reload = AbortOnDrop(certs.clone().spawn_watcher(config.cert_reload_interval));
    let mutate = mutate_route(admission.clone(), config.max_body_bytes);
    let tls = Arc::new(certs.server_config());
    tasks.push(tokio::spawn(serve_tls_metered(listener, tls, mutate, until_stopped(), config.limits, shed_metrics)));
    let probe_routes = probes::routes(readiness.clone(), Arc::new(registry));
    tasks.push(tokio::spawn(serve_plain(probe_listener, probe_routes, until_stopped())));
    tracing::info!(%address, %probe_address, "placement webhook serving");
    Ok(RunningServer { address, probe_address, admission, readiness, stop, tasks, _reload: reload })
}

/// The certificate watcher loops forever: it stops when the server is dropped or shut down.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Largest body an admission is read and decided from on the runtime's worker; a larger one (a pod with
/// a large spec, or a hostile body up to the 3 MiB limit: about 10 ms to parse) goes to the blocking pool.
/// An AdmissionReview from the API server is a few KiB.
pub const INLINE_BODY_MAX: usize = 256 << 10;

/// `POST /mutate`: one AdmissionReview in, one out.
pub fn mutate_route(
    admission: Arc<Admission>,
    max_body_bytes: u64,
) -> impl Filter<Extract = (warp::http::Response<Vec<u8>>,), Error = warp::Rejection> + Clone {
    warp::post()
        .and(warp::path("mutate"))
        .and(warp::path::end())
        .and(warp::body::content_length_limit(max_body_bytes))
        .and(warp::body::bytes())
        .then(move |body: bytes::Bytes| {
            let admission = admission.clone();
            async move {
                // An admission of an ordinary body is decided right here, on the runtime's worker: reading
                // it and deciding take tens of microseconds, and a hand-off to another thread would cost
                // about as much again (docs/performance.md). What can take longer steps off the worker:
                // a table being built or a test hook (`Decider`'s expensive phase, through
                // `block_in_place`), a strict round (decided on the blocking pool, awaited here), and the
                // parsing of a body over `INLINE_BODY_MAX`, which goes to the blocking pool whole.
                let out = if body.len() <= INLINE_BODY_MAX {
                    admission.review_async(&body).await
                } else {
                    let handle = tokio::runtime::Handle::current();
                    let review = tokio::task::spawn_blocking(move || handle.block_on(admission.review_async(&body)));
                    review.await.unwrap_or_else(|e| {
                        tracing::error!(error = %e, "the admission task failed: answered with an empty body");
                        Vec::new()
                    })
                };
                warp::http::Response::builder()
                    .header("content-type", "application/json")
                    .body(out)
                    .unwrap_or_else(|_| warp::http::Response::new(Vec::new()))
            }
        })
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
