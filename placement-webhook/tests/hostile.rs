//! Hostile and broken clients are shed, and honest admissions go on meanwhile: the real webhook
//! (`server::start` against the fake API server) over real TLS on 127.0.0.1, with small limits so that
//! each bound is reached with a handful of connections. Time bounds are generous ("within the deadline
//! plus 5 s"); the assertions are on what happened (status codes, closed connections, metrics).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Pod;
use placement_kube::crd::PodDistribution;
use placement_kube::live::{LiveIndex, SharedIndex};
use placement_testkit::{FakeApiServer, Fault, Verb};
use placement_webhook::decide::{Candidate, DecideError, Decider, StaticRules};
use placement_webhook::metrics::AdmissionMetrics;
use placement_webhook::server::{RunningServer, ServerConfig};
use placement_webhook::shed::Shed;
use placement_webhook::strict::{StrictLimits, StrictMode};
use prometheus_client::registry::Registry;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

mod common;
use common::{certificates, start_webhook};

/// Every test is bounded in time.
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future).await.expect("test took too long")
}

/// Polls `check` every 50 ms until it holds, for at most 10 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < until, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- the webhook and its clients -----------------------------------------------------------------------

struct Setup {
    webhook: RunningServer,
    cert_pem: String,
    _fake: FakeApiServer,
    _certs: tempfile::TempDir,
}

async fn setup(tune: impl FnOnce(&mut ServerConfig)) -> Setup {
    let fake = FakeApiServer::start().await.unwrap();
    for crd in placement_kube::crd::all_crds() {
        fake.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    let (certs, cert_pem) = certificates();
    let webhook = start_webhook(&fake, certs.path(), tune).await;
    Setup { webhook, cert_pem, _fake: fake, _certs: certs }
}

impl Setup {
    fn addr(&self) -> SocketAddr {
        self.webhook.address
    }

    fn connector(&self, alpn: &[u8]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(self.cert_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    async fn try_tls(&self, alpn: &[u8]) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr()).await?;
        self.connector(alpn).connect(ServerName::try_from("localhost").unwrap(), tcp).await
    }

    async fn tls(&self, alpn: &[u8]) -> TlsStream<TcpStream> {
        self.try_tls(alpn).await.unwrap()
    }

    /// A TLS connection from another client address: the hostile pod beside the API server.
    async fn try_tls_from(&self, source: std::net::IpAddr) -> std::io::Result<TlsStream<TcpStream>> {
        tls_from(self.connector(b"http/1.1"), self.addr(), source).await
    }

    /// An HTTP/2 connection (hyper's client), for several streams at once.
    async fn h2(&self) -> hyper::client::conn::http2::SendRequest<SlowBody> {
        let tls = self.tls(b"h2").await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        sender
    }

    /// One honest admission on a new HTTP/1.1 connection: its status and body, or the error.
    async fn try_admit(&self, uid: &str) -> Result<(http::StatusCode, String), String> {
        let tls = self.try_tls(b"http/1.1").await.map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let body = review(uid);
        let request = http::Request::post("https://localhost/mutate")
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// An honest admission that must be answered with a review for it.
    async fn admit(&self, uid: &str) {
        let (status, body) = self.try_admit(uid).await.expect("an honest admission is answered");
        assert_eq!(status, http::StatusCode::OK, "{body}");
        let review: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(review["response"]["uid"], uid, "{body}");
        assert_eq!(review["response"]["allowed"], true, "{body}");
    }

    /// The probe listener's `/metrics`.
    async fn metrics(&self) -> String {
        let mut stream = TcpStream::connect(self.webhook.probe_address).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn metric(&self, series: &str) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse::<f64>().ok()))
            .unwrap_or_else(|| panic!("no {series} in {text}")) as u64
    }

    async fn shed(&self, why: Shed) -> u64 {
        self.metric(&format!("placement_webhook_shed_total{{reason=\"{}\"}}", why.as_str())).await
    }

    async fn in_flight(&self) -> u64 {
        self.metric("placement_webhook_requests_in_flight").await
    }
}

/// A pod CREATE review no rule applies to: answered `allowed`, unmutated.
fn review(uid: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "default", "operation": "CREATE",
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lone", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "app"}]}}}}))
    .unwrap()
}

/// The head of `POST /mutate` announcing `length` body bytes.
fn head(length: usize) -> String {
    format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    )
}

/// Reads until the peer closes (EOF or an error, such as a close without `close_notify`).
async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// A request body (one the test feeds by hand, or a whole one).
type SlowBody = BoxBody<Bytes, std::convert::Infallible>;

fn slow_body() -> (futures::channel::mpsc::Sender<Result<Frame<Bytes>, std::convert::Infallible>>, SlowBody) {
    let (tx, rx) = futures::channel::mpsc::channel(16);
    (tx, StreamBody::new(rx).boxed())
}

fn slow_request(length: usize, body: SlowBody) -> http::Request<SlowBody> {
    http::Request::post("https://localhost/mutate")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, length)
        .body(body)
        .unwrap()
}

fn honest_h2_request(uid: &str) -> http::Request<SlowBody> {
    let body = review(uid);
    let (mut tx, rx) = slow_body();
    let length = body.len();
    tx.try_send(Ok(Frame::data(Bytes::from(body)))).unwrap();
    drop(tx);
    slow_request(length, rx)
}

async fn send_h2(
    sender: &mut hyper::client::conn::http2::SendRequest<SlowBody>,
    request: http::Request<SlowBody>,
) -> (http::StatusCode, String) {
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A TLS connection to `addr` from the client address `source` (owned arguments, so it can be spawned).
async fn tls_from(
    connector: tokio_rustls::TlsConnector,
    addr: SocketAddr,
    source: std::net::IpAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let tcp = socket.connect(addr).await?;
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

// ---- the serving layer ---------------------------------------------------------------------------------

/// The slow loris of issue 15: a head announcing 3,000,000 bytes, then a byte now and then. The body
/// deadline answers it `408` and closes the connection; an honest admission on another connection is
/// answered meanwhile.
#[tokio::test]
async fn a_slow_loris_body_is_cut_at_the_deadline_while_honest_admissions_go_on() {
    bounded(async {
        let deadline = Duration::from_secs(2);
        let s = setup(|c| c.limits.body_timeout = deadline).await;
        let mut loris = s.tls(b"http/1.1").await;
        let started = Instant::now();
        loris.write_all(head(3_000_000).as_bytes()).await.unwrap();
        loris.write_all(b"{").await.unwrap();
        let (mut read, mut write) = tokio::io::split(loris);
        let trickle = tokio::spawn(async move {
            while write.write_all(b" ").await.is_ok() && write.flush().await.is_ok() {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });

        s.admit("honest-meanwhile").await;

        let answer = tokio::time::timeout(deadline + Duration::from_secs(5), read_until_closed(&mut read))
            .await
            .expect("the slow connection is closed within the deadline + 5 s");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(started.elapsed() >= deadline, "not before the deadline: {:?}", started.elapsed());
        trickle.abort();
        assert_eq!(s.shed(Shed::BodyDeadline).await, 1);
        s.admit("honest-after").await;
        s.webhook.shutdown().await;
    })
    .await;
}

/// Over HTTP/2 the deadline resets only the slow stream: the connection keeps serving other streams.
#[tokio::test]
async fn an_http2_stream_with_a_slow_body_is_cut_and_its_connection_keeps_serving() {
    bounded(async {
        let deadline = Duration::from_secs(2);
        let s = setup(|c| c.limits.body_timeout = deadline).await;
        let mut h2 = s.h2().await;
        let (mut trickle, body) = slow_body();
        trickle.try_send(Ok(Frame::data(Bytes::from_static(b"{")))).unwrap();
        let slow = tokio::spawn({
            let mut h2 = h2.clone();
            async move { send_h2(&mut h2, slow_request(3_000_000, body)).await }
        });
        let (status, body) = send_h2(&mut h2, honest_h2_request("h2-meanwhile")).await;
        assert_eq!(status, http::StatusCode::OK, "{body}");

        let (status, _) = tokio::time::timeout(deadline + Duration::from_secs(5), slow)
            .await
            .expect("the slow stream is answered within the deadline + 5 s")
            .unwrap();
        assert_eq!(status, http::StatusCode::REQUEST_TIMEOUT);
        let (status, body) = send_h2(&mut h2, honest_h2_request("h2-after")).await;
        assert_eq!(status, http::StatusCode::OK, "the same connection still serves: {body}");
        assert_eq!(s.shed(Shed::BodyDeadline).await, 1);
        drop(trickle);
        s.webhook.shutdown().await;
    })
    .await;
}

/// Beyond the connection cap a new connection is closed before its TLS handshake; once the hogs go,
/// honest admissions are served again. The probe listener is not affected.
#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_honest_traffic_resumes_after() {
    bounded(async {
        let s = setup(|c| c.limits.max_connections = 4).await;
        let mut hogs = Vec::new();
        for _ in 0..4 {
            hogs.push(s.tls(b"http/1.1").await);
        }
        assert_eq!(s.metric("placement_webhook_connections").await, 4);
        for _ in 0..3 {
            assert!(s.try_tls(b"http/1.1").await.is_err(), "a fifth connection gets no TLS handshake");
        }
        assert!(s.try_admit("over-the-cap").await.is_err());
        assert!(s.shed(Shed::Connections).await >= 4);

        drop(hogs);
        eventually("an honest admission is served again", async || s.try_admit("after").await.is_ok()).await;
        s.admit("after-again").await;
        s.webhook.shutdown().await;
    })
    .await;
}

/// Beyond the in-flight cap a request is answered `503` at once, its body unread (here it never comes):
/// the API server fails open on it instead of waiting.
#[tokio::test]
async fn requests_beyond_the_in_flight_cap_get_503_at_once() {
    bounded(async {
        let s = setup(|c| {
            c.limits.max_in_flight = 2;
            c.limits.body_timeout = Duration::from_secs(30);
        })
        .await;
        // Two requests whose bodies stall: in flight until they are dropped.
        let mut stalled = Vec::new();
        for _ in 0..2 {
            let mut tls = s.tls(b"http/1.1").await;
            tls.write_all(head(1_000).as_bytes()).await.unwrap();
            tls.write_all(b"{").await.unwrap();
            stalled.push(tls);
        }
        eventually("two requests in flight", async || s.in_flight().await == 2).await;

        // A third, with only its head sent: answered 503 without waiting for a body.
        let mut third = s.tls(b"http/1.1").await;
        third.write_all(head(1_000).as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), third.read_exact(&mut answer))
            .await
            .expect("answered long before the 30 s body deadline")
            .unwrap();
        assert_eq!(&answer, b"HTTP/1.1 503");
        let (status, _) = s.try_admit("over-the-cap").await.unwrap();
        assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(s.shed(Shed::InFlight).await, 2);

        drop(stalled);
        eventually("the stalled requests are gone", async || s.in_flight().await == 0).await;
        s.admit("after").await;
        s.webhook.shutdown().await;
    })
    .await;
}

/// The bodies in flight are bounded in bytes too: a request whose announced body does not fit in what
/// is left is answered `503` at once, while a small one still fits.
#[tokio::test]
async fn requests_beyond_the_body_bytes_in_flight_get_503_at_once() {
    bounded(async {
        let s = setup(|c| {
            c.limits.max_body_bytes_in_flight = 4_000;
            c.limits.body_timeout = Duration::from_secs(30);
        })
        .await;
        let mut stalled = s.tls(b"http/1.1").await;
        stalled.write_all(head(3_000).as_bytes()).await.unwrap();
        stalled.write_all(b"{").await.unwrap();
        eventually("the stalled request is in flight", async || s.in_flight().await == 1).await;

        let mut big = s.tls(b"http/1.1").await;
        big.write_all(head(3_000).as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), big.read_exact(&mut answer))
            .await
            .expect("answered long before the 30 s body deadline")
            .unwrap();
        assert_eq!(&answer, b"HTTP/1.1 503");
        assert_eq!(s.shed(Shed::BodyBytes).await, 1);
        assert!(review("small").len() < 1_000);
        s.admit("small").await;
        drop(stalled);
        s.webhook.shutdown().await;
    })
    .await;
}

/// Another address on the loopback network, for a second client.
const HOSTILE: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// A stalled request from `HOSTILE` announcing `length` body bytes, once it is in flight; or its answer
/// when it was refused at once.
async fn stall_from(s: &Setup, length: usize) -> Result<TlsStream<TcpStream>, Vec<u8>> {
    let mut tls = s.try_tls_from(HOSTILE).await.expect("a connection from the hostile address");
    tls.write_all(head(length).as_bytes()).await.unwrap();
    tls.write_all(b"{").await.unwrap();
    let mut answer = vec![0u8; 12];
    match tokio::time::timeout(Duration::from_millis(500), tls.read_exact(&mut answer)).await {
        Err(_) => Ok(tls),
        Ok(_) => Err(answer),
    }
}

/// One client address gets only its share of each budget: at the share its connections, requests and
/// body bytes are held, one past it is shed (and counted as such), and another address (the API server)
/// is served all along, although the caps themselves are not reached.
#[tokio::test]
async fn one_address_holds_only_its_share_and_another_is_served_meanwhile() {
    bounded(async {
        let s = setup(|c| {
            c.limits.max_connections_per_peer = 3;
            c.limits.max_in_flight_per_peer = 2;
            c.limits.max_body_bytes_per_peer = 5_000;
            c.limits.body_timeout = Duration::from_secs(30);
        })
        .await;
        // Body bytes: 2,500 + 2,500 is the share; the in-flight share (2) is reached at the same time.
        let first = stall_from(&s, 2_500).await.expect("at the share: held");
        let second = stall_from(&s, 2_500).await.expect("at the share: held");
        eventually("two hostile requests in flight", async || s.in_flight().await == 2).await;
        // A third connection is the connection share; its request is one past the in-flight share.
        let third = stall_from(&s, 1).await.expect_err("one past the in-flight share: refused at once");
        assert_eq!(&third, b"HTTP/1.1 503");
        assert_eq!(s.shed(Shed::InFlightPerPeer).await, 1);
        // A fourth connection is one past the connection share: closed before its handshake.
        let mut holders = Vec::new();
        eventually("the refused connection is closed", async || s.metric("placement_webhook_connections").await == 2)
            .await;
        holders.push(s.try_tls_from(HOSTILE).await.expect("the third connection"));
        assert!(s.try_tls_from(HOSTILE).await.is_err(), "one past the connection share");
        assert_eq!(s.shed(Shed::ConnectionsPerPeer).await, 1);
        // The API server's address is served all along.
        s.admit("honest-while-shares-are-full").await;

        // Body bytes alone: with one request given back, 2,500 more is one past the share of 5,000.
        drop(second);
        drop(holders);
        eventually("one hostile request in flight", async || s.in_flight().await == 1).await;
        let over = stall_from(&s, 2_501).await.expect_err("one byte past the body-bytes share");
        assert_eq!(&over, b"HTTP/1.1 503");
        assert_eq!(s.shed(Shed::BodyBytesPerPeer).await, 1);
        let at = stall_from(&s, 2_500).await.expect("exactly the share: held");
        s.admit("honest-after").await;
        assert_eq!(s.shed(Shed::BodyBytes).await + s.shed(Shed::InFlight).await + s.shed(Shed::Connections).await, 0);
        drop((first, at));
        s.webhook.shutdown().await;
    })
    .await;
}

/// TLS handshakes are worked on a few at a time: with one slot, a client that stalls its handshake
/// holds it, the next waits, and gets its handshake once the stalled one times out.
#[tokio::test]
async fn handshakes_beyond_the_limit_wait_for_a_slot() {
    bounded(async {
        let s = setup(|c| {
            c.limits.max_handshakes_in_flight = 1;
            c.limits.handshake_timeout = Duration::from_secs(2);
        })
        .await;
        // A TCP connection that starts a handshake (a partial ClientHello) and never finishes it.
        let mut stalled = TcpStream::connect(s.addr()).await.unwrap();
        stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let waited = s.try_tls(b"http/1.1").await;
        let took = started.elapsed();
        println!("a handshake behind a stalled one took {took:?}");
        // The second handshake's own clock ran while it waited, so it may time out itself; either way it
        // did not run beside the stalled one.
        assert!(took >= Duration::from_millis(1_500), "it waited for the slot: {took:?}");
        drop(waited);
        drop(stalled);
        s.admit("after").await;
        s.webhook.shutdown().await;
    })
    .await;
}

/// An address that left a connection unused until the header timeout is suspect: it starts its burst
/// of handshakes at once, then waits its turn at its pace; a connection whose turn is past half the
/// handshake timeout is closed at once. Before that, and for another address, nothing is paced.
#[tokio::test]
async fn a_suspect_address_starts_handshakes_at_its_pace() {
    bounded(async {
        let s = setup(|c| {
            c.limits.handshake_burst_per_peer = 2;
            c.limits.handshakes_per_second_per_peer = 1;
            c.limits.handshake_timeout = Duration::from_secs(3);
            c.limits.header_timeout = Duration::from_secs(1);
        })
        .await;
        // Not suspect yet: five handshakes at once (the pace would allow two).
        let unpaced = Instant::now();
        let mut five = Vec::new();
        for _ in 0..5 {
            five.push(s.try_tls_from(HOSTILE).await.unwrap());
        }
        assert!(unpaced.elapsed() < Duration::from_millis(900), "not paced: {:?}", unpaced.elapsed());
        // They send nothing: the header timeout closes them, and the address becomes suspect.
        for mut unused in five {
            tokio::time::timeout(Duration::from_secs(5), read_until_closed(&mut unused)).await.expect("closed");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let burst = [s.try_tls_from(HOSTILE).await.unwrap(), s.try_tls_from(HOSTILE).await.unwrap()];
        assert!(started.elapsed() < Duration::from_millis(900), "the burst at once: {:?}", started.elapsed());
        let third = tokio::spawn({
            let pending = tls_from(s.connector(b"http/1.1"), s.addr(), HOSTILE);
            async move { (pending.await.is_ok(), started.elapsed()) }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Its turn would come past 1.5 s (half of 3 s) from now: closed before any TLS work.
        let refused = Instant::now();
        assert!(s.try_tls_from(HOSTILE).await.is_err(), "past its patience");
        assert!(refused.elapsed() < Duration::from_millis(900), "closed at once: {:?}", refused.elapsed());
        assert_eq!(s.shed(Shed::HandshakesPerPeer).await, 1);
        // The API server's address is not held up.
        let honest = Instant::now();
        s.admit("honest-meanwhile").await;
        assert!(honest.elapsed() < Duration::from_millis(900), "{:?}", honest.elapsed());
        let (ok, took) = third.await.unwrap();
        assert!(ok, "the third handshake gets its turn");
        assert!(took >= Duration::from_millis(900), "a second after the burst: {took:?}");
        drop(burst);
        s.webhook.shutdown().await;
    })
    .await;
}

/// HTTP/2: one connection gets at most `http2_max_concurrent_streams` streams; a client that respects
/// the setting (hyper's, the API server's Go client) waits for one to end before it opens another.
#[tokio::test]
async fn http2_streams_beyond_the_limit_wait_for_a_free_one() {
    bounded(async {
        let s = setup(|c| {
            c.limits.http2_max_concurrent_streams = 2;
            c.limits.body_timeout = Duration::from_secs(30);
        })
        .await;
        let mut h2 = s.h2().await;
        // Let the server's SETTINGS arrive before the streams are opened.
        let (status, _) = send_h2(&mut h2, honest_h2_request("h2-first")).await;
        assert_eq!(status, http::StatusCode::OK);
        let mut feeds = Vec::new();
        let mut slow = Vec::new();
        for _ in 0..2 {
            let (mut tx, body) = slow_body();
            tx.try_send(Ok(Frame::data(Bytes::from_static(b"{")))).unwrap();
            feeds.push(tx);
            let mut h2 = h2.clone();
            slow.push(tokio::spawn(async move { send_h2(&mut h2, slow_request(1_000, body)).await }));
        }
        eventually("two streams in flight", async || s.in_flight().await == 2).await;

        // (Bodiless, so that only the stream limit is in its way.)
        let third = tokio::spawn({
            let mut h2 = h2.clone();
            let request = http::Request::get("https://localhost/mutate").body(Empty::new().boxed()).unwrap();
            async move { send_h2(&mut h2, request).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!third.is_finished(), "a third stream was opened beyond the limit");
        assert_eq!(s.in_flight().await, 2);

        // One stream ends (its body completes; it is no review, so it is answered as malformed)...
        let mut feed = feeds.remove(0);
        let rest = format!("{}}}", " ".repeat(998));
        futures::SinkExt::send(&mut feed, Ok(Frame::data(Bytes::from(rest)))).await.unwrap();
        drop(feed); // END_STREAM
        let (status, _) = slow.remove(0).await.unwrap();
        assert_eq!(status, http::StatusCode::OK);
        // ...and the third gets its turn (a GET: 405 from the route).
        let (status, body) = tokio::time::timeout(Duration::from_secs(10), third).await.unwrap().unwrap();
        assert_eq!(status, http::StatusCode::METHOD_NOT_ALLOWED, "{body}");
        drop(feeds);
        s.webhook.shutdown().await;
    })
    .await;
}

/// An HTTP/2 peer that stops answering is pinged and dropped, long before the idle timeout.
#[tokio::test]
async fn a_dead_http2_peer_is_pinged_and_dropped() {
    bounded(async {
        let s = setup(|c| {
            c.limits.idle_timeout = Duration::from_secs(600);
            c.limits.http2_keep_alive_interval = Duration::from_millis(300);
            c.limits.http2_keep_alive_timeout = Duration::from_millis(300);
        })
        .await;
        let mut tls = s.tls(b"h2").await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        // The connection preface and an empty SETTINGS frame, then silence: no ACK, no PING answer.
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
        let frames = tokio::time::timeout(Duration::from_secs(10), read_until_closed(&mut tls))
            .await
            .expect("the silent HTTP/2 peer is dropped within 10 s (the idle timeout is 600 s)");
        let mut types = Vec::new();
        let mut rest = &frames[..];
        while rest.len() >= 9 {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            types.push(rest[3]);
            rest = &rest[(9 + len).min(rest.len())..];
        }
        assert!(types.contains(&0x6), "the server sent a PING before closing (frame types {types:?})");
        s.admit("after").await;
        s.webhook.shutdown().await;
    })
    .await;
}

/// The request head is bounded: a 64 KiB header is refused (HTTP/1: 431), not buffered.
#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    bounded(async {
        let s = setup(|_| {}).await;
        let mut tls = s.tls(b"http/1.1").await;
        let huge = format!("POST /mutate HTTP/1.1\r\nhost: localhost\r\nx-padding: {}\r\n\r\n", "a".repeat(64 << 10));
        let _ = tls.write_all(huge.as_bytes()).await;
        let answer = tokio::time::timeout(Duration::from_secs(10), read_until_closed(&mut tls)).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");
        s.admit("after").await;
        s.webhook.shutdown().await;
    })
    .await;
}

// ---- strict mode while the API server hangs ------------------------------------------------------------

struct Strict {
    fake: FakeApiServer,
    decider: Arc<Decider>,
    registry: Registry,
    metrics: AdmissionMetrics,
}

/// A strict PodDistribution for `web` (Deployment, ReplicaSet `web-h1`, two nodes), its index and rules.
async fn strict_setup() -> Strict {
    let fake = FakeApiServer::start().await.unwrap();
    for crd in placement_kube::crd::all_crds() {
        fake.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    let stored = fake
        .put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "PodDistribution",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "strict": true,
                "groups": [{"name": "on-demand", "nodeSelector": {"matchLabels": {"capacity": "on-demand"}}, "weight": 1},
                           {"name": "spot", "nodeSelector": {"matchLabels": {"capacity": "spot"}}, "weight": 3}]}}))
        .unwrap();
    let distribution: PodDistribution = serde_json::from_value(stored).unwrap();
    let mut index = LiveIndex::new();
    for (name, capacity) in [("od-a", "on-demand"), ("spot-b", "spot")] {
        index.apply_node(
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"capacity": capacity}},
                "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                           "conditions": [{"type": "Ready", "status": "True"}]}}))
            .unwrap(),
        );
    }
    index.apply_deployment(
        &serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": 8, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}}))
        .unwrap(),
    );
    index.apply_replicaset(
        &serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-h1", "namespace": "shop",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d", "controller": true}]}}))
        .unwrap(),
    );
    let rules = StaticRules { distributions: vec![Arc::new(distribution)], ..StaticRules::default() };
    let decider = Arc::new(Decider::new(SharedIndex::from_index(index), Arc::new(rules), Duration::from_secs(60)));
    let mut registry = Registry::default();
    let metrics = AdmissionMetrics::register(&mut registry);
    Strict { fake, decider, registry, metrics }
}

fn web_pod() -> Pod {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-h1-", "namespace": "shop", "labels": {"app": "web", "pod-template-hash": "h1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-h1", "uid": "rs", "controller": true}]},
        "spec": {"tolerations": [{"operator": "Exists"}], "containers": [{"name": "app", "image": "app"}]}}))
    .unwrap()
}

impl Strict {
    fn mode(&self, limits: StrictLimits) -> StrictMode {
        StrictMode::new(self.fake.client(), self.decider.clone(), self.metrics.clone()).with_limits(limits)
    }

    /// `n` admissions of `web` pods at once, each with `budget` to decide.
    async fn wave(&self, strict: &StrictMode, n: usize, budget: Duration, tag: &str) -> Vec<Result<(), String>> {
        let pod = web_pod();
        let uids: Vec<String> = (0..n).map(|i| placement_testkit::uids::review_uid(tag, i as u64)).collect();
        let decisions = uids.iter().map(|uid| {
            let pod = &pod;
            async move {
                let c = Candidate { pod, namespace: "shop", uid, dry_run: false };
                let target = self.decider.strict_target(&c).expect("a strict PodDistribution applies");
                strict.decide(&c, target, Instant::now() + budget).await
            }
        });
        futures::future::join_all(decisions)
            .await
            .into_iter()
            .map(|r| match r {
                Ok(d) => {
                    assert!(d.reservation.is_some(), "placed with a reservation");
                    Ok(())
                }
                Err(DecideError::Strict(why)) => Err(why),
                Err(other) => panic!("unexpected error: {other}"),
            })
            .collect()
    }

    fn text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }
}

/// The API server hangs (every status read or write waits 120 s): each wave of 40 admissions fails open
/// by its deadline, beyond the per-resource bound at once; the rounds end at the deadline instead of
/// waiting for the API server; nothing piles up from one wave to the next.
#[tokio::test]
async fn strict_mode_stays_bounded_while_the_api_server_hangs() {
    bounded(async {
        let s = strict_setup().await;
        s.fake.faults().inject(Fault::delay(Duration::from_secs(120)).resource("poddistributions"));
        let strict = s.mode(StrictLimits { per_resource: 4, overall: 6 });
        let budget = Duration::from_millis(800);
        for wave in 0..5 {
            let started = Instant::now();
            let answers = s.wave(&strict, 40, budget, &format!("wave{wave}")).await;
            assert!(
                started.elapsed() < budget + Duration::from_secs(5),
                "a hung API server held admissions past their deadline: {:?}",
                started.elapsed()
            );
            let shed: Vec<&String> = answers
                .iter()
                .filter_map(|a| a.as_ref().err())
                .filter(|why| why.contains("bound per resource"))
                .collect();
            assert_eq!(shed.len(), 36, "all but 4 shed at once: {answers:?}");
            assert!(
                shed[0].contains("4 admissions already wait for a round on PodDistribution/shop/web"),
                "{}",
                shed[0]
            );
            assert!(answers.iter().all(Result::is_err), "nothing was placed while the API server hangs");
            // The round's read times out at the admissions' deadline; the queue is empty again.
            eventually("the round gave up and every admission left the queue", async || strict.pending() == 0).await;
        }
        assert_eq!(s.metrics.shed().shed_total(Shed::StrictQueue), 5 * 36);
        let text = s.text();
        assert!(text.contains(r#"placement_webhook_shed_total{reason="strict_queue"} 180"#), "{text}");
        let errors = text
            .lines()
            .find_map(|l| l.strip_prefix(r#"placement_webhook_strict_writes_total{result="error"} "#))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        // One timed-out call per round, not per admission (4 admitted per wave, 20 in all). A wave's
        // admissions usually share one round; on a loaded machine a round can start before the last of
        // them has queued, so a wave may take two.
        assert!((1..=10).contains(&errors), "one timed-out call per round, not per admission: {errors}\n{text}");
        assert!(s.fake.faults().hits() <= 10, "one API call per round: {} calls", s.fake.faults().hits());

        // The API server recovers: strict decisions work again.
        s.fake.faults().clear();
        let answers = s.wave(&strict, 3, Duration::from_secs(10), "recovered").await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(strict.pending(), 0);
    })
    .await;
}

/// The bound over all resources holds too, and names itself.
#[tokio::test]
async fn strict_mode_sheds_beyond_the_overall_bound() {
    bounded(async {
        let s = strict_setup().await;
        s.fake.faults().inject(Fault::delay(Duration::from_secs(120)).on(Verb::Get).resource("poddistributions"));
        let strict = s.mode(StrictLimits { per_resource: 10, overall: 3 });
        let answers = s.wave(&strict, 10, Duration::from_millis(500), "overall").await;
        let shed = answers.iter().filter_map(|a| a.as_ref().err()).filter(|why| why.contains("over all resources"));
        assert_eq!(shed.count(), 7, "{answers:?}");
        assert_eq!(s.metrics.shed().shed_total(Shed::StrictQueue), 7);
        eventually("the queue is empty again", async || strict.pending() == 0).await;
    })
    .await;
}

/// A body that comes in pieces but whole within the deadline is served, over HTTP/1.1 and HTTP/2.
#[tokio::test]
async fn a_body_in_pieces_within_the_deadline_is_served() {
    bounded(async {
        let s = setup(|c| c.limits.body_timeout = Duration::from_secs(5)).await;
        let mut tls = s.tls(b"http/1.1").await;
        tls.write_all(head(10).as_bytes()).await.unwrap();
        tls.write_all(b"{").await.unwrap();
        tls.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        tls.write_all(b"        }").await.unwrap();
        tls.flush().await.unwrap();
        let mut answer = vec![0u8; 12];
        tls.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
        let mut h2 = s.h2().await;
        let (mut tx, body) = slow_body();
        tx.try_send(Ok(Frame::data(Bytes::from_static(b"{")))).unwrap();
        let slow = tokio::spawn(async move { send_h2(&mut h2, slow_request(10, body)).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        futures::SinkExt::send(&mut tx, Ok(Frame::data(Bytes::from_static(b"        }")))).await.unwrap();
        drop(tx);
        let (status, _) = slow.await.unwrap();
        assert_eq!(status, http::StatusCode::OK);
    })
    .await;
}
