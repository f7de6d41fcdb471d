//! The `TrafficWeight` metric source: one Prometheus HTTP API instant query (`GET /api/v1/query`) read
//! as one exact decimal value plus its sample time, or a typed error — never a made-up value.
//!
//! What it decides and why:
//! * **Which answers are a value.** A `scalar`, or a `vector` with exactly one series. A vector with
//!   several series is a value only when the spec names an aggregation (sum, avg, min, max), because
//!   picking "the first" series would steer traffic on whichever series Prometheus happened to list
//!   first. An empty vector, NaN, ±Inf, a `matrix`/`string` result, `status: "error"`, a non-2xx answer,
//!   unreadable JSON, a refused connection, a TLS failure and a timeout are all [`PrometheusError`]s
//!   with a bounded [`PrometheusError::metric_label`]; the controller turns them into conditions and
//!   events and leaves the weight alone.
//! * **Numbers are decimals.** Prometheus sends sample values as strings; they are parsed straight into
//!   `rust_decimal::Decimal` (the core tracking law's type, `placement_core::tracking`), never through
//!   `f64`, so `"1100"` stays 1100 exactly. Aggregation uses checked decimal arithmetic.
//! * **One connection per query, one deadline for all of it.** Queries run every 10 s or more, so a
//!   connection pool buys little and brings stale keep-alive connections; instead each query connects,
//!   does TLS, sends the request and reads a bounded body (4 MiB) under a single `timeout`. The HTTP
//!   client is hyper 1's HTTP/1.1 connection API over a tokio-rustls stream using the ring provider
//!   only (no aws-lc-rs: two rustls providers in one binary panic at start-up).
//! * **Trust.** With a CA bundle (PEM, from `caSecretRef`) only that bundle is trusted; without one an
//!   `https` address is checked against the system roots. A CA bundle on an `http` address is a
//!   configuration error rather than silently unused.
//! * **Credentials are values here.** [`Auth`] is none, a bearer token or basic credentials;
//!   [`auth_from_secret`] and [`ca_from_secret`] read them from a `Secret` the controller fetched (in
//!   the resource's namespace), with errors naming the Secret and key. Credentials in the address
//!   (`https://user:pw@host`) are refused so they cannot leak into messages.
//! * **Where it connects.** Only to addresses [`egress::Egress`] resolved and checked (the
//!   [`PrometheusConfig::egress`] permit from the admin's allowlist; loopback, link-local and metadata
//!   addresses refused), never to the name again: a refused address is [`PrometheusError::Refused`] and
//!   nothing is sent. Text from the server (error bodies, Prometheus' own error strings) is cut to
//!   [`BODY_IN_MESSAGES`] characters before it goes anywhere.

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use placement_core::tracking::{TrackingError, parse_metric};
use placement_kube::crd::TrafficWeightSpec;
pub use placement_kube::crd::traffic_weight::Aggregation;
use placement_kube::secrets::{self, SecretError};
use rust_decimal::Decimal;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::Url;

use super::egress::{Egress, EgressError};
use placement_core::tracking::access::{Permit, cut};

/// Largest response body read; an instant query for one value is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The timeout when none is configured (the CRD's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Queries longer than this are shortened in error messages.
const QUERY_IN_MESSAGES: usize = 160;
/// Response bodies and Prometheus' error strings quoted in error messages are cut to this many characters.
pub const BODY_IN_MESSAGES: usize = 256;
/// Prometheus' `errorType` is cut to this many characters.
const ERROR_TYPE_IN_MESSAGES: usize = 64;

/// How the query is authenticated.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic base64(<username>:<password>)`.
    Basic { username: String, password: String },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Basic { username, .. } => write!(f, "Basic {{ username: {username:?}, password: <redacted> }}"),
        }
    }
}

impl Auth {
    fn header(&self) -> Result<Option<HeaderValue>, PrometheusError> {
        use base64::Engine as _;
        let text = match self {
            Auth::None => return Ok(None),
            Auth::Bearer(token) => format!("Bearer {token}"),
            Auth::Basic { username, password } => {
                let raw = format!("{username}:{password}");
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
            }
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| PrometheusError::Config {
            field: "auth",
            message: "the credentials contain characters an HTTP header cannot carry".into(),
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

/// Everything one query needs.
#[derive(Clone, Debug)]
pub struct PrometheusConfig {
    /// Base URL (`http(s)://host[:port][/prefix]`); `/api/v1/query` is appended to its path.
    pub address: Url,
    /// The PromQL instant query.
    pub query: String,
    /// How a multi-element vector becomes one value; `None`: such a result is an error.
    pub aggregation: Option<Aggregation>,
    /// Deadline for connecting, TLS, sending and reading the answer; also sent as the query's `timeout`.
    pub timeout: Duration,
    /// Credentials sent with the query.
    pub auth: Auth,
    /// PEM CA bundle the server's certificate must chain to (`https` only); `None`: system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Which resolved addresses may be connected to; [`PrometheusConfig::new`] gives a strict permit
    /// (loopback refused too), the controller the one its allowlist rule gives.
    pub egress: Egress,
}

impl PrometheusConfig {
    /// A config with no auth, no aggregation, system roots and the default timeout; the address is checked.
    pub fn new(address: &str, query: impl Into<String>) -> Result<Self, PrometheusError> {
        let query = query.into();
        if query.trim().is_empty() {
            return Err(PrometheusError::Config { field: "query", message: "the query is empty".into() });
        }
        let address = parse_address(address)?;
        let egress = Egress::new(Permit::strict(format!("Prometheus {}", address.as_str().trim_end_matches('/'))));
        Ok(PrometheusConfig {
            address,
            query,
            aggregation: None,
            timeout: DEFAULT_TIMEOUT,
            auth: Auth::None,
            ca_pem: None,
            egress,
        })
    }

    /// The config a `TrafficWeight` spec describes (`spec.metric.prometheus`: address, query,
    /// aggregation, timeout). `auth` is what [`auth_from_secret`] read from `bearerTokenSecretRef` or
    /// `basicAuthSecretRef` (or
    /// [`Auth::None`]); `ca_pem` what [`ca_from_secret`] read from `caSecretRef`.
    pub fn from_spec(spec: &TrafficWeightSpec, auth: Auth, ca_pem: Option<Vec<u8>>) -> Result<Self, PrometheusError> {
        let source = &spec.metric.prometheus;
        let timeout = spec
            .query_timeout()
            .map_err(|e| PrometheusError::Config { field: "spec.metric.prometheus.timeout", message: e.to_string() })?;
        let mut config = PrometheusConfig::new(&source.address, source.query.clone()).map_err(|e| match e {
            PrometheusError::Config { field: "address", message } => {
                PrometheusError::Config { field: "spec.metric.prometheus.address", message }
            }
            PrometheusError::Config { field: "query", message } => {
                PrometheusError::Config { field: "spec.metric.prometheus.query", message }
            }
            other => other,
        })?;
        config.aggregation = source.aggregation;
        config.timeout = timeout;
        config.auth = auth;
        config.ca_pem = ca_pem;
        Ok(config)
    }

    /// The full query URL: `query`, `time` when given, and `timeout` (Prometheus's own evaluation limit).
    pub fn query_url(&self, time: Option<Timestamp>) -> Url {
        let mut url = self.address.clone();
        let path = format!("{}/api/v1/query", self.address.path().trim_end_matches('/'));
        url.set_path(&path);
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("query", &self.query);
            if let Some(t) = time {
                pairs.append_pair("time", &t.to_string());
            }
            pairs.append_pair("timeout", &format!("{}ms", self.timeout.as_millis().max(1)));
        }
        url
    }

    /// The server and (shortened) query, as errors name them.
    pub fn origin(&self) -> Origin {
        Origin { server: self.address.as_str().trim_end_matches('/').to_string(), query: short(&self.query) }
    }
}

fn parse_address(address: &str) -> Result<Url, PrometheusError> {
    let bad = |message: String| PrometheusError::Config { field: "address", message };
    let url = Url::parse(address.trim()).map_err(|e| bad(format!("{address:?} is not a URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad(format!("{address:?}: the scheme must be http or https")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad(format!("{address:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "the address must not carry credentials; put them in a Secret (bearerTokenSecretRef or basicAuthSecretRef)"
                .into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(format!("{address:?}: the address must not have a query or fragment")));
    }
    Ok(url)
}

fn short(text: &str) -> String {
    let mut out: String = text.chars().take(QUERY_IN_MESSAGES).collect();
    if text.chars().count() > QUERY_IN_MESSAGES {
        out.push('…');
    }
    out
}

/// Which server and query an error is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The server's base address.
    pub server: String,
    /// The query (shortened to 160 characters).
    pub query: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prometheus {}, query `{}`", self.server, self.query)
    }
}

/// Why a query gave no value.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// The configuration is unusable (address, query, timeout, CA bundle, credentials).
    #[error("{field}: {message}")]
    Config { field: &'static str, message: String },
    /// The TCP connection failed (refused, unreachable, name not resolved).
    #[error("{origin}: cannot connect: {message}")]
    Connect { origin: Origin, message: String },
    /// An address the name resolved to may not be contacted (loopback, link-local, metadata, ...).
    #[error("{origin}: {message}")]
    Refused { origin: Origin, message: String },
    /// The TLS handshake failed (e.g. the certificate does not chain to the configured CA).
    #[error("{origin}: TLS: {message}")]
    Tls { origin: Origin, message: String },
    /// No complete answer within the timeout.
    #[error("{origin}: no answer within {after:?}")]
    Timeout { origin: Origin, after: Duration },
    /// The HTTP exchange broke off.
    #[error("{origin}: HTTP: {message}")]
    Transport { origin: Origin, message: String },
    /// The server answered with a non-2xx status and no Prometheus error body.
    #[error("{origin}: HTTP status {status}: {body}")]
    HttpStatus { origin: Origin, status: u16, body: String },
    /// Prometheus answered `status: "error"` (bad PromQL, evaluation timeout, …).
    #[error("{origin}: query failed ({error_type}): {error}")]
    QueryFailed { origin: Origin, error_type: String, error: String },
    /// The answer is not the Prometheus API's JSON.
    #[error("{origin}: unreadable answer: {message}")]
    BadResponse { origin: Origin, message: String },
    /// The result is a matrix or a string, not a scalar or vector.
    #[error("{origin}: result type {result_type:?} is neither a scalar nor a vector (use an instant query)")]
    ResultType { origin: Origin, result_type: String },
    /// The vector is empty: no series matched.
    #[error("{origin}: empty result (no series matched)")]
    Empty { origin: Origin },
    /// Several series and no aggregation configured.
    #[error(
        "{origin}: {count} series returned ({examples}); set an aggregation (sum, avg, min, max) or make the query return one"
    )]
    MultipleSeries { origin: Origin, count: usize, examples: String },
    /// NaN, +Inf or -Inf.
    #[error("{origin}: value {value} is not a finite number")]
    NotFinite { origin: Origin, value: String },
    /// A finite value (or an aggregate) too large for a decimal.
    #[error("{origin}: value {value} is out of range")]
    OutOfRange { origin: Origin, value: String },
}

impl PrometheusError {
    /// A bounded label for an errors-by-class metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            PrometheusError::Config { .. } => "config",
            PrometheusError::Connect { .. } => "connect",
            PrometheusError::Refused { .. } => "refused",
            PrometheusError::Tls { .. } => "tls",
            PrometheusError::Timeout { .. } => "timeout",
            PrometheusError::Transport { .. } => "transport",
            PrometheusError::HttpStatus { .. } => "http_status",
            PrometheusError::QueryFailed { .. } => "query_error",
            PrometheusError::BadResponse { .. } | PrometheusError::ResultType { .. } => "bad_response",
            PrometheusError::Empty { .. } => "empty",
            PrometheusError::MultipleSeries { .. } => "multiple_series",
            PrometheusError::NotFinite { .. } => "not_finite",
            PrometheusError::OutOfRange { .. } => "out_of_range",
        }
    }
}

/// One metric value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The value (the aggregate, when several series were aggregated).
    pub value: Decimal,
    /// The sample's time, to the millisecond: for an instant query Prometheus reports the evaluation
    /// time (`time`, or now), not when the series was scraped.
    pub timestamp: Timestamp,
    /// How many series made the value (1 for a scalar).
    pub series: usize,
    /// Warnings Prometheus attached to the answer.
    pub warnings: Vec<String>,
}

/// A client for one configured query; cheap to clone.
#[derive(Clone, Debug)]
pub struct PrometheusClient {
    config: Arc<PrometheusConfig>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl PrometheusClient {
    /// Check the config and build the TLS settings (for `https`).
    pub fn new(config: PrometheusConfig) -> Result<Self, PrometheusError> {
        let tls = match config.address.scheme() {
            "https" => Some(tls_config(config.ca_pem.as_deref())?),
            _ if config.ca_pem.is_some() => {
                return Err(PrometheusError::Config {
                    field: "caSecretRef",
                    message: format!("a CA bundle is set but the address {} is not https", config.address),
                });
            }
            _ => None,
        };
        config.auth.header()?;
        Ok(PrometheusClient { config: Arc::new(config), tls })
    }

    /// The configuration.
    pub fn config(&self) -> &PrometheusConfig {
        &self.config
    }

    /// Run the query now.
    pub async fn query(&self) -> Result<Sample, PrometheusError> {
        self.run(None).await
    }

    /// Run the query as of `time`.
    pub async fn query_at(&self, time: Timestamp) -> Result<Sample, PrometheusError> {
        self.run(Some(time)).await
    }

    async fn run(&self, time: Option<Timestamp>) -> Result<Sample, PrometheusError> {
        let origin = self.config.origin();
        let timeout = self.config.timeout;
        let (status, body) = tokio::time::timeout(timeout, self.fetch(time, &origin))
            .await
            .map_err(|_| PrometheusError::Timeout { origin: origin.clone(), after: timeout })??;
        let sample = evaluate(&origin, status, &body, self.config.aggregation)?;
        if !sample.warnings.is_empty() {
            tracing::debug!(server = %origin.server, warnings = ?sample.warnings, "Prometheus answered with warnings");
        }
        Ok(sample)
    }

    async fn fetch(&self, time: Option<Timestamp>, origin: &Origin) -> Result<(StatusCode, Bytes), PrometheusError> {
        let url = self.config.query_url(time);
        // Checked by `parse_address`.
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(80);
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut request = Request::get(path)
            .header(header::HOST, host_header)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, concat!("placement-operator/", env!("CARGO_PKG_VERSION")));
        if let Some(value) = self.config.auth.header()? {
            request = request.header(header::AUTHORIZATION, value);
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(|e| PrometheusError::Config {
            field: "address",
            message: format!("cannot build a request for {url}: {e}"),
        })?;

        let addrs = self
            .config
            .egress
            .addresses(host.trim_start_matches('[').trim_end_matches(']'), port)
            .await
            .map_err(|e| match e {
                EgressError::Refused(r) => PrometheusError::Refused { origin: origin.clone(), message: r.to_string() },
                other => PrometheusError::Connect { origin: origin.clone(), message: other.to_string() },
            })?;
        let tcp = TcpStream::connect(&addrs[..]).await.map_err(|e| PrometheusError::Connect {
            origin: origin.clone(),
            message: cut(&e.to_string(), BODY_IN_MESSAGES),
        })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => exchange(tcp, request, origin).await,
            Some(tls) => {
                let name =
                    server_name(&url).map_err(|message| PrometheusError::Tls { origin: origin.clone(), message })?;
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| PrometheusError::Tls { origin: origin.clone(), message: error_chain(&e) })?;
                exchange(stream, request, origin).await
            }
        }
    }
}

fn server_name(url: &Url) -> Result<ServerName<'static>, String> {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            ServerName::try_from(d.to_string()).map_err(|e| format!("{d:?} is not a valid TLS server name: {e}"))
        }
        Some(url::Host::Ipv4(ip)) => Ok(ServerName::IpAddress(std::net::IpAddr::V4(ip).into())),
        Some(url::Host::Ipv6(ip)) => Ok(ServerName::IpAddress(std::net::IpAddr::V6(ip).into())),
        None => Err("the address has no host".into()),
    }
}

fn tls_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, PrometheusError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| PrometheusError::Config {
                    field: "caSecretRef",
                    message: format!("the CA bundle is not valid PEM: {e}"),
                })?;
                roots.add(cert).map_err(|e| PrometheusError::Config {
                    field: "caSecretRef",
                    message: format!("the CA bundle holds an unusable certificate: {e}"),
                })?;
            }
            if roots.is_empty() {
                return Err(PrometheusError::Config {
                    field: "caSecretRef",
                    message: "the CA bundle holds no PEM certificate".into(),
                });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // One unreadable system certificate must not disable the others.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(PrometheusError::Config {
                    field: "caSecretRef",
                    message: "no system CA certificates found for an https address; set caSecretRef".into(),
                });
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PrometheusError::Config { field: "tls", message: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One HTTP/1.1 request on `io`; the connection is driven in this future, so dropping it (the
/// timeout) closes everything.
async fn exchange<IO>(
    io: IO,
    request: Request<Empty<Bytes>>,
    origin: &Origin,
) -> Result<(StatusCode, Bytes), PrometheusError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let transport = |message: String| PrometheusError::Transport { origin: origin.clone(), message };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| transport(error_chain(&e)))?;
    let exchange = async move {
        let response = sender.send_request(request).await.map_err(|e| transport(error_chain(&e)))?;
        let status = response.status();
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(too_large(origin));
        }
        match Limited::new(response.into_body(), MAX_BODY_BYTES).collect().await {
            Ok(collected) => Ok((status, collected.to_bytes())),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(origin)),
            Err(e) => Err(transport(format!("reading the body: {}", error_chain(e.as_ref())))),
        }
    };
    tokio::pin!(exchange);
    tokio::select! {
        biased;
        done = &mut exchange => done,
        // The connection ended first: whatever it delivered is in the exchange, or the exchange fails.
        _ = conn => exchange.await,
    }
}

fn too_large(origin: &Origin) -> PrometheusError {
    PrometheusError::BadResponse {
        origin: origin.clone(),
        message: format!("the body is larger than {MAX_BODY_BYTES} bytes"),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: std::collections::BTreeMap<String, String>,
    value: (f64, String),
}

/// Read a Prometheus answer (HTTP status and body) as one value. Pure: the client's decision, testable
/// without a server.
pub fn evaluate(
    origin: &Origin,
    status: StatusCode,
    body: &[u8],
    aggregation: Option<Aggregation>,
) -> Result<Sample, PrometheusError> {
    let parsed: Result<Envelope, _> = serde_json::from_slice(body);
    let envelope = match parsed {
        // Prometheus sends its own error JSON with 400, 422, 503 …: the JSON says more than the status.
        Ok(env) if env.status == "error" => {
            return Err(PrometheusError::QueryFailed {
                origin: origin.clone(),
                error_type: cut(env.error_type.as_deref().unwrap_or("unknown"), ERROR_TYPE_IN_MESSAGES),
                error: cut(env.error.as_deref().unwrap_or("(no message)"), BODY_IN_MESSAGES),
            });
        }
        _ if !status.is_success() => {
            return Err(PrometheusError::HttpStatus {
                origin: origin.clone(),
                status: status.as_u16(),
                body: body_excerpt(body),
            });
        }
        Ok(env) if env.status == "success" => env,
        Ok(env) => {
            return Err(PrometheusError::BadResponse {
                origin: origin.clone(),
                message: format!("status {:?} is neither \"success\" nor \"error\"", short(&env.status)),
            });
        }
        Err(e) => {
            return Err(PrometheusError::BadResponse {
                origin: origin.clone(),
                message: format!("{e} in {}", body_excerpt(body)),
            });
        }
    };
    let bad = |message: String| PrometheusError::BadResponse { origin: origin.clone(), message };
    let Some(data) = envelope.data else {
        return Err(bad("\"data\" is missing".into()));
    };
    let warnings = envelope.warnings.into_iter().take(8).map(|w| short(&w)).collect();
    match data.result_type.as_str() {
        "scalar" => {
            let (t, v): (f64, String) =
                serde_json::from_value(data.result).map_err(|e| bad(format!("scalar result: {e}")))?;
            let value = parse_value(origin, &v)?;
            Ok(Sample { value, timestamp: timestamp(origin, t)?, series: 1, warnings })
        }
        "vector" => {
            let samples: Vec<VectorSample> =
                serde_json::from_value(data.result).map_err(|e| bad(format!("vector result: {e}")))?;
            let (value, t) = match (samples.as_slice(), aggregation) {
                ([], _) => return Err(PrometheusError::Empty { origin: origin.clone() }),
                ([one], _) => (parse_value(origin, &one.value.1)?, one.value.0),
                (many, None) => {
                    return Err(PrometheusError::MultipleSeries {
                        origin: origin.clone(),
                        count: many.len(),
                        examples: series_examples(many),
                    });
                }
                (many, Some(agg)) => aggregate(origin, many, agg)?,
            };
            Ok(Sample { value, timestamp: timestamp(origin, t)?, series: samples.len(), warnings })
        }
        other => Err(PrometheusError::ResultType { origin: origin.clone(), result_type: short(other) }),
    }
}

/// The label sets of the first two series, for messages (`{shard="a"}, {shard="b"}, …`).
fn series_examples(samples: &[VectorSample]) -> String {
    let mut shown: Vec<String> = samples
        .iter()
        .take(2)
        .map(|s| {
            let labels: Vec<String> = s.metric.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            short(&format!("{{{}}}", labels.join(", ")))
        })
        .collect();
    if samples.len() > 2 {
        shown.push("…".into());
    }
    shown.join(", ")
}

fn aggregate(origin: &Origin, samples: &[VectorSample], agg: Aggregation) -> Result<(Decimal, f64), PrometheusError> {
    let mut values = Vec::with_capacity(samples.len());
    for s in samples {
        values.push(parse_value(origin, &s.value.1)?);
    }
    // An instant query evaluates every series at the same time; take the latest to be safe.
    let t = samples.iter().map(|s| s.value.0).fold(f64::NEG_INFINITY, f64::max);
    let overflow = |what: &str| PrometheusError::OutOfRange { origin: origin.clone(), value: format!("the {what}") };
    let value = match agg {
        Aggregation::Sum => {
            values.iter().try_fold(Decimal::ZERO, |acc, v| acc.checked_add(*v)).ok_or(overflow("sum"))?
        }
        Aggregation::Avg => {
            let sum = values.iter().try_fold(Decimal::ZERO, |acc, v| acc.checked_add(*v)).ok_or(overflow("sum"))?;
            sum.checked_div(Decimal::from(values.len())).ok_or(overflow("average"))?
        }
        Aggregation::Min => values.iter().copied().min().unwrap_or_default(),
        Aggregation::Max => values.iter().copied().max().unwrap_or_default(),
    };
    Ok((value.normalize(), t))
}

fn parse_value(origin: &Origin, text: &str) -> Result<Decimal, PrometheusError> {
    let lower = text.trim().to_ascii_lowercase();
    if lower.contains("nan") || lower.contains("inf") {
        return Err(PrometheusError::NotFinite { origin: origin.clone(), value: short(text) });
    }
    match parse_metric(text) {
        Ok(v) => Ok(v),
        Err(TrackingError::OutOfRange { .. }) => {
            Err(PrometheusError::OutOfRange { origin: origin.clone(), value: short(text) })
        }
        // A float Decimal cannot hold: beyond ±7.9e28 it is out of range; below 1e-28 it rounds to 0
        // (as digits past the 28th decimal place do).
        Err(_) => match text.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && x.abs() < 1e-28 => Ok(Decimal::ZERO),
            Ok(x) if x.is_finite() => Err(PrometheusError::OutOfRange { origin: origin.clone(), value: short(text) }),
            _ => Err(PrometheusError::BadResponse {
                origin: origin.clone(),
                message: format!("sample value {:?} is not a number", short(text)),
            }),
        },
    }
}

fn timestamp(origin: &Origin, seconds: f64) -> Result<Timestamp, PrometheusError> {
    let millis = (seconds * 1000.0).round();
    let bad = || PrometheusError::BadResponse {
        origin: origin.clone(),
        message: format!("sample time {seconds} is not a valid Unix time"),
    };
    // Outside ±2^53 ms the float is not an exact millisecond count anyway.
    if !millis.is_finite() || millis.abs() > 9_007_199_254_740_992.0 {
        return Err(bad());
    }
    Timestamp::from_millisecond(millis as i64).map_err(|_| bad())
}

fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let clean: String =
        text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(BODY_IN_MESSAGES).collect::<String>();
    let clean = clean.trim().to_string();
    if clean.is_empty() {
        "(empty body)".into()
    } else if text.chars().count() > BODY_IN_MESSAGES {
        format!("{clean}…")
    } else {
        clean
    }
}

/// The Secret keys that hold credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthKeys {
    /// One key holding a bearer token.
    Bearer { token: String },
    /// Two keys holding a username and a password.
    Basic { username: String, password: String },
}

/// Read credentials from a Secret: a bearer token (surrounding whitespace, e.g. a file's final newline,
/// removed) or a username and password (a final newline removed from each).
pub fn auth_from_secret(secret: &Secret, keys: &AuthKeys) -> Result<Auth, SecretError> {
    let header_safe = |s: &str| s.chars().all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic() || !c.is_ascii());
    match keys {
        AuthKeys::Bearer { token } => {
            let value = secrets::trimmed_text(secret, token)?;
            if !value.chars().all(|c| c.is_ascii_graphic()) {
                return Err(SecretError::invalid(
                    secret,
                    token,
                    "a bearer token must be printable ASCII without spaces",
                ));
            }
            Ok(Auth::Bearer(value.to_string()))
        }
        AuthKeys::Basic { username, password } => {
            let user = secrets::trimmed_text(secret, username)?;
            if user.contains(':') {
                return Err(SecretError::invalid(secret, username, "a basic-auth username cannot contain ':'"));
            }
            if !header_safe(user) {
                return Err(SecretError::invalid(secret, username, "the username contains control characters"));
            }
            let pass = secrets::text(secret, password)?;
            let pass = pass.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(pass);
            if !header_safe(pass) {
                return Err(SecretError::invalid(secret, password, "the password contains control characters"));
            }
            Ok(Auth::Basic { username: user.to_string(), password: pass.to_string() })
        }
    }
}

/// Read a PEM CA bundle from a Secret (checked when the client is built).
pub fn ca_from_secret(secret: &Secret, key: &str) -> Result<Vec<u8>, SecretError> {
    secrets::bytes(secret, key).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn origin() -> Origin {
        Origin { server: "http://prom:9090".into(), query: "q".into() }
    }

    fn eval(body: &str, agg: Option<Aggregation>) -> Result<Sample, PrometheusError> {
        evaluate(&origin(), StatusCode::OK, body.as_bytes(), agg)
    }

    fn vector(values: &[&str]) -> String {
        let items: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!(r#"{{"metric":{{"shard":"{i}"}},"value":[1700000000.5,"{v}"]}}"#))
            .collect();
        format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, items.join(","))
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn a_scalar_is_an_exact_decimal_with_its_time() {
        let s = eval(r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.123,"1100"]}}"#, None)
            .unwrap();
        assert_eq!(s.value, d("1100"));
        assert_eq!(s.timestamp, Timestamp::from_millisecond(1_700_000_000_123).unwrap());
        assert_eq!(s.series, 1);
        let s = eval(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"0.1"]}}"#, None).unwrap();
        assert_eq!(s.value, d("0.1"));
    }

    #[test]
    fn one_series_is_a_value_several_need_an_aggregation() {
        let s = eval(&vector(&["3000"]), None).unwrap();
        assert_eq!((s.value, s.series), (d("3000"), 1));
        let e = eval(&vector(&["1", "2", "4"]), None).unwrap_err();
        assert!(matches!(e, PrometheusError::MultipleSeries { count: 3, .. }), "{e}");
        assert!(e.to_string().contains("3 series") && e.to_string().contains("http://prom:9090"), "{e}");
        assert!(e.to_string().contains(r#"({shard="0"}, {shard="1"}, …)"#), "{e}");
        let cases = [
            (Aggregation::Sum, "7"),
            (Aggregation::Avg, "2.3333333333333333333333333333"),
            (Aggregation::Min, "1"),
            (Aggregation::Max, "4"),
        ];
        for (agg, want) in cases {
            let s = eval(&vector(&["1", "2", "4"]), Some(agg)).unwrap();
            assert_eq!(s.value, d(want), "{agg:?}");
            assert_eq!(s.series, 3);
        }
        assert_eq!(eval(&vector(&["0.1", "0.2"]), Some(Aggregation::Sum)).unwrap().value, d("0.3"));
        assert_eq!(eval(&vector(&["1000", "2000"]), Some(Aggregation::Avg)).unwrap().value, d("1500"));
    }

    #[test]
    fn empty_nan_and_infinities_are_errors_never_values() {
        let e = eval(&vector(&[]), Some(Aggregation::Sum)).unwrap_err();
        assert_eq!(e.metric_label(), "empty", "{e}");
        for v in ["NaN", "+Inf", "-Inf"] {
            let e = eval(&vector(&[v]), None).unwrap_err();
            assert!(matches!(&e, PrometheusError::NotFinite { value, .. } if value == v), "{e}");
            let scalar = format!(r#"{{"status":"success","data":{{"resultType":"scalar","result":[1,"{v}"]}}}}"#);
            assert_eq!(eval(&scalar, None).unwrap_err().metric_label(), "not_finite");
            // One bad series spoils an aggregate too.
            assert_eq!(eval(&vector(&["1", v]), Some(Aggregation::Max)).unwrap_err().metric_label(), "not_finite");
        }
    }

    #[test]
    fn huge_values_and_overflowing_sums_are_out_of_range_tiny_ones_round() {
        let e = eval(&vector(&["1e40"]), None).unwrap_err();
        assert_eq!(e.metric_label(), "out_of_range", "{e}");
        let big = "70000000000000000000000000000";
        let e = eval(&vector(&[big, big]), Some(Aggregation::Sum)).unwrap_err();
        assert_eq!(e.metric_label(), "out_of_range", "{e}");
        assert_eq!(eval(&vector(&[big, big]), Some(Aggregation::Max)).unwrap().value, d(big));
        let tiny = eval(&vector(&["0.000000000000000000000000000001"]), None);
        assert!(tiny.as_ref().is_ok_and(|s| s.value < d("0.000001")), "{tiny:?}");
        assert_eq!(eval(&vector(&["1.5e3"]), None).unwrap().value, d("1500"));
        assert_eq!(eval(&vector(&["1e-40"]), None).unwrap().value, Decimal::ZERO);
        assert_eq!(eval(&vector(&["-1e40"]), None).unwrap_err().metric_label(), "out_of_range");
    }

    #[test]
    fn prometheus_errors_statuses_and_garbage_are_typed() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unclosed left parenthesis"}"#;
        let e = evaluate(&origin(), StatusCode::BAD_REQUEST, body.as_bytes(), None).unwrap_err();
        assert!(matches!(&e, PrometheusError::QueryFailed { error_type, .. } if error_type == "bad_data"), "{e}");
        assert!(e.to_string().contains("unclosed left parenthesis") && e.to_string().contains("`q`"), "{e}");
        let e = evaluate(&origin(), StatusCode::OK, body.as_bytes(), None).unwrap_err();
        assert_eq!(e.metric_label(), "query_error");

        let e = evaluate(&origin(), StatusCode::BAD_GATEWAY, b"<html>upstream down</html>", None).unwrap_err();
        assert!(
            matches!(&e, PrometheusError::HttpStatus { status: 502, body, .. } if body.contains("upstream")),
            "{e}"
        );
        // A success body with a failure status is still a failure.
        let e = evaluate(&origin(), StatusCode::SERVICE_UNAVAILABLE, vector(&["1"]).as_bytes(), None).unwrap_err();
        assert_eq!(e.metric_label(), "http_status");

        for garbage in ["", "not json", r#"{"status":"success"}"#, r#"{"status":"maybe","data":null}"#] {
            let e = eval(garbage, None).unwrap_err();
            assert_eq!(e.metric_label(), "bad_response", "{garbage:?}: {e}");
        }
        let wrong_shape = r#"{"status":"success","data":{"resultType":"vector","result":[{"value":"x"}]}}"#;
        assert_eq!(eval(wrong_shape, None).unwrap_err().metric_label(), "bad_response");
        let not_number = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"abc"]}}"#;
        assert_eq!(eval(not_number, None).unwrap_err().metric_label(), "bad_response");
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(eval(matrix, None).unwrap_err(), PrometheusError::ResultType { .. }));
        let bad_time = r#"{"status":"success","data":{"resultType":"scalar","result":[1e300,"1"]}}"#;
        assert_eq!(eval(bad_time, None).unwrap_err().metric_label(), "bad_response");
    }

    #[test]
    fn warnings_are_kept() {
        let body = r#"{"status":"success","warnings":["partial"],"data":{"resultType":"scalar","result":[1,"2"]}}"#;
        assert_eq!(eval(body, None).unwrap().warnings, vec!["partial".to_string()]);
    }

    #[test]
    fn long_queries_and_bodies_are_shortened_in_messages() {
        let long = "x".repeat(10_000);
        let o = Origin { server: "http://p".into(), query: short(&long) };
        let e = evaluate(&o, StatusCode::INTERNAL_SERVER_ERROR, long.as_bytes(), None).unwrap_err();
        assert!(e.to_string().len() < 600, "{}", e.to_string().len());
    }

    #[test]
    fn addresses_are_checked_and_prefixes_kept() {
        let c = PrometheusConfig::new("http://prom.monitoring:9090/prefix/", "sum(rate(x[1m]))").unwrap();
        let url = c.query_url(Some(Timestamp::from_second(1_700_000_000).unwrap()));
        assert_eq!(url.path(), "/prefix/api/v1/query");
        let pairs: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs["query"], "sum(rate(x[1m]))");
        assert_eq!(pairs["time"], "2023-11-14T22:13:20Z");
        assert_eq!(pairs["timeout"], "30000ms");
        let c = PrometheusConfig::new("https://prom", "up").unwrap();
        assert_eq!(c.query_url(None).as_str(), "https://prom/api/v1/query?query=up&timeout=30000ms");

        for bad in ["prom:9090", "ftp://prom", "http://user:pw@prom", "http://prom/?a=b", "http://"] {
            let e = PrometheusConfig::new(bad, "up").unwrap_err();
            assert_eq!(e.metric_label(), "config", "{bad}: {e}");
            assert!(!e.to_string().contains("pw"), "{e}");
        }
        assert!(PrometheusConfig::new("http://prom", "  ").is_err());
    }

    #[test]
    fn a_ca_bundle_must_be_pem_and_needs_https() {
        let mut c = PrometheusConfig::new("https://prom", "up").unwrap();
        c.ca_pem = Some(b"not a certificate".to_vec());
        let e = PrometheusClient::new(c.clone()).unwrap_err();
        assert!(e.to_string().contains("caSecretRef"), "{e}");
        c.address = Url::parse("http://prom").unwrap();
        c.ca_pem = Some(b"-----BEGIN CERTIFICATE-----\n".to_vec());
        let e = PrometheusClient::new(c).unwrap_err();
        assert!(e.to_string().contains("not https"), "{e}");
    }

    fn spec(extra: &str) -> TrafficWeightSpec {
        let text = format!(
            r#"{{"policy":{{"targetValue":1000}},
                "metric":{{"prometheus":{{"address":"https://prom.monitoring:9090","query":"sum(rate(r[1m]))"{extra}}}}},
                "target":{{"httpRoute":{{"name":"r","backendRefName":"b","baseBackendRefName":"a"}}}}}}"#
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn from_spec_takes_address_query_aggregation_and_timeout() {
        let c = PrometheusConfig::from_spec(&spec(""), Auth::None, None).unwrap();
        assert_eq!(c.address.as_str(), "https://prom.monitoring:9090/");
        assert_eq!(c.query, "sum(rate(r[1m]))");
        assert_eq!(c.aggregation, None);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        let s = spec(r#","aggregation":"avg","timeout":"5s","bearerTokenSecretRef":{"name":"s","key":"token"}"#);
        let c = PrometheusConfig::from_spec(&s, Auth::Bearer("t".into()), Some(b"pem".to_vec())).unwrap();
        assert_eq!((c.aggregation, c.timeout), (Some(Aggregation::Avg), Duration::from_secs(5)));
        assert_eq!(c.auth, Auth::Bearer("t".into()));
        assert_eq!(c.ca_pem.as_deref(), Some(&b"pem"[..]));
        let e = PrometheusConfig::from_spec(&spec(r#","timeout":"10m""#), Auth::None, None).unwrap_err();
        assert!(e.to_string().starts_with("spec.metric.prometheus.timeout"), "{e}");
        let mut s = spec("");
        s.metric.prometheus.address = "http://u:p@prom".into();
        let e = PrometheusConfig::from_spec(&s, Auth::None, None).unwrap_err();
        assert!(e.to_string().starts_with("spec.metric.prometheus.address"), "{e}");
    }

    fn secret(data: &[(&str, &[u8])]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("prom-auth".into());
        s.metadata.namespace = Some("shop".into());
        s.data = Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect());
        s
    }

    #[test]
    fn credentials_come_from_the_named_keys() {
        let s = secret(&[("token", b"abc.def\n"), ("user", b"alice"), ("pass", b"p w:x\n")]);
        let bearer = AuthKeys::Bearer { token: "token".into() };
        assert_eq!(auth_from_secret(&s, &bearer).unwrap(), Auth::Bearer("abc.def".into()));
        let basic = AuthKeys::Basic { username: "user".into(), password: "pass".into() };
        let got = auth_from_secret(&s, &basic).unwrap();
        assert_eq!(got, Auth::Basic { username: "alice".into(), password: "p w:x".into() });
        assert!(!format!("{got:?}").contains("p w:x"), "the password must not be in Debug output");
        assert!(!format!("{:?}", Auth::Bearer("abc".into())).contains("abc"));

        let mut from_string_data = Secret::default();
        from_string_data.metadata.name = Some("x".into());
        from_string_data.string_data = Some([("token".to_string(), "zz".to_string())].into());
        assert_eq!(auth_from_secret(&from_string_data, &bearer).unwrap(), Auth::Bearer("zz".into()));
    }

    #[test]
    fn secret_errors_name_the_secret_and_key() {
        let s = secret(&[("token", b"abc"), ("bin", &[0xff, 0xfe]), ("blank", b" \n"), ("bad", b"a b")]);
        let e = auth_from_secret(&s, &AuthKeys::Bearer { token: "tokn".into() }).unwrap_err();
        assert_eq!(e.to_string(), r#"Secret shop/prom-auth has no key "tokn" (keys: "bad", "bin", "blank", "token")"#);
        let e = auth_from_secret(&s, &AuthKeys::Bearer { token: "bin".into() }).unwrap_err();
        assert_eq!(e.to_string(), r#"Secret shop/prom-auth key "bin" is not UTF-8 text"#);
        let e = auth_from_secret(&s, &AuthKeys::Bearer { token: "blank".into() }).unwrap_err();
        assert!(matches!(e, SecretError::Empty { .. }), "{e}");
        let e = auth_from_secret(&s, &AuthKeys::Bearer { token: "bad".into() }).unwrap_err();
        assert!(e.to_string().contains("\"bad\"") && e.to_string().contains("shop/prom-auth"), "{e}");
        let colon = secret(&[("user", b"a:b"), ("pass", b"x")]);
        let e = auth_from_secret(&colon, &AuthKeys::Basic { username: "user".into(), password: "pass".into() })
            .unwrap_err();
        assert!(e.to_string().contains("':'"), "{e}");
        let e = ca_from_secret(&Secret::default(), "ca.crt").unwrap_err();
        assert_eq!(e.to_string(), r#"Secret <unnamed> has no key "ca.crt" (keys: none)"#);
        assert_eq!(e.metric_label(), "missing_key");
        assert_eq!(ca_from_secret(&secret(&[("ca.crt", b"PEM")]), "ca.crt").unwrap(), b"PEM".to_vec());
    }

    #[test]
    fn auth_headers() {
        assert_eq!(Auth::None.header().unwrap(), None);
        assert_eq!(Auth::Bearer("t0k".into()).header().unwrap().unwrap(), "Bearer t0k");
        let basic = Auth::Basic { username: "Aladdin".into(), password: "open sesame".into() };
        assert_eq!(basic.header().unwrap().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(Auth::Bearer("a\nb".into()).header().unwrap_err().metric_label(), "config");
    }
}
