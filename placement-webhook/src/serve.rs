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
//!   `idle_timeout` is shut down gracefully (for HTTP/2 that is a GOAWAY), and cut if it has not closed
//!   `header_timeout` later (a peer that never reads our writes). A request body must arrive within
//!   `body_timeout` of its head, else the request is answered `408` and, over HTTP/1, its connection
//!   closed (HTTP/2 resets only that stream). HTTP/2 peers are pinged when quiet and dropped when a ping
//!   goes unanswered. Body size is the filter's business (`warp::body::content_length_limit`).
//! - **Everything a client can make us hold is counted and capped.** Open connections (TLS handshakes
//!   included) are capped at `max_connections`: one beyond is closed right after `accept`, before any
//!   TLS work. Not accepting would leave it in the kernel's backlog, where the API server's connection
//!   would wait for its whole `timeoutSeconds`; closed, the API server fails open at once. Requests in
//!   flight (from their head to their answer, over all connections) are capped at `max_in_flight`, and
//!   the body bytes they announce (`Content-Length`) at `max_body_bytes_in_flight`: a request beyond
//!   either is answered `503` at once without reading its body (the API server then fails open). A body
//!   may not grow past what it announced (one without `Content-Length` may have none), so the bytes
//!   buffered for bodies never exceed that budget. HTTP/2 streams per connection and header sizes are
//!   capped too. What is shed is counted in
//!   [`ShedMetrics`] (`placement_webhook_shed_total{reason}`).
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
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use warp::{Filter, Reply};

use crate::peers::{Budget, HandshakePace, Held, PeerHold, PeerShares};
use crate::shed::{Shed, ShedMetrics};

/// Time and size limits of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// From TCP accept to a finished TLS handshake.
    pub handshake_timeout: Duration,
    /// HTTP/1: from waiting for a request head to having all of it.
    pub header_timeout: Duration,
    /// From a request's head to its last body byte; past it the request is answered `408`.
    pub body_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// After shutdown starts, how long in-flight requests may take before connections are cut.
    pub drain_timeout: Duration,
    /// Open connections (TLS handshakes included); one more is closed right after accept.
    pub max_connections: usize,
    /// Requests between their head and their answer, over all connections; one more gets `503`.
    pub max_in_flight: usize,
    /// Body bytes the requests in flight announce (`Content-Length`), in all; one that would go past it
    /// gets `503`.
    pub max_body_bytes_in_flight: u32,
    /// What one client address may hold of `max_connections`, `max_in_flight` and
    /// `max_body_bytes_in_flight` (see [`crate::peers`]); one beyond is shed as beyond the cap itself.
    pub max_connections_per_peer: usize,
    pub max_in_flight_per_peer: usize,
    pub max_body_bytes_per_peer: u32,
    /// TLS handshakes worked on at once; more wait (inside `handshake_timeout`) for one to finish.
    pub max_handshakes_in_flight: usize,
    /// TLS handshakes a suspect client address (one of whose connections the server closed unused) may
    /// start: a burst of `handshake_burst_per_peer`, then `handshakes_per_second_per_peer` (see
    /// [`crate::peers::HandshakePace`]). A connection that would wait longer than half of
    /// `handshake_timeout` for its turn is closed at once.
    pub handshakes_per_second_per_peer: u32,
    pub handshake_burst_per_peer: u32,
    /// HTTP/2: streams one connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2: a ping is sent after this long without a frame from the peer...
    pub http2_keep_alive_interval: Duration,
    /// ...and the connection dropped if its answer takes longer than this.
    pub http2_keep_alive_timeout: Duration,
    /// Largest request head: HTTP/1's read buffer (`max_buf_size`, at least 8 KiB) and HTTP/2's
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`.
    pub max_header_bytes: u32,
}

impl Default for ServeLimits {
    /// The API server gives a webhook 10 s by default (30 s at most; this project configures 3 s), so
    /// nothing legitimate needs longer than that to handshake or send headers; its AdmissionReview body
    /// follows its head at once, so 5 s for the body is generous and still cuts a slow sender well inside
    /// the API server's patience. Drain covers the longest admission timeout.
    ///
    /// The caps are sized for a pod with a 512 Mi memory limit, most of which the live index needs.
    /// Bodies in flight hold at most 64 MiB however hostile the senders (21 AdmissionReviews of the
    /// 3 MiB maximum, or thousands of honest ones of tens of KiB). 256 requests in flight is what bounds
    /// the rest (tasks, parsed reviews waiting for a strict round): about 10 are in flight at 10,000
    /// admissions/s of about a millisecond each, and a burst of 489 pod creates at once without a client
    /// rate limit, on two cores shared with the API server, peaked at 65 to 95 in the tests. An idle
    /// TLS connection costs about 50 KiB (rustls' buffers plus an HTTP/1 read buffer of at most
    /// `max_header_bytes`, or HTTP/2's state): 1,024 of them about 50 MiB. The API server multiplexes
    /// its calls over a few HTTP/2 connections (over HTTP/1.1 it opens one per concurrent call), so
    /// 1,024 leaves room for several API servers and a burst of HTTP/1.1 calls.
    ///
    /// One client address may hold half of each of those three ([`crate::peers`]): far more than the
    /// API server needs, and a hostile pod can never take the rest. TLS handshakes are worked on 8 at a
    /// time: each costs a fraction of a millisecond of CPU with an ECDSA key (a few with RSA), and a
    /// thousand connections opened at once would otherwise put a thousand handshakes on the runtime's
    /// two workers ahead of the admissions (docs/performance.md). An address that left a connection
    /// unused until the header timeout (an idle-connection flood does; an API server never does) starts
    /// 8 at once, then 100 a second, for a minute: about 1.5 % of a core.
    fn default() -> Self {
        ServeLimits {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
            drain_timeout: Duration::from_secs(30),
            max_connections: 1_024,
            max_in_flight: 256,
            max_body_bytes_in_flight: 64 << 20,
            max_connections_per_peer: 512,
            max_in_flight_per_peer: 128,
            max_body_bytes_per_peer: 32 << 20,
            max_handshakes_in_flight: 8,
            handshakes_per_second_per_peer: 100,
            handshake_burst_per_peer: 8,
            http2_max_concurrent_streams: 32,
            http2_keep_alive_interval: Duration::from_secs(20),
            http2_keep_alive_timeout: Duration::from_secs(10),
            max_header_bytes: 16 << 10,
        }
    }
}

/// Serves `filter` over TLS on `listener` until `shutdown` resolves, then drains (see module docs).
/// `tls` should offer ALPN `h2` and `http/1.1` (as [`CertReloader::server_config`] does). What is shed
/// is counted in a [`ShedMetrics`] registered nowhere; [`serve_tls_metered`] takes one.
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
    serve_tls_metered(listener, tls, filter, shutdown, limits, ShedMetrics::default()).await;
}

/// [`serve_tls`], counting what it sheds, its open connections and its requests in flight in `metrics`.
pub async fn serve_tls_metered<F>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    filter: F,
    shutdown: impl Future<Output = ()>,
    limits: ServeLimits,
    metrics: ShedMetrics,
) where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let acceptor = TlsAcceptor::from(tls);
    let http1 = Arc::new(builder(&limits).http1_only());
    let http2 = Arc::new(builder(&limits).http2_only());
    let shared = Shared::new(limits, metrics);
    accept_loop(listener, shutdown, shared.clone(), move |tcp, peer, stop| {
        let (acceptor, filter, http1, http2) = (acceptor.clone(), filter.clone(), http1.clone(), http2.clone());
        let shared = shared.clone();
        async move {
            let patience = limits.handshake_timeout / 2;
            let Some(turn) = shared.pace.wait(peer.ip(), std::time::Instant::now(), patience) else {
                shared.metrics.shed(Shed::HandshakesPerPeer);
                tracing::debug!(%peer, "handshake pace of this address exceeded: closed");
                return;
            };
            // The waits for this address's turn and for a handshake slot count in the handshake's time.
            let handshake = tokio::time::timeout(limits.handshake_timeout, async {
                tokio::time::sleep(turn).await;
                let _slot = shared.handshakes.acquire().await;
                acceptor.accept(tcp).await
            });
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
            drive(&builder, TokioIo::new(tls), filter, stop, &shared, peer).await;
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
    let shared = Shared::new(limits, ShedMetrics::default());
    accept_loop(listener, shutdown, shared.clone(), move |tcp, peer, stop| {
        let (filter, http1, shared) = (filter.clone(), http1.clone(), shared.clone());
        async move { drive(&http1, TokioIo::new(tcp), filter, stop, &shared, peer).await }
    })
    .await;
}

fn builder(limits: &ServeLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        // hyper's floor is 8 KiB; its default, about 400 KiB per connection, is far more than a head needs.
        .max_buf_size((limits.max_header_bytes as usize).max(8 << 10));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .keep_alive_interval(limits.http2_keep_alive_interval)
        .keep_alive_timeout(limits.http2_keep_alive_timeout)
        .max_header_list_size(limits.max_header_bytes);
    builder
}

/// What every connection of one listener shares: its limits, the caps, each client's share of them, the
/// metrics.
#[derive(Clone)]
struct Shared {
    limits: ServeLimits,
    in_flight: Arc<Semaphore>,
    /// One permit per body byte announced.
    body_bytes: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
    pace: Arc<HandshakePace>,
    peers: Arc<PeerShares>,
    metrics: ShedMetrics,
}

impl Shared {
    fn new(limits: ServeLimits, metrics: ShedMetrics) -> Self {
        let in_flight = Arc::new(Semaphore::new(limits.max_in_flight.min(Semaphore::MAX_PERMITS)));
        let body_bytes =
            Arc::new(Semaphore::new((limits.max_body_bytes_in_flight as usize).min(Semaphore::MAX_PERMITS)));
        let handshakes = Arc::new(Semaphore::new(limits.max_handshakes_in_flight.clamp(1, Semaphore::MAX_PERMITS)));
        let peers = PeerShares::new(Held {
            connections: limits.max_connections_per_peer as u64,
            in_flight: limits.max_in_flight_per_peer as u64,
            body_bytes: u64::from(limits.max_body_bytes_per_peer),
        });
        let pace = Arc::new(HandshakePace::new(limits.handshakes_per_second_per_peer, limits.handshake_burst_per_peer));
        Shared { limits, in_flight, body_bytes, handshakes, pace, peers, metrics }
    }
}

/// Accepts until `shutdown`, runs `handle` per connection (at most `max_connections` at once), then
/// drains (see module docs).
async fn accept_loop<H, Fut>(listener: TcpListener, shutdown: impl Future<Output = ()>, shared: Shared, handle: H)
where
    H: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limits = shared.limits;
    let open = Arc::new(Semaphore::new(limits.max_connections.min(Semaphore::MAX_PERMITS)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let taken = open.clone().try_acquire_owned().map_err(|_| Shed::Connections).and_then(|permit| {
                        let share = shared.peers.try_take(peer.ip(), Budget::Connections, 1);
                        Ok((permit, share.ok_or(Shed::ConnectionsPerPeer)?))
                    });
                    let (permit, share) = match taken {
                        Ok(taken) => taken,
                        Err(why) => {
                            // Closed before any TLS work: the client sees the connection end at once.
                            shared.metrics.shed(why);
                            tracing::debug!(%peer, reason = why.as_str(), "connection cap reached: closed");
                            drop(tcp);
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let open = Counted::new(permit, shared.metrics.connections().clone());
                    let connection = handle(tcp, peer, stop_rx.clone());
                    connections.spawn(async move {
                        connection.await;
                        drop((open, share));
                    });
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

/// A permit of a cap, reflected in a gauge while held.
struct Counted {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Counted {
    fn new(permit: OwnedSemaphorePermit, gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Counted { _permit: permit, gauge }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.gauge.dec();
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
    shared: &Shared,
    peer: SocketAddr,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let idle_timeout = shared.limits.idle_timeout;
    let activity = Arc::new(Activity::new());
    let warp_service = TowerToHyperService::new(warp::service(filter));
    let tracked = Arc::clone(&activity);
    let opened = Instant::now();
    let pace = Arc::clone(&shared.pace);
    let header_timeout = shared.limits.header_timeout;
    let shared = shared.clone();
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let busy = tracked.begin();
        let http1 = request.version() < http::Version::HTTP_2;
        let metrics = shared.metrics.clone();
        let expired = Arc::new(AtomicBool::new(false));
        let response = admit(&shared, &request, peer).map(|permit| {
            let (announced, timeout) = (permit.announced, shared.limits.body_timeout);
            let request = request.map(|body| DeadlineBody::new(body, announced, timeout, expired.clone()));
            (warp_service.call(request), permit)
        });
        async move {
            let response = match response {
                Ok((response, permit)) => {
                    let response: Result<_, Infallible> = response.await;
                    drop(permit);
                    if expired.load(Ordering::Relaxed) {
                        metrics.shed(Shed::BodyDeadline);
                        tracing::debug!(%peer, "request body too slow: answered 408");
                        refusal(http::StatusCode::REQUEST_TIMEOUT, "request body too slow\n", http1)
                    } else {
                        response?
                    }
                }
                Err(why) => {
                    // Not even the body is read: hyper drains it if it is already here, else closes.
                    metrics.shed(why);
                    tracing::debug!(%peer, reason = why.as_str(), "in-flight cap reached: answered 503");
                    refusal(http::StatusCode::SERVICE_UNAVAILABLE, over_the_cap(why), false)
                }
            };
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let mut connection = pin!(builder.serve_connection(io, service));
    // Set once a graceful close has started for idleness: past it the connection is cut.
    let mut cut_at: Option<Instant> = None;
    let mut closing = false;
    loop {
        let idle_check = tokio::time::sleep_until(activity.idle_deadline(idle_timeout));
        let cut = async {
            match cut_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                // Never a request, and open until the server gave up on it: its address is suspect.
                if !activity.ever_busy() && opened.elapsed() >= header_timeout {
                    pace.suspect(peer.ip(), std::time::Instant::now());
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
                    cut_at = Some(Instant::now() + header_timeout);
                }
            }
            () = cut => {
                tracing::debug!(%peer, "idle connection did not close: cut");
                return;
            }
        }
    }
}

/// A request's place under the in-flight caps and its client's shares of them, held until it is answered.
struct Admitted {
    _request: Counted,
    _request_share: PeerHold,
    _body_bytes: Option<(OwnedSemaphorePermit, PeerHold)>,
    /// The body bytes announced, and so allowed.
    announced: u64,
}

/// Takes a place for `request` under both in-flight caps and `peer`'s shares of them, or says which one
/// is full.
fn admit(shared: &Shared, request: &hyper::Request<Incoming>, peer: SocketAddr) -> Result<Admitted, Shed> {
    let request_permit = shared.in_flight.clone().try_acquire_owned().map_err(|_| Shed::InFlight)?;
    let request_share = shared.peers.try_take(peer.ip(), Budget::InFlight, 1).ok_or(Shed::InFlightPerPeer)?;
    let counted = Counted::new(request_permit, shared.metrics.in_flight().clone());
    // Without a Content-Length (HTTP/1 chunked, or HTTP/2 without the header) a body may have no bytes.
    let announced = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let body_bytes = match announced {
        0 => None,
        // More than the whole budget can never fit: refused like a full budget.
        n => {
            let permit = u32::try_from(n)
                .ok()
                .and_then(|n| shared.body_bytes.clone().try_acquire_many_owned(n).ok())
                .ok_or(Shed::BodyBytes)?;
            let share = shared.peers.try_take(peer.ip(), Budget::BodyBytes, n).ok_or(Shed::BodyBytesPerPeer)?;
            Some((permit, share))
        }
    };
    Ok(Admitted { _request: counted, _request_share: request_share, _body_bytes: body_bytes, announced })
}

/// The body of a `503`: which bound the request was over.
fn over_the_cap(why: Shed) -> &'static str {
    match why {
        Shed::BodyBytes => "too many request body bytes in flight\n",
        Shed::InFlightPerPeer => "too many requests in flight from this address\n",
        Shed::BodyBytesPerPeer => "too many request body bytes in flight from this address\n",
        _ => "too many requests in flight\n",
    }
}

/// An answer of the serving layer itself; over HTTP/1 with `close`, the connection ends after it.
fn refusal(status: http::StatusCode, text: &'static str, close: bool) -> warp::reply::Response {
    let mut response = warp::reply::with_status(text, status).into_response();
    if close {
        response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    response
}

/// A request body that must end by a deadline set when its head arrived, and may not be longer than it
/// announced; past either, it ends in an error (so the filter reading it gives up) and lets go of the
/// connection's body.
struct DeadlineBody {
    inner: Option<Incoming>,
    /// Bytes it may still bring.
    allowed: u64,
    deadline: Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    expired: Arc<AtomicBool>,
}

/// The error a [`DeadlineBody`] ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTooSlow;

/// The error a [`DeadlineBody`] longer than announced ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body is longer than its Content-Length")]
struct BodyTooLong;

impl DeadlineBody {
    fn new(inner: Incoming, announced: u64, timeout: Duration, expired: Arc<AtomicBool>) -> Self {
        DeadlineBody {
            inner: Some(inner),
            allowed: announced,
            deadline: Instant::now() + timeout,
            sleep: None,
            expired,
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Some(Err(BodyTooSlow.into())));
        };
        if !inner.is_end_stream() {
            let deadline = this.deadline;
            let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if sleep.as_mut().poll(cx).is_ready() {
                this.inner = None;
                this.expired.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(BodyTooSlow.into())));
            }
        }
        let frame = ready!(Pin::new(inner).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref))
            && let Some(data) = data
        {
            match this.allowed.checked_sub(data.len() as u64) {
                Some(left) => this.allowed = left,
                None => {
                    this.inner = None;
                    return Poll::Ready(Some(Err(BodyTooLong.into())));
                }
            }
        }
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_some_and(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(Body::size_hint).unwrap_or_default()
    }
}

/// Requests in flight on one connection, and when the last one started or ended.
struct Activity {
    state: Mutex<(usize, Instant)>,
    ever: AtomicBool,
}

/// Marks a request in flight until dropped.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Self {
        Activity { state: Mutex::new((0, Instant::now())), ever: AtomicBool::new(false) }
    }

    /// Whether a request was ever in flight on the connection.
    fn ever_busy(&self) -> bool {
        self.ever.load(Ordering::Relaxed)
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.ever.store(true, Ordering::Relaxed);
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
