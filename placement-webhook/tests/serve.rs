//! The serving stack over real TLS on 127.0.0.1: protocols, certificate rotation the way the kubelet
//! does it, timeouts, draining, and the probe listener.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use placement_webhook::probes::{self, OPENMETRICS_CONTENT_TYPE, Readiness};
use placement_webhook::serve::{ServeLimits, serve_plain, serve_tls};
use placement_webhook::tls::{CertMetrics, CertReloader};
use prometheus_client::registry::Registry;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use warp::Filter;

/// Every test is bounded in time.
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future).await.expect("test took too long")
}

// ---- certificates --------------------------------------------------------------------------------------

struct Pki {
    ca_der: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        params.distinguished_name.push(rcgen::DnType::CommonName, "test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let ca_der = params.self_signed(&key).unwrap().der().clone();
        Pki { ca_der, issuer: rcgen::Issuer::new(params, key) }
    }

    fn leaf(&self, serial: u64) -> Leaf {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.not_after = rcgen::date_time_ymd(2040, 1, (serial % 28) as u8 + 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }
}

/// A Secret volume as the kubelet lays it out and updates it.
struct SecretDir {
    dir: tempfile::TempDir,
}

impl SecretDir {
    fn new(first: &Leaf) -> Self {
        let secret = SecretDir { dir: tempfile::tempdir().unwrap() };
        secret.publish("2026_01_01_00_00_00.1", first.cert_pem.as_bytes(), first.key_pem.as_bytes());
        for file in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(Path::new("..data").join(file), secret.dir.path().join(file)).unwrap();
        }
        secret
    }

    /// New timestamped directory, `..data_tmp -> it`, then `rename(..data_tmp, ..data)`: one atomic swap.
    fn publish(&self, timestamp: &str, cert: &[u8], key: &[u8]) {
        let root = self.dir.path();
        let version = format!("..{timestamp}");
        std::fs::create_dir(root.join(&version)).unwrap();
        std::fs::write(root.join(&version).join("tls.crt"), cert).unwrap();
        std::fs::write(root.join(&version).join("tls.key"), key).unwrap();
        std::os::unix::fs::symlink(&version, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }
}

// ---- server and client ---------------------------------------------------------------------------------

fn app() -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let hello = warp::path!("hello").map(|| "hello");
    let slow = warp::path!("slow" / u64).then(|millis| async move {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        "slow done"
    });
    let upload = warp::path!("upload")
        .and(warp::post())
        .and(warp::body::content_length_limit(16))
        .and(warp::body::bytes())
        .map(|body: Bytes| format!("{} bytes", body.len()));
    hello.or(slow).or(upload)
}

struct Server {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(reloader: &Arc<CertReloader>, limits: ServeLimits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let config = Arc::new(reloader.server_config());
        let task = tokio::spawn(serve_tls(listener, config, app(), async move { drop(rx.await) }, limits));
        Server { addr, shutdown: Some(tx), task }
    }

    fn trigger_shutdown(&mut self) {
        let _ = self.shutdown.take().unwrap().send(());
    }
}

fn client_config(pki: &Pki, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

async fn tls_connect(pki: &Pki, addr: SocketAddr, alpn: &[u8]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(pki, alpn));
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
}

fn peer_leaf(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// An HTTP client on one TLS connection, HTTP/1.1 or HTTP/2 by the negotiated ALPN.
enum Client {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

struct Connected {
    client: Client,
    leaf: CertificateDer<'static>,
    /// Ends when the server closes the connection.
    closed: JoinHandle<()>,
}

async fn connect(pki: &Pki, addr: SocketAddr, alpn: &[u8]) -> Connected {
    let tls = tls_connect(pki, addr, alpn).await;
    let leaf = peer_leaf(&tls);
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let (client, closed) = if h2 {
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
        (Client::H2(sender), tokio::spawn(async move { drop(conn.await) }))
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        (Client::H1(sender), tokio::spawn(async move { drop(conn.await) }))
    };
    Connected { client, leaf, closed }
}

impl Client {
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &'static [u8],
    ) -> (http::StatusCode, http::Version, String) {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"))
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let response = match self {
            Client::H1(sender) => sender.send_request(request).await.unwrap(),
            Client::H2(sender) => sender.send_request(request).await.unwrap(),
        };
        let (status, version) = (response.status(), response.version());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, version, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn get(&mut self, path: &str) -> (http::StatusCode, http::Version, String) {
        self.send("GET", path, b"").await
    }
}

fn setup(pki: &Pki) -> (SecretDir, Leaf, Arc<CertReloader>, CertMetrics, Registry) {
    let first = pki.leaf(1);
    let secret = SecretDir::new(&first);
    let mut registry = Registry::default();
    let metrics = CertMetrics::register(&mut registry);
    let reloader = CertReloader::load(secret.cert_path(), secret.key_path()).unwrap().with_metrics(metrics.clone());
    (secret, first, Arc::new(reloader), metrics, registry)
}

fn short_limits() -> ServeLimits {
    ServeLimits {
        handshake_timeout: Duration::from_millis(300),
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(400),
        drain_timeout: Duration::from_secs(5),
        ..ServeLimits::default()
    }
}

// ---- tests ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn serves_http1_and_http2_by_alpn() {
    bounded(async {
        let pki = Pki::new();
        let (_secret, first, reloader, _, _) = setup(&pki);
        let server = Server::start(&reloader, ServeLimits::default()).await;
        for (alpn, version) in [(&b"http/1.1"[..], http::Version::HTTP_11), (b"h2", http::Version::HTTP_2)] {
            let mut conn = connect(&pki, server.addr, alpn).await;
            assert_eq!(conn.leaf, first.der);
            for _ in 0..2 {
                assert_eq!(conn.client.get("/hello").await, (http::StatusCode::OK, version, "hello".to_owned()));
            }
        }
    })
    .await;
}

#[tokio::test]
async fn symlink_swap_is_picked_up_by_reload_now_and_old_connections_keep_working() {
    bounded(async {
        let pki = Pki::new();
        let (secret, first, reloader, _, _) = setup(&pki);
        let server = Server::start(&reloader, ServeLimits::default()).await;
        let mut old = connect(&pki, server.addr, b"http/1.1").await;
        let mut old_h2 = connect(&pki, server.addr, b"h2").await;
        assert_eq!(old.leaf, first.der);

        assert!(!reloader.reload_now().unwrap(), "nothing changed yet");
        let second = pki.leaf(2);
        secret.publish("2026_02_01_00_00_00.2", second.cert_pem.as_bytes(), second.key_pem.as_bytes());
        assert!(reloader.reload_now().unwrap());
        assert_eq!(reloader.leaf_der(), second.der);

        let mut new = connect(&pki, server.addr, b"http/1.1").await;
        assert_eq!(new.leaf, second.der, "a new connection sees the new certificate");
        assert_eq!(new.client.get("/hello").await.0, http::StatusCode::OK);
        assert_eq!(old.client.get("/hello").await.0, http::StatusCode::OK, "old connection unaffected");
        assert_eq!(old_h2.client.get("/hello").await.0, http::StatusCode::OK, "old HTTP/2 connection unaffected");
    })
    .await;
}

#[tokio::test]
async fn polling_watcher_picks_up_a_symlink_swap() {
    bounded(async {
        let pki = Pki::new();
        let (secret, _first, reloader, metrics, _) = setup(&pki);
        let server = Server::start(&reloader, ServeLimits::default()).await;
        let watcher = Arc::clone(&reloader).spawn_watcher(Duration::from_millis(50));

        let second = pki.leaf(2);
        secret.publish("2026_02_01_00_00_00.2", second.cert_pem.as_bytes(), second.key_pem.as_bytes());
        loop {
            let tls = tls_connect(&pki, server.addr, b"h2").await;
            if peer_leaf(&tls) == second.der {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(reloader.not_after(), Some(unix(2040, 1, 3)));
        assert_eq!(metrics.reload_failures_total(), 0);
        watcher.abort();
    })
    .await;
}

#[tokio::test]
async fn bad_rotation_keeps_the_old_certificate_and_counts_once() {
    bounded(async {
        let pki = Pki::new();
        let (secret, first, reloader, metrics, registry) = setup(&pki);
        let server = Server::start(&reloader, ServeLimits::default()).await;

        let second = pki.leaf(2);
        secret.publish("2026_02_01_00_00_00.2", second.cert_pem.as_bytes(), b"garbage, not a key");
        let err = reloader.reload_now().unwrap_err();
        assert_eq!(err.metric_label(), "no_key");
        assert!(err.to_string().contains("tls.key"), "{err}");
        assert!(reloader.reload_now().is_err(), "still bad");
        assert_eq!(metrics.reload_failures_total(), 1, "the same bad content is counted once");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("placement_webhook_certificate_reload_failures_total{reason=\"no_key\"} 1"), "{text}");

        let mut conn = connect(&pki, server.addr, b"http/1.1").await;
        assert_eq!(conn.leaf, first.der, "still serving the old certificate");
        assert_eq!(conn.client.get("/hello").await.0, http::StatusCode::OK);

        // A key that parses but belongs to another certificate is refused too.
        let third = pki.leaf(3);
        secret.publish("2026_03_01_00_00_00.3", second.cert_pem.as_bytes(), third.key_pem.as_bytes());
        assert_eq!(reloader.reload_now().unwrap_err().metric_label(), "key_mismatch");
        assert_eq!(metrics.reload_failures_total(), 2);
        assert_eq!(connect(&pki, server.addr, b"h2").await.leaf, first.der);

        secret.publish("2026_04_01_00_00_00.4", third.cert_pem.as_bytes(), third.key_pem.as_bytes());
        assert!(reloader.reload_now().unwrap());
        assert_eq!(connect(&pki, server.addr, b"h2").await.leaf, third.der, "a later good rotation is picked up");
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests_then_refuses_connections() {
    bounded(async {
        let pki = Pki::new();
        let (_secret, _first, reloader, _, _) = setup(&pki);
        for alpn in [&b"http/1.1"[..], b"h2"] {
            let mut server = Server::start(&reloader, short_limits()).await;
            let mut conn = connect(&pki, server.addr, alpn).await;
            let in_flight = tokio::spawn(async move { conn.client.get("/slow/300").await });
            tokio::time::sleep(Duration::from_millis(100)).await;
            let started = Instant::now();
            server.trigger_shutdown();
            let (status, _, body) = in_flight.await.unwrap();
            assert_eq!((status, body.as_str()), (http::StatusCode::OK, "slow done"));
            server.task.await.unwrap();
            assert!(started.elapsed() < Duration::from_secs(3), "drained without waiting for the deadline");
            assert!(TcpStream::connect(server.addr).await.is_err(), "new connections are refused");
        }
    })
    .await;
}

#[tokio::test]
async fn drain_deadline_cuts_requests_that_take_too_long() {
    bounded(async {
        let pki = Pki::new();
        let (_secret, _first, reloader, _, _) = setup(&pki);
        let limits = ServeLimits { drain_timeout: Duration::from_millis(300), ..short_limits() };
        let mut server = Server::start(&reloader, limits).await;
        let mut conn = connect(&pki, server.addr, b"h2").await;
        let stuck = tokio::spawn(async move {
            let request = http::Request::get("https://localhost/slow/60000").body(Full::new(Bytes::new())).unwrap();
            match &mut conn.client {
                Client::H2(sender) => sender.send_request(request).await.is_err(),
                Client::H1(_) => unreachable!(),
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        server.trigger_shutdown();
        server.task.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(stuck.await.unwrap(), "the stuck request fails instead of hanging");
    })
    .await;
}

#[tokio::test]
async fn silent_clients_are_disconnected() {
    bounded(async {
        let pki = Pki::new();
        let (_secret, _first, reloader, _, _) = setup(&pki);
        let server = Server::start(&reloader, short_limits()).await;

        // TLS done, no request bytes: the HTTP/1 header timeout closes it.
        let mut tls = tls_connect(&pki, server.addr, b"http/1.1").await;
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(3), tls.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "expected the server to close, got {read:?}");
        assert!(started.elapsed() >= Duration::from_millis(250), "closed too early: {:?}", started.elapsed());

        // TCP only, no ClientHello: the handshake timeout closes it.
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "expected the server to close, got {read:?}");

        // HTTP/2, one request, then nothing: the idle timeout closes it (GOAWAY).
        let mut conn = connect(&pki, server.addr, b"h2").await;
        assert_eq!(conn.client.get("/hello").await.0, http::StatusCode::OK);
        tokio::time::timeout(Duration::from_secs(3), conn.closed)
            .await
            .expect("idle HTTP/2 connection closed")
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn idle_timeout_does_not_cut_a_slow_request() {
    bounded(async {
        let pki = Pki::new();
        let (_secret, _first, reloader, _, _) = setup(&pki);
        let server = Server::start(&reloader, short_limits()).await;
        let mut conn = connect(&pki, server.addr, b"h2").await;
        let (status, _, body) = conn.client.get("/slow/900").await;
        assert_eq!((status, body.as_str()), (http::StatusCode::OK, "slow done"), "900 ms > idle timeout of 400 ms");
    })
    .await;
}

#[tokio::test]
async fn too_large_body_gets_413() {
    bounded(async {
        let pki = Pki::new();
        let (_secret, _first, reloader, _, _) = setup(&pki);
        let server = Server::start(&reloader, ServeLimits::default()).await;
        for alpn in [&b"http/1.1"[..], b"h2"] {
            let mut conn = connect(&pki, server.addr, alpn).await;
            assert_eq!(conn.client.send("POST", "/upload", b"small").await.2, "5 bytes");
            let (status, _, _) = conn.client.send("POST", "/upload", &[b'x'; 100]).await;
            assert_eq!(status, http::StatusCode::PAYLOAD_TOO_LARGE);
        }
    })
    .await;
}

#[tokio::test]
async fn probes_report_readiness_and_metrics() {
    bounded(async {
        let pki = Pki::new();
        let (_secret, _first, reloader, _metrics, registry) = setup(&pki);
        let readiness = Readiness::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let routes = probes::routes(readiness.clone(), Arc::new(registry));
        let task = tokio::spawn(serve_plain(listener, routes, async move { drop(rx.await) }));

        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let mut get = async |path: &str| {
            let request = http::Request::get(path).header("host", "probe").body(Empty::<Bytes>::new()).unwrap();
            let response = sender.send_request(request).await.unwrap();
            let status = response.status();
            let content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, content_type, String::from_utf8(body.to_vec()).unwrap())
        };

        assert_eq!(get("/healthz").await.0, http::StatusCode::OK);
        let (status, _, body) = get("/readyz").await;
        assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("certificates not loaded") && body.contains("indexes not synced"), "{body}");
        readiness.set_certificates_loaded(true);
        let (status, _, body) = get("/readyz").await;
        assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(!body.contains("certificates") && body.contains("indexes not synced"), "{body}");
        readiness.set_indexes_synced(true);
        assert_eq!(get("/readyz").await.0, http::StatusCode::OK);

        let (status, content_type, body) = get("/metrics").await;
        assert_eq!(status, http::StatusCode::OK);
        assert_eq!(content_type.unwrap(), OPENMETRICS_CONTENT_TYPE);
        let not_after = reloader.not_after().unwrap();
        assert_eq!(not_after, unix(2040, 1, 2));
        assert!(body.contains(&format!("placement_webhook_certificate_not_after_seconds {not_after}")), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert_eq!(get("/nope").await.0, http::StatusCode::NOT_FOUND);

        tx.send(()).unwrap();
        task.await.unwrap();
    })
    .await;
}

fn unix(year: i16, month: i8, day: i8) -> i64 {
    jiff::civil::date(year, month, day).to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp().as_second()
}
