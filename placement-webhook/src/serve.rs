//! Our own accept loop: warp has no TLS, so its filters are served as a service through hyper-util over
//! tokio-rustls.
//!
//! Decisions, and why:
//! - **Protocol by ALPN.** After the handshake, `h2` gets an HTTP/2-only connection, everything else
//!   (`http/1.1` or no ALPN) HTTP/1.1. hyper-util's auto builder could sniff the preface instead, but
//!   while it sniffs no HTTP/1 header timeout runs, and ALPN already told us.
//! - **Every wait is bounded.** The TLS handshake has its own timeout; HTTP/1 waits for a request head
//!   at most `header_timeout` (hyper restarts that timer whenever it waits for the next head, so it also
//!   closes idle HTTP/1 keep-alive connections); a connection with no request in flight for
//!   `idle_timeout` is shut down gracefully (for HTTP/2 that is a GOAWAY). Body size is the filter's
//!   business (`warp::body::content_length_limit`).
//! - **One bad client never stops the loop.** Handshakes and connections run in their own tasks; a
//!   failed `accept` (say, out of file descriptors) is logged and retried after a short pause.
//! - **Graceful shutdown drains.** When `shutdown` resolves the listener is closed (new connections are
//!   refused), every connection is told to finish what it is doing and close, and we wait for them up to
//!   `drain_timeout`, after which the rest are cut. This is what hyper-util's `GracefulShutdown` does,
//!   written out here because it takes the connection away from us, and the idle timeout needs to call
//!   `graceful_shutdown` on it too.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use warp::{Filter, Reply};

/// Time limits of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// From TCP accept to a finished TLS handshake.
    pub handshake_timeout: Duration,
    /// HTTP/1: from waiting for a request head to having all of it.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// After shutdown starts, how long in-flight requests may take before connections are cut.
    pub drain_timeout: Duration,
}

impl Default for ServeLimits {
    /// The API server gives a webhook 10 s by default (30 s at most), so nothing legitimate needs longer
    /// than that to handshake or send headers; drain covers the longest admission timeout.
    fn default() -> Self {
        ServeLimits {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `filter` over TLS on `listener` until `shutdown` resolves, then drains (see module docs).
/// `tls` should offer ALPN `h2` and `http/1.1` (as [`CertReloader::server_config`] does).
///
/// [`CertReloader::server_config`]: crate::tls::CertReloader::server_config
pub async fn serve_tls<F>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    filter: F,
    shutdown: impl Future<Output = ()>,
    limits: ServeLimits,
) where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let acceptor = TlsAcceptor::from(tls);
    let http1 = Arc::new(builder(&limits).http1_only());
    let http2 = Arc::new(builder(&limits).http2_only());
    accept_loop(listener, shutdown, limits, move |tcp, peer, stop| {
        let (acceptor, filter, http1, http2) = (acceptor.clone(), filter.clone(), http1.clone(), http2.clone());
        async move {
            let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp));
            let tls = tokio::select! {
                result = handshake => match result {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, error = %err, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                () = stopped(stop.clone()) => return,
            };
            let builder = if tls.get_ref().1.alpn_protocol() == Some(b"h2") { http2 } else { http1 };
            drive(&builder, TokioIo::new(tls), filter, stop, limits.idle_timeout, peer).await;
        }
    })
    .await;
}

/// Serves `filter` over plain HTTP/1.1 (probes, metrics) with the default [`ServeLimits`].
pub async fn serve_plain<F>(listener: TcpListener, filter: F, shutdown: impl Future<Output = ()>)
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let limits = ServeLimits::default();
    let http1 = Arc::new(builder(&limits).http1_only());
    accept_loop(listener, shutdown, limits, move |tcp, peer, stop| {
        let (filter, http1) = (filter.clone(), http1.clone());
        async move { drive(&http1, TokioIo::new(tcp), filter, stop, limits.idle_timeout, peer).await }
    })
    .await;
}

fn builder(limits: &ServeLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Accepts until `shutdown`, runs `handle` per connection, then drains (see module docs).
async fn accept_loop<H, Fut>(listener: TcpListener, shutdown: impl Future<Output = ()>, limits: ServeLimits, handle: H)
where
    H: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(handle(tcp, peer, stop_rx.clone()));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(finished) = connections.join_next(), if !connections.is_empty() => log_join(finished),
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    tracing::info!(connections = connections.len(), "shutting down: draining connections");
    let drain = async {
        while let Some(finished) = connections.join_next().await {
            log_join(finished);
        }
    };
    if tokio::time::timeout(limits.drain_timeout, drain).await.is_err() {
        tracing::warn!(connections = connections.len(), "drain deadline passed; cutting the remaining connections");
        connections.shutdown().await;
    }
}

fn log_join(finished: Result<(), tokio::task::JoinError>) {
    if let Err(err) = finished {
        tracing::error!(error = %err, "connection task failed");
    }
}

/// Resolves once shutdown has started (or the accept loop is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Serves one connection until it ends, closing it gracefully on shutdown or when idle.
async fn drive<I, F>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    filter: F,
    stop: watch::Receiver<bool>,
    idle_timeout: Duration,
    peer: SocketAddr,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let activity = Arc::new(Activity::new());
    let warp_service = TowerToHyperService::new(warp::service(filter));
    let tracked = Arc::clone(&activity);
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let busy = tracked.begin();
        let response = warp_service.call(request);
        async move {
            let response: Result<_, Infallible> = response.await;
            drop(busy);
            response
        }
    });
    let mut connection = pin!(builder.serve_connection(io, service));
    let mut closing = false;
    loop {
        let idle_check = tokio::time::sleep_until(activity.idle_deadline(idle_timeout));
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            () = stopped(stop.clone()), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = idle_check, if !closing => {
                if Instant::now() >= activity.idle_deadline(idle_timeout) {
                    tracing::debug!(%peer, "closing idle connection");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Requests in flight on one connection, and when the last one started or ended.
struct Activity {
    state: Mutex<(usize, Instant)>,
}

/// Marks a request in flight until dropped.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Self {
        Activity { state: Mutex::new((0, Instant::now())) }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state = (state.0 + 1, Instant::now());
        Busy(Arc::clone(self))
    }

    /// When the connection counts as idle if nothing happens meanwhile; busy ones are looked at again
    /// one `idle_timeout` from now.
    fn idle_deadline(&self, idle_timeout: Duration) -> Instant {
        let (in_flight, last_change) = *self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if in_flight > 0 { Instant::now() + idle_timeout } else { last_change + idle_timeout }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state = (state.0 - 1, Instant::now());
    }
}
