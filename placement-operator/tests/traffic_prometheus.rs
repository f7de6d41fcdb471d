//! The `TrafficWeight` metric source against real servers on 127.0.0.1: a real Prometheus (Debian's
//! `prometheus` binary, started once for this test binary, scraping a tiny exposition endpoint the test
//! serves) for what PromQL really answers — scalars, vectors, empty results, NaN, ±Inf, syntax errors —
//! and small hand-written HTTP(S) servers for what Prometheus cannot show: the `Authorization` header,
//! a path prefix, non-2xx answers, garbage, a server that never answers, a refused connection, and TLS
//! with a custom CA (made with rcgen). Without the `prometheus` binary the Prometheus tests fail; they
//! do not skip.

mod common;

use jiff::Timestamp;
use placement_core::tracking::access::Permit;
use placement_operator::traffic::egress::Egress;
use placement_operator::traffic::prometheus::{
    Aggregation, Auth, PrometheusClient, PrometheusConfig, PrometheusError, Sample,
};
use rust_decimal::Decimal;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the exposition endpoint serves; Prometheus scrapes it every second.
const METRICS: &str = "\
# TYPE tw_single gauge
tw_single 3000
# TYPE tw_fraction gauge
tw_fraction 0.1
# TYPE tw_requests gauge
tw_requests{shard=\"a\"} 1000
tw_requests{shard=\"b\"} 2000
tw_requests{shard=\"c\"} 4000
# TYPE tw_nan gauge
tw_nan NaN
# TYPE tw_inf gauge
tw_inf +Inf
";

async fn prometheus() -> &'static str {
    &common::prometheus::shared(METRICS).await.address
}

async fn query(address: &str, q: &str, aggregation: Option<Aggregation>) -> Result<Sample, PrometheusError> {
    let mut config = PrometheusConfig::new(address, q).unwrap();
    config.egress = Egress::new(Permit::any_loopback("a server of the test"));
    config.aggregation = aggregation;
    config.timeout = Duration::from_secs(5);
    PrometheusClient::new(config).unwrap().query().await
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

// ---- a real Prometheus ----

#[tokio::test]
async fn a_scalar_and_a_one_element_vector_are_values() {
    let prom = prometheus().await;
    let before = Timestamp::now();
    let s = query(prom, "scalar(tw_single)", None).await.unwrap();
    assert_eq!((s.value, s.series), (Decimal::from(3000), 1));
    let age = before.duration_since(s.timestamp).unsigned_abs();
    assert!(age < Duration::from_secs(5), "sample time {} is not about now ({before})", s.timestamp);

    let s = query(prom, "tw_single", None).await.unwrap();
    assert_eq!((s.value, s.series), (Decimal::from(3000), 1));
    // Decimal all the way: 0.1 stays exactly 0.1.
    assert_eq!(query(prom, "tw_fraction", None).await.unwrap().value, dec("0.1"));
    // The Route53 rebalancer's README example: 3000 req/min over 3 shards, with a sum.
    let s = query(prom, "sum(tw_requests) - 4000", None).await.unwrap();
    assert_eq!(s.value, Decimal::from(3000));
}

#[tokio::test]
async fn the_time_parameter_is_sent() {
    let prom = prometheus().await;
    let mut config = PrometheusConfig::new(prom, "time()").unwrap();
    config.egress = Egress::new(Permit::any_loopback("a server of the test"));
    config.timeout = Duration::from_secs(5);
    let client = PrometheusClient::new(config).unwrap();
    let at = Timestamp::from_millisecond(1_700_000_000_250).unwrap();
    let s = client.query_at(at).await.unwrap();
    assert_eq!(s.value, dec("1700000000.25"));
    assert_eq!(s.timestamp, at);
}

#[tokio::test]
async fn several_series_need_an_aggregation() {
    let prom = prometheus().await;
    let e = query(prom, "tw_requests", None).await.unwrap_err();
    assert!(matches!(e, PrometheusError::MultipleSeries { count: 3, .. }), "{e}");
    assert!(e.to_string().contains(prom) && e.to_string().contains("`tw_requests`"), "{e}");
    assert!(e.to_string().contains(r#"shard="a"}"#), "the message shows which series: {e}");
    let cases = [
        (Aggregation::Sum, Decimal::from(7000)),
        (Aggregation::Avg, Decimal::from(7000) / Decimal::from(3)),
        (Aggregation::Max, Decimal::from(4000)),
        (Aggregation::Min, Decimal::from(1000)),
    ];
    for (agg, want) in cases {
        let s = query(prom, "tw_requests", Some(agg)).await.unwrap();
        assert_eq!((s.value, s.series), (want, 3), "{agg:?}");
    }
}

#[tokio::test]
async fn empty_nan_and_infinities_are_errors() {
    let prom = prometheus().await;
    let e = query(prom, "tw_absent", Some(Aggregation::Sum)).await.unwrap_err();
    assert!(matches!(e, PrometheusError::Empty { .. }), "{e}");
    for (q, shown) in [("0/0", "NaN"), ("1/0", "+Inf"), ("-1/0", "-Inf"), ("tw_nan", "NaN"), ("tw_inf", "+Inf")] {
        let e = query(prom, q, None).await.unwrap_err();
        assert!(matches!(&e, PrometheusError::NotFinite { value, .. } if value == shown), "{q}: {e}");
        assert_eq!(e.metric_label(), "not_finite");
    }
    // One NaN series spoils an aggregate.
    let e = query(prom, "tw_requests or tw_nan", Some(Aggregation::Max)).await.unwrap_err();
    assert_eq!(e.metric_label(), "not_finite", "{e}");
    let e = query(prom, "1e40 * tw_single", None).await.unwrap_err();
    assert_eq!(e.metric_label(), "out_of_range", "{e}");
}

#[tokio::test]
async fn promql_errors_and_other_result_types_are_errors() {
    let prom = prometheus().await;
    let e = query(prom, "sum(tw_single", None).await.unwrap_err();
    match &e {
        PrometheusError::QueryFailed { error_type, error, origin } => {
            assert_eq!(error_type, "bad_data");
            assert!(error.contains("parse error"), "{error}");
            assert_eq!(origin.query, "sum(tw_single");
        }
        other => panic!("expected a query error, got {other:?}"),
    }
    assert!(e.to_string().contains(prom), "{e}");
    let e = query(prom, "tw_single[1m]", None).await.unwrap_err();
    assert!(matches!(&e, PrometheusError::ResultType { result_type, .. } if result_type == "matrix"), "{e}");
    let e = query(prom, "\"text\"", None).await.unwrap_err();
    assert!(matches!(&e, PrometheusError::ResultType { result_type, .. } if result_type == "string"), "{e}");
}

// ---- no server, or one that never answers ----

#[tokio::test]
async fn a_refused_connection_is_an_error() {
    let port = common::prometheus::free_port().unwrap();
    let address = format!("http://127.0.0.1:{port}");
    let e = query(&address, "up", None).await.unwrap_err();
    assert!(matches!(e, PrometheusError::Connect { .. }), "{e}");
    assert!(e.to_string().contains(&address), "{e}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    // Accept and hold every connection without a byte in reply.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let mut config = PrometheusConfig::new(&address, "up").unwrap();
    config.egress = Egress::new(Permit::any_loopback("a server of the test"));
    config.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let e = PrometheusClient::new(config).unwrap().query().await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, PrometheusError::Timeout { after, .. } if after == Duration::from_millis(500)), "{e}");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "{took:?}");
    assert_eq!(e.metric_label(), "timeout");
}

// ---- hand-written servers ----

const SCALAR_42: &str = r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"42"]}}"#;

fn http_answer(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serve `answer` to every connection (through `tls` when given); each request head goes to the channel.
async fn fake_server(
    answer: Vec<u8>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let (tx, answer, tls) = (tx.clone(), Arc::clone(&answer), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => serve_one(conn, &answer, &tx).await,
                    // A failed handshake (the client refused the certificate) ends the connection.
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(conn).await {
                            serve_one(stream, &answer, &tx).await;
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, answer: &[u8], tx: &mpsc::UnboundedSender<String>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
    let _ = s.write_all(answer).await;
    let _ = s.shutdown().await;
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn credentials_and_the_path_prefix_are_sent() {
    let (addr, mut heads) = fake_server(http_answer("200 OK", SCALAR_42), None).await;
    let address = format!("http://{addr}/prom/");
    let cases = [
        (Auth::None, None),
        (Auth::Bearer("s3cr3t.t0ken".into()), Some("Bearer s3cr3t.t0ken".to_string())),
        (
            Auth::Basic { username: "Aladdin".into(), password: "open sesame".into() },
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".to_string()),
        ),
    ];
    for (auth, want) in cases {
        let mut config = PrometheusConfig::new(&address, "sum(rate(http_requests_total[1m])) * 60").unwrap();
        config.egress = Egress::new(Permit::any_loopback("a server of the test"));
        config.auth = auth.clone();
        let s = PrometheusClient::new(config).unwrap().query().await.unwrap();
        assert_eq!(s.value, Decimal::from(42));
        let head = heads.recv().await.unwrap();
        let request_line = head.lines().next().unwrap();
        assert!(
            request_line.starts_with(
                "GET /prom/api/v1/query?query=sum%28rate%28http_requests_total%5B1m%5D%29%29+*+60&timeout="
            ),
            "{request_line}"
        );
        assert_eq!(header(&head, "authorization").map(str::to_string), want, "{auth:?}");
        assert_eq!(header(&head, "host"), Some(addr.to_string().as_str()));
    }
}

#[tokio::test]
async fn non_2xx_garbage_and_oversized_answers_are_errors() {
    let (addr, _) = fake_server(http_answer("503 Service Unavailable", "overloaded, try later"), None).await;
    let e = query(&format!("http://{addr}"), "up", None).await.unwrap_err();
    assert!(matches!(&e, PrometheusError::HttpStatus { status: 503, body, .. } if body.contains("overloaded")), "{e}");

    let (addr, _) = fake_server(http_answer("200 OK", "{\"status\":"), None).await;
    let e = query(&format!("http://{addr}"), "up", None).await.unwrap_err();
    assert_eq!(e.metric_label(), "bad_response", "{e}");

    let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n{".to_vec();
    let (addr, _) = fake_server(huge, None).await;
    let e = query(&format!("http://{addr}"), "up", None).await.unwrap_err();
    assert!(e.to_string().contains("larger than"), "{e}");

    // The connection closes in the middle of the body.
    let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"status\":\"success\"".to_vec();
    let (addr, _) = fake_server(cut, None).await;
    let e = query(&format!("http://{addr}"), "up", None).await.unwrap_err();
    assert_eq!(e.metric_label(), "transport", "{e}");
}

struct Pki {
    ca_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
}

/// A CA and a server certificate for `names` signed by it.
fn make_pki(names: &[&str]) -> Pki {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    ca.distinguished_name.push(rcgen::DnType::CommonName, "tw test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let certs = vec![CertificateDer::from_pem_slice(leaf_cert.pem().as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(leaf_key.serialize_pem().as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Pki { ca_pem, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) }
}

#[tokio::test]
async fn tls_with_a_custom_ca() {
    let pki = make_pki(&["localhost", "127.0.0.1"]);
    let (addr, mut heads) = fake_server(http_answer("200 OK", SCALAR_42), Some(pki.acceptor.clone())).await;
    let port = addr.port();
    for address in [format!("https://localhost:{port}"), format!("https://127.0.0.1:{port}")] {
        let mut config = PrometheusConfig::new(&address, "up").unwrap();
        config.egress = Egress::new(Permit::any_loopback("a server of the test"));
        config.ca_pem = Some(pki.ca_pem.clone().into_bytes());
        config.auth = Auth::Bearer("over-tls".into());
        let s = PrometheusClient::new(config).unwrap().query().await.unwrap();
        assert_eq!(s.value, Decimal::from(42), "{address}");
        assert_eq!(header(&heads.recv().await.unwrap(), "authorization"), Some("Bearer over-tls"));
    }

    // Without the CA (system roots) and with another CA, the certificate is refused.
    let other = make_pki(&["localhost", "127.0.0.1"]);
    for ca in [None, Some(other.ca_pem.into_bytes())] {
        let with = ca.is_some();
        let mut config = PrometheusConfig::new(&format!("https://localhost:{port}"), "up").unwrap();
        config.egress = Egress::new(Permit::any_loopback("a server of the test"));
        config.ca_pem = ca;
        let e = PrometheusClient::new(config).unwrap().query().await.unwrap_err();
        assert!(matches!(e, PrometheusError::Tls { .. }), "other CA: {with}: {e}");
        assert!(e.to_string().contains("certificate"), "{e}");
    }
    // The right CA but a certificate for another name.
    let elsewhere = make_pki(&["prometheus.example"]);
    let (addr, _) = fake_server(http_answer("200 OK", SCALAR_42), Some(elsewhere.acceptor.clone())).await;
    let mut config = PrometheusConfig::new(&format!("https://localhost:{}", addr.port()), "up").unwrap();
    config.egress = Egress::new(Permit::any_loopback("a server of the test"));
    config.ca_pem = Some(elsewhere.ca_pem.into_bytes());
    let e = PrometheusClient::new(config).unwrap().query().await.unwrap_err();
    assert!(matches!(e, PrometheusError::Tls { .. }), "{e}");
    assert!(e.to_string().contains("not valid for name"), "{e}");
}
